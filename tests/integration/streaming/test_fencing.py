"""Two scorers with the same consumer name on one Redis stream: the stale one is fenced, so every event
still has exactly one result."""

from __future__ import annotations

import json
import threading

import pytest
import redis

from flightdeck.streaming.broker import Backend, FencedError
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.integration.streaming.conftest import REDIS_URL, events, publish

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _scorer(prefix: str, model: bytes) -> StreamScorer:
    client = redis.Redis.from_url(REDIS_URL)
    sink = RedisSink(client, f"{prefix}:out", f"{prefix}:dead", f"{prefix}:state")
    return StreamScorer(Backend(RedisStreamSource(client, f"{prefix}:in"), sink),
                        ModelRouter(StaticModel(model, "1"), "flightdeck-classifier"),
                        [Windows("tumbling", 60, None, 5)], ScorerConfig(batch_size=250, poll_timeout_s=0.05))


def _result_ids(prefix: str) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return [json.loads(f[b"data"])["event_id"] for _, f in client.xrange(f"{prefix}:out")]
    finally:
        client.close()


def test_a_stale_scorers_commit_is_fenced_and_writes_nothing(redis_prefix, base_events, model_file):
    publish(redis_prefix, events(base_events, 2000))
    model = model_file.read_bytes()
    a, b = _scorer(redis_prefix, model), _scorer(redis_prefix, model)
    a.run(max_records=500)
    b.start()  # b loads the checkpoint at 500 and scores the next batch ...
    stale = b.process(b.backend.poll(250, 0.1))
    a.stop_event.clear()
    a.run(max_records=500)  # ... while a moves the stored position to 1000
    with pytest.raises(FencedError, match="another scorer runs with the same consumer name"):
        b.backend.commit(stale)
    assert len(_result_ids(redis_prefix)) == 1000 and a.backend.sink.load().processed == 1000
    stats = b.run(idle_stop_s=0.3)  # b re-reads from the stored position
    assert stats.records == 1000
    ids = _result_ids(redis_prefix)
    assert len(ids) == 2000 and len(set(ids)) == 2000


def test_two_scorers_racing_on_one_consumer_give_each_event_one_result(redis_prefix, base_events, model_file):
    n = 6000
    publish(redis_prefix, events(base_events, n))
    model = model_file.read_bytes()
    scorers = [_scorer(redis_prefix, model), _scorer(redis_prefix, model)]
    threads = [threading.Thread(target=s.run, kwargs={"idle_stop_s": 0.5}) for s in scorers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(45)
    ids = _result_ids(redis_prefix)
    assert len(ids) == n and len(set(ids)) == n
    stored = json.loads(redis.Redis.from_url(REDIS_URL).get(f"{redis_prefix}:state:checkpoint"))
    assert stored["processed"] == n


def test_a_fenced_sent_commit_writes_nothing_and_hands_over_none_of_the_records_read_after_it(
        redis_prefix, base_events, model_file):
    publish(redis_prefix, events(base_events, 1500))
    model = model_file.read_bytes()
    a, b = _scorer(redis_prefix, model), _scorer(redis_prefix, model)
    a.run(max_records=500)
    b.start()
    stale = b.process(b.backend.poll(250, 0.1))
    position = b.backend.source._last
    a.stop_event.clear()
    a.run(max_records=500)
    sent = b.backend.sink.send_commit(stale, b.backend.source, 250)  # the commit, then the read after it
    with pytest.raises(FencedError):
        sent.result()
    assert b.backend.source._last == position  # the read ran on the server, but its records were dropped
    assert len(_result_ids(redis_prefix)) == 1000
    assert b.run(idle_stop_s=0.3).records == 500  # the connection went back to the pool in a usable state
    ids = _result_ids(redis_prefix)
    assert len(ids) == 1500 and len(set(ids)) == 1500


def test_a_sent_commit_the_server_has_no_script_for_is_committed_the_usual_way(redis_prefix, base_events, model_file):
    publish(redis_prefix, events(base_events, 750))
    scorer = _scorer(redis_prefix, model_file.read_bytes())
    scorer.start()
    sink, source = scorer.backend.sink, scorer.backend.source
    first = source.poll(250, 0.1)
    assert sink.send_commit(scorer.process(first), source, 0).result() == []  # nothing asked to read after it
    batch = scorer.process(source.poll(250, 0))
    sink._script.sha = "0" * 40  # as after a server restart: EVALSHA answers NOSCRIPT and writes nothing
    ahead = sink.send_commit(batch, source, 250).result()
    ids = [i.decode() for i, _ in redis.Redis.from_url(REDIS_URL).xrange(f"{redis_prefix}:in")]
    assert [r.offset for r in ahead] == ids[500:750] and source._last == ids[749]
    assert len(_result_ids(redis_prefix)) == 500 and sink.load().position == ids[499]
