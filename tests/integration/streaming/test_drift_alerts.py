"""Event-driven drift investigation: the scorer publishes a drift alert, the Redis stream trigger
turns it into an event, the investigation reads the window back; and the DAG's asset has the
watcher wired so a running triggerer watches the alert stream."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from flightdeck.airflow.streaming import RedisStreamTrigger, alerts_from_context
from flightdeck.streaming.broker import Backend
from flightdeck.streaming.drift import (
    InvalidAlertError,
    investigate_payload,
    parse_alert,
    read_alert,
)
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.integration.streaming.conftest import REDIS_URL, publish
from tests.support.models import onnx_model

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
T0 = 1_699_999_980  # a minute boundary in the past: event times ahead of arrival are clamped


def _drifting_events(base: list[dict]) -> list[bytes]:
    """200 events in [0, 60), the same 200 in [60, 120) with credit scores 250 points lower, one at 200 s."""
    values = []
    for i in range(401):
        row = dict(base[i % 200])
        row.update(event_id=f"e{i}", event_time=T0 + (i * 0.29 if i < 200 else 60 + (i - 200) * 0.29))
        if 200 <= i < 400:
            row["credit_score"] = row["credit_score"] - 250.0
        if i == 400:
            row["event_time"] = T0 + 200
        values.append(json.dumps(row).encode())
    return values


async def _next_events(trigger: RedisStreamTrigger, n: int, produce) -> list:
    runner = trigger.run().__aiter__()
    first = asyncio.ensure_future(runner.__anext__())
    await asyncio.sleep(0.3)  # the trigger has pinned "now" and is blocked in XREAD
    produce()
    got = [await asyncio.wait_for(first, 10)]
    while len(got) < n:
        got.append(await asyncio.wait_for(runner.__anext__(), 10))
    await runner.aclose()
    return got


def test_a_drifting_window_publishes_an_alert_that_the_trigger_fires_and_the_investigation_explains(
        redis_prefix, base_events, tmp_path):
    publish(redis_prefix, _drifting_events(base_events))
    client = redis.Redis.from_url(REDIS_URL)
    sink = RedisSink(client, f"{redis_prefix}:out", f"{redis_prefix}:dead", f"{redis_prefix}:state",
                     alert_stream=f"{redis_prefix}:alerts")
    scorer = StreamScorer(Backend(RedisStreamSource(client, f"{redis_prefix}:in"), sink),
                          ModelRouter(StaticModel(onnx_model(1), "7"), "m"), [Windows("tumbling", 60)],
                          ScorerConfig(batch_size=100, poll_timeout_s=0.1, drift_alert_psi=0.2))
    trigger = RedisStreamTrigger(REDIS_URL, f"{redis_prefix}:alerts", block_ms=200)
    (event,) = asyncio.run(_next_events(trigger, 1, lambda: scorer.run(idle_stop_s=0.3)))

    assert client.xlen(f"{redis_prefix}:alerts") == 1  # the reference window itself raises nothing
    alert = parse_alert(event.payload)
    assert (alert.kind, alert.start, alert.model_version) == ("tumbling", T0 + 60.0, "7")
    assert alert.score_psi > 0.2 and alert.record["count"] == 200

    outcome = investigate_payload(REDIS_URL, event.payload, f"{redis_prefix}:out", f"{redis_prefix}:state",
                                  tmp_path)
    report = json.loads(open(outcome["report"]).read())
    assert report["results_found"] == 200 and report["reference"]["start"] == T0
    assert report["feature_shifts"][0]["feature"] == "credit_score"
    shift = report["feature_shifts"][0]
    assert shift["window_mean"] == pytest.approx(shift["reference_mean"] - 250.0)
    assert report["window"]["score_mean"] > report["reference"]["score_mean"]
    assert "score PSI" in outcome["summary"] and "credit_score" in outcome["summary"]
    # A manual re-investigation reads the same payload back from the alert stream.
    assert read_alert(client, f"{redis_prefix}:alerts", event.payload["id"]) == event.payload
    with pytest.raises(InvalidAlertError, match="has no entry"):
        read_alert(client, f"{redis_prefix}:alerts", "1-0")
    client.close()


def _housing_swap_events(base: list[dict]) -> list[bytes]:
    """600 events in [0, 60), 600 in [60, 120) whose housing 'rent' and 'other' trade places (a common and a
    rare category: no numeric feature moves), one at 200 s."""
    values = []
    for i in range(1201):
        row = dict(base[i % len(base)])
        row.update(event_id=f"e{i}", event_time=T0 + 200 if i == 1200 else T0 + i * 0.1)
        if 600 <= i < 1200:
            row["housing"] = {"rent": "other", "other": "rent"}.get(row["housing"], row["housing"])
        values.append(json.dumps(row).encode())
    return values


def test_a_feature_drift_alert_on_redis_carries_the_psi_of_every_feature_and_names_the_drifted_one(
        redis_prefix, base_events, tmp_path):
    from flightdeck.batch.monitoring import build_reference_profile
    from flightdeck.data.generator import generate_partition
    from flightdeck.data.schema import FEATURES

    # The reference profile of the model's training rows (tests.support.models.onnx_model(1)).
    training = generate_partition("2026-01-15", rows=2000, seed=1)
    profile = json.loads(json.dumps(build_reference_profile(training[list(FEATURES)], None)))
    publish(redis_prefix, _housing_swap_events(base_events))
    client = redis.Redis.from_url(REDIS_URL)
    sink = RedisSink(client, f"{redis_prefix}:out", f"{redis_prefix}:dead", f"{redis_prefix}:state",
                     alert_stream=f"{redis_prefix}:alerts")
    scorer = StreamScorer(Backend(RedisStreamSource(client, f"{redis_prefix}:in"), sink),
                          ModelRouter(StaticModel(onnx_model(1), "7", profile=profile), "m"),
                          [Windows("tumbling", 60)],
                          ScorerConfig(batch_size=250, poll_timeout_s=0.1, drift_alert_psi=0.2))
    trigger = RedisStreamTrigger(REDIS_URL, f"{redis_prefix}:alerts", block_ms=200)
    (event,) = asyncio.run(_next_events(trigger, 1, lambda: scorer.run(idle_stop_s=0.3)))

    assert client.xlen(f"{redis_prefix}:alerts") == 1  # the unchanged first window raised nothing
    alert = parse_alert(event.payload)
    assert (alert.alert, alert.start, alert.drifted_features) == ("feature_drift", T0 + 60.0, ("housing",))
    assert set(alert.feature_psi) == set(FEATURES) and alert.feature_psi["housing"] > 0.5
    assert alert.score_psi < 0.2  # the score alone would not have alerted
    stored = {r["start"]: r for r in sink.window_records()}
    assert stored[T0 + 60.0]["feature_psi"] == alert.feature_psi and max(stored[T0]["feature_psi"].values()) < 0.2

    outcome = investigate_payload(REDIS_URL, event.payload, f"{redis_prefix}:out", f"{redis_prefix}:state",
                                  tmp_path)
    report = json.loads(open(outcome["report"]).read())
    assert report["drifted_features"] == [{"feature": "housing", "psi": alert.feature_psi["housing"]}]
    assert outcome["drifted_features"] == ["housing"] and "housing (PSI" in outcome["summary"]
    client.close()


class _StateStore:
    """The triggerer's asset state store for one watched asset (aget/aset), kept in memory."""

    def __init__(self) -> None:
        self.values: dict = {}

    async def aget(self, key, default=None):
        return self.values.get(key, default)

    async def aset(self, key, value):
        self.values[key] = value


def test_the_trigger_fires_per_entry_and_resumes_after_the_last_one_it_fired(redis_prefix):
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"{redis_prefix}:alerts"
    client.xadd(stream, {"data": "old"})  # before the watcher started: not an event
    trigger = RedisStreamTrigger(REDIS_URL, stream, block_ms=200)
    assert RedisStreamTrigger(**trigger.serialize()[1]).serialize() == trigger.serialize()
    trigger.asset_state_store = store = _StateStore()
    events = asyncio.run(_next_events(trigger, 2, lambda: [client.xadd(stream, {"data": d}) for d in "ab"]))
    assert [e.payload["data"]["data"] for e in events] == ["a", "b"]
    # An id is stored once the triggerer has taken its event and asked for the next one; the
    # watcher stopped right after firing "b", so "b" may fire again: at least once, never lost.
    assert store.values["last_id"] == events[0].payload["id"]

    client.xadd(stream, {"data": "c"})  # appended while the triggerer was down
    restarted = RedisStreamTrigger(REDIS_URL, stream, block_ms=200)
    restarted.asset_state_store = store
    again = asyncio.run(_next_events(restarted, 2, lambda: None))
    assert [e.payload["data"]["data"] for e in again] == ["b", "c"]
    client.close()


def test_alerts_from_context_reads_the_trigger_payloads_of_the_asset_events():
    from types import SimpleNamespace

    payload = {"stream": "s", "id": "1-0", "data": {"data": "{}"}}
    events = {"asset": [SimpleNamespace(extra={"from_trigger": True, "payload": payload}),
                        SimpleNamespace(extra={"manual": True})]}
    assert alerts_from_context({"triggering_asset_events": events}) == [payload]
    assert alerts_from_context({}) == []
    with pytest.raises(InvalidAlertError, match="lacks"):
        parse_alert(payload)
    with pytest.raises(InvalidAlertError, match="no JSON"):
        parse_alert({"id": "1-0", "data": {"other": "x"}})


def test_the_investigation_dag_is_scheduled_on_the_watched_alert_asset():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    from flightdeck.airflow.streaming import ALERT_STREAM, DRIFT_ALERT_ASSET
    from tests.integration.conftest import REPO

    bag = DagBag(dag_folder=str(REPO / "dags" / "stream_drift_investigation.py"))
    assert not bag.import_errors
    dag = bag.dags["stream_drift_investigation"]
    (asset,) = dag.timetable.asset_condition.objects
    assert asset.name == DRIFT_ALERT_ASSET
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, RedisStreamTrigger) and watcher.trigger.stream == ALERT_STREAM
    # What the dag-processor stores and the triggerer later instantiates from the classpath.
    serialized = json.dumps(DagSerialization.serialize_dag(dag))
    assert "flightdeck.airflow.streaming.RedisStreamTrigger" in serialized and ALERT_STREAM in serialized


def _connection_ids(client: redis.Redis, name: str) -> set[int]:
    """The ids of the server's connections named `name` (a reconnect shows up as a new id)."""
    return {c["id"] for c in client.client_list() if c.get("name") == name}


def test_the_watcher_waits_through_quiet_block_periods_on_one_connection_then_fires_once(redis_prefix):
    # An XREAD block longer than redis-py's default read timeout (5 s): before the trigger sized its
    # read timeout to the block, every quiet block period ended in "Timeout reading from ..." and the
    # triggerer restarted the watcher.
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"{redis_prefix}:alerts"
    trigger = RedisStreamTrigger(REDIS_URL, stream, block_ms=6000)

    async def watch() -> tuple[list, set[int]]:
        events, ids = [], set()

        async def collect() -> None:
            async for event in trigger.run():
                events.append(event)

        runner = asyncio.ensure_future(collect())
        try:
            deadline = asyncio.get_running_loop().time() + 13  # two whole empty block periods and more
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.5)
                assert not runner.done(), runner.exception()
                ids |= _connection_ids(client, trigger.client_name)
            client.xadd(stream, {"data": "one"})
            for _ in range(50):
                if events:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # room for a second (wrong) event
            assert not runner.done(), runner.exception()
            ids |= _connection_ids(client, trigger.client_name)
        finally:
            runner.cancel()
        return events, ids

    events, ids = asyncio.run(watch())
    assert [e.payload["data"]["data"] for e in events] == ["one"]
    assert len(ids) == 1  # the same connection all along: no reconnect
    client.close()
