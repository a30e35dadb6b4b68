"""Property test of the stream scorer on real Redis: for a generated mix of valid and hostile events,
every valid event gets exactly one result and every hostile one exactly one dead letter."""

from __future__ import annotations

import json

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flightdeck.data.schema import CATEGORICAL_FEATURES, ENTITY_ID, EVENT_TIME, NUMERIC_FEATURES
from flightdeck.streaming.events import EVENT_ID
from flightdeck.streaming.scorer import ScorerConfig
from flightdeck.streaming.service import StreamOptions, build_scorer
from tests.integration.streaming.conftest import REDIS_URL, publish

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLEAN_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=12)
BAD_TEXT = st.text(st.characters(exclude_categories=()), max_size=8).flatmap(
    lambda s: st.sampled_from([s + "\x00", s + "\ud800", "\udfff" + s]))  # NUL or a lone surrogate
WRONG_TYPE = (st.none() | st.booleans() | st.integers(10 ** 309, 10 ** 400) | st.lists(st.integers(), max_size=3)
              | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def hostile(draw, base: dict) -> bytes:
    """One event that must be dead-lettered: undecodable, not an object, or one field wrong."""
    kind = draw(st.sampled_from(["bytes", "array", "nested", "missing", "wrong_type", "bad_text", "bad_time"]))
    if kind == "bytes":
        return b"\xff" + draw(st.binary(max_size=40))  # never valid UTF-8 JSON
    if kind == "array":
        return json.dumps(draw(st.lists(st.integers(), max_size=3))).encode()
    if kind == "nested":
        depth = draw(st.integers(5_000, 60_000))
        return b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
    body = dict(base)
    if kind == "missing":
        del body[draw(st.sampled_from([ENTITY_ID, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES]))]
    elif kind == "wrong_type":
        body[draw(st.sampled_from([ENTITY_ID, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES]))] = draw(WRONG_TYPE)
    elif kind == "bad_text":
        body[draw(st.sampled_from([ENTITY_ID, EVENT_ID, *CATEGORICAL_FEATURES]))] = draw(BAD_TEXT)
    else:
        body[EVENT_TIME] = draw(st.sampled_from(["yesterday", "2026-13-01T00:00:00", 10 ** 400, [1]]))
    return json.dumps(body).encode()


@st.composite
def stream(draw, base_events: list[dict]) -> list[tuple[bool, bytes]]:
    """(valid?, bytes) in publish order; valid events carry their own entity and a unique event id."""
    out = []
    for i in range(draw(st.integers(1, 60))):
        base = draw(st.sampled_from(base_events))
        if draw(st.integers(0, 2)) == 0:
            out.append((False, draw(hostile(base))))
        else:
            out.append((True, json.dumps({**base, ENTITY_ID: draw(CLEAN_TEXT), EVENT_ID: f"v{i}"}).encode()))
    return out


def test_each_valid_event_one_result_each_hostile_one_dead_letter(redis_prefix, base_events, model_file):
    runs = iter(range(10_000))

    @settings(derandomize=True, max_examples=20, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(stream(base_events[:50]))
    def check(mixed):
        prefix = f"{redis_prefix}-{next(runs)}"  # under the fixture's prefix, so it is cleaned up
        publish(prefix, [value for _, value in mixed])
        scorer = build_scorer(StreamOptions(redis_url=REDIS_URL, input=f"{prefix}:in", output=f"{prefix}:out",
                                            dead_letter=f"{prefix}:dead", alerts=None, consumer=prefix,
                                            model_file=model_file, config=ScorerConfig(batch_size=16,
                                                                                       poll_timeout_s=0.05)))
        stats = scorer.run(idle_stop_s=0.2)
        client = redis.Redis.from_url(REDIS_URL)
        try:
            ids = [i.decode() for i, _ in client.xrange(f"{prefix}:in")]
            results = [json.loads(f[b"data"]) for _, f in client.xrange(f"{prefix}:out")]
            dead = [json.loads(f[b"data"]) for _, f in client.xrange(f"{prefix}:dead")]
        finally:
            client.close()
        valid = {i for i, (ok, _) in zip(ids, mixed, strict=True) if ok}
        assert stats.records == len(mixed)
        assert sorted(r["offset"] for r in results) == sorted(valid)
        assert sorted(d["offset"] for d in dead) == sorted(set(ids) - valid)
        sent = {i: json.loads(value) for i, (ok, value) in zip(ids, mixed, strict=True) if ok}
        assert all((r["event_id"], r["entity_id"]) == (sent[r["offset"]][EVENT_ID], sent[r["offset"]][ENTITY_ID])
                   for r in results)
        assert all("Fix:" in d["reason"] for d in dead)

    check()
