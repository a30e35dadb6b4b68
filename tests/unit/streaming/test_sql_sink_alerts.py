"""The SQL sink keeps drift alerts with the batch that closed their window (SQLite here)."""

from __future__ import annotations

import json

import sqlalchemy as sa

from flightdeck.streaming.broker import Checkpoint, CommitBatch
from flightdeck.streaming.sql import SqlSink, create_tables, stream_alerts


def test_alerts_are_committed_with_the_batch_and_a_replayed_batch_does_not_duplicate_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'stream.db'}"
    create_tables(url)
    sink = SqlSink(url, "scorer-a")
    alert = {"alert": "score_drift", "kind": "tumbling", "start": 60.0, "end": 120.0, "model_version": "2",
             "score_psi": 0.41, "late_events": 0}
    batch = CommitBatch([], [], {}, [], Checkpoint("5-0", 5, {}), [alert])
    sink.commit(batch)
    sink.commit(batch)  # the same batch again, as after a crash before the source moved on
    with sink.engine.connect() as conn:
        rows = conn.execute(sa.select(stream_alerts)).all()
    assert len(rows) == 1 and rows[0].score_psi == 0.41 and json.loads(rows[0].alert) == alert
    assert sink.load().position == "5-0"
