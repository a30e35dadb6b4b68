"""`flightdeck edge-repoint`: a new signed channel pointer from the command line; a downgrade only with
--rollback, which a device then takes; a bundle that is not published is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flightdeck.cli import main
from flightdeck.edge.bundle import channel_key
from flightdeck.edge.keys import PRIVATE_FILE
from flightdeck.edge.models import OnnxEdgeModel
from tests.support.edge import golden_columns, publish_version
from tests.support.models import MODEL, onnx_model


@pytest.fixture
def repoint(tmp_path, store, keys):
    def run(*args: str) -> int:
        return main(["edge-repoint", "--model-name", MODEL, "--store", store.uri,
                     "--signing-key", str(tmp_path / "keys" / PRIVATE_FILE), *args])
    return run


def _serves(agent, seed: int) -> bool:
    return bool(np.allclose(agent.score(golden_columns()), OnnxEdgeModel(onnx_model(seed)).score(golden_columns()),
                            atol=1e-9))


def test_a_downgrade_needs_rollback_and_the_device_follows(repoint, make_agent, store, keys, capsys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    publish_version(store, keys[0], "2", seed=2)
    assert agent.poll_once() == "updated" and _serves(agent, 2)
    pointer_before = store.get(channel_key(MODEL, "stable"))

    assert repoint("--version", "1", "--format", "onnx_float") == 2
    err = capsys.readouterr().err
    assert "downgrade" in err and "--rollback" in err and "serves version 2" in err
    assert store.get(channel_key(MODEL, "stable")) == pointer_before  # nothing signed

    assert repoint("--version", "1", "--format", "onnx_float", "--rollback") == 0
    out = capsys.readouterr().out
    pointer = json.loads(out[out.index("{"):])
    assert pointer["rollback"] is True and pointer["bundle_id"] == "1-onnx_float" and pointer["channel"] == "stable"
    assert "signed rollback" in out.splitlines()[0]
    assert agent.poll_once() == "updated" and _serves(agent, 1)

    assert repoint("--bundle-id", "2-onnx_float") == 0  # forward again: no rollback needed
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["sequence"] == pointer["sequence"] + 1
    assert agent.poll_once() == "updated" and _serves(agent, 2)


def test_renewing_the_same_bundle_signs_the_next_sequence(repoint, store, keys, capsys):
    publish_version(store, keys[0], "3", seed=1, channel="beta")
    assert repoint("--version", "3", "--format", "onnx_float", "--channel", "beta") == 0
    renewed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert renewed["sequence"] == 2 and renewed["rollback"] is False and renewed["channel"] == "beta"


def test_an_unpublished_bundle_or_no_bundle_is_refused(repoint, store, keys, capsys):
    publish_version(store, keys[0], "1", seed=1)
    assert repoint("--version", "9", "--format", "onnx_float") == 2
    assert "bundle 9-onnx_float of" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --version or --bundle-id is required
        repoint()
