"""Stream engines on the same events: the Flink example (PyFlink, local mini-cluster), the Spark
Structured Streaming example (local[1]) and the stream scorer's parse-and-score, in events/s, each as
a ratio of the stream scorer's figure measured in the same run.

    python benchmarks/streaming_engines.py [--events 20000] [--small 2000] [--no-spark] [--json PATH]
                                           [--flink-python .venv-flink/bin/python]

Input: `--events` generated events (the stream scorer's wire format) in one JSON-lines file, read
by both engines; each engine also runs on the first `--small` of them, so that its steady rate,
(events − small) / (time − time on small), leaves out what a run pays whatever its size (JVM,
job graph, Python workers). Figures:

- stream scorer: `parse_event` per record and `score_feeds` per batch of `--batch` events, the
  stream scorer's own parse-and-score calls in a plain loop (no broker, no sink): the baseline;
- Spark: one availableNow run of `spark_job.build_query` to parquet per input, after an uncounted
  warm-up run (the SparkSession start and its first Python worker are not counted, a query's start is);
- Flink: one run of `flink_job` through the Flink venv's interpreter. Two figures: the job (from
  submission to the last collected record: job graph, Python workers, the scoring, the windows) and
  the whole command (also the JVM and the mini-cluster start, what a test or a CLI run pays).

Targets (PASS/MISS): each engine's steady rate reaches at least `--target` of the stream scorer's
events/s.
The engines score one event at a time (Flink: one Python function call per record over Beam's
gRPC) or per Arrow batch (Spark), and pay a JVM hand-over that the plain loop does not.
Timings are noisy on a shared machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from flightdeck import runtime
from flightdeck.data.schema import FEATURES
from flightdeck.devtools.results import write_json
from flightdeck.streaming.events import Record, parse_event
from flightdeck.streaming.producer import generated_events

REPO = Path(__file__).resolve().parents[1]


def _model() -> bytes:
    """A logistic regression on generated data, exported to ONNX (as train_register exports it)."""
    from flightdeck.data.generator import generate_partition
    from flightdeck.training.export import to_onnx
    from flightdeck.training.train import fit_pipeline

    training = generate_partition("2026-01-15", rows=2000, seed=1)
    return to_onnx(fit_pipeline(training, "logistic_regression", seed=1), "bench").SerializeToString()


def scorer_loop(values: list[bytes], onnx: bytes, batch: int) -> float:
    """Events/s of the stream scorer's parse-and-score: parse_event per record, score_feeds per batch."""
    session = runtime.load_session(onnx)
    plan = runtime.InputPlan.of(session)
    started = time.perf_counter()
    for i in range(0, len(values), batch):
        events = [parse_event(Record(str(i + j), v)) for j, v in enumerate(values[i:i + batch])]
        runtime.score_feeds(session, plan.feeds({name: [e.features[name] for e in events] for name in FEATURES}))
    return len(values) / (time.perf_counter() - started)


def spark_engine(inboxes: dict[int, Path], onnx: bytes, work: Path) -> dict[int, float]:
    """Seconds of one availableNow run of the Spark example over each inbox (events -> folder), after one
    uncounted run over the first (the session's first query also starts its Python worker)."""
    from flightdeck.streaming.engines.spark_job import build_query, local_session

    spark = local_session("flightdeck-bench")
    seconds = {}
    try:
        for name, (n, inbox) in [("warm-up", next(iter(inboxes.items()))), *(("run", i) for i in inboxes.items())]:
            started = time.perf_counter()
            query = build_query(spark, str(inbox), str(work / f"spark-out-{name}-{n}"),
                                str(work / f"spark-ckpt-{name}-{n}"), onnx, "1")
            query.trigger(availableNow=True).start().awaitTermination()
            if name != "warm-up":
                seconds[n] = time.perf_counter() - started
    finally:
        spark.stop()
    return seconds


def flink_engine(python: str, inbox: Path, n: int, model: Path, work: Path, lateness: float) -> dict:
    """The Flink example's summary (outputs, job seconds) and the whole command's seconds."""
    started = time.perf_counter()
    done = subprocess.run([python, "-m", "flightdeck.streaming.engines.flink_job", "--input", str(inbox),
                           "--output", str(work / f"flink-out-{n}"), "--model-file", str(model),
                           "--model-version", "1", "--window-size", "3600", "--allowed-lateness", str(lateness)],
                          capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"the Flink job failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    if summary["results"] != n:
        raise SystemExit(f"the Flink job scored {summary['results']} of {n} events: {summary}")
    return {**summary, "command_seconds": seconds}


def _steady(n: int, small: int, seconds: float, small_seconds: float) -> float | None:
    """Events/s of the events beyond the small run (None when the larger run was not slower: noise)."""
    return (n - small) / (seconds - small_seconds) if seconds > small_seconds else None


def _shown(steady: float | None, base: float) -> str:
    return "steady n/a (the larger run was not slower)" if steady is None else \
        f"steady {steady:,.0f} events/s, ratio {steady / base:.3f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=2_000, help="events of the run that measures fixed costs")
    parser.add_argument("--batch", type=int, default=500, help="the stream scorer's batch size")
    parser.add_argument("--flink-python", default=os.environ.get("FLIGHTDECK_FLINK_PYTHON",
                                                                 str(REPO / ".venv-flink" / "bin" / "python")),
                        help="the Flink venv's interpreter (make .venv-flink/.installed builds it)")
    parser.add_argument("--lateness", type=float, default=600.0, help="the Flink job's watermark delay, seconds")
    parser.add_argument("--target", type=float, default=0.1,
                        help="each engine's steady events/s as a share of the stream scorer's, at least")
    parser.add_argument("--no-spark", action="store_true", help="leave the Spark example out")
    parser.add_argument("--json", metavar="PATH", help="also write the figures, the command and the date as JSON")
    args = parser.parse_args(argv)
    if not Path(args.flink_python).is_file():
        parser.exit(2, f"error: --flink-python {args.flink_python} does not exist. Fix: build the Flink venv "
                       "(make .venv-flink/.installed) or point --flink-python at its interpreter.\n")
    if not 0 < args.small < args.events:
        parser.exit(2, f"error: --small {args.small} must be between 0 and --events {args.events}.\n")
    load_before = os.getloadavg()[0]
    print(f"load average {load_before:.2f}; {args.events:,} events (fixed costs from {args.small:,})", flush=True)
    values, onnx = list(generated_events(args.events)), _model()
    n, small = args.events, args.small
    figures: dict = {"events": n, "small": small, "batch": args.batch, "target": args.target}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inboxes, model = {n: work / "in", small: work / "in-small"}, work / "model.onnx"
        for size, inbox in inboxes.items():
            inbox.mkdir()
            (inbox / "events.jsonl").write_bytes(b"\n".join(values[:size]) + b"\n")
        model.write_bytes(onnx)
        base = max(scorer_loop(values, onnx, args.batch), scorer_loop(values, onnx, args.batch))  # better of two
        figures["scorer_events_per_s"] = base
        print(f"stream scorer parse-and-score (plain loop): {base:>9,.0f} events/s  (baseline)", flush=True)
        if not args.no_spark:
            spark = spark_engine({small: inboxes[small], n: inboxes[n]}, onnx, work)
            steady = _steady(n, small, spark[n], spark[small])
            figures.update(spark_seconds=spark[n], spark_small_seconds=spark[small], spark_events_per_s=n / spark[n],
                           spark_steady_events_per_s=steady, spark_ratio=steady and steady / base)
            print(f"Spark example (availableNow query):         {n / spark[n]:>9,.0f} events/s  ({spark[n]:.1f} s; "
                  f"{spark[small]:.1f} s for {small:,}); {_shown(steady, base)}", flush=True)
        runs = {size: flink_engine(args.flink_python, inboxes[size], size, model, work, args.lateness)
                for size in (small, n)}
        big = runs[n]
        steady = _steady(n, small, big["seconds"], runs[small]["seconds"])
        figures.update(flink_job_seconds=big["seconds"], flink_small_job_seconds=runs[small]["seconds"],
                       flink_command_seconds=big["command_seconds"], flink_job_events_per_s=n / big["seconds"],
                       flink_steady_events_per_s=steady, flink_ratio=steady and steady / base, flink_windows=big["windows"],
                       flink_late_events=big["late_events"])
        print(f"Flink example (job on the mini-cluster):    {n / big['seconds']:>9,.0f} events/s  "
              f"({big['seconds']:.1f} s; {runs[small]['seconds']:.1f} s for {small:,}); {_shown(steady, base)}")
        print(f"Flink example, whole command: {big['command_seconds']:.1f} s (JVM and mini-cluster start too; "
              f"{big['windows']} windows, {big['late_events']} late events)")
    for name in ("spark", "flink"):
        if name == "spark" and args.no_spark:
            continue
        if figures.get(f"{name}_ratio") is not None:
            ratio = figures[f"{name}_ratio"]
            print(f"{'PASS' if ratio >= args.target else 'MISS'}: {name.capitalize()} steady rate >= {args.target} "
                  f"of the stream scorer's events/s ({ratio:.3f})")
        else:
            print(f"n/a: {name.capitalize()} steady rate (the larger run was not slower; rerun on a quieter machine)")
    figures["load_average"] = (load_before, os.getloadavg()[0])
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (2 cores shared: noisy)")
    if args.json:
        write_json(args.json, "streaming_engines", argv, figures)
    return figures


if __name__ == "__main__":
    main()
