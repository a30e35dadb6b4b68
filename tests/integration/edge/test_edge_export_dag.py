"""edge_export end to end with one dag.test(): export, gates, MLflow table, a signed bundle in the
local store that the device agent installs with the generated public key."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]


def test_edge_export_publishes_a_bundle_the_agent_installs(exported, sqlite_sandbox, tmp_path):
    from flightdeck.config import Settings
    from flightdeck.edge.agent import Agent, AgentConfig
    from flightdeck.registry import Registry
    from tests.integration.edge.world import MODEL

    home = exported[0]
    env = {"FLIGHTDECK_HOME": str(home), "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1"}
    outcome = sqlite_sandbox.dag_test("edge_export", {"model_ref": "champion", "rollout_percent": 100}, env=env)
    assert outcome.get("state") == "success", outcome["log"][-5000:]
    assert set(outcome["tasks"].values()) == {"success"}
    assert "give devices the public key" in outcome["log"]

    registry = Registry.from_settings(Settings(home=home))
    (run,) = registry.client.search_runs([registry.experiment_id("flightdeck-edge")])
    metrics = run.data.metrics
    for name in ("onnx_float", "onnx_int8", "tflite_float32", "tflite_float16", "tflite_int8"):
        assert metrics[f"{name}_size_bytes"] > 0 and metrics[f"{name}_latency_us"] > 0 and metrics[f"{name}_auc"] > 0.6
    assert run.data.tags["flightdeck.edge.gates"] == "pass"
    artifacts = {a.path for a in registry.client.list_artifacts(run.info.run_id)}
    assert {"table.md", "report.json", "tflite_int8", "onnx_int8"} <= artifacts

    agent = Agent(AgentConfig(root=tmp_path / "device", store_uri=str(home / "edge" / "store"), model_name=MODEL,
                              device_id="d1", public_key_path=home / "edge" / "keys" / "signing_key.pub.pem"))
    state = agent.run(polls=1)
    assert state["last_outcome"] == "updated" and state["active"]["format"] == "tflite_int8", state
    golden = agent.models_dir / state["active"]["bundle_id"] / "golden.json"
    rows = json.loads(golden.read_text())
    np.testing.assert_allclose(agent.score(rows["columns"]), rows["scores"], atol=1e-9)

