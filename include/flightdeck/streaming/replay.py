"""Replay a range of a stream through the batch path (re-score history after a model change).

The range is entry ids (`start`/`end`, inclusive, Redis `XRANGE` syntax) or a time range
(epoch milliseconds: a Redis entry id is its append time in ms). On Kinesis (`replay_kinesis`)
the range is arrival times in epoch milliseconds ('-' and '+' for the oldest and newest
record kept), read parent shards before their children. Valid events are written
to one parquet file and scored by `flightdeck.batch.scoring.score_file_to`, the batch
path, so replayed scores are batch scores of the same artifact; invalid events are
counted with their reasons, not dropped silently.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from flightdeck.data.schema import ENTITY_ID, FEATURES
from flightdeck.errors import ConfigError
from flightdeck.streaming.events import InvalidEventError, Record, parse_event


def read_range(client, stream: str, start: str = "-", end: str = "+", count: int = 1000) -> list[Record]:
    """Every entry of `stream` between `start` and `end` (ids or ms times), in pages of `count`."""
    records: list[Record] = []
    cursor = start
    while True:
        page = client.xrange(stream, min=cursor, max=end, count=count)
        records.extend(Record(i.decode(), f.get(b"data", b"")) for i, f in page)
        if len(page) < count:
            return records
        cursor = f"({page[-1][0].decode()}"


def replay(redis_url: str, stream: str, start: str, end: str, model, output_dir: Path, run_id: str,
           threshold: float) -> dict:
    """Score a stream range with the batch path into `output_dir/replay-<run_id>.parquet`.

    `model` is a `flightdeck.batch.scoring.ModelArtifact`. Returns counts and the file.
    """
    from flightdeck.streaming.redis_streams import connect

    client = connect(redis_url)
    records = read_range(client, stream, start, end)
    client.close()
    return _replay_records(records, stream, start, end, model, output_dir, run_id, threshold)


def replay_kinesis(stream: str, start: str, end: str, model, output_dir: Path, run_id: str, threshold: float,
                   kinesis=None, region: str | None = None) -> dict:
    """`replay` for a Kinesis stream: the records that arrived between `start` and `end` (epoch ms)."""
    from flightdeck.streaming import kinesis as kinesis_adapter

    if kinesis is None:
        kinesis, _ = kinesis_adapter.clients(region)
    kinesis_adapter.check_stream_name("stream", stream)
    records = kinesis_adapter.read_range(kinesis, stream, start, end)
    return _replay_records(records, stream, start, end, model, output_dir, run_id, threshold)


def _replay_records(records: list[Record], stream: str, start: str, end: str, model, output_dir: Path, run_id: str,
                    threshold: float) -> dict:
    from flightdeck import runtime
    from flightdeck.batch.scoring import ScoringJob, score_file_to

    events, reasons = [], Counter()
    for record in records:
        try:
            events.append(parse_event(record))
        except InvalidEventError as exc:
            reasons[str(exc).split(".")[0]] += 1
    if not events:
        raise ConfigError("range", f"{stream} holds no valid event between {start} and {end}",
                          "pick a range that has events (entry ids or epoch milliseconds)")
    frame = pd.DataFrame([{ENTITY_ID: e.entity_id, **e.features} for e in events], columns=[ENTITY_ID, *FEATURES])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / f"replay-{run_id}.parquet"
    job = ScoringJob(ds=datetime.fromtimestamp(events[0].event_time, UTC).date(), input_files=[Path("events.parquet")],
                     output_root=output_dir, model=model, run_id=run_id, scored_at=datetime.now(UTC),
                     threshold=threshold)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "events.parquet"
        frame.to_parquet(source, index=False)
        rows = score_file_to(source, out, runtime.load_session(model.onnx_bytes), job)
    return {"stream": stream, "start": start, "end": end, "events": len(records), "scored": rows,
            "invalid": dict(reasons), "model_version": model.version, "output": str(out),
            "first_offset": records[0].offset, "last_offset": records[-1].offset,
            "summary": json.dumps(dict(reasons))}
