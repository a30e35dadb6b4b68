"""Stream scorer benchmark: end-to-end events/s and p99 event-to-result latency on Redis Streams,
against the ceiling: the same parsing + the one scoring function in a plain loop (no broker).

    python benchmarks/streaming.py --events 20000 --rate 4000 [--spark]

`--spark` adds the Spark Structured Streaming example (local[1], file source, one
availableNow run over the same events; the SparkSession start is not counted).

Latency = output entry id − input entry id (both Redis append times, one clock). Needs Redis.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

import numpy as np
import redis

from flightdeck import runtime
from flightdeck.data.schema import FEATURES
from flightdeck.streaming.broker import Backend
from flightdeck.streaming.events import Record, parse_event
from flightdeck.streaming.models import ModelRouter, StaticModel
from flightdeck.streaming.producer import generated_events
from flightdeck.streaming.redis_streams import RedisSink, RedisStreamSource
from flightdeck.streaming.scorer import ScorerConfig, StreamScorer
from flightdeck.streaming.windows import Windows


def _model() -> bytes:
    from flightdeck.data.generator import generate_partition
    from flightdeck.training.export import to_onnx
    from flightdeck.training.train import fit_pipeline

    return to_onnx(fit_pipeline(generate_partition("2026-01-15", rows=2000, seed=1), "logistic_regression", seed=1),
                   "bench").SerializeToString()


def ceiling(values: list[bytes], onnx: bytes, batch: int) -> float:
    """Events/s of parse + score_feeds in a plain loop."""
    session = runtime.load_session(onnx)
    plan = runtime.InputPlan.of(session)
    started = time.perf_counter()
    for i in range(0, len(values), batch):
        evs = [parse_event(Record(str(j), v)) for j, v in enumerate(values[i:i + batch])]
        runtime.score_feeds(session, plan.feeds({n: [e.features[n] for e in evs] for n in FEATURES}))
    return len(values) / (time.perf_counter() - started)


def end_to_end(values: list[bytes], onnx: bytes, rate: float, batch: int, url: str) -> tuple[float, float]:
    client = redis.Redis.from_url(url)
    prefix = f"fdbench-{uuid.uuid4().hex[:8]}"

    def produce():
        started = time.monotonic()
        for i, v in enumerate(values):
            client.xadd(f"{prefix}:in", {"data": v})
            if rate > 0:
                time.sleep(max(started + (i + 1) / rate - time.monotonic(), 0.0))

    sink = RedisSink(client, f"{prefix}:out", f"{prefix}:dead", f"{prefix}:state")
    scorer = StreamScorer(Backend(RedisStreamSource(client, f"{prefix}:in"), sink),
                          ModelRouter(StaticModel(onnx, "1"), "bench"), [Windows("tumbling", 60)],
                          ScorerConfig(batch_size=batch, poll_timeout_s=0.05))
    # rate 0: the backlog is written first, so the figure is the scorer's own throughput
    producer = threading.Thread(target=produce)
    if rate <= 0:
        producer.run()
    started = time.perf_counter()
    if rate > 0:
        producer.start()
    scorer.run(max_records=len(values))
    seconds = time.perf_counter() - started
    if rate > 0:
        producer.join()
    import json
    inputs = {i.decode(): int(i.split(b"-")[0]) for i, _ in client.xrange(f"{prefix}:in")}
    lat = [int(i.split(b"-")[0]) - inputs[json.loads(f[b"data"])["offset"]] for i, f in client.xrange(f"{prefix}:out")]
    client.delete(*client.keys(f"{prefix}*"))
    return len(values) / seconds, float(np.percentile(lat, 99))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=4000, help="input events/s (0 = as fast as possible)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--spark", action="store_true", help="also run the Spark Structured Streaming example")
    args = parser.parse_args()
    values, onnx = list(generated_events(args.events)), _model()
    top = ceiling(values, onnx, args.batch)
    flat_out, _ = end_to_end(values, onnx, 0, args.batch, args.redis_url)
    paced, p99 = end_to_end(values, onnx, args.rate, args.batch, args.redis_url)
    print(f"ceiling (parse + score_feeds, plain loop): {top:,.0f} events/s")
    print(f"stream scorer, from a backlog:             {flat_out:,.0f} events/s  ratio {flat_out / top:.2f}")
    print(f"stream scorer at {args.rate:,.0f} events/s input:   {paced:,.0f} events/s, p99 event-to-result "
          f"{p99:.0f} ms")
    if args.spark:
        engine = spark_engine(values, onnx)
        print(f"Spark Structured Streaming example:        {engine:,.0f} events/s  ratio {engine / top:.2f}")


if __name__ == "__main__":
    main()
