"""Poison events do not stop the stream scorer: each one becomes exactly one dead letter, each good event
exactly one result, on Redis and on the PostgreSQL sink, with the scorer SIGKILLed at observed progress."""

from __future__ import annotations

import json
import os
import random
import signal
import string
import subprocess
import sys
import time

import pytest
import redis
import sqlalchemy as sa

from tests.integration.streaming.conftest import REDIS_URL, events

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

N_GOOD = 10_000


def _poison(base: dict, sink: str) -> list[bytes]:
    """Events that cannot be parsed, scored or stored (the last kind only where the sink refuses it)."""
    def row(**changes) -> bytes:
        return json.dumps({**base, **changes}).encode()

    rng = random.Random(3)
    poison = [
        row(credit_score=10 ** 400),  # a finite-looking number too large for a float
        row(event_time=10 ** 400),
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the decoder recurses
        json.dumps({**base, "credit_score": 1.0}).encode()[:-1] + b', "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        row(customer_id="c-1\x00"),  # NUL in the entity id
        row(event_id="e\x00nul"),
        b'{"customer_id": "c-\x00' + b"\xff" * 3,  # NUL and undecodable bytes in a dead letter's raw value
        row(credit_score="700"),
        row(customer_id=5),
        row(event_time={"at": 1}),
        row(credit_score=True),
        b"[1, 2, 3]",
        b"",
    ]
    if sink == "sql":
        # Valid JSON, but an entity id beyond the size PostgreSQL can index: the sink refuses the commit.
        poison.append(row(customer_id="".join(rng.choices(string.ascii_letters + string.digits, k=12_000))))
    return poison


def _publish(prefix: str, good: list[bytes], poison: list[bytes], seed: int) -> tuple[set[str], set[str]]:
    """Poison scattered among the good events; returns the entry ids of (good, poison)."""
    rng = random.Random(seed)
    slots = sorted(rng.sample(range(len(good)), len(poison)))
    order, p = [], 0
    for i, value in enumerate(good):
        while p < len(poison) and slots[p] == i:
            order.append((False, poison[p]))
            p += 1
        order.append((True, value))
    client = redis.Redis.from_url(REDIS_URL)
    pipe = client.pipeline(transaction=False)
    for _, value in order:
        pipe.xadd(f"{prefix}:in", {"data": value})
    ids = [i.decode() for i in pipe.execute()]
    client.close()
    return ({i for i, (ok, _) in zip(ids, order, strict=True) if ok},
            {i for i, (ok, _) in zip(ids, order, strict=True) if not ok})


def _run_with_kills(args: list[str], progress, kill_at: list[int]) -> list[int]:
    """Run the scorer; SIGKILL it once the committed progress reaches each of `kill_at`; then let it finish.

    Returns the progress seen at each kill (each below the total: the process was killed mid-stream)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "flightdeck", "stream", *args, "--batch-size", "250"]
    seen = []
    for target in kill_at:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while (done := progress()) < target:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"no progress past {done}"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
        seen.append(done)
    final = subprocess.run([*command, "--idle-stop", "1"], env=env, capture_output=True, text=True, timeout=90)
    assert final.returncode == 0, final.stderr[-3000:]
    return seen


def _redis_progress(consumer: str):
    client = redis.Redis.from_url(REDIS_URL)

    def progress() -> int:
        raw = client.get(f"flightdeck:stream:{consumer}:checkpoint")
        return json.loads(raw)["processed"] if raw else 0
    return progress


def _sql_progress(url: str, consumer: str):
    engine = sa.create_engine(url)

    def progress() -> int:
        with engine.connect() as conn:
            try:
                return conn.execute(sa.text("SELECT processed FROM stream_checkpoints WHERE consumer = :c"),
                                    {"c": consumer}).scalar() or 0
            except sa.exc.ProgrammingError:  # the scorer has not created its tables yet
                return 0
    return progress


def test_poison_on_redis_sink_each_event_one_result_or_one_dead_letter_through_kills(redis_prefix, base_events,
                                                                                       model_file):
    good = events(base_events, N_GOOD)
    poison = _poison(base_events[0], "broker")
    good_ids, poison_ids = _publish(redis_prefix, good, poison, seed=11)
    total = len(good_ids) + len(poison_ids)
    seen = _run_with_kills(["--model-file", str(model_file), "--input", f"{redis_prefix}:in",
                            "--output", f"{redis_prefix}:out", "--dead-letter", f"{redis_prefix}:dead",
                            "--alerts", "", "--consumer", redis_prefix],
                           _redis_progress(redis_prefix), kill_at=[2500, 6500])
    assert all(s < total for s in seen)
    client = redis.Redis.from_url(REDIS_URL)
    results = [json.loads(f[b"data"])["offset"] for _, f in client.xrange(f"{redis_prefix}:out")]
    dead = [(json.loads(f[b"data"]), f[b"reason"].decode()) for _, f in client.xrange(f"{redis_prefix}:dead")]
    client.close()
    assert len(results) == len(good_ids) and set(results) == good_ids
    assert sorted(d["offset"] for d, _ in dead) == sorted(poison_ids)
    assert all("Fix:" in reason or "refused" in reason for _, reason in dead)


def test_poison_on_postgres_sink_each_event_one_result_or_one_dead_letter_through_kills(
        redis_prefix, base_events, model_file, postgres_url):
    good = events(base_events, N_GOOD)
    poison = _poison(base_events[0], "sql")
    good_ids, poison_ids = _publish(redis_prefix, good, poison, seed=12)
    total = len(good_ids) + len(poison_ids)
    seen = _run_with_kills(["--model-file", str(model_file), "--input", f"{redis_prefix}:in",
                            "--sink", "sql", "--database-url", postgres_url, "--consumer", redis_prefix],
                           _sql_progress(postgres_url, redis_prefix), kill_at=[2500, 6500])
    assert all(s < total for s in seen)
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        results = [r[0] for r in conn.execute(sa.text("SELECT source_offset FROM stream_results"))]
        dead = conn.execute(sa.text("SELECT source_offset, reason, value FROM stream_dead_letters")).all()
        processed = conn.execute(sa.text("SELECT processed FROM stream_checkpoints")).scalar_one()
    engine.dispose()
    assert len(results) == len(good_ids) and set(results) == good_ids
    assert sorted(d.source_offset for d in dead) == sorted(poison_ids)
    assert processed == total
    refused = [d for d in dead if "sink refused" in d.reason]
    assert len(refused) == 1 and len(refused[0].value) > 10_000  # the long entity id, isolated from its batch
    raw = next(d.value for d in dead if d.value.startswith('{"customer_id": "c-'))
    assert "\x00" not in raw and "\ufffd" in raw
