"""Training and batch scoring under a real scheduler, driven as an operator does, in Airflow's UI
(a real browser, tests/e2e/ui_actions.py): `train_register` is triggered from its trigger form
(a malformed Param is refused in the form and creates no run; valid Params train and register
the champion); a 3-day backfill of `batch_score` created in the backfill dialog yields exactly 3
prediction partitions, which the cockpit's Batch page lists; the toggle unpauses `batch_score`, the
header shows its next nightly run and the scheduled run it created scores the last complete day;
reprocessing two of the days (`airflow backfill create --reprocess-behavior completed`) rewrites
them with the same rows and scores."""

from __future__ import annotations

import subprocess
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from flightdeck.config import Settings
from flightdeck.data.generator import write_partitions
from flightdeck.data.partitions import list_partitions, read_partition
from flightdeck.devtools.airflow_api import AirflowRest
from tests.e2e import ui_actions as ui
from tests.e2e.browser import leave, open_page
from tests.e2e.cockpit_pages import check_batch
from tests.e2e.conftest import BATCH_MODEL
from tests.support.airflow import BIN, REPO

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

# Three days: two waves of `max active runs 2`; each day costs ~20 s of scheduler time, and the
# suite has a budget. Two of them are reprocessed.
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]
REPROCESSED = DAYS[1:]
TRAINING = {"window_start": "2026-01-01", "window_end": "2026-01-10", "labels_as_of": "2026-01-20"}


def _backfill_done(airflow, days: list[str], since: str | None = None):
    def done() -> bool:
        runs = [r for r in airflow.runs("batch_score") if r["run_type"] == "backfill"]
        finished = [r for r in runs if r["state"] == "success" and (since is None or (r["end_date"] or "") > since)]
        failed = [r for r in runs if r["state"] == "failed"]
        assert not failed, f"backfill runs failed: {failed}\n{airflow.log_tail()}"
        # The scheduler marks the backfill itself complete a loop after its last run; only
        # then may another backfill of the DAG be created.
        return len(finished) == len(days) and airflow.backfill_completed("batch_score")
    return done


def _run_succeeded(airflow, dag_id: str, run_id: str):
    def succeeded() -> bool:
        state = next(r["state"] for r in airflow.runs(dag_id) if r["run_id"] == run_id)
        assert state != "failed", f"{dag_id} run {run_id} failed\n{airflow.log_tail()}"
        return state == "success"
    return succeeded


def _airflow_cli(airflow, *args: str) -> subprocess.Popen:
    """`airflow <args>` started in the background (an interpreter start costs tens of seconds on a
    busy machine); `communicate()` waits for it."""
    return subprocess.Popen([str(BIN / "airflow"), *args], env=airflow.env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _january(root) -> list[str]:
    return [d.isoformat() for d in list_partitions(root) if d.isoformat() < "2026-02-01"]


def _scores(root, ds):
    return read_partition(root, ds)[["customer_id", "score", "predicted_label"]].sort_values(
        "customer_id", ignore_index=True)


def test_train_backfill_schedule_reprocess_from_the_ui(airflow, browser, screenshots):
    # Raw data for the tasks, written here (what `flightdeck generate-data` does, without starting
    # an interpreter per range). The nightly run created on unpause scores the last complete
    # interval's day: yesterday, or the day before when it is not yet 02:00 UTC.
    settings = Settings(home=airflow.home)
    today = datetime.now(UTC).date()
    for start, end in ((date(2026, 1, 1), date(2026, 1, 20)), (today - timedelta(days=2), today - timedelta(days=1))):
        write_partitions(settings.raw_dir, start, end, rows_per_day=300, seed=settings.seed)
    predictions = airflow.home / "data" / "predictions"
    api = AirflowRest(airflow.url)
    reprocess = None
    try:
        with open_page(browser) as page:
            # Training, from the trigger form: a model name the Param's pattern refuses first.
            form = ui.TriggerForm(page, airflow.url, "train_register").open()
            refusal = form.fill({**TRAINING, "model_name": "flightdeck e2e batch"}).submit_rejected(
                screenshots, "ui-trigger-form-error.png")
            assert "Invalid input for param model_name" in refusal and "does not match" in refusal, refusal
            assert airflow.runs("train_register") == [], "a refused trigger created a run"
            train_run = form.fill({"model_name": BATCH_MODEL}).submit(screenshots, "ui-trigger-form-run.png")

            # While it trains: three days of batch_score from the backfill dialog, left paused (its
            # runs resolve the champion when they start).
            ui.create_backfill(page, airflow.url, "batch_score", datetime(2026, 1, 1), datetime(2026, 1, 3, 2),
                               max_active_runs=2, expected_runs=len(DAYS), shots=screenshots,
                               name="ui-backfill-dialog.png")
            backfill = airflow.query("SELECT from_date, to_date, max_active_runs, reprocess_behavior FROM backfill "
                                     "WHERE dag_id = 'batch_score'")
            assert [(b["max_active_runs"], b["reprocess_behavior"]) for b in backfill] == [(2, "none")], backfill

            leave(page)
            airflow.wait_until(_run_succeeded(airflow, "train_register", train_run), 600, "train_register to succeed")
            conf = api.call("GET", api.run_path("train_register", train_run))["conf"]
            assert {key: conf[key] for key in TRAINING} == TRAINING and conf["model_name"] == BATCH_MODEL, conf

            ui.unpause(page, airflow.url, "batch_score", screenshots, "ui-batch-unpaused.png")
            scheduled = airflow.wait_until(
                lambda: [r for r in airflow.runs("batch_score") if r["run_type"] == "scheduled"], 120,
                "the nightly run created on unpause")[0]
            leave(page)
            airflow.wait_until(_backfill_done(airflow, DAYS), 900, f"{len(DAYS)} successful backfill runs")
            airflow.wait_until(_run_succeeded(airflow, "batch_score", scheduled["run_id"]), 300,
                               "the nightly run to succeed")
            # Every batch run has ended: the cockpit's Batch page lists the three days and the nightly one.
            assert _january(predictions) == DAYS
            nightly = datetime.fromisoformat(scheduled["logical_date"]).date().isoformat()
            assert check_batch(page, airflow.url, airflow.home, screenshots,
                               "ui-backfill-partitions.png") == [*DAYS, nightly]
            first = {ds: _scores(predictions, ds) for ds in DAYS}
            assert all(len(frame) == 300 for frame in first.values())
            untouched = (predictions / f"ds={DAYS[0]}").stat().st_mtime_ns

            # Two days reprocessed with the CLI; the nightly schedule is looked at meanwhile.
            since = max(r["end_date"] for r in airflow.runs("batch_score") if r["run_type"] == "backfill")
            reprocess = _airflow_cli(airflow, "backfill", "create", "--dag-id", "batch_score", "--from-date",
                                     REPROCESSED[0], "--to-date", f"{REPROCESSED[-1]}T02:00:00",
                                     "--max-active-runs", "2", "--reprocess-behavior", "completed")
            upcoming = api.call("GET", "/dags/batch_score")["next_dagrun_run_after"]
            assert datetime.fromisoformat(upcoming) > datetime.now(UTC), upcoming
            assert ui.next_run_shown(page, airflow.url, "batch_score", screenshots,
                                     "ui-batch-next-run.png") == upcoming.replace("+00:00", "Z")
            ui.check_run_row(page, airflow.url, "batch_score", scheduled["run_id"], "Scheduled", "Success",
                             screenshots, "ui-batch-scheduled-run.png")
        out, err = reprocess.communicate(timeout=180)
        assert reprocess.returncode == 0, f"airflow backfill create failed:\n{out[-2000:]}\n{err[-3000:]}"
        airflow.wait_until(_backfill_done(airflow, REPROCESSED, since), 900,
                           f"{len(REPROCESSED)} reprocessed backfill runs")
    finally:
        if reprocess is not None and reprocess.poll() is None:  # the browser step failed meanwhile
            reprocess.kill()
            reprocess.communicate()
        api.close()
        airflow.set_paused("batch_score", True)
        airflow.set_paused("train_register", True)  # the trigger form unpauses the DAG it triggers
    assert _january(predictions) == DAYS
    assert (predictions / f"ds={DAYS[0]}").stat().st_mtime_ns == untouched, "a day outside the reprocessing moved"
    for ds in DAYS:
        pd.testing.assert_frame_equal(_scores(predictions, ds), first[ds])
