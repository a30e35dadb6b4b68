"""The signed channel pointer: replays, other channels, expiry, oversize objects, signed rollbacks."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from flightdeck.edge.agent import Agent
from flightdeck.edge.bundle import MANIFEST, bundle_prefix, channel_key, point_channel
from flightdeck.edge.errors import BundleError
from flightdeck.edge.models import OnnxEdgeModel
from flightdeck.edge.publish import repoint_channel
from flightdeck.edge.store import LocalStore
from tests.support.edge import golden_columns, publish_version
from tests.support.models import MODEL, onnx_model


def _serves(agent: Agent, seed: int) -> bool:
    expected = OnnxEdgeModel(onnx_model(seed)).score(golden_columns())
    return bool(np.allclose(agent.score(golden_columns()), expected, atol=1e-9))


def test_a_replayed_older_pointer_is_refused(make_agent, store, keys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    old_pointer = store.get(channel_key(MODEL, "stable"))
    assert agent.poll_once() == "updated"
    publish_version(store, keys[0], "2", seed=2)
    assert agent.poll_once() == "updated" and _serves(agent, 2)
    store.put(channel_key(MODEL, "stable"), old_pointer)  # an attacker puts the signed v1 pointer back
    assert agent.poll_once() == "refused"
    assert "sequence" in agent.state["last_error"] and _serves(agent, 2)
    restarted = make_agent()  # the highest sequence seen survives a restart
    restarted.start()
    assert restarted.poll_once() == "refused" and _serves(restarted, 2)


def test_a_beta_pointer_on_the_stable_channel_is_refused(make_agent, store, keys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    assert agent.poll_once() == "updated"
    publish_version(store, keys[0], "2", seed=2, channel="beta")
    store.put(channel_key(MODEL, "stable"), store.get(channel_key(MODEL, "beta")))
    assert agent.poll_once() == "refused"
    assert "beta" in agent.state["last_error"] and _serves(agent, 1)
    beta = make_agent(channel="beta")  # the same pointer is fine where it belongs
    beta.start()
    assert beta.poll_once() == "updated" and _serves(beta, 2)


def test_an_unsigned_or_altered_pointer_is_refused(make_agent, store, keys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    envelope = json.loads(store.get(channel_key(MODEL, "stable")))
    body = json.loads(envelope["body"])
    body["sequence"] += 100
    store.put(channel_key(MODEL, "stable"), json.dumps({**envelope, "body": json.dumps(body)}).encode())
    assert agent.poll_once() == "refused" and "signature" in agent.state["last_error"]
    store.put(channel_key(MODEL, "stable"), json.dumps({"bundle_id": "1-onnx_float"}).encode())
    assert agent.poll_once() == "refused" and agent.state["status"] == "no_model"


def test_an_expired_pointer_is_refused(make_agent, store, keys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    body = store.get(f"{bundle_prefix(MODEL, '1-onnx_float')}/{MANIFEST}")
    point_channel(store, MODEL, "stable", "1-onnx_float", body, keys[0], valid_for=timedelta(seconds=-1))
    assert agent.poll_once() == "refused"
    assert "expired" in agent.state["last_error"] and agent.state["status"] == "no_model"


def test_a_pointer_naming_another_manifest_is_refused(make_agent, store, keys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1, percent=0)
    manifest_key = f"{bundle_prefix(MODEL, '1-onnx_float')}/{MANIFEST}"
    pointed = store.get(manifest_key)
    publish_version(store, keys[0], "1", seed=1, percent=100)  # a validly signed manifest...
    point_channel(store, MODEL, "stable", "1-onnx_float", pointed, keys[0])  # ...not the one pointed at
    # (also what a device sees mid-publish: the new manifest, the old pointer) - try again later
    assert agent.poll_once() == "failed" and "pointer" in agent.state["last_error"]
    assert agent.state["status"] == "no_model" and agent.state["rejected"] == {}
    point_channel(store, MODEL, "stable", "1-onnx_float", store.get(manifest_key), keys[0])
    assert agent.poll_once() == "updated" and _serves(agent, 1)


def test_a_downgrade_needs_a_signed_rollback(make_agent, store, keys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    v1 = store.get(f"{bundle_prefix(MODEL, '1-onnx_float')}/{MANIFEST}")
    agent.poll_once()
    publish_version(store, keys[0], "2", seed=2)
    agent.poll_once()
    point_channel(store, MODEL, "stable", "1-onnx_float", v1, keys[0])  # newer pointer, older version
    assert agent.poll_once() == "refused" and "rollback" in agent.state["last_error"] and _serves(agent, 2)
    pointer = repoint_channel(store.uri, MODEL, "1-onnx_float", keys[0], rollback=True)  # the publisher's way
    assert pointer["rollback"] and pointer["sequence"] == 4
    assert agent.poll_once() == "updated" and _serves(agent, 1)
    assert agent.state["active"]["bundle_id"] == "1-onnx_float"
    repoint_channel(store.uri, MODEL, "2-onnx_float", keys[0])  # forward again: no rollback needed
    assert agent.poll_once() == "updated" and _serves(agent, 2)


def test_oversize_objects_are_not_read(make_agent, store, keys, tmp_path):
    local = LocalStore(tmp_path / "caps")
    local.put("big", b"x" * 100_000)
    with pytest.raises(BundleError, match="larger than 1000 bytes"):
        local.get("big", max_bytes=1000)
    assert local.get("big", max_bytes=100_000) == b"x" * 100_000
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    store.put(f"{bundle_prefix(MODEL, '1-onnx_float')}/model.onnx", onnx_model(1) + b"\0" * 5_000_000)
    assert agent.poll_once() == "failed" and "larger than" in agent.state["last_error"]
    store.put(f"{bundle_prefix(MODEL, '1-onnx_float')}/{MANIFEST}", b" " * 3_000_000)
    assert agent.poll_once() == "failed" and "larger than" in agent.state["last_error"]
    store.put(channel_key(MODEL, "stable"), b" " * 3_000_000)
    assert agent.poll_once() == "refused" and "larger than" in agent.state["last_error"]


def test_a_manifest_declaring_files_beyond_the_cap_is_rejected(make_agent, store, keys):
    agent = make_agent(max_file_bytes=1000)
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    assert agent.poll_once() == "rejected"
    assert any("max_file_bytes" in reason for reason in agent.state["rejected"].values())


def test_an_installed_bundle_whose_manifest_names_another_bundle_is_not_served(make_agent, store, keys):
    agent = make_agent()
    agent.start()
    publish_version(store, keys[0], "1", seed=1)
    publish_version(store, keys[0], "2", seed=2)
    agent.poll_once()  # installs 2
    models = agent.root / "models"
    # a signed, intact manifest of bundle 2 copied into a folder named 3: not the bundle it claims to be
    (models / "2-onnx_float").rename(models / "3-onnx_float")
    (agent.root / "active.json").write_text(json.dumps({"active": "3-onnx_float", "previous": None}))
    state = make_agent().start()
    assert state["status"] == "no_model"


def test_an_s3_object_over_the_cap_is_refused(monkeypatch):
    import boto3
    from moto import mock_aws

    from flightdeck.edge.store import S3Store

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket="edge", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3 = S3Store("edge", "models", client=client)
        s3.put("big", b"x" * 100_000)
        with pytest.raises(BundleError, match="'big' is larger than 1000 bytes \\(100000\\)"):
            s3.get("big", max_bytes=1000)
        assert s3.get("big", max_bytes=100_000) == b"x" * 100_000
