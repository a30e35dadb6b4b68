"""The edge export of a registered version: every artifact measured, gated, and runnable on
the device's runtimes; bundles published to S3 (moto) and installed by the agent."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _rows(report):
    return {row["name"]: row for row in report["rows"]}


def test_every_artifact_is_measured_and_passes_its_gate(exported):
    _, out, report, version = exported
    rows = _rows(report)
    assert set(rows) == {"onnx_float", "onnx_int8", "keras_student", "tflite_float32", "tflite_float16", "tflite_int8"}
    assert report["misses"] == [] and report["model_version"] == version
    for name in ("onnx_float", "onnx_int8", "tflite_float32", "tflite_float16", "tflite_int8"):
        row = rows[name]
        assert row["verdict"] == "pass" and row["size_bytes"] > 0 and row["latency_us"] > 0, row
        assert (out / name / "golden.json").is_file()
        assert (report["champion_auc"] - row["auc"]) / report["champion_auc"] <= 0.005
    assert rows["onnx_float"]["max_abs_diff"] <= 1e-5
    assert rows["tflite_float32"]["max_abs_diff"] <= 1e-5
    # The int8 ONNX model really is quantised (the champion's float64 MatMul, via float32).
    assert report["onnx_int8"]["quantised_nodes"] >= 1
    assert "MatMul(s) quantised" in rows["onnx_int8"]["note"]
    assert rows["tflite_int8"]["size_bytes"] < rows["tflite_float32"]["size_bytes"]
    assert "| tflite_int8 | litert | quantised" in (out / "table.md").read_text()


def test_int8_tflite_runs_in_litert_and_agrees_with_its_float_source(exported):
    from ai_edge_litert.interpreter import Interpreter

    from flightdeck.edge.models import TfliteEdgeModel
    from flightdeck.edge.preprocess import PreprocessSpec

    _, out, report, _ = exported
    flatbuffer = (out / "tflite_int8" / "model.tflite").read_bytes()
    detail = Interpreter(model_content=flatbuffer).get_input_details()[0]
    assert detail["dtype"] == np.int8  # full integer: int8 in, int8 out
    spec = PreprocessSpec.from_json((out / "tflite_int8" / "preprocess.json").read_text())
    golden = json.loads((out / "tflite_float32" / "golden.json").read_text())
    int8_scores = TfliteEdgeModel(flatbuffer, spec).score(golden["columns"])
    float_scores = TfliteEdgeModel((out / "tflite_float32" / "model.tflite").read_bytes(), spec).score(golden["columns"])
    np.testing.assert_allclose(float_scores, golden["scores"], atol=1e-6)
    rows = _rows(report)
    # Within the gate: the int8 model's AUC is within 0.5 % of the champion's (and its float source's).
    assert abs(rows["tflite_int8"]["auc"] - rows["tflite_float32"]["auc"]) / report["champion_auc"] <= 0.005
    assert np.max(np.abs(int8_scores - float_scores)) == pytest.approx(
        np.max(np.abs(int8_scores - float_scores)))  # finite
    assert np.max(np.abs(int8_scores - float_scores)) < 0.1


def test_a_tighter_gate_fails_naming_the_artifact_and_the_miss(exported):
    from flightdeck.edge.errors import GateError
    from flightdeck.edge.gates import ArtifactRow, check_gates

    _, _, report, _ = exported
    rows = [ArtifactRow(**row) for row in report["rows"]]
    with pytest.raises(GateError) as failure:
        check_gates(rows, report["champion_auc"], float_tolerance=1e-12, auc_loss_max=-1.0)
    text = str(failure.value)
    assert "tflite_float32: max |Δp| vs keras_student" in text and "tflite_int8: AUC" in text
    assert "over the -100.0% budget" in text


def test_publish_to_s3_and_the_agent_installs_from_it(exported, moto_server, tmp_path):
    from flightdeck.edge.agent import Agent, AgentConfig
    from flightdeck.edge.keys import generate_keypair, load_private_key
    from flightdeck.edge.publish import publish_artifact

    _, out, report, version = exported
    moto_server.client("s3").create_bucket(Bucket="edge-bundles")
    private_path, public_path = generate_keypair(tmp_path / "keys")
    published = publish_artifact(out, "tflite_int8", "s3://edge-bundles/ota", load_private_key(private_path), 100.0)
    assert published.bundle_id == f"{version}-tflite_int8"
    listed = moto_server.client("s3").list_objects_v2(Bucket="edge-bundles", Prefix="ota/")["Contents"]
    assert {o["Key"].rsplit("/", 1)[-1] for o in listed} >= {"manifest.json", "manifest.sig", "model.tflite",
                                                             "preprocess.json", "golden.json", "stable.json"}
    agent = Agent(AgentConfig(root=tmp_path / "device", store_uri="s3://edge-bundles/ota",
                              model_name=report["model_name"], device_id="d1", public_key_path=public_path))
    state = agent.run(polls=1)
    assert state["last_outcome"] == "updated" and state["active"]["format"] == "tflite_int8"
    golden = json.loads((out / "tflite_int8" / "golden.json").read_text())
    np.testing.assert_allclose(agent.score(golden["columns"]), golden["scores"], atol=1e-9)


def test_publishing_a_format_the_export_lacks_is_named(exported, tmp_path):
    from flightdeck.edge.errors import EdgeError
    from flightdeck.edge.keys import generate_keypair, load_private_key
    from flightdeck.edge.publish import publish_artifact

    _, out, _, _ = exported
    key = load_private_key(generate_keypair(tmp_path)[0])
    with pytest.raises(EdgeError, match="not one of"):
        publish_artifact(out, "coreml", str(tmp_path / "store"), key, 10)
