"""The committed OIP v2 stubs are exactly what protoc generates from the committed .proto."""

from __future__ import annotations

from flightdeck.serving.protos import generate


def test_regenerated_stubs_match_the_committed_ones(tmp_path):
    generated = generate.generate(tmp_path)

    for path in generated:
        committed = generate.PROTOS_DIR / path.name
        assert path.read_bytes() == committed.read_bytes(), (
            f"{committed.name} differs from what protoc generates; never edit it by hand, "
            "run `python -m flightdeck.serving.protos.generate` (make proto)")


def test_stubs_import_as_package_modules():
    from flightdeck.serving.protos import grpc_predict_v2_pb2 as pb2
    from flightdeck.serving.protos import grpc_predict_v2_pb2_grpc as pb2_grpc

    service = pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert [method.name for method in service.methods] == [
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]
    assert pb2_grpc.GRPCInferenceServiceStub
