"""Spark Structured Streaming example: score feature events with the same ONNX function as batch.

    python -m flightdeck.streaming.engines.spark_job --input events/ --output scores/ \
        --checkpoint ckpt/ --model-file model.onnx --model-version 3 [--available-now]

Source: Spark's file source on a folder of JSON-lines files (one event per line, the
stream scorer's wire format), read as text so that a bad line is validated by the same
`parse_event` as the stream scorer and kept with its reason instead of failing the query.
Scoring: `mapInPandas`, per Arrow batch, `runtime.InputPlan.feeds` + `runtime.score_feeds`;
the model travels to the executors as broadcast bytes and is loaded once per Python worker.
Sink: parquet files; the file sink with a checkpoint location commits each micro-batch
exactly once (Spark's own guarantee), so a restarted query neither loses nor repeats a line.

pyspark is an optional extra (it needs Java 17+); the rest of flightdeck does not import it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from flightdeck import runtime
from flightdeck.data.schema import FEATURES
from flightdeck.errors import ConfigError
from flightdeck.streaming.events import InvalidEventError, Record, parse_event

OUTPUT_SCHEMA = ("event_id string, entity_id string, event_time double, score double, label int, "
                 "model_version string, error string, value string")

_SESSIONS: dict[str, tuple] = {}  # model version -> (session, plan), one per Python worker


def _loaded(version: str, onnx_bytes: bytes) -> tuple:
    if version not in _SESSIONS:
        session = runtime.load_session(onnx_bytes)
        _SESSIONS[version] = (session, runtime.InputPlan.of(session))
    return _SESSIONS[version]


def score_frames(frames: Iterator[pd.DataFrame], onnx_bytes: bytes, version: str,
                 threshold: float) -> Iterator[pd.DataFrame]:
    """mapInPandas body: text lines in (`value`), one scored row or one dead letter per line out."""
    session, plan = _loaded(version, onnx_bytes)
    for frame in frames:
        events, rows = [], []
        for value in frame["value"]:
            try:
                events.append(parse_event(Record("", value.encode())))
            except InvalidEventError as exc:
                rows.append({"error": str(exc), "value": value})
        if events:
            columns = {name: [e.features[name] for e in events] for name in FEATURES}
            try:
                scores = runtime.score_feeds(session, plan.feeds(columns))
            except runtime.InvalidInputError as exc:  # parse_event passed it, so rare: keep the batch
                rows += [{"event_id": e.event_id, "error": f"model refused the batch: {exc}"} for e in events]
            else:
                rows += [{"event_id": e.event_id, "entity_id": e.entity_id, "event_time": e.event_time,
                          "score": float(s), "label": int(s >= threshold), "model_version": version}
                         for e, s in zip(events, scores, strict=True)]
        out = pd.DataFrame(rows, columns=["event_id", "entity_id", "event_time", "score", "label",
                                          "model_version", "error", "value"], dtype=object)
        # Plain object strings: pyspark 4.3 cannot convert pandas 3's Arrow-backed string columns.
        yield out.astype({"event_time": "float64", "score": "float64", "label": "Int32"})


def build_query(spark, input_dir: str, output_dir: str, checkpoint: str, onnx_bytes: bytes, version: str,
                threshold: float = 0.5, max_files_per_trigger: int | None = None):
    """A DataStreamWriter (not started): JSON lines in `input_dir` → scored parquet in `output_dir`."""
    if not Path(input_dir).is_dir():
        raise ConfigError("--input", f"{input_dir} is not a folder", "point it at a folder of JSON-lines files")
    model = spark.sparkContext.broadcast(onnx_bytes)  # shipped once per executor, not per task

    def score(frames):
        return score_frames(frames, model.value, version, threshold)

    reader = spark.readStream.format("text")
    if max_files_per_trigger:
        reader = reader.option("maxFilesPerTrigger", max_files_per_trigger)
    scored = reader.load(input_dir).mapInPandas(score, OUTPUT_SCHEMA)
    return (scored.writeStream.format("parquet").option("path", output_dir)
            .option("checkpointLocation", checkpoint).outputMode("append"))


def local_session(app: str = "flightdeck-stream"):
    """A small local SparkSession (one core, no UI) whose Python workers use this interpreter."""
    import os

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (SparkSession.builder.master("local[1]").appName(app)
            .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")
            .getOrCreate())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="folder of JSON-lines event files")
    parser.add_argument("--output", required=True, help="parquet output folder")
    parser.add_argument("--checkpoint", required=True, help="Spark checkpoint folder (exactly-once bookkeeping)")
    parser.add_argument("--model-file", required=True, help="the ONNX model")
    parser.add_argument("--model-version", default="file")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--available-now", action="store_true", help="process what is there, then stop")
    args = parser.parse_args(argv)
    try:
        onnx_bytes = Path(args.model_file).read_bytes()
    except OSError as exc:
        parser.exit(2, f"error: cannot read --model-file {args.model_file} ({exc})\n")
    spark = local_session()
    writer = build_query(spark, args.input, args.output, args.checkpoint, onnx_bytes, args.model_version,
                         args.threshold)
    query = (writer.trigger(availableNow=True) if args.available_now else writer).start()
    query.awaitTermination()


if __name__ == "__main__":
    main()
