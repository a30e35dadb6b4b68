"""batch_score under a real scheduler: a 4-day `airflow backfill create` yields exactly 4
prediction partitions; reprocessing the completed days yields the same rows and scores;
unpausing starts the nightly schedule, whose run scores the last complete day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from flightdeck.data.partitions import list_partitions, read_partition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

# Four days: enough for two waves of `--max-active-runs 2`; each day costs ~20 s of
# scheduler time, and `make test` has a budget.
DAYS = [f"2026-01-0{d}" for d in range(1, 5)]


def _backfill_done(airflow, since: str | None = None):
    def done() -> bool:
        runs = [r for r in airflow.runs("batch_score") if r["run_type"] == "backfill"]
        finished = [r for r in runs if r["state"] == "success" and (since is None or (r["end_date"] or "") > since)]
        failed = [r for r in runs if r["state"] == "failed"]
        assert not failed, f"backfill runs failed: {failed}\n{airflow.log_tail()}"
        # The scheduler marks the backfill itself complete a loop after its last run; only
        # then may another backfill of the DAG be created.
        return len(finished) == len(DAYS) and airflow.backfill_completed("batch_score")
    return done


def _january(root) -> list[str]:
    return [d.isoformat() for d in list_partitions(root) if d.isoformat() < "2026-02-01"]


def _scores(root, ds):
    return read_partition(root, ds)[["customer_id", "score", "predicted_label"]].sort_values(
        "customer_id", ignore_index=True)


def test_backfill_then_reprocess(airflow):
    airflow.flightdeck("generate-data", "--start", "2026-01-01", "--end", "2026-01-20", "--rows-per-day", "300")
    # The nightly run created on unpause scores the last complete interval's day: yesterday,
    # or the day before when it is not yet 02:00 UTC.
    today = datetime.now(UTC).date()
    airflow.flightdeck("generate-data", "--start", str(today - timedelta(days=2)), "--end",
                       str(today - timedelta(days=1)), "--rows-per-day", "300")
    airflow.flightdeck("train", "--window-start", "2026-01-01", "--window-end", "2026-01-10",
                       "--labels-as-of", "2026-01-20")
    # On PostgreSQL the CLI creates a backfill while the scheduler runs (SQLite's single
    # writer made that fail with "database is locked").
    airflow.cli("backfill", "create", "--dag-id", "batch_score", "--from-date", "2026-01-01",
                "--to-date", "2026-01-04T02:00:00", "--max-active-runs", "2")
    airflow.set_paused("batch_score", False)
    try:
        airflow.wait_until(_backfill_done(airflow), 900, f"{len(DAYS)} successful backfill runs")

        predictions = airflow.home / "data" / "predictions"
        assert _january(predictions) == DAYS
        first = {ds: _scores(predictions, ds) for ds in DAYS}
        assert all(len(frame) == 300 for frame in first.values())

        airflow.wait_until(lambda: any(r["run_type"] == "scheduled" and r["state"] == "success"
                                       for r in airflow.runs("batch_score")), 300, "the nightly run to succeed")

        since = max(r["end_date"] for r in airflow.runs("batch_score") if r["run_type"] == "backfill")
        airflow.cli("backfill", "create", "--dag-id", "batch_score", "--from-date", "2026-01-01",
                    "--to-date", "2026-01-04T02:00:00", "--max-active-runs", "2",
                    "--reprocess-behavior", "completed")
        airflow.wait_until(_backfill_done(airflow, since), 900, f"{len(DAYS)} reprocessed backfill runs")
    finally:
        airflow.set_paused("batch_score", True)
    assert _january(predictions) == DAYS
    for ds in DAYS:
        pd.testing.assert_frame_equal(_scores(predictions, ds), first[ds])
