"""Per-entity state on real Redis across restarts: a scorer whose stored entity states fit its cache
loads them all at start and reads none back, one whose states do not fit reads them from the sink,
and either way each result carries the entity's event count and rolling mean as one uninterrupted
run gives them."""

from __future__ import annotations

import json

import pytest
import redis

from flightdeck.streaming.broker import Backend
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.integration.streaming.conftest import REDIS_URL, events, publish

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ENTITIES, N, ALPHA = 30, 900, 0.2


class _CountingSink(RedisSink):
    """The Redis sink, counting the entity states it is asked for."""

    asked = 0

    def entities(self, ids):
        type(self).asked += len(ids)
        return super().entities(ids)


def _scorer(prefix: str, model: bytes, cache: int) -> StreamScorer:
    client = redis.Redis.from_url(REDIS_URL)
    sink = _CountingSink(client, f"{prefix}:out", f"{prefix}:dead", f"{prefix}:state")
    return StreamScorer(Backend(RedisStreamSource(client, f"{prefix}:in"), sink),
                        ModelRouter(StaticModel(model, "1"), "flightdeck-classifier"), [Windows("tumbling", 60)],
                        ScorerConfig(batch_size=100, poll_timeout_s=0.05, entity_cache=cache, entity_alpha=ALPHA))


def _results(prefix: str) -> list[dict]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return [json.loads(f[b"data"]) for _, f in client.xrange(f"{prefix}:out")]
    finally:
        client.close()


def _expected(results: list[dict]) -> list[tuple[int, float]]:
    """(event count, rolling mean) of each result's entity, replayed from the scores in input order."""
    seen: dict[str, tuple[int, float]] = {}
    out = []
    for r in sorted(results, key=lambda r: int(r["event_id"][1:])):
        n, mean = seen.get(r["entity_id"], (0, r["score"]))
        state = (1, r["score"]) if n == 0 else (n + 1, (1 - ALPHA) * mean + ALPHA * r["score"])
        seen[r["entity_id"]] = state
        out.append(state)
    return out


@pytest.mark.parametrize("cache", [1000, 7], ids=["states-fit-the-cache", "states-evicted"])
def test_entity_state_survives_restarts_with_and_without_a_warm_cache(redis_prefix, base_events, model_file, cache):
    base = [{**row, "customer_id": f"C{i % ENTITIES}"} for i, row in enumerate(base_events[:ENTITIES * 3])]
    publish(redis_prefix, events(base, N))
    model = model_file.read_bytes()
    _CountingSink.asked = 0
    first = _scorer(redis_prefix, model, cache)
    assert first.run(max_records=300).records == 300
    for part in (300, 300):  # two restarts, each a new scorer over the stored state
        assert _scorer(redis_prefix, model, cache).run(max_records=part).records == part
    results = _results(redis_prefix)
    assert len(results) == N and len({r["event_id"] for r in results}) == N
    got = [(r["entity_events"], r["entity_mean_score"]) for r in sorted(results, key=lambda r: int(r["event_id"][1:]))]
    expected = _expected(results)
    assert [n for n, _ in got] == [n for n, _ in expected]
    assert [m for _, m in got] == pytest.approx([m for _, m in expected], abs=1e-12)
    if cache >= ENTITIES:
        assert _CountingSink.asked == 0  # every state was in memory: loaded at start, or new
    else:
        assert _CountingSink.asked > 0  # after a restart, states that do not fit are read back
