"""batch_score end to end with dag.test(): SQLite Airflow metadata, a temp MLflow store and
a local Dask cluster, on generated days (clean, corrupt, drifted, missing)."""

from __future__ import annotations

import pandas as pd
import pytest

from flightdeck.data.partitions import partition_path

pytestmark = pytest.mark.integration

TRAIN = {"window_start": "2026-01-01", "window_end": "2026-01-31", "labels_as_of": "2026-03-15"}


def at_two(ds: str) -> str:
    """The logical date of the run that scores `ds` (interval timetable: data_interval_start)."""
    return f"{ds}T02:00:00+00:00"


@pytest.fixture(scope="module")
def sandbox(sqlite_sandbox):
    sqlite_sandbox.generate("2026-01-01", "2026-02-10")
    sqlite_sandbox.generate("2026-02-11", "2026-02-11", "corrupt")
    sqlite_sandbox.generate("2026-02-12", "2026-02-12", "corrupt", "--corrupt-fraction", "0.2")
    sqlite_sandbox.generate("2026-02-13", "2026-02-13", "feature_drift")
    outcome = sqlite_sandbox.dag_test("train_register", TRAIN)
    assert outcome["state"] == "success", outcome["log"][-3000:]
    return sqlite_sandbox


@pytest.fixture
def webhook(webhook_server):
    """(env pointing the alert connection at a loopback webhook, alert bodies received so far)."""
    url, received = webhook_server
    return {"AIRFLOW_CONN_FLIGHTDECK_ALERTS": f"{url}/alerts"}, received


def _predictions(sandbox, ds: str) -> pd.DataFrame:
    root = sandbox.root / "flightdeck" / "data" / "predictions"
    return pd.read_parquet(partition_path(root, ds))


def test_scores_a_day_with_the_champion(sandbox):
    outcome = sandbox.dag_test("batch_score", {}, at_two("2026-02-05"))
    assert outcome["state"] == "success", outcome["log"][-4000:]
    frame = _predictions(sandbox, "2026-02-05")
    assert len(frame) == 400
    assert list(frame.columns) == ["customer_id", "score", "predicted_label", "model_name", "model_version",
                                   "run_id", "scored_at"]
    assert set(frame["model_version"]) == {"1"} and frame["customer_id"].is_unique
    assert frame["score"].between(0, 1).all() and set(frame["run_id"]) == {outcome["run_id"]}
    report = sandbox.root / "flightdeck" / "reports" / "ds=2026-02-05" / "index.html"
    assert report.exists() and "2026-02-05" in report.read_text()
    assert "scoring with flightdeck-classifier v1 (model_ref champion)" in outcome["log"]

    registry = sandbox.registry()
    (run,) = registry.client.search_runs([registry.experiment_id("flightdeck-batch")],
                                         filter_string="tags.`flightdeck.ds` = '2026-02-05'")
    assert run.data.metrics["rows"] == 400 and "psi_credit_score" in run.data.metrics


def test_rerunning_a_day_replaces_it_with_the_same_rows_and_scores(sandbox):
    before = _predictions(sandbox, "2026-02-05").sort_values("customer_id", ignore_index=True)
    outcome = sandbox.dag_test("batch_score", {"model_ref": "1"}, at_two("2026-02-05"))
    assert outcome["state"] == "success", outcome["log"][-4000:]
    after = _predictions(sandbox, "2026-02-05").sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(before[["customer_id", "score", "predicted_label"]],
                                  after[["customer_id", "score", "predicted_label"]])
    assert "(model_ref 1)" in outcome["log"]


def test_corrupt_rows_are_quarantined_and_the_rest_scored(sandbox):
    outcome = sandbox.dag_test("batch_score", {}, at_two("2026-02-11"))
    assert outcome["state"] == "success", outcome["log"][-4000:]
    quarantined = pd.read_parquet(sandbox.root / "flightdeck" / "data" / "quarantine" / "ds=2026-02-11" / "rows.parquet")
    assert len(quarantined) == 20 and quarantined["quarantine_reason"].str.len().gt(0).all()
    assert len(_predictions(sandbox, "2026-02-11")) == 380


def test_too_many_bad_rows_fails_the_run_with_a_report(sandbox, webhook):
    env, received = webhook
    outcome = sandbox.dag_test("batch_score", {}, at_two("2026-02-12"), env=env)
    assert outcome["state"] == "failed"
    assert outcome["tasks"]["validate_input"] == "failed"
    assert outcome["tasks"]["score_partition"] == "upstream_failed"
    assert "above the 5.0% threshold" in outcome["log"] and "expect_column_values_to_be_between" in outcome["log"]
    assert not partition_path(sandbox.root / "flightdeck" / "data" / "predictions", "2026-02-12").exists()
    assert any("validate_input failed" in body["text"] for _, body in received), "the failure callback alerts"


def test_unknown_pinned_version_is_rejected_before_scoring(sandbox):
    outcome = sandbox.dag_test("batch_score", {"model_ref": "99"}, at_two("2026-02-06"))
    assert outcome["state"] == "failed"
    assert outcome["tasks"]["resolve_model"] == "failed"
    assert outcome["tasks"]["score_partition"] == "upstream_failed"
    assert "has no version 99" in outcome["log"]
    assert not partition_path(sandbox.root / "flightdeck" / "data" / "predictions", "2026-02-06").exists()


def test_malformed_version_param_is_rejected_at_trigger(sandbox):
    outcome = sandbox.dag_test("batch_score", {"model_ref": "v1; drop"}, at_two("2026-02-06"))
    assert outcome.get("rejected") == "ParamValidationError" and "model_ref" in outcome["message"]


def test_missing_partition_fails_after_the_sensor_timeout_naming_path_and_day(sandbox):
    outcome = sandbox.dag_test("batch_score", {}, at_two("2026-03-20"),
                               env={"FLIGHTDECK_SENSOR_TIMEOUT_SECONDS": "3"})
    assert outcome["state"] == "failed"
    assert outcome["tasks"]["wait_for_input_partition"] == "failed"
    assert "input partition for ds=2026-03-20 not found at" in outcome["log"]
    assert "raw/ds=2026-03-20" in outcome["log"]


def test_drifted_day_raises_an_alert_and_a_report(sandbox, webhook):
    env, received = webhook
    outcome = sandbox.dag_test("batch_score", {}, at_two("2026-02-13"), env=env)
    assert outcome["state"] == "success", outcome["log"][-4000:]
    assert outcome["tasks"]["monitor_partition"] == "success"
    (alert,) = [body for _, body in received if "drift" in body["text"]]
    assert "ds=2026-02-13" in alert["text"] and "credit_score" in alert["text"]
    assert "index.html" in alert["text"]
