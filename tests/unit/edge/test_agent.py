"""The device agent against a folder store: verify, install, self-test, switch, roll back."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from flightdeck.edge.agent import AGENT_VERSION, Agent
from flightdeck.edge.bundle import MANIFEST, bundle_prefix, point_channel, sha256
from flightdeck.edge.errors import EdgeError
from flightdeck.edge.keys import generate_keypair, load_private_key
from flightdeck.edge.models import OnnxEdgeModel
from tests.support.edge import golden_columns, publish_version
from tests.support.models import MODEL, onnx_model


def _serves(agent: Agent, seed: int) -> bool:
    expected = OnnxEdgeModel(onnx_model(seed)).score(golden_columns())
    return bool(np.allclose(agent.score(golden_columns()), expected, atol=1e-9))


def test_first_install_then_update_keeps_the_previous_for_rollback(make_agent, store, keys):
    agent = make_agent()
    assert agent.start()["status"] == "no_model"
    with pytest.raises(EdgeError, match="no model"):
        agent.score(golden_columns())
    publish_version(store, keys[0], "1", seed=1)
    assert agent.poll_once() == "updated" and _serves(agent, 1)
    assert agent.poll_once() == "up_to_date"
    publish_version(store, keys[0], "2", seed=2)
    assert agent.poll_once() == "updated" and _serves(agent, 2)
    state = json.loads((agent.root / "state.json").read_text())
    assert state["active"]["bundle_id"] == "2-onnx_float" and state["previous"] == "1-onnx_float"
    assert state["agent_version"] == AGENT_VERSION and state["status"] == "serving"
    assert sorted(p.name for p in (agent.root / "models").iterdir()) == ["1-onnx_float", "2-onnx_float"]
    # A restarted agent serves the same model.
    restarted = make_agent()
    restarted.start()
    assert _serves(restarted, 2)


def test_tampered_model_is_rejected_and_the_old_model_keeps_serving(make_agent, store, keys):
    agent = make_agent()
    publish_version(store, keys[0], "1", seed=1)
    agent.start()
    agent.poll_once()
    publish_version(store, keys[0], "2", seed=2)
    store.put(f"{bundle_prefix(MODEL, '2-onnx_float')}/model.onnx", onnx_model(3))  # same shape, other weights
    assert agent.poll_once() == "rejected"
    assert _serves(agent, 1)
    state = json.loads((agent.root / "state.json").read_text())
    assert any("sha256" in reason for reason in state["rejected"].values())
    assert agent.poll_once() == "skipped: rejected before"


def test_tampered_manifest_is_rejected(make_agent, store, keys):
    agent = make_agent()
    publish_version(store, keys[0], "1", seed=1)
    agent.start()
    agent.poll_once()
    publish_version(store, keys[0], "2", seed=2, percent=0)
    key = f"{bundle_prefix(MODEL, '2-onnx_float')}/{MANIFEST}"
    manifest = json.loads(store.get(key))
    manifest["rollout_percent"] = 100.0  # widen the rollout without the publisher's key
    store.put(key, json.dumps(manifest, indent=1, sort_keys=True).encode())
    assert agent.poll_once() == "rejected"
    assert _serves(agent, 1)
    assert any("signature" in reason for reason in agent.state["rejected"].values())


def test_rejected_bundles_are_remembered_up_to_a_cap_least_recently_seen_forgotten(make_agent, store, keys):
    agent = make_agent(max_rejected=2)
    publish_version(store, keys[0], "1", seed=1)
    agent.start()
    agent.poll_once()
    publish_version(store, keys[0], "2", seed=2, percent=0)
    key = f"{bundle_prefix(MODEL, '2-onnx_float')}/{MANIFEST}"
    manifest = json.loads(store.get(key))
    offered = []
    for percent in (100.0, 99.0, 98.0):  # three forged manifests, three distinct digests
        body = json.dumps({**manifest, "rollout_percent": percent}, indent=1, sort_keys=True).encode()
        offered.append((body, sha256(body)))
    for body, _ in offered[:2]:
        store.put(key, body)
        assert agent.poll_once() == "rejected"
    store.put(key, offered[0][0])
    assert agent.poll_once() == "skipped: rejected before"  # the first is now the most recently seen
    store.put(key, offered[2][0])
    assert agent.poll_once() == "rejected"
    assert list(agent.state["rejected"]) == [offered[0][1], offered[2][1]]
    store.put(key, offered[1][0])
    assert agent.poll_once() == "rejected"  # forgotten, so checked (and refused) again
    # A restarted agent with a smaller cap trims what it reads back.
    assert list(make_agent(max_rejected=1).state["rejected"]) == [offered[1][1]]


def test_bundle_signed_with_another_key_is_rejected(make_agent, store, keys, tmp_path):
    other = load_private_key(generate_keypair(tmp_path / "other")[0])
    publish_version(store, other, "1", seed=1)
    agent = make_agent()
    agent.start()
    assert agent.poll_once() == "refused"  # its channel pointer is signed with the other key too
    assert "signature" in agent.state["last_error"]
    body = store.get(f"{bundle_prefix(MODEL, '1-onnx_float')}/{MANIFEST}")
    point_channel(store, MODEL, "stable", "1-onnx_float", body, keys[0])  # our pointer, their bundle
    assert agent.poll_once() == "rejected"
    assert agent.state["status"] == "no_model"


class TruncatingStore:
    """Hands out the model file cut short the first `failures` times (a dropped connection)."""

    def __init__(self, inner, failures: int) -> None:
        self.inner, self.failures, self.model_gets = inner, failures, 0
        self.uri = inner.uri

    def put(self, key, data):
        self.inner.put(key, data)

    def get(self, key, max_bytes=None):
        data = self.inner.get(key, max_bytes)
        if key.endswith("model.onnx"):
            self.model_gets += 1
            if self.model_gets <= self.failures:
                return data[: len(data) // 3]
        return data


def test_truncated_download_is_rejected_and_retried(make_agent, store, keys):
    publish_version(store, keys[0], "1", seed=1)
    flaky = TruncatingStore(store, failures=2)
    agent = make_agent(store_=flaky, download_attempts=3)
    agent.start()
    assert agent.poll_once() == "updated"
    assert flaky.model_gets == 3 and _serves(agent, 1)


def test_download_that_stays_truncated_fails_the_poll_without_rejecting_the_bundle(make_agent, store, keys):
    publish_version(store, keys[0], "1", seed=1)
    flaky = TruncatingStore(store, failures=5)
    agent = make_agent(store_=flaky, download_attempts=3)
    agent.start()
    assert agent.poll_once() == "failed"
    assert "truncated" in agent.state["last_error"] and agent.state["rejected"] == {}
    assert not (agent.root / "models" / "1-onnx_float").exists()
    assert agent.poll_once() == "updated"  # the network recovered: attempts 6 and on are whole


def test_failing_self_test_rolls_back_to_the_previous_model(make_agent, store, keys):
    agent = make_agent()
    publish_version(store, keys[0], "1", seed=1)
    agent.start()
    agent.poll_once()
    publish_version(store, keys[0], "2", seed=2, wrong_golden=True)
    assert agent.poll_once() == "rolled_back"
    assert _serves(agent, 1)
    assert agent.state["active"]["bundle_id"] == "1-onnx_float"
    assert any("golden rows" in reason for reason in agent.state["rejected"].values())
    assert not (agent.root / "models" / "2-onnx_float").exists()


def test_corrupted_active_model_on_disk_falls_back_to_the_previous_one(make_agent, store, keys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    agent.poll_once()
    publish_version(store, keys[0], "2", seed=2)
    agent.poll_once()
    (agent.root / "models" / "2-onnx_float" / "model.onnx").write_bytes(b"bit rot")
    restarted = make_agent()
    state = restarted.start()
    assert state["active"]["bundle_id"] == "1-onnx_float" and state["last_outcome"].startswith("recovered")
    assert _serves(restarted, 1)


def test_devices_outside_the_cohort_wait_and_newer_agents_are_required(make_agent, store, keys):
    publish_version(store, keys[0], "1", seed=1, percent=0)
    agent = make_agent()
    agent.start()
    assert agent.poll_once() == "not_in_cohort"
    publish_version(store, keys[0], "1", seed=1, percent=100)  # the same bundle, rolled out further
    assert agent.poll_once() == "updated"
    publish_version(store, keys[0], "2", seed=2, min_agent_version="9.0")
    assert agent.poll_once() == "rejected"
    assert any("needs agent 9.0" in reason for reason in agent.state["rejected"].values())


def test_agent_module_imports_no_heavy_framework():
    code = ("import sys\nimport flightdeck.edge.agent, flightdeck.edge.cli\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'tensorflow', 'airflow', 'mlflow', 'pandas', 'keras', 'sklearn', 'boto3'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
