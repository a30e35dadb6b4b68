"""The stream scorer on real Redis Streams and PostgreSQL: exactly-once under SIGKILL, dead letters,
model switches and late events."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import pytest
import redis
import sqlalchemy as sa

from flightdeck.streaming.broker import Backend
from flightdeck.streaming.models import ModelRouter
from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows
from tests.integration.streaming.conftest import REDIS_URL, events, publish
from tests.support.models import onnx_model
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class SwitchableRegistry:
    """The registry calls the scorer makes, with a `champion` alias the test moves."""

    def __init__(self, versions: dict[str, bytes], champion: str) -> None:
        self.versions, self.champion = versions, champion

    def get_version(self, name, ref):
        return type("V", (), {"version": self.champion if ref == "champion" else ref})()

    def download_onnx(self, name, ref):
        version = self.champion if ref == "champion" else ref
        return version, self.versions[version]


def _redis_scorer(prefix: str, registry, batch_size: int = 500) -> tuple[StreamScorer, RedisSink]:
    client = redis.Redis.from_url(REDIS_URL)
    sink = RedisSink(client, f"{prefix}:out", f"{prefix}:dead", f"{prefix}:state")
    models = ModelRouter(registry, "flightdeck-classifier", poll_seconds=0.0)  # re-resolve every batch
    windows = [Windows("tumbling", 60, None, 5), Windows("sliding", 120, 60, 5)]
    return StreamScorer(Backend(RedisStreamSource(client, f"{prefix}:in"), sink), models, windows,
                        ScorerConfig(batch_size=batch_size, poll_timeout_s=0.1)), sink


def _outputs(prefix: str, stream: str) -> list[dict]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return [json.loads(fields[b"data"]) for _, fields in client.xrange(f"{prefix}:{stream}")]
    finally:
        client.close()


def test_poison_events_go_to_the_dead_letter_stream_and_the_stream_goes_on(redis_prefix, base_events):
    values = events(base_events, 300)
    values[10] = b"{not json"
    broken = json.loads(values[20])
    broken["credit_score"] = None
    values[20] = json.dumps(broken).encode()
    publish(redis_prefix, values)
    scorer, _ = _redis_scorer(redis_prefix, SwitchableRegistry({"1": onnx_model(1)}, "1"), batch_size=100)
    stats = scorer.run(idle_stop_s=0.3)
    assert (stats.records, stats.scored, stats.dead_letters) == (300, 298, 2)
    dead = _outputs(redis_prefix, "dead")
    assert [d["reason"].split(" ")[0] for d in dead] == ["not", "field"]
    assert "credit_score" in dead[1]["reason"] and dead[0]["value"] == "{not json"
    results = _outputs(redis_prefix, "out")
    assert len({r["event_id"] for r in results}) == 298 and "e299" in {r["event_id"] for r in results}


def test_a_champion_switch_mid_stream_shows_in_the_results(redis_prefix, base_events):
    publish(redis_prefix, events(base_events, 1000))
    registry = SwitchableRegistry({"1": onnx_model(1), "2": onnx_model(1)}, "1")
    scorer, _ = _redis_scorer(redis_prefix, registry, batch_size=250)
    scorer.run(max_records=500)
    registry.champion = "2"  # the alias moves while the stream runs
    scorer.stop_event.clear()
    stats = scorer.run(idle_stop_s=0.3)
    assert stats.records == 500 and scorer.models.switches == 1
    versions = [r["model_version"] for r in _outputs(redis_prefix, "out")]
    assert versions == ["1"] * 500 + ["2"] * 500
    assert scorer.metrics.model_switches.labels("stream")._value.get() == 1


def test_late_events_are_counted_per_window(redis_prefix, base_events):
    rows = [dict(base_events[i]) for i in range(6)]
    # lateness 5 s: after t=130 the watermark is 125, so [0, 60) and [60, 120) have closed; 20 is late,
    # 122 is not (its window [120, 180) is open although it is older than 130)
    times = [0, 30, 70, 130, 20, 122]
    values = []
    for i, (row, t) in enumerate(zip(rows, times, strict=True)):
        row.update(event_id=f"e{i}", event_time=1_699_999_980 + t)
        values.append(json.dumps(row).encode())
    publish(redis_prefix, values)
    scorer, sink = _redis_scorer(redis_prefix, SwitchableRegistry({"1": onnx_model(1)}, "1"), batch_size=1)
    scorer.run(idle_stop_s=0.3)
    assert len(_outputs(redis_prefix, "out")) == 6  # late events are still scored
    tumbling = {r["start"] - 1_699_999_980: r for r in sink.window_records() if r["kind"] == "tumbling"}
    assert tumbling[0.0]["count"] == 2 and tumbling[0.0]["late_events"] == 1
    assert tumbling[60.0]["late_events"] == 0 and tumbling[60.0]["count"] == 1
    assert scorer.metrics.late_events.labels("stream", "tumbling")._value.get() == 1


def _run_with_kills(args: list[str], kills: int, results, total: int) -> None:
    """Start the scorer and SIGKILL it `kills` times, each time once its results have grown since
    the previous kill (asserting the kill landed mid-stream), then let it finish."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "flightdeck", "stream", *args, "--batch-size", "1000"]
    for kill in range(kills):
        before = results()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(lambda: process.poll() is not None or results() > before, 60, 0.01,  # noqa: B023
                   what=f"the scorer to add results before kill {kill + 1}")
        assert process.poll() is None, f"the scorer ended (exit {process.returncode}) before kill {kill + 1}"
        process.send_signal(signal.SIGKILL)
        process.wait()
        after = results()
        assert before < after < total, f"kill {kill + 1} did not land mid-stream: {before} -> {after} of {total}"
    final = subprocess.run([*command, "--idle-stop", "1"], env=env, capture_output=True, text=True, timeout=90)
    assert final.returncode == 0, final.stderr[-2000:]


@pytest.mark.slow
def test_sigkill_mid_stream_redis_sink_gives_exactly_one_result_per_event(redis_prefix, base_events,
                                                                                 model_file):
    n = 100_000
    publish(redis_prefix, events(base_events, n))
    client = redis.Redis.from_url(REDIS_URL)
    _run_with_kills(["--model-file", str(model_file), "--input", f"{redis_prefix}:in",
                     "--output", f"{redis_prefix}:out", "--dead-letter", f"{redis_prefix}:dead",
                     "--alerts", "", "--consumer", redis_prefix], kills=3,
                    results=lambda: client.xlen(f"{redis_prefix}:out"), total=n)
    client.close()
    ids = [r["event_id"] for r in _outputs(redis_prefix, "out")]
    assert len(ids) == n and len(set(ids)) == n


def _run_with_kills_at(args: list[str], progress, kill_at: list[int], total: int) -> None:
    """Start the scorer and SIGKILL it once its committed progress reaches each of `kill_at` (asserting
    each kill landed mid-stream), then let it finish."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "flightdeck", "stream", *args, "--batch-size", "1000"]
    for kill, target in enumerate(kill_at, 1):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        eventually(lambda: process.poll() is not None or progress() >= target, 90, 0.05,  # noqa: B023
                   what=f"the scorer to commit {target} events before kill {kill}")
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        done = progress()
        assert target <= done < total, f"kill {kill} did not land mid-stream: {done} of {total}"
    final = subprocess.run([*command, "--idle-stop", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(240)  # about 60 s on an idle 2-core machine; the bound leaves room for a busy one
def test_sigkill_mid_stream_postgres_sink_gives_exactly_one_result_per_event(redis_prefix, base_events,
                                                                                   model_file, postgres_url):
    n = 100_000
    publish(redis_prefix, events(base_events, n))
    engine = sa.create_engine(postgres_url)

    def committed() -> int:
        """The stored checkpoint's count (a key lookup: polling count(*) of 100,000 rows would slow the scorer)."""
        with engine.connect() as conn:
            try:
                return conn.execute(sa.text("SELECT processed FROM stream_checkpoints")).scalar() or 0
            except sa.exc.ProgrammingError:  # the scorer has not created its tables yet
                return 0

    # One kill at a random point of each third of the stream (the scorer is then somewhere in a batch).
    rng = random.Random(5)
    kill_at = [rng.randrange(k * n // 3 + 2_000, (k + 1) * n // 3 - 2_000) for k in range(3)]
    _run_with_kills_at(["--model-file", str(model_file), "--input", f"{redis_prefix}:in",
                        "--sink", "sql", "--database-url", postgres_url, "--consumer", redis_prefix],
                       committed, kill_at, n)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id), count(DISTINCT source_offset) "
                                    "FROM stream_results")).one()
        processed = conn.execute(sa.text("SELECT processed FROM stream_checkpoints")).scalar_one()
    engine.dispose()
    assert tuple(rows) == (n, n, n) and processed == n
