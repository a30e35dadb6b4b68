"""Stream scorer benchmark: end-to-end events/s and p99 event-to-result latency on Redis Streams,
against the ceiling: the scorer's own parsing (`parse_batch`) + the one scoring function in a plain
loop (no broker), measured in the same run. Target: from a backlog, at least 0.6 of the ceiling.

    python benchmarks/streaming.py --events 20000 --rate 4000 [--sink sql] [--spark] [--json PATH]

`--sink sql` writes the results to PostgreSQL instead of Redis (the SQL sink: one transaction per
batch); without `--database-url` a scratch database is created on `--postgres` and dropped after.
`--spark` adds the Spark Structured Streaming example (local[1], file source, one
availableNow run over the same events; the SparkSession start is not counted).
`--json PATH` also writes the printed figures, the command and the date to PATH.
The scorer's windows measure per-feature drift against the model's training reference profile,
as in production; `--no-feature-drift` leaves it out.

The per-event loop (`parse_event` + score, what the scorer parsed with before `parse_batch`) is
printed too, for reference; the ratio is taken against the faster of the two. The CPU time of this
process per event (ceiling, scorer from a backlog; the median pair) is printed as well: on a loaded
machine the wall-clock ratio drifts towards the CPU ratio, since nothing then runs truly in parallel.

Latency = output entry id − input entry id (both Redis append times, one clock); with the SQL
sink, the row's `scored_at` − input entry id (one host's clock). Needs Redis (and PostgreSQL for
`--sink sql`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import uuid

import numpy as np
import redis

from flightdeck import runtime
from flightdeck.data.schema import FEATURES
from flightdeck.devtools.results import write_json
from flightdeck.streaming.broker import Backend
from flightdeck.streaming.events import Record, parse_batch, parse_event
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.producer import generated_events
from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows

TARGET_RATIO = 0.6  # the scorer from a backlog, as a share of the ceiling


def _model() -> tuple[bytes, dict]:
    """The ONNX model and the reference profile of its training rows (as train_register logs it)."""
    from flightdeck.batch.monitoring import build_reference_profile
    from flightdeck.data.generator import generate_partition
    from flightdeck.data.schema import FEATURES
    from flightdeck.training.export import to_onnx
    from flightdeck.training.train import fit_pipeline

    training = generate_partition("2026-01-15", rows=2000, seed=1)
    onnx = to_onnx(fit_pipeline(training, "logistic_regression", seed=1), "bench").SerializeToString()
    return onnx, build_reference_profile(training[list(FEATURES)], None)


def ceiling(values: list[bytes], onnx: bytes, batch: int) -> tuple[float, float]:
    """Events/s of the scorer's parsing (`parse_batch`) + score_feeds in a plain loop, and its CPU
    seconds per event."""
    session = runtime.load_session(onnx)
    plan = runtime.InputPlan.of(session)
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(values), batch):
        events, _ = parse_batch([Record(str(j), v) for j, v in enumerate(values[i:i + batch])])
        runtime.score_feeds(session, plan.feeds(events.columns))
    return len(values) / (time.perf_counter() - started), (time.process_time() - cpu) / len(values)


def per_event_loop(values: list[bytes], onnx: bytes, batch: int) -> float:
    """Events/s of `parse_event` per record + score_feeds in a plain loop (the earlier ceiling)."""
    session = runtime.load_session(onnx)
    plan = runtime.InputPlan.of(session)
    started = time.perf_counter()
    for i in range(0, len(values), batch):
        evs = [parse_event(Record(str(j), v)) for j, v in enumerate(values[i:i + batch])]
        runtime.score_feeds(session, plan.feeds({n: [e.features[n] for e in evs] for n in FEATURES}))
    return len(values) / (time.perf_counter() - started)


def end_to_end(values: list[bytes], onnx: bytes, rate: float, batch: int, url: str,
               database_url: str | None = None, profile: dict | None = None) -> tuple[float, float, float]:
    """(events/s, p99 event-to-result ms, CPU seconds of this process per event) of the scorer on Redis
    Streams, writing to Redis or, with `database_url`, to the SQL sink; with `profile`, its windows
    measure per-feature drift."""
    client = redis.Redis.from_url(url)
    prefix = f"fdbench-{uuid.uuid4().hex[:8]}"

    def produce():
        # Appended in small pipelined chunks (a 5 ms tick at the rate): one XADD round trip per event
        # from a Python thread cannot keep up with a few thousand events/s on a loaded machine.
        started, chunk = time.monotonic(), max(int(rate / 200), 1) if rate > 0 else 1000
        for i in range(0, len(values), chunk):
            pipe = client.pipeline(transaction=False)
            for v in values[i:i + chunk]:
                pipe.xadd(f"{prefix}:in", {"data": v})
            pipe.execute()
            if rate > 0:
                time.sleep(max(started + (i + chunk) / rate - time.monotonic(), 0.0))

    if database_url is None:
        sink = RedisSink(client, f"{prefix}:out", f"{prefix}:dead", f"{prefix}:state")
    else:
        from flightdeck.streaming.sql import SqlSink, create_tables

        create_tables(database_url)
        sink = SqlSink(database_url, prefix)
    scorer = StreamScorer(Backend(RedisStreamSource(client, f"{prefix}:in"), sink),
                          ModelRouter(StaticModel(onnx, "1", profile=profile), "bench"), [Windows("tumbling", 60)],
                          ScorerConfig(batch_size=batch, poll_timeout_s=0.05))
    # rate 0: the backlog is written first, so the figure is the scorer's own throughput
    producer = threading.Thread(target=produce)
    if rate <= 0:
        producer.run()
    started, cpu = time.perf_counter(), time.process_time()
    if rate > 0:
        producer.start()
    scorer.run(max_records=len(values))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if rate > 0:
        producer.join()
    inputs = {i.decode(): int(i.split(b"-")[0]) for i, _ in client.xrange(f"{prefix}:in")}
    if database_url is None:
        lat = [int(i.split(b"-")[0]) - inputs[json.loads(f[b"data"])["offset"]]
               for i, f in client.xrange(f"{prefix}:out")]
    else:
        lat = _sql_latencies(database_url, prefix, inputs)
    client.delete(*client.keys(f"{prefix}*"))
    return len(values) / seconds, float(np.percentile(lat, 99)), cpu / len(values)


def _sql_latencies(database_url: str, consumer: str, inputs: dict[str, int]) -> list[int]:
    """Milliseconds from each input entry's append to its result row's `scored_at`; the rows go after."""
    import sqlalchemy as sa

    from flightdeck.streaming.sql import metadata, stream_results

    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            rows = conn.execute(sa.select(stream_results.c.source_offset, stream_results.c.scored_at).where(
                stream_results.c.consumer == consumer)).all()
            for table in metadata.sorted_tables:
                conn.execute(table.delete().where(table.c.consumer == consumer))
    finally:
        engine.dispose()
    return [round(r.scored_at.timestamp() * 1000) - inputs[r.source_offset] for r in rows]


@contextlib.contextmanager
def scratch_database(server: str):
    """A new, empty PostgreSQL database on `server` (a URL without a database name), dropped after."""
    import sqlalchemy as sa

    name = f"flightdeck_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server}/{name}"
    finally:
        from flightdeck.serving.db import dispose_engine

        dispose_engine(f"{server}/{name}")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def spark_engine(values: list[bytes], onnx: bytes, files: int = 10) -> float:
    """Events/s of the Spark example over `values` in `files` JSON-lines files (one availableNow run)."""
    import tempfile
    from pathlib import Path

    from flightdeck.streaming.engines.spark_job import build_query, local_session

    spark = local_session("flightdeck-bench")
    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "in"
        inbox.mkdir()
        step = -(-len(values) // files)
        for i in range(0, len(values), step):
            (inbox / f"part-{i}.jsonl").write_bytes(b"\n".join(values[i:i + step]) + b"\n")
        started = time.perf_counter()
        query = build_query(spark, str(inbox), f"{tmp}/out", f"{tmp}/ckpt", onnx, "1").trigger(availableNow=True).start()
        query.awaitTermination()
        seconds = time.perf_counter() - started
    spark.stop()
    return len(values) / seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=4000, help="input events/s (0 = as fast as possible)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3, help="(ceiling, backlog) pairs; the median ratio is reported")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--sink", choices=("redis", "sql"), default="redis",
                        help="where results go: Redis streams, or PostgreSQL through the SQL sink")
    parser.add_argument("--database-url", help="--sink sql: an existing database (default: a scratch one)")
    parser.add_argument("--postgres", default="postgresql+psycopg2://postgres@127.0.0.1:5432",
                        help="--sink sql without --database-url: the server the scratch database goes on")
    parser.add_argument("--no-feature-drift", action="store_true",
                        help="score without the training reference profile (no per-feature PSI in the windows)")
    parser.add_argument("--spark", action="store_true", help="also run the Spark Structured Streaming example")
    parser.add_argument("--json", metavar="PATH", help="also write the figures, the command and the date as JSON")
    args = parser.parse_args(argv)
    values, (onnx, profile) = list(generated_events(args.events)), _model()
    profile = None if args.no_feature_drift else profile
    per_event = per_event_loop(values, onnx, args.batch)
    with contextlib.ExitStack() as stack:
        database_url = None
        if args.sink == "sql":
            database_url = args.database_url or stack.enter_context(scratch_database(args.postgres))
        # Pairs of (ceiling, scorer from a backlog) measured back to back: on a shared machine the load
        # moves within seconds, and a pair sees about the same load. The ratio is the median pair's.
        pairs, cpus = [], []
        for _ in range(args.repeat):
            top, top_cpu = ceiling(values, onnx, args.batch)
            flat_out, _, flat_cpu = end_to_end(values, onnx, 0, args.batch, args.redis_url, database_url, profile)
            pairs.append((top, flat_out))
            cpus.append((top_cpu, flat_cpu))
        top, flat_out = sorted(pairs, key=lambda p: p[1] / p[0])[len(pairs) // 2]
        top_cpu, flat_cpu = sorted(cpus, key=lambda p: p[0] / p[1])[len(cpus) // 2]
        paced, p99, _ = end_to_end(values, onnx, args.rate, args.batch, args.redis_url, database_url, profile)
    if args.sink == "sql":
        print("sink: PostgreSQL (the SQL sink, one transaction per batch)")
    ratios = ", ".join(f"{b / c:.2f}" for c, b in pairs)
    print(f"ceiling (parse_batch + score_feeds, plain loop): {top:,.0f} events/s  (pairs' ratios: {ratios})")
    print(f"per-event loop (parse_event + score_feeds):      {per_event:,.0f} events/s  ({per_event / top:.2f} of the ceiling)")
    print(f"stream scorer, from a backlog:             {flat_out:,.0f} events/s  ratio {flat_out / top:.2f}")
    print(f"{'PASS' if flat_out / top >= TARGET_RATIO else 'MISS'}: backlog throughput >= {TARGET_RATIO} of the ceiling "
          f"({flat_out / top:.2f})")
    print(f"CPU of this process per event: ceiling {top_cpu * 1e6:.1f} us, scorer {flat_cpu * 1e6:.1f} us "
          f"({top_cpu / flat_cpu:.2f}; Redis's own work is not in it)")
    print(f"stream scorer at {args.rate:,.0f} events/s input:   {paced:,.0f} events/s, p99 event-to-result "
          f"{p99:.0f} ms")
    figures = {"sink": "postgresql" if args.sink == "sql" else "redis", "feature_drift": profile is not None,
               "events": args.events,
               "batch": args.batch, "ceiling_events_per_s": top, "per_event_loop_events_per_s": per_event, "scorer_backlog_events_per_s": flat_out,
               "ratio": flat_out / top, "pair_ratios": [b / c for c, b in pairs], "input_rate_events_per_s": args.rate, "scorer_paced_events_per_s": paced,
               "p99_event_to_result_ms": p99, "ceiling_cpu_us_per_event": top_cpu * 1e6,
               "scorer_cpu_us_per_event": flat_cpu * 1e6, "cpu_ratio": top_cpu / flat_cpu}
    if args.spark:
        engine = spark_engine(values, onnx)
        print(f"Spark Structured Streaming example:        {engine:,.0f} events/s  ratio {engine / top:.2f}")
        figures.update(spark_events_per_s=engine, spark_ratio=engine / top)
    if args.json:
        write_json(args.json, "streaming", argv, figures)
    return figures


if __name__ == "__main__":
    main()
