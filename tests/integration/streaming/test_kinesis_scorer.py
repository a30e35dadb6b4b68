"""The stream scorer on Kinesis with DynamoDB (a moto server over loopback HTTP): exactly one result per
event under SIGKILL, dead letters with reasons, a fenced second scorer, a reshard, and replay."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import pytest

from flightdeck.batch.scoring import ModelArtifact
from flightdeck.errors import ConfigError
from flightdeck.streaming.broker import FencedError
from flightdeck.streaming.kinesis import (
    DynamoReader,
    KinesisBackend,
    LeaseHeldError,
    clients,
    publish,
)
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.replay import replay_kinesis
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.integration.delivery.conftest import REGION, _moto_url  # noqa: F401  (the session's moto server)
from tests.integration.streaming.conftest import events
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def aws(_moto_url, tmp_path_factory):  # noqa: F811
    """Kinesis and DynamoDB clients of the moto server, and the environment that points the scorer there."""
    home = tmp_path_factory.mktemp("aws")
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": _moto_url,
           "AWS_CONFIG_FILE": str(home / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield clients(REGION)


@pytest.fixture
def names(aws) -> dict[str, str]:
    """A fresh stream, dead-letter stream, table and consumer for one test."""
    tag = uuid.uuid4().hex[:8]
    return {"stream": f"ev-{tag}", "dead": f"dead-{tag}", "table": f"fd-{tag}", "consumer": f"c-{tag}"}


def _create(kinesis, name: str, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})


def _read_stream(kinesis, name: str) -> list[dict]:
    out = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            answer = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            out.extend(json.loads(r["Data"]) for r in answer["Records"])
            iterator = answer.get("NextShardIterator") if answer["Records"] else None
    return out


def _scorer(aws, names: dict, instance: str = "i1", **backend) -> StreamScorer:
    kinesis, dynamodb = aws
    options = {"lease_s": 30.0, "max_batch": 500, **backend}
    return StreamScorer(KinesisBackend(kinesis, dynamodb, names["stream"], names["table"], names["consumer"], instance,
                                       **options),
                        ModelRouter(StaticModel(_model(), "1"), "flightdeck-classifier"),
                        [Windows("tumbling", 60, None, 5)], ScorerConfig(batch_size=500, poll_timeout_s=0.05))


_MODEL: list[bytes] = []


def _model() -> bytes:
    if not _MODEL:
        from tests.support.models import onnx_model

        _MODEL.append(onnx_model(1))
    return _MODEL[0]


def _poisoned(base_events, n: int, poison: dict[int, bytes]) -> list[bytes]:
    values = events(base_events, n)
    for i, value in poison.items():
        values[i] = value
    return values


@pytest.mark.slow
@pytest.mark.timeout(180)  # 24-50 s measured on a 2-core machine under a load average of 14-16
def test_sigkill_mid_stream_gives_exactly_one_result_per_event(aws, names, base_events, model_file):
    kinesis, dynamodb = aws
    n = 20_000
    _create(kinesis, names["stream"], 8)  # moto reads and appends in time linear in a shard's length
    _create(kinesis, names["dead"], 1)
    broken = dict(base_events[0], event_id="e777", credit_score=None)
    poison = {5: b"{not json", 777: json.dumps(broken).encode(), 19_000: b"\xff\xfe"}
    assert publish(kinesis, names["stream"], _poisoned(base_events, n, poison)) == n
    reader = DynamoReader(dynamodb, names["table"], names["consumer"])

    def progress() -> int:
        try:
            return reader.processed()
        except dynamodb.exceptions.ResourceNotFoundException:  # the scorer has not created its table yet
            return 0

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "flightdeck", "stream", "--broker", "kinesis", "--input", names["stream"],
               "--dead-letter", names["dead"], "--dynamodb-table", names["table"], "--consumer", names["consumer"],
               "--model-file", str(model_file), "--batch-size", "1000", "--alerts", ""]
    # One kill at a random point of each quarter of the stream, once the committed count has passed it
    # (the scorer is then somewhere in its next batch: reading, scoring or committing).
    rng = random.Random(20)
    kill_at = [rng.randrange(k * n // 4 + 1_000, (k + 1) * n // 4 - 1_000) for k in range(3)]
    for kill, target in enumerate(kill_at, 1):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        eventually(lambda: process.poll() is not None or progress() >= target, 60, 0.05,  # noqa: B023
                   what=f"the scorer to commit {target} events before kill {kill}")
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        done = progress()
        assert target <= done < n, f"kill {kill} did not land mid-stream: {done} of {n}"
    final = subprocess.run([*command, "--idle-stop", "1"], env=env, capture_output=True, text=True, timeout=90)
    assert final.returncode == 0, final.stderr[-2000:]

    ids = [r["event_id"] for r in reader.results()]
    assert len(ids) == n - 3 and len(set(ids)) == n - 3
    dead = reader.dead_letters()
    assert len(dead) == 3 and len({d["offset"] for d in dead}) == 3
    reasons = sorted(d["reason"] for d in dead)
    assert any("credit_score" in r for r in reasons) and sum(r.startswith("not JSON") for r in reasons) == 2
    assert reader.checkpoint()["processed"] == n
    # Forwarded to the dead-letter stream at least once each (the DynamoDB copies are the exact ones).
    forwarded = _read_stream(kinesis, names["dead"])
    assert {d["offset"] for d in forwarded} == {d["offset"] for d in dead}


def test_a_second_scorer_on_the_shards_fences_the_first_which_writes_nothing(aws, names, base_events):
    kinesis, dynamodb = aws
    _create(kinesis, names["stream"], 2)
    publish(kinesis, names["stream"], events(base_events, 2000))
    reader = DynamoReader(dynamodb, names["table"], names["consumer"])
    a = _scorer(aws, names, "a")
    a.run(max_records=500)
    committed = reader.processed()
    b = _scorer(aws, names, "b", lease_s=20.0)
    b.start()  # a gave its leases back on stopping: b takes them at once, with new tokens
    stale = a.process(a.backend.poll(250, 0.5))  # a still believes it holds the shards
    assert stale.results
    with pytest.raises(FencedError, match="another scorer runs with the same consumer name"):
        a.backend.commit(stale)
    assert reader.processed() == committed and len(reader.results()) == committed  # nothing of it was written
    c = _scorer(aws, names, "c", acquire_timeout_s=0.3)
    with pytest.raises(LeaseHeldError, match="leased to instance 'b'"):
        c.start()  # b's leases are live: c waits, then says who holds them
    assert b.run(idle_stop_s=0.3).records == 2000 - committed
    assert a.run(idle_stop_s=0.3).records == 0  # b gave the leases back: a resumes after b's checkpoint
    ids = [r["event_id"] for r in reader.results()]
    assert len(ids) == 2000 and len(set(ids)) == 2000 and reader.processed() == 2000


def test_a_resharded_stream_is_read_parents_first_with_every_event_once(aws, names, base_events):
    kinesis, dynamodb = aws
    _create(kinesis, names["stream"], 1)
    values = events(base_events, 600)
    publish(kinesis, names["stream"], values[:300])
    (parent,) = kinesis.list_shards(StreamName=names["stream"])["Shards"]
    middle = (int(parent["HashKeyRange"]["StartingHashKey"]) + int(parent["HashKeyRange"]["EndingHashKey"])) // 2
    kinesis.split_shard(StreamName=names["stream"], ShardToSplit=parent["ShardId"], NewStartingHashKey=str(middle))
    publish(kinesis, names["stream"], values[300:])
    scorer = _scorer(aws, names)
    assert scorer.run(idle_stop_s=0.3).records == 600
    reader = DynamoReader(dynamodb, names["table"], names["consumer"])
    ids = [r["event_id"] for r in reader.results()]
    assert len(ids) == 600 and len(set(ids)) == 600
    children = {s["ShardId"] for s in kinesis.list_shards(StreamName=names["stream"])["Shards"]
                if s.get("ParentShardId") == parent["ShardId"]}
    # moto 5.2 keeps appending to the closed parent after a split (Kinesis routes new records to the
    # children; test_kinesis_shards checks that order on a model of it): the parent is read to its end,
    # and the children are listed, leased and read after it.
    read_from = {r["offset"].rsplit(":", 1)[0] for r in reader.results()}
    assert len(children) == 2 and read_from <= children | {parent["ShardId"]}
    assert scorer.backend._shards[parent["ShardId"]].ended
    shards = reader.checkpoint()["shards"]
    last = {}
    for r in reader.results():
        shard, seq = r["offset"].rsplit(":", 1)
        last[shard] = max(last.get(shard, 0), int(seq))
    assert {s: int(shards[s]["seq"]) for s in read_from} == last
    assert all(shards[c]["lease_owner"] == "i1" for c in children)  # leased (and given back on stopping)


def test_replay_scores_a_kinesis_range_with_the_batch_path(aws, names, base_events, tmp_path):
    import pandas as pd

    kinesis, _ = aws
    _create(kinesis, names["stream"], 2)
    values = events(base_events, 60)
    publish(kinesis, names["stream"], [*values[:50], b"poison"])
    result = replay_kinesis(names["stream"], "-", "+", ModelArtifact("m", "3", _model()), tmp_path, "run1", 0.5,
                            kinesis=kinesis)
    assert result["events"] == 51 and result["scored"] == 50 and sum(result["invalid"].values()) == 1
    frame = pd.read_parquet(result["output"])
    assert len(frame) == 50 and set(frame["model_version"]) == {"3"}
    boundary = int(time.time() * 1000) + 1
    eventually(lambda: time.time() * 1000 > boundary, 1, 0.001, what="the clock to pass the range's start")
    publish(kinesis, names["stream"], values[50:])
    later = replay_kinesis(names["stream"], str(boundary), "+", ModelArtifact("m", "3", _model()), tmp_path,
                           "run2", 0.5, kinesis=kinesis)
    assert later["events"] == 10 and later["scored"] == 10
    with pytest.raises(ConfigError, match="epoch milliseconds"):
        replay_kinesis(names["stream"], "1-0", "+", ModelArtifact("m", "3", _model()), tmp_path, "run3", 0.5,
                       kinesis=kinesis)


def test_a_drift_alert_reaches_the_alert_stream_the_watchers_kinesis_trigger_fires_and_the_investigation_explains(
        aws, names, base_events, redis_prefix, tmp_path):
    from flightdeck.airflow.streaming import (
        alerts_from_context,
        kinesis_alert_payloads,
        kinesis_drift_alert_asset,
    )
    from flightdeck.streaming.drift import InvalidAlertError, KinesisAlerts, parse_alert
    from tests.integration.streaming.test_drift_alerts import T0, _drifting_events

    kinesis, dynamodb = aws
    alerts = f"alerts-{names['consumer']}"
    _create(kinesis, names["stream"], 1)
    publish(kinesis, names["stream"], _drifting_events(base_events))

    def scorer() -> StreamScorer:
        backend = KinesisBackend(kinesis, dynamodb, names["stream"], names["table"], names["consumer"], "i1",
                                 alert_stream=alerts)
        return StreamScorer(backend, ModelRouter(StaticModel(_model(), "7"), "m"), [Windows("tumbling", 60)],
                            ScorerConfig(batch_size=100, poll_timeout_s=0.1, drift_alert_psi=0.2))

    # The alert stream does not exist yet: the alert is committed with its batch, in the outbox, and the
    # scorer goes on; the next start forwards it.
    first = scorer()
    assert first.run(idle_stop_s=0.3).records == 401
    assert len(list(first.backend._query(first.backend._pk("outbox")))) == 1
    _create(kinesis, alerts, 1)
    second = scorer()
    second.start()
    assert list(second.backend._query(second.backend._pk("outbox"))) == []
    second.backend.close()

    asset = kinesis_drift_alert_asset(alerts, aws_conn_id=None, region_name=REGION, shard_iterator_type="TRIM_HORIZON",
                                      waiter_delay=0.1)
    (watcher,) = asset.watchers
    event = asyncio.run(_first_event(watcher.trigger))
    (payload,) = kinesis_alert_payloads(event.payload, alerts)
    # what the investigation's task reads: the run's asset events, a Kinesis batch counting one alert per record
    context = {"triggering_asset_events": {asset.name: [SimpleNamespace(extra={"payload": event.payload})]}}
    assert [p["data"] for p in alerts_from_context(context)] == [payload["data"]]
    alert = parse_alert(payload)
    assert (alert.kind, alert.start, alert.model_version) == ("tumbling", T0 + 60.0, "7")
    assert alert.score_psi > 0.2 and alert.record["count"] == 200
    assert len(_read_stream(kinesis, alerts)) == 1  # the reference window itself raises nothing

    # The investigation reads the window's results and its reference from the scorer's DynamoDB table,
    # and reports what the investigation of the same alert from a Redis scorer reports.
    source = KinesisAlerts(alerts, names["table"], names["consumer"], clients=aws)
    assert source.read(payload["id"]) == payload  # a manual re-investigation (alert_id) reads the same alert
    outcome = source.investigate(payload, tmp_path / "kinesis")
    report = json.loads(open(outcome["report"]).read())
    assert report["alert_id"] == payload["id"] and report["results_found"] == 200
    assert report["reference"]["start"] == T0 and report["feature_shifts"][0]["feature"] == "credit_score"
    redis_report = _redis_investigation(redis_prefix, base_events, tmp_path / "redis")
    assert {k: v for k, v in report.items() if k != "alert_id"} == {
        k: v for k, v in redis_report.items() if k != "alert_id"}
    with pytest.raises(InvalidAlertError, match=f"Fix: run the investigation with consumer '{names['consumer']}'"):
        KinesisAlerts(alerts, names["table"], "another-scorer", clients=aws).investigate(payload, tmp_path)
    with pytest.raises(ConfigError, match="has no record"):
        source.read(f"{payload['id'].rpartition(':')[0]}:999999")  # past the stream's last record


def _redis_investigation(prefix: str, base_events, folder) -> dict:
    """The report of the drift alert a Redis scorer publishes for the same events."""
    import redis

    from flightdeck.streaming.broker import Backend
    from flightdeck.streaming.drift import RedisAlerts
    from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
    from tests.integration.streaming.conftest import REDIS_URL
    from tests.integration.streaming.conftest import publish as publish_redis
    from tests.integration.streaming.test_drift_alerts import _drifting_events

    publish_redis(prefix, _drifting_events(base_events))
    client = redis.Redis.from_url(REDIS_URL)
    sink = RedisSink(client, f"{prefix}:out", f"{prefix}:dead", f"{prefix}:state", alert_stream=f"{prefix}:alerts")
    StreamScorer(Backend(RedisStreamSource(client, f"{prefix}:in"), sink), ModelRouter(StaticModel(_model(), "7"), "m"),
                 [Windows("tumbling", 60)], ScorerConfig(batch_size=100, poll_timeout_s=0.1, drift_alert_psi=0.2)
                 ).run(idle_stop_s=0.3)
    ((alert_id, _),) = client.xrange(f"{prefix}:alerts")
    client.close()
    source = RedisAlerts(REDIS_URL, f"{prefix}:alerts", f"{prefix}:out", f"{prefix}:state")
    return json.loads(open(source.investigate(source.read(alert_id.decode()), folder)["report"]).read())


async def _first_event(trigger):
    runner = trigger.run().__aiter__()
    try:
        return await asyncio.wait_for(runner.__anext__(), 20)
    finally:
        await runner.aclose()


def test_the_investigation_dag_on_a_kinesis_broker_explains_an_alert_named_by_hand(aws, names, base_events,
                                                                                    sqlite_sandbox, tmp_path):
    import shutil

    from tests.integration.conftest import REPO
    from tests.integration.streaming.test_drift_alerts import T0, _drifting_events

    kinesis, dynamodb = aws
    alerts = f"alerts-{names['consumer']}"
    _create(kinesis, names["stream"], 1)
    _create(kinesis, alerts, 1)
    publish(kinesis, names["stream"], _drifting_events(base_events))
    backend = KinesisBackend(kinesis, dynamodb, names["stream"], names["table"], names["consumer"], "i1",
                             alert_stream=alerts)
    StreamScorer(backend, ModelRouter(StaticModel(_model(), "7"), "m"), [Windows("tumbling", 60)],
                 ScorerConfig(batch_size=100, poll_timeout_s=0.1, drift_alert_psi=0.2)).run(idle_stop_s=0.3)
    (shard,) = kinesis.list_shards(StreamName=alerts)["Shards"]
    iterator = kinesis.get_shard_iterator(StreamName=alerts, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    (record,) = kinesis.get_records(ShardIterator=iterator)["Records"]
    alert_id = f"{shard['ShardId']}:{record['SequenceNumber']}"

    dags = tmp_path / "dags"  # only this DAG: a broken DAG elsewhere in the folder cannot fail this test
    dags.mkdir()
    shutil.copy(REPO / "dags" / "stream_drift_investigation.py", dags)
    home = tmp_path / "flightdeck"
    env = {**{k: v for k, v in os.environ.items() if k.startswith("AWS_")}, "FLIGHTDECK_HOME": str(home),
           "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "FLIGHTDECK_STREAM_BROKER": "kinesis",
           "FLIGHTDECK_STREAM_ALERTS": alerts}
    outcome = sqlite_sandbox.dag_test("stream_drift_investigation", {
        "alert_id": alert_id, "dynamodb_table": names["table"], "consumer": names["consumer"]}, env=env)
    assert outcome.get("state") == "success", outcome["log"][-5000:]
    (written,) = (home / "reports" / "stream-drift").glob("drift-*.json")
    report = json.loads(written.read_text())
    assert report["alert_id"] == alert_id and report["results_found"] == 200
    assert (report["start"], report["reference"]["start"]) == (T0 + 60.0, T0)
    assert report["feature_shifts"][0]["feature"] == "credit_score"
