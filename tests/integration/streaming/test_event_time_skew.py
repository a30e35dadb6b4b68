"""One event stamped far in the future does not make the rest of the stream late (real Redis)."""

from __future__ import annotations

import json
import time

import pytest
import redis

from flightdeck.streaming.broker import Backend
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.integration.streaming.conftest import REDIS_URL, publish

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _run(prefix: str, state: str, model: bytes, skew: float | None) -> tuple[StreamScorer, redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    sink = RedisSink(client, f"{prefix}:{state}:out", f"{prefix}:{state}:dead", f"{prefix}:{state}")
    scorer = StreamScorer(Backend(RedisStreamSource(client, f"{prefix}:in"), sink),
                          ModelRouter(StaticModel(model, "1"), "flightdeck-classifier"),
                          [Windows("tumbling", 60, None, 30, max_future_skew_s=skew)],
                          ScorerConfig(batch_size=10, poll_timeout_s=0.05))
    assert scorer.run(idle_stop_s=0.3).scored == 40
    return scorer, client


def test_a_far_future_event_is_clamped_at_its_arrival_and_later_events_are_on_time(redis_prefix, base_events,
                                                                                   model_file):
    now = time.time()
    rows = [dict(base_events[i], event_id=f"e{i}", event_time=now - 10 + i * 0.1) for i in range(40)]
    rows[5]["event_time"] = "2999-01-01T00:00:00+00:00"  # a producer with a broken clock
    publish(redis_prefix, [json.dumps(r).encode() for r in rows])
    model = model_file.read_bytes()

    unclamped, _ = _run(redis_prefix, "off", model, None)
    assert unclamped.metrics.late_events.labels("stream", "tumbling")._value.get() == 34  # all after e5

    scorer, client = _run(redis_prefix, "on", model, 5)
    assert scorer.metrics.clamped_events.labels("stream", "tumbling")._value.get() == 1
    assert scorer.metrics.late_events.labels("stream", "tumbling")._value.get() == 0
    results = {json.loads(f[b"data"])["event_id"]: json.loads(f[b"data"])
               for _, f in client.xrange(f"{redis_prefix}:on:out")}
    assert results["e5"]["event_time"] > 3e10  # the result keeps the time the event was sent with
    state = json.loads(client.get(f"{redis_prefix}:on:checkpoint"))["windows"]["tumbling"]
    assert state["clamped_total"] == 1 and state["max_event_time"] < now + 60
    client.close()
