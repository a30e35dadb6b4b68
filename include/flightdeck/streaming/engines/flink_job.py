"""Flink example on PyFlink (Flink's DataStream API in Python): score feature events with the same
ONNX function as batch, per-entity keyed state, event-time windows behind a watermark.

    python -m flightdeck.streaming.engines.flink_job --input events/ --output out/ \
        --model-file model.onnx --model-version 3 [--window-size 3600] [--window-slide 900] \
        [--allowed-lateness 600]

It runs on Flink's local mini-cluster (a JVM started by PyFlink; Java 11+) with the Python
functions in Python worker processes started from *this* interpreter (`python.executable`):
PyFlink pins numpy 2.1 and pandas 2.2, so it lives in a venv of its own (`make .venv-flink/.installed`,
requirements-flink.txt) with onnxruntime and this package (no other dependency); this module
imports pyflink only inside functions, so the rest of flightdeck never needs it.

The dataflow, on the stream scorer's wire format (one JSON event per line, the files the Spark
example reads):

- source: Flink's FileSource over a folder of JSON-lines files (bounded: the files there now);
- parse and score: `streaming.events.parse_event` validates each line (a bad line goes to a side
  output with its reason, the stream scorer's dead letter) and `runtime.InputPlan.feeds` +
  `runtime.score_feeds` score it with the model loaded once per Python worker;
- watermark: event time from the event, bounded out-of-orderness of `--allowed-lateness`
  (the stream scorer's watermark: the largest event time seen minus the lateness);
- keyed state: keyed by entity, a ValueState holds the entity's event count and rolling mean
  score (the stream scorer's `entity_events` / `entity_mean_score`);
- windows: keyed by model version, tumbling (or sliding) event-time windows aligned on the epoch
  like `streaming.windows.Windows`, with count, mean, standard deviation and the shared score
  bins (`stats.score_bin`); an event behind the watermark goes to a late side output, counted,
  never silently lost.

The watermark belongs to the source reader, which takes a folder's files one at a time in no fixed
order: events of a file read after a later file are late unless `--allowed-lateness` covers the
gap. Give a run one file, or an `--allowed-lateness` as long as the files' event-time span.

Sink: Flink's FileSink, one folder of JSON-lines files per output under `--output` (results,
windows, dead_letters, late_events); it commits files at checkpoints (exactly once), the last
one when the input ends. (`execute_and_collect` would pull every record to the client, one py4j
round trip each: 20,000 events took about 1.5x as long that way, on a loaded machine.)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from flightdeck import runtime
from flightdeck.data.schema import FEATURES
from flightdeck.errors import ConfigError
from flightdeck.stats import N_SCORE_BINS, score_bin
from flightdeck.streaming.events import InvalidEventError, Record, parse_event

OUTPUTS = ("results", "windows", "dead_letters", "late_events")  # one folder each under --output


def event_millis(event_time: float) -> int:
    """An event time (epoch seconds) as Flink's timestamp (epoch milliseconds), rounded down, so an
    event lands in the same window as `Windows.starts` puts it."""
    return math.floor(event_time * 1000)


def _functions():
    """The job's Flink functions. Defined here, not at module level, so that importing this module
    does not need pyflink; PyFlink pickles them by value into the job."""
    from pyflink.common import Types
    from pyflink.common.watermark_strategy import TimestampAssigner
    from pyflink.datastream import OutputTag
    from pyflink.datastream.functions import (
        AggregateFunction,
        KeyedProcessFunction,
        ProcessFunction,
        ProcessWindowFunction,
    )
    from pyflink.datastream.state import ValueStateDescriptor

    dead_letters = OutputTag("dead-letters", Types.STRING())

    class ParseAndScore(ProcessFunction):
        """A text line in; (event_id, entity_id, event_time, score) out, or a dead letter to the side."""

        def __init__(self, onnx_bytes: bytes, version: str):
            self.onnx_bytes, self.version = onnx_bytes, version
            self.session = self.plan = None

        def open(self, runtime_context):
            self.session = runtime.load_session(self.onnx_bytes)  # once per Python worker
            self.plan = runtime.InputPlan.of(self.session)

        def process_element(self, value, ctx):
            try:
                event = parse_event(Record("", value.encode()))
                feeds = self.plan.feeds({name: [event.features[name]] for name in FEATURES})
                score = float(runtime.score_feeds(self.session, feeds)[0])
            except InvalidEventError as exc:
                yield dead_letters, json.dumps({"error": str(exc), "value": value})
            except runtime.InvalidInputError as exc:  # parse_event passed it, so rare
                yield dead_letters, json.dumps({"error": f"model refused the event: {exc}", "value": value})
            else:
                yield event.event_id, event.entity_id, event.event_time, score

    class EventTime(TimestampAssigner):
        def extract_timestamp(self, value, record_timestamp) -> int:
            return event_millis(value[2])

    class EntityState(KeyedProcessFunction):
        """Per-entity keyed state: event count and rolling mean score; one result per event."""

        def __init__(self, version: str, threshold: float, alpha: float):
            self.version, self.threshold, self.alpha = version, threshold, alpha
            self.state = None

        def open(self, runtime_context):
            self.state = runtime_context.get_state(
                ValueStateDescriptor("entity", Types.TUPLE([Types.LONG(), Types.DOUBLE()])))

        def process_element(self, value, ctx):
            event_id, entity, event_time, score = value
            n, mean = self.state.value() or (0, score)
            n, mean = n + 1, score if n == 0 else (1 - self.alpha) * mean + self.alpha * score
            self.state.update((n, mean))
            yield json.dumps({"event_id": event_id, "entity_id": entity, "event_time": event_time,
                              "score": score, "label": int(score >= self.threshold),
                              "model_version": self.version, "entity_events": n, "entity_mean_score": mean})

    class ScoreStats(AggregateFunction):
        """A window's running count, score sum, sum of squares and score bins."""

        def create_accumulator(self):
            return [0, 0.0, 0.0, [0] * N_SCORE_BINS]

        def add(self, value, acc):
            score = value[3]
            acc[0] += 1
            acc[1] += score
            acc[2] += score * score
            acc[3][score_bin(score)] += 1
            return acc

        def get_result(self, acc):
            return acc

        def merge(self, a, b):
            return [a[0] + b[0], a[1] + b[1], a[2] + b[2], [x + y for x, y in zip(a[3], b[3], strict=True)]]

    class WindowRecord(ProcessWindowFunction):
        """The aggregate as a record shaped like the stream scorer's window records."""

        def __init__(self, kind: str):
            self.kind = kind

        def process(self, key, context, elements):
            count, total, squares, bins = next(iter(elements))
            mean = total / count
            window = context.window()
            yield json.dumps({"kind": self.kind, "start": window.start / 1000, "end": window.end / 1000,
                              "model_version": key, "count": count, "score_mean": mean,
                              "score_std": math.sqrt(max(squares / count - mean * mean, 0.0)),
                              "score_bins": bins, "late_events": 0})

    return dead_letters, ParseAndScore, EventTime, EntityState, ScoreStats, WindowRecord


def check_options(input_dir: str, onnx_bytes: bytes, window_size_s: float, window_slide_s: float | None,
                  allowed_lateness_s: float, entity_alpha: float) -> None:
    """ConfigError naming the option and the fix, before a JVM is started for nothing."""
    if not Path(input_dir).is_dir():
        raise ConfigError("--input", f"{input_dir} is not a folder", "point it at a folder of JSON-lines files")
    slide_s = window_size_s if window_slide_s is None else window_slide_s
    if window_size_s <= 0 or slide_s <= 0 or slide_s > window_size_s:
        raise ConfigError("--window-size/--window-slide", f"size {window_size_s} s, slide {slide_s} s",
                          "use size > 0 and 0 < slide <= size")
    if allowed_lateness_s < 0:
        raise ConfigError("--allowed-lateness", f"{allowed_lateness_s} s", "use 0 or more seconds")
    if not 0 < entity_alpha <= 1:
        raise ConfigError("--entity-alpha", f"{entity_alpha}", "use 0 < alpha <= 1")
    try:
        runtime.load_session(onnx_bytes)
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises several kinds for a bad file
        raise ConfigError("--model-file", f"not an ONNX model ONNX Runtime can load ({type(exc).__name__})",
                          "point it at the model.onnx a registered version carries") from None


def build_job(env, input_dir: str, onnx_bytes: bytes, version: str, threshold: float = 0.5,
              window_size_s: float = 3600.0, window_slide_s: float | None = None,
              allowed_lateness_s: float = 0.0, entity_alpha: float = 0.2, window_kind: str = "flink") -> dict:
    """Add the job to `env`; returns its four output streams of JSON strings, by name (OUTPUTS)."""
    from pyflink.common import Duration, Time, Types, WatermarkStrategy
    from pyflink.datastream import OutputTag
    from pyflink.datastream.connectors.file_system import FileSource, StreamFormat
    from pyflink.datastream.window import SlidingEventTimeWindows, TumblingEventTimeWindows

    check_options(input_dir, onnx_bytes, window_size_s, window_slide_s, allowed_lateness_s, entity_alpha)
    slide_s = window_size_s if window_slide_s is None else window_slide_s
    dead_letters, ParseAndScore, EventTime, EntityState, ScoreStats, WindowRecord = _functions()
    late = OutputTag("late-events", Types.PICKLED_BYTE_ARRAY())

    source = FileSource.for_record_stream_format(StreamFormat.text_line_format(), str(input_dir)).build()
    lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "json-lines")
    scored = lines.process(ParseAndScore(onnx_bytes, version), output_type=Types.PICKLED_BYTE_ARRAY())
    watermarks = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(int(allowed_lateness_s * 1000)))
                  .with_timestamp_assigner(EventTime()))
    timed = scored.assign_timestamps_and_watermarks(watermarks)

    results = (timed.key_by(lambda v: v[1], key_type=Types.STRING())
               .process(EntityState(version, threshold, entity_alpha), output_type=Types.STRING()))
    size_ms, slide_ms = int(window_size_s * 1000), int(slide_s * 1000)
    assigner = (TumblingEventTimeWindows.of(Time.milliseconds(size_ms)) if slide_ms == size_ms
                else SlidingEventTimeWindows.of(Time.milliseconds(size_ms), Time.milliseconds(slide_ms)))
    windows = (timed.key_by(lambda _: version, key_type=Types.STRING())
               .window(assigner).side_output_late_data(late)
               .aggregate(ScoreStats(), WindowRecord(window_kind), output_type=Types.STRING()))
    late_events = windows.get_side_output(late).map(
        lambda v: json.dumps({"event_id": v[0], "entity_id": v[1], "event_time": v[2], "score": v[3]}),
        output_type=Types.STRING())
    return {"results": results, "windows": windows, "dead_letters": scored.get_side_output(dead_letters),
            "late_events": late_events}


def local_environment(parallelism: int = 1):
    """A StreamExecutionEnvironment on the local mini-cluster whose Python workers run this interpreter
    (without `python.executable` they start the system's `python`, which has no pyflink).

    Process mode, Flink's default: thread mode (`python.execution-mode: thread`, Python embedded in the
    JVM through pemja) does not see a venv's packages (no pemja, then no flightdeck: the editable
    install's .pth file is not read), and with PYTHONPATH set by hand the job hung."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    config = Configuration()
    config.set_string("python.executable", sys.executable)
    config.set_string("python.client.executable", sys.executable)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(parallelism)
    return env


def _file_sink(folder: Path, name: str):
    """Flink's FileSink: JSON lines into `folder`, files committed by checkpoints (exactly once)."""
    from pyflink.common.serialization import Encoder
    from pyflink.datastream.connectors.file_system import BucketAssigner, FileSink, OutputFileConfig

    return (FileSink.for_row_format(str(folder), Encoder.simple_string_encoder())
            .with_bucket_assigner(BucketAssigner.base_path_bucket_assigner())
            .with_output_file_config(OutputFileConfig.builder().with_part_prefix(name).with_part_suffix(".jsonl").build())
            .build())


def read_output(output_dir: str | Path, name: str) -> list[str]:
    """The committed lines of one output (its in-progress files are hidden, and skipped)."""
    return [line for path in sorted((Path(output_dir) / name).glob(f"{name}-*.jsonl"))
            for line in path.read_text().splitlines()]


def run(input_dir: str, output_dir: str, onnx_bytes: bytes, version: str, parallelism: int = 1,
        checkpoint_ms: int = 1000, **options) -> dict:
    """Build the job, run it to the end of the input on the mini-cluster with each output (OUTPUTS) in
    a folder of JSON-lines files under `output_dir`; returns the line counts and the job's seconds."""
    check_options(input_dir, onnx_bytes, options.get("window_size_s", 3600.0), options.get("window_slide_s"),
                  options.get("allowed_lateness_s", 0.0), options.get("entity_alpha", 0.2))
    out = Path(output_dir)
    used = [name for name in OUTPUTS if (out / name).is_dir() and any((out / name).iterdir())]
    if used:
        raise ConfigError("--output", f"{output_dir} already holds {', '.join(used)}", "use a new folder")
    env = local_environment(parallelism)
    # The file sink commits its files at checkpoints, the last one when the input ends.
    env.enable_checkpointing(checkpoint_ms)
    for name, stream in build_job(env, input_dir, onnx_bytes, version, **options).items():
        stream.sink_to(_file_sink(out / name, name)).name(name)
    started = time.monotonic()
    env.execute("flightdeck-flink-scoring")
    seconds = time.monotonic() - started
    return {**{name: len(read_output(out, name)) for name in OUTPUTS}, "seconds": round(seconds, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="folder of JSON-lines event files")
    parser.add_argument("--output", required=True, help="a new folder: results/, windows/, dead_letters/ and "
                                                         "late_events/ of JSON-lines files go in it")
    parser.add_argument("--model-file", required=True, help="the ONNX model")
    parser.add_argument("--model-version", default="file")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--window-size", type=float, default=3600.0, help="window size, seconds")
    parser.add_argument("--window-slide", type=float, default=None, help="slide, seconds (default: tumbling)")
    parser.add_argument("--allowed-lateness", type=float, default=0.0, help="watermark delay, seconds")
    parser.add_argument("--entity-alpha", type=float, default=0.2, help="weight of the newest score in an "
                                                                         "entity's rolling mean")
    parser.add_argument("--parallelism", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        onnx_bytes = Path(args.model_file).read_bytes()
    except OSError as exc:
        parser.exit(2, f"error: cannot read --model-file {args.model_file} ({exc})\n")
    try:
        summary = run(args.input, args.output, onnx_bytes, args.model_version, args.parallelism,
                      threshold=args.threshold, window_size_s=args.window_size, window_slide_s=args.window_slide,
                      allowed_lateness_s=args.allowed_lateness, entity_alpha=args.entity_alpha)
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
