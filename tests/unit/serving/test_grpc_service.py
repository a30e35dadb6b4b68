"""The OIP v2 gRPC transport against a real grpc.aio server, a real client stub and a fake gateway."""

from __future__ import annotations

import asyncio
import logging
import struct
from importlib import metadata
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from flightdeck.config import Settings
from flightdeck.serving import errors
from flightdeck.serving.gateway import Prediction
from flightdeck.serving.grpc_service import start_grpc_server
from flightdeck.serving.protos import grpc_predict_v2_pb2 as pb2
from flightdeck.serving.protos import grpc_predict_v2_pb2_grpc as pb2_grpc
from tests.support import free_port

MAX_ROWS = 5
MAX_BODY_BYTES = 64 * 1024
ADMIN_TOKEN = "grpc-admin-token-0123456789abcdef"
ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
ENDPOINT = "default"


class FakeGateway:
    """The Gateway interface over one endpoint `default`; records predict calls, can be made to fail."""

    def __init__(self) -> None:
        self.settings = Settings(max_batch_rows=MAX_ROWS, max_body_bytes=MAX_BODY_BYTES,
                                 admin_tokens={"ops": ADMIN_TOKEN})
        self.calls: list[dict] = []
        self.error: Exception | None = None
        self.live = True
        self.ready = True

    async def predict(self, endpoint, columns, *, unit_id=None, override=None, version=None,
                      client_request_id=None):
        self.calls.append({"endpoint": endpoint, "columns": columns, "unit_id": unit_id,
                           "override": override, "version": version, "client_request_id": client_request_id})
        if self.error is not None:
            raise self.error
        self._check(endpoint)
        rows = len(next(iter(columns.values())))
        return Prediction(request_id="generated-id", endpoint=endpoint,
                          scores=np.linspace(0.25, 0.75, rows), variant="challenger",
                          model_version=version or "3", route_version=7, cached=False, fallback=True,
                          client_request_id=client_request_id)

    def is_live(self) -> bool:
        return self.live

    def is_ready(self) -> bool:
        return self.ready

    def endpoint_ready(self, endpoint: str) -> bool:
        self._check(endpoint)
        return True

    def endpoint_metadata(self, endpoint: str):
        self._check(endpoint)
        spec = SimpleNamespace
        return SimpleNamespace(
            name=endpoint, versions=["3", "4"], platform="onnxruntime_onnx",
            inputs=[spec(name="amount", datatype="FP64", shape=[-1, 1]),
                    spec(name="country", datatype="BYTES", shape=[-1, 1])],
            outputs=[spec(name="probabilities", datatype="FP64", shape=[-1, 1])])

    @staticmethod
    def _check(endpoint: str) -> None:
        if endpoint != ENDPOINT:
            raise errors.UnknownEndpointError(f"no endpoint {endpoint!r}", field="model_name")


def serve(gateway, scenario):
    """Run `await scenario(stub)` against a fresh server on loopback; return its result."""

    async def run():
        port = free_port()
        server = await start_grpc_server(gateway, "127.0.0.1", port)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await scenario(pb2_grpc.GRPCInferenceServiceStub(channel))
        finally:
            await server.stop(None)

    return asyncio.run(asyncio.wait_for(run(), timeout=30))


def call(gateway, method: str, request, metadata=None):
    """One RPC's response."""
    return serve(gateway, lambda stub: getattr(stub, method)(request, metadata=metadata))


def call_error(gateway, method: str, request, metadata=None) -> grpc.aio.AioRpcError:
    """The error one RPC fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        call(gateway, method, request, metadata)
    return caught.value


def tensor(name, datatype, shape, **contents):
    return pb2.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=shape, contents=pb2.InferTensorContents(**contents))


def raw_tensor(name, datatype, shape):
    return pb2.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)


def raw_strings(*values: str) -> bytes:
    """BYTES elements as raw content: each a 4-byte little-endian length, then the bytes."""
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def infer_request(inputs, raw=(), **fields) -> pb2.ModelInferRequest:
    return pb2.ModelInferRequest(model_name=ENDPOINT, inputs=inputs, raw_input_contents=raw, **fields)


EXPECTED_COLUMNS = {
    "amount": [1.5, 2.5], "country": ["DE", "Zürich"], "age": [30, 2**40],
    "items": [3, -4], "flag": [True, False], "ratio": [0.5, 0.25],
}


# Health and metadata


def test_live_and_ready_follow_the_gateway():
    gateway = FakeGateway()
    gateway.ready = False

    assert call(gateway, "ServerLive", pb2.ServerLiveRequest()).live is True
    assert call(gateway, "ServerReady", pb2.ServerReadyRequest()).ready is False


def test_model_ready_for_a_known_endpoint():
    response = call(FakeGateway(), "ModelReady", pb2.ModelReadyRequest(name=ENDPOINT))
    assert response.ready is True


def test_model_ready_for_an_unknown_endpoint_is_not_found():
    error = call_error(FakeGateway(), "ModelReady", pb2.ModelReadyRequest(name="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in error.details()


def test_server_metadata():
    response = call(FakeGateway(), "ServerMetadata", pb2.ServerMetadataRequest())
    assert (response.name, response.version) == ("flightdeck", metadata.version("flightdeck"))
    assert list(response.extensions) == []


def test_model_metadata():
    response = call(FakeGateway(), "ModelMetadata", pb2.ModelMetadataRequest(name=ENDPOINT))
    assert (response.name, list(response.versions), response.platform) == (
        ENDPOINT, ["3", "4"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in response.inputs] == [
        ("amount", "FP64", [-1, 1]), ("country", "BYTES", [-1, 1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in response.outputs] == [
        ("probabilities", "FP64", [-1, 1])]


def test_model_metadata_for_an_unknown_endpoint_is_not_found():
    error = call_error(FakeGateway(), "ModelMetadata", pb2.ModelMetadataRequest(name="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


# Inference


def test_infer_with_typed_contents():
    gateway = FakeGateway()
    request = infer_request([
        tensor("amount", "FP64", [2, 1], fp64_contents=[1.5, 2.5]),
        tensor("country", "BYTES", [2], bytes_contents=[b"DE", "Zürich".encode()]),
        tensor("age", "INT64", [2], int64_contents=[30, 2**40]),
        tensor("items", "INT32", [2], int_contents=[3, -4]),
        tensor("flag", "BOOL", [2], bool_contents=[True, False]),
        tensor("ratio", "FP32", [2, 1], fp32_contents=[0.5, 0.25]),
    ])

    response = call(gateway, "ModelInfer", request)

    assert gateway.calls[0]["columns"] == EXPECTED_COLUMNS
    assert (response.model_name, response.model_version, response.id) == (ENDPOINT, "3", "generated-id")
    [output] = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("probabilities", "FP64", [2])
    assert list(output.contents.fp64_contents) == [0.25, 0.75]
    params = response.parameters
    assert params["variant"].string_param == "challenger"
    assert params["route_version"].int64_param == 7
    assert params["fallback"].bool_param is True
    assert params["cached"].WhichOneof("parameter_choice") == "bool_param"
    assert params["cached"].bool_param is False


def test_infer_with_raw_input_contents():
    gateway = FakeGateway()
    request = infer_request(
        [raw_tensor("amount", "FP64", [2, 1]), raw_tensor("country", "BYTES", [2]),
         raw_tensor("age", "INT64", [2]), raw_tensor("items", "INT32", [2]),
         raw_tensor("flag", "BOOL", [2]), raw_tensor("ratio", "FP32", [2])],
        raw=[np.array([1.5, 2.5], "<f8").tobytes(), raw_strings("DE", "Zürich"),
             np.array([30, 2**40], "<i8").tobytes(), np.array([3, -4], "<i4").tobytes(),
             np.array([True, False]).tobytes(), np.array([0.5, 0.25], "<f4").tobytes()])

    call(gateway, "ModelInfer", request)

    assert gateway.calls[0]["columns"] == EXPECTED_COLUMNS


def test_infer_passes_unit_id_override_version_and_request_id():
    gateway = FakeGateway()
    request = infer_request(
        [tensor("amount", "FP64", [1], fp64_contents=[1.0])],
        model_version="4", id="req-1",
        parameters={"unit_id": pb2.InferParameter(string_param="user-9"),
                    "variant": pb2.InferParameter(string_param="champion")})

    response = call(gateway, "ModelInfer", request, ADMIN)

    recorded = gateway.calls[0]
    assert {k: recorded[k] for k in ("endpoint", "unit_id", "override", "version", "client_request_id")} == {
        "endpoint": ENDPOINT, "unit_id": "user-9", "override": "champion", "version": "4",
        "client_request_id": "req-1"}
    # OIP echoes the caller's id; the gateway's own id is a parameter.
    assert (response.model_version, response.id) == ("4", "req-1")
    assert response.parameters["request_id"].string_param == "generated-id"


@pytest.mark.parametrize(("fields", "field"), [
    ({"id": "r" * 129}, "id"),
    ({"id": "request\x00id"}, "id"),
    ({"parameters": {"unit_id": pb2.InferParameter(string_param="unit\nid")}}, "unit_id"),
])
def test_hostile_ids_are_invalid_arguments_and_never_reach_the_gateway(fields, field):
    gateway = FakeGateway()
    request = infer_request([tensor("amount", "FP64", [1], fp64_contents=[1.0])], **fields)

    failure = call_error(gateway, "ModelInfer", request)

    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"`{field}`" in failure.details() and "128" in failure.details() and not gateway.calls


@pytest.mark.parametrize("fields", [
    {"parameters": {"variant": pb2.InferParameter(string_param="champion")}},
    {"model_version": "4"},
])
@pytest.mark.parametrize("metadata", [None, (("authorization", "Bearer not-a-token-0123456789abcdef"),)])
def test_only_an_admin_forces_a_variant_or_a_version(fields, metadata):
    gateway = FakeGateway()
    request = infer_request([tensor("amount", "FP64", [1], fp64_contents=[1.0])], **fields)

    failure = call_error(gateway, "ModelInfer", request, metadata)

    assert failure.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "admin token" in failure.details() and not gateway.calls


def test_infer_takes_an_integer_unit_id_and_defaults_the_rest_to_none():
    gateway = FakeGateway()
    request = infer_request([tensor("amount", "FP64", [1], fp64_contents=[1.0])],
                            parameters={"unit_id": pb2.InferParameter(int64_param=42)})

    call(gateway, "ModelInfer", request)

    recorded = gateway.calls[0]
    assert (recorded["unit_id"], recorded["override"], recorded["version"], recorded["client_request_id"]) == (
        "42", None, None, None)


# Errors


@pytest.mark.parametrize(("error", "code"), [
    (errors.MalformedRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.RouteTableError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.UnknownEndpointError, grpc.StatusCode.NOT_FOUND),
    (errors.VersionConflictError, grpc.StatusCode.ABORTED),
    (errors.PayloadTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.NotReadyError, grpc.StatusCode.UNAVAILABLE),
])
def test_gateway_errors_map_to_status_codes(error, code):
    gateway = FakeGateway()
    gateway.error = error("the gateway says no — überhaupt", field="x")

    failure = call_error(gateway, "ModelInfer", infer_request([tensor("x", "FP64", [1], fp64_contents=[1.0])]))

    assert failure.code() == code
    assert failure.details() == "the gateway says no — überhaupt"


def test_too_many_rows_is_resource_exhausted():
    gateway = FakeGateway()
    request = infer_request([tensor("x", "FP64", [MAX_ROWS + 1], fp64_contents=[1.0] * (MAX_ROWS + 1))])

    assert call_error(gateway, "ModelInfer", request).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert gateway.calls == []


def test_a_message_above_the_body_limit_is_refused_by_grpc():
    request = infer_request([raw_tensor("x", "BYTES", [1])], raw=[raw_strings("a" * MAX_BODY_BYTES)])
    assert call_error(FakeGateway(), "ModelInfer", request).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(("request_", "culprit"), [
    pytest.param(infer_request([tensor("amount", "FP128", [1], fp64_contents=[1.0])]), "amount",
                 id="unknown datatype"),
    pytest.param(infer_request([tensor("amount", "FP64", [3], fp64_contents=[1.0, 2.0])]), "amount",
                 id="shape does not match data"),
    pytest.param(infer_request([tensor("country", "BYTES", [1], bytes_contents=[b"\xff"])]), "country",
                 id="bytes not utf-8"),
    pytest.param(infer_request([tensor("half", "FP16", [1])]), "half", id="fp16 not raw"),
    pytest.param(infer_request([raw_tensor("amount", "FP64", [1])], raw=[b"\x00" * 7]), "amount",
                 id="raw not whole elements"),
    pytest.param(infer_request([raw_tensor("amount", "FP64", [2])], raw=[b"\x00" * 8]), "amount",
                 id="raw shape does not match data"),
    pytest.param(infer_request([raw_tensor("country", "BYTES", [1])], raw=[b"\x05\x00\x00\x00DE"]),
                 "country", id="raw bytes truncated element"),
    pytest.param(infer_request([raw_tensor("country", "BYTES", [1])], raw=[b"\x05\x00"]), "country",
                 id="raw bytes truncated length"),
    pytest.param(infer_request([tensor("amount", "FP64", [1], fp64_contents=[1.0])], raw=[b"\x00" * 8]),
                 "amount", id="contents and raw"),
    pytest.param(infer_request([raw_tensor("a", "FP64", [1]), raw_tensor("b", "FP64", [1])],
                               raw=[b"\x00" * 8]), "raw_input_contents", id="raw count"),
    pytest.param(infer_request([tensor("amount", "FP64", [1], fp64_contents=[1.0])],
                               parameters={"unit_id": pb2.InferParameter(bool_param=True)}),
                 "unit_id", id="unit id not a string"),
    pytest.param(infer_request([tensor("amount", "FP64", [1], fp64_contents=[1.0])],
                               parameters={"variant": pb2.InferParameter(int64_param=1)}),
                 "variant", id="variant not a string"),
])
def test_malformed_requests_are_invalid_argument_naming_the_culprit(request_, culprit):
    gateway = FakeGateway()

    failure = call_error(gateway, "ModelInfer", request_)

    assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert culprit in failure.details()
    assert gateway.calls == []


def test_an_unexpected_error_is_internal_logged_and_the_server_keeps_serving(caplog):
    gateway = FakeGateway()
    gateway.error = RuntimeError("secret internals")
    request = infer_request([tensor("x", "FP64", [1], fp64_contents=[1.0])])

    async def scenario(stub):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ModelInfer(request)
        gateway.error = None
        return caught.value, await stub.ModelInfer(request)

    with caplog.at_level(logging.ERROR, logger="flightdeck.serving.grpc_service"):
        failure, later = serve(gateway, scenario)

    assert failure.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in failure.details()
    assert list(later.outputs[0].contents.fp64_contents) == [0.25]
    [record] = [r for r in caplog.records if r.name == "flightdeck.serving.grpc_service"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


# Binding


def test_two_servers_share_a_port_with_so_reuseport():
    gateway = FakeGateway()

    async def run():
        port = free_port()
        servers = [await start_grpc_server(gateway, "127.0.0.1", port) for _ in range(2)]
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await pb2_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb2.ServerLiveRequest())
        finally:
            for server in servers:
                await server.stop(None)

    assert asyncio.run(asyncio.wait_for(run(), timeout=30)).live is True
