"""The label a prediction-log row gets from the outcomes (`read_predictions(..., "label")`): the
newest outcome keyed by the gateway's request id, else by the caller's id, else by the unit; found
by index probes whatever the tables' statistics say (no ANALYZE after the bulk load here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from flightdeck.serving import db
from flightdeck.serving.predlog import PredictionRecord, _insert_rows
from flightdeck.serving.predlog_reads import predictions_query, read_predictions

T0 = datetime(2026, 12, 1, tzinfo=UTC)
N = 2000


def _fill(engine) -> None:
    records = [PredictionRecord(f"gw-{i}", 0, f"u{i}", "credit", "a", "1", 1, "live", "h", 0.1, 2.0,
                                created_at=T0 + timedelta(seconds=i), client_request_id=f"caller-{i}")
               for i in range(N)]
    outcomes = []
    for i in range(N):
        at = T0 + timedelta(hours=1, seconds=i)
        if i % 4 == 0:  # by request id, corrected later: the newest wins
            outcomes += [{"request_id": f"gw-{i}", "label": 0.0, "observed_at": at},
                         {"request_id": f"gw-{i}", "label": 1.0, "observed_at": at + timedelta(minutes=5)}]
        elif i % 4 == 1:  # by the caller's id, and by unit: the request-level outcome wins
            outcomes += [{"request_id": f"caller-{i}", "label": 1.0, "observed_at": at},
                         {"unit_id": f"u{i}", "label": 0.0, "observed_at": at + timedelta(minutes=5)}]
        elif i % 4 == 2:  # by unit only
            outcomes.append({"unit_id": f"u{i}", "label": 1.0, "observed_at": at})
    with db.write_transaction(engine) as conn:
        _insert_rows(conn, [(T0, records)])
        conn.execute(db.outcomes.insert(), [{"request_id": None, "unit_id": None, **o, "recorded_at": o["observed_at"]}
                                           for o in outcomes])


def test_labels_come_from_the_newest_outcome_of_the_most_specific_id(gateway_engine):
    _fill(gateway_engine)
    frame = read_predictions(gateway_engine, "credit", ["request_id", "label"])
    assert len(frame) == N
    expected = [1.0 if i % 4 in (0, 1, 2) else None for i in range(N)]
    got = [None if label != label else label for label in frame["label"]]  # NaN -> None
    assert got == expected
    labelled = read_predictions(gateway_engine, "credit", ["request_id"], labelled_only=True)
    assert len(labelled) == N * 3 // 4


def test_the_label_lookup_probes_the_outcomes_indexes(gateway_engine):
    """The plan is the same on an empty and on a filled table with stale statistics: per row, an
    index probe of outcomes, never a window over all of them."""
    _fill(gateway_engine)
    sql = str(predictions_query("credit", ["request_id", "label"]).compile(gateway_engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if gateway_engine.dialect.name == "sqlite" else "EXPLAIN "
    with gateway_engine.connect() as conn:
        plan = "\n".join(" ".join(str(v) for v in row) for row in conn.execute(sa.text(explain + sql)))
    assert "ix_outcomes_request_id" in plan and "ix_outcomes_unit_id" in plan, plan
    assert "WindowAgg" not in plan and "SCAN outcomes" not in plan and "Seq Scan on outcomes" not in plan, plan
