"""A real agent process SIGKILLed at every point of an update restarts with a working model:
the old one or the new one, never none. The kill points are driven by
FLIGHTDECK_EDGE_AGENT_CRASH_AT, one process per point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from flightdeck.edge.agent import CRASH_ENV, CRASH_POINTS, Agent, AgentConfig
from flightdeck.edge.keys import generate_keypair, load_private_key
from flightdeck.edge.models import OnnxEdgeModel
from flightdeck.edge.store import LocalStore
from tests.support.edge import golden_columns, publish_version
from tests.support.models import MODEL, REPO, onnx_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _agent_process(root, store, public_key, crash_at):
    args = [sys.executable, "-m", "flightdeck", "edge-agent", "--once", "--root", str(root),
            "--store", store, "--model-name", MODEL, "--device-id", "d1", "--public-key", str(public_key)]
    return subprocess.run(args, env={**os.environ, CRASH_ENV: crash_at}, capture_output=True, text=True,
                          timeout=60, cwd=REPO)


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_killed_agent_restarts_with_the_old_or_the_new_model(tmp_path, crash_at):
    private_path, public_path = generate_keypair(tmp_path / "keys")
    key, store = load_private_key(private_path), LocalStore(tmp_path / "store")
    config = AgentConfig(root=tmp_path / "device", store_uri=store.uri, model_name=MODEL, device_id="d1",
                         public_key_path=public_path)
    publish_version(store, key, "1", seed=1)
    first = Agent(config)
    first.start()
    assert first.poll_once() == "updated"
    publish_version(store, key, "2", seed=2)

    done = _agent_process(config.root, store.uri, public_path, crash_at)
    assert done.returncode == -signal.SIGKILL, f"the agent should have died at {crash_at}:\n{done.stderr[-2000:]}"

    restarted = Agent(config)
    state = restarted.start()
    assert state["status"] == "serving", state
    scores = restarted.score(golden_columns())
    old, new = (OnnxEdgeModel(onnx_model(s)).score(golden_columns()) for s in (1, 2))
    serving = "1" if np.allclose(scores, old) else "2" if np.allclose(scores, new) else None
    assert serving == state["active"]["model_version"], (serving, state)
    # After the kill the next poll completes the update (or finds it complete).
    assert restarted.poll_once() in {"updated", "up_to_date"}
    np.testing.assert_allclose(restarted.score(golden_columns()), new)
    assert not (config.root / "incoming").exists() or not any((config.root / "incoming").iterdir())
