"""batch_score end to end with dag.test(): SQLite Airflow metadata, a temp MLflow store and
a local Dask cluster, on generated days (clean, corrupt, drifted, missing). The runs are made
by one module fixture (two interpreters in all); each test checks one run's outcome."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from flightdeck.data.partitions import partition_path

pytestmark = pytest.mark.integration

TRAIN = {"window_start": "2026-01-01", "window_end": "2026-01-31", "labels_as_of": "2026-03-15"}


def at_two(ds: str) -> str:
    """The logical date of the run that scores `ds` (interval timetable: data_interval_start)."""
    return f"{ds}T02:00:00+00:00"


@dataclass
class Runs:
    """The module's DAG runs, made in two interpreters instead of one per run (Airflow, the ML
    stack and the DAG folder loaded twice, not nine times): training and the first scoring of
    2026-02-05, then the partition as it was, then every other run in the order the tests read
    them, each with its own log, alert path and environment."""

    sandbox: object
    first: dict
    before_rerun: pd.DataFrame | None  # 2026-02-05 as the first scoring left it
    first_report: str | None  # its HTML report then
    first_mlflow_runs: list  # the MLflow runs tagged with that day then
    outcomes: dict[str, dict]
    alerts: list[tuple[str, dict]]

    def alerts_to(self, path: str) -> list[dict]:
        return [body for sent_to, body in self.alerts if sent_to == path]


@pytest.fixture(scope="module")
def runs(sqlite_sandbox, module_webhook_server):
    sandbox = sqlite_sandbox
    sandbox.generate("2026-01-01", "2026-02-10")
    sandbox.generate("2026-02-11", "2026-02-11", "corrupt")
    sandbox.generate("2026-02-12", "2026-02-12", "corrupt", "--corrupt-fraction", "0.2")
    sandbox.generate("2026-02-13", "2026-02-13", "feature_drift")
    trained, first = sandbox.dag_tests([("train_register", TRAIN, None),
                                        ("batch_score", {}, at_two("2026-02-05"))])
    assert trained["state"] == "success", trained["log"][-3000:]
    before_rerun, first_report, first_mlflow_runs = None, None, []
    if first.get("state") == "success":
        before_rerun = _predictions(sandbox, "2026-02-05")
        report = sandbox.root / "flightdeck" / "reports" / "ds=2026-02-05" / "index.html"
        first_report = report.read_text() if report.exists() else None
        registry = sandbox.registry()
        first_mlflow_runs = registry.client.search_runs([registry.experiment_id("flightdeck-batch")],
                                                        filter_string="tags.`flightdeck.ds` = '2026-02-05'")

    url, received = module_webhook_server

    def alerts(path: str) -> dict:
        """An env pointing the alert connection at the loopback webhook, under `path`."""
        return {"AIRFLOW_CONN_FLIGHTDECK_ALERTS": f"{url}{path}"}

    planned = {
        "rerun": ("batch_score", {"model_ref": "1"}, at_two("2026-02-05")),
        "corrupt": ("batch_score", {}, at_two("2026-02-11")),
        "too_many_bad_rows": ("batch_score", {}, at_two("2026-02-12"), alerts("/too-many-bad-rows")),
        "unknown_version": ("batch_score", {"model_ref": "99"}, at_two("2026-02-06")),
        "malformed_version": ("batch_score", {"model_ref": "v1; drop"}, at_two("2026-02-06")),
        "missing_partition": ("batch_score", {}, at_two("2026-03-20"), {"FLIGHTDECK_SENSOR_TIMEOUT_SECONDS": "3"}),
        "drifted": ("batch_score", {}, at_two("2026-02-13"), alerts("/drifted")),
    }
    outcomes = dict(zip(planned, sandbox.dag_tests(list(planned.values())), strict=True))
    return Runs(sandbox, first, before_rerun, first_report, first_mlflow_runs, outcomes, received)


def _predictions(sandbox, ds: str) -> pd.DataFrame:
    root = sandbox.root / "flightdeck" / "data" / "predictions"
    return pd.read_parquet(partition_path(root, ds))


def test_scores_a_day_with_the_champion(runs):
    outcome = runs.first
    assert outcome["state"] == "success", outcome["log"][-4000:]
    frame = runs.before_rerun
    assert len(frame) == 400
    assert list(frame.columns) == ["customer_id", "score", "predicted_label", "model_name", "model_version",
                                   "run_id", "scored_at"]
    assert set(frame["model_version"]) == {"1"} and frame["customer_id"].is_unique
    assert frame["score"].between(0, 1).all() and set(frame["run_id"]) == {outcome["run_id"]}
    assert runs.first_report is not None and "2026-02-05" in runs.first_report
    assert "scoring with flightdeck-classifier v1 (model_ref champion)" in outcome["log"]

    (run,) = runs.first_mlflow_runs
    assert run.data.metrics["rows"] == 400 and "psi_credit_score" in run.data.metrics


def test_rerunning_a_day_replaces_it_with_the_same_rows_and_scores(runs):
    sandbox, outcome = runs.sandbox, runs.outcomes["rerun"]
    assert runs.before_rerun is not None, runs.first["log"][-4000:]
    before = runs.before_rerun.sort_values("customer_id", ignore_index=True)
    assert outcome["state"] == "success", outcome["log"][-4000:]
    after = _predictions(sandbox, "2026-02-05").sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(before[["customer_id", "score", "predicted_label"]],
                                  after[["customer_id", "score", "predicted_label"]])
    assert "(model_ref 1)" in outcome["log"]


def test_corrupt_rows_are_quarantined_and_the_rest_scored(runs):
    sandbox, outcome = runs.sandbox, runs.outcomes["corrupt"]
    assert outcome["state"] == "success", outcome["log"][-4000:]
    quarantined = pd.read_parquet(sandbox.root / "flightdeck" / "data" / "quarantine" / "ds=2026-02-11" / "rows.parquet")
    assert len(quarantined) == 20 and quarantined["quarantine_reason"].str.len().gt(0).all()
    assert len(_predictions(sandbox, "2026-02-11")) == 380


def test_too_many_bad_rows_fails_the_run_with_a_report(runs):
    sandbox, outcome = runs.sandbox, runs.outcomes["too_many_bad_rows"]
    assert outcome["state"] == "failed"
    assert outcome["tasks"]["validate_input"] == "failed"
    assert outcome["tasks"]["score_partition"] == "upstream_failed"
    assert "above the 5.0% threshold" in outcome["log"] and "expect_column_values_to_be_between" in outcome["log"]
    assert not partition_path(sandbox.root / "flightdeck" / "data" / "predictions", "2026-02-12").exists()
    assert any("validate_input failed" in body["text"] for body in runs.alerts_to("/too-many-bad-rows")), \
        "the failure callback alerts"


def test_unknown_pinned_version_is_rejected_before_scoring(runs):
    sandbox, outcome = runs.sandbox, runs.outcomes["unknown_version"]
    assert outcome["state"] == "failed"
    assert outcome["tasks"]["resolve_model"] == "failed"
    assert outcome["tasks"]["score_partition"] == "upstream_failed"
    assert "has no version 99" in outcome["log"]
    assert not partition_path(sandbox.root / "flightdeck" / "data" / "predictions", "2026-02-06").exists()


def test_malformed_version_param_is_rejected_at_trigger(runs):
    outcome = runs.outcomes["malformed_version"]
    assert outcome.get("rejected") == "ParamValidationError" and "model_ref" in outcome["message"]


def test_missing_partition_fails_after_the_sensor_timeout_naming_path_and_day(runs):
    outcome = runs.outcomes["missing_partition"]
    assert outcome["state"] == "failed"
    assert outcome["tasks"]["wait_for_input_partition"] == "failed"
    assert "input partition for ds=2026-03-20 not found at" in outcome["log"]
    assert "raw/ds=2026-03-20" in outcome["log"]


def test_drifted_day_raises_an_alert_and_a_report(runs):
    outcome = runs.outcomes["drifted"]
    assert outcome["state"] == "success", outcome["log"][-4000:]
    assert outcome["tasks"]["monitor_partition"] == "success"
    (alert,) = [body for body in runs.alerts_to("/drifted") if "drift" in body["text"]]
    assert "ds=2026-02-13" in alert["text"] and "credit_score" in alert["text"]
    assert "index.html" in alert["text"]
