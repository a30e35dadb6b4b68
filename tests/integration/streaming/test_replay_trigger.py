"""Replay of a stream range through the batch path (the trigger is tested in test_drift_alerts)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import redis

from flightdeck.batch.scoring import ModelArtifact
from flightdeck.streaming.replay import replay
from tests.integration.streaming.conftest import REDIS_URL, events, publish
from tests.support.models import onnx_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_replay_scores_a_range_with_the_batch_path(redis_prefix, base_events, tmp_path):
    publish(redis_prefix, [*events(base_events, 50), b"poison"])
    ids = [i.decode() for i, _ in redis.Redis.from_url(REDIS_URL).xrange(f"{redis_prefix}:in")]
    result = replay(REDIS_URL, f"{redis_prefix}:in", ids[10], ids[-1], ModelArtifact("m", "3", onnx_model(1)),
                    tmp_path, "run1", 0.5)
    assert result["events"] == 41 and result["scored"] == 40 and sum(result["invalid"].values()) == 1
    frame = pd.read_parquet(result["output"])
    assert len(frame) == 40 and set(frame["model_version"]) == {"3"}
    assert list(frame["customer_id"]) == [json.loads(v)["customer_id"] for v in events(base_events, 50)[10:]]

