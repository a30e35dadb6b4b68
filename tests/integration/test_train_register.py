"""train_register end to end with dag.test() on SQLite Airflow metadata and a temp MLflow store."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

pytestmark = pytest.mark.integration

WINDOW = {"window_start": "2026-01-01", "window_end": "2026-02-10", "labels_as_of": "2026-03-15"}


@pytest.fixture(scope="module")
def sandbox(sqlite_sandbox):
    sqlite_sandbox.generate("2026-01-01", "2026-03-15")
    sqlite_sandbox.generate("2026-04-01", "2026-04-05", scenario="corrupt")
    return sqlite_sandbox


def _runs(registry):
    return registry.client.search_runs([registry.experiment_id()])


def _versions(registry):
    return registry.client.search_model_versions("name = 'flightdeck-classifier'")


@dataclass
class Runs:
    """The module's runs in two interpreters, not six (Airflow and the ML stack loaded twice):
    the first run alone, what the registry held after it, then the bad-Params runs, the corrupt
    window and the re-run together. The MLflow runs and model versions only
    ever grow, so a count of one after the last run means one after each run before it."""

    sandbox: object
    first: dict
    after_first: dict
    rerun: dict
    corrupt: dict
    bad_params: list[dict]
    missing_window: dict


@pytest.fixture(scope="module")
def runs(sandbox) -> Runs:
    first = sandbox.dag_test("train_register", WINDOW)
    registry = sandbox.registry()
    after_first = {"aliases": registry.aliases("flightdeck-classifier") if first.get("state") == "success" else None,
                   "runs": _runs(registry)}
    # In one interpreter a run's Params start from those of the run before (dag.test() merges its
    # conf into the DAG's), so the order matters: the run without a window start comes first,
    # while the DAG's own defaults hold; the malformed runs are refused before they run; the
    # corrupt window runs before any run that sets labels_as_of; the unknown-param run, which
    # leaves its misspelt key behind, comes last.
    outcomes = sandbox.dag_tests(
        [("train_register", MISSING_WINDOW, None)]
        + [("train_register", conf, None) for conf, _ in MALFORMED]
        + [("train_register", {"window_start": "2026-04-01", "window_end": "2026-04-05"}, None),
           ("train_register", WINDOW, None), ("train_register", UNKNOWN_PARAM, None)])
    missing, *malformed, corrupt, rerun, unknown = outcomes
    return Runs(sandbox, first, after_first, rerun, corrupt, [*malformed, unknown], missing)


def test_first_run_registers_a_champion(runs):
    outcome = runs.first
    assert outcome["state"] == "success", outcome["log"][-4000:]
    assert set(outcome["tasks"].values()) == {"success"}

    assert runs.after_first["aliases"] == {"champion": "1", "challenger": "1"}
    (run,) = runs.after_first["runs"]
    assert run.data.params["window_start"] == "2026-01-01"
    assert run.data.metrics["holdout_roc_auc"] > 0.7
    assert run.data.metrics["onnx_parity_max_abs_diff"] <= 1e-5
    assert len(run.data.tags["flightdeck.data_fingerprint"]) == 64
    import mlflow

    info = mlflow.models.get_model_info(run.data.tags["flightdeck.onnx_model_uri"])
    assert info.signature is not None and info.saved_input_example_info is not None


def test_rerun_on_the_same_data_registers_nothing(runs):
    outcome = runs.rerun
    assert outcome["state"] == "success", outcome["log"][-4000:]
    assert outcome["tasks"]["beats_champion"] == "success"
    assert outcome["tasks"]["register_model"] == "skipped"
    assert "not registering: challenger roc_auc" in outcome["log"]
    assert "does not beat champion v1" in outcome["log"]

    registry = runs.sandbox.registry()
    assert len(_versions(registry)) == 1
    assert len(_runs(registry)) == 1, "the same data and params must reuse the MLflow run"


def test_corrupt_window_fails_validation_and_logs_nothing(runs):
    outcome = runs.corrupt
    assert outcome["state"] == "failed"
    assert outcome["tasks"]["validate_training_data"] == "failed"
    assert outcome["tasks"]["register_model"] in {"upstream_failed", "skipped"}
    log = outcome["log"]
    for expectation in ("expect_column_values_to_not_be_null", "expect_column_values_to_be_between",
                        "expect_column_values_to_be_unique"):
        assert expectation in log, f"the failure report should name {expectation}"
    registry = runs.sandbox.registry()
    assert len(_runs(registry)) == 1
    assert len(_versions(registry)) == 1


MALFORMED = [
    ({**WINDOW, "margin": -0.5}, "margin"),
    ({**WINDOW, "window_end": "last tuesday"}, "window_end"),
]
# The window's ends may be empty in the trigger form (a run started by a retrain request has no
# conf: its window comes from the request), so a hand-made run without one is stopped by its
# first task instead, which names the missing Param.
MISSING_WINDOW = {"window_end": "2026-02-10"}
UNKNOWN_PARAM = {**WINDOW, "windw_end": "2026-02-11"}


@pytest.fixture(scope="module")
def bad_params(runs) -> list[dict]:
    """The outcomes of the malformed-params runs and of the unknown-param run."""
    return runs.bad_params


@pytest.mark.parametrize("case", range(len(MALFORMED)), ids=[named for _, named in MALFORMED])
def test_malformed_params_are_rejected_before_any_work(bad_params, case):
    outcome = bad_params[case]
    assert outcome.get("rejected") == "ParamValidationError", outcome.get("tasks")
    assert MALFORMED[case][1] in outcome["message"]


def test_a_run_by_hand_without_a_window_start_fails_the_first_task_naming_it(runs):
    outcome = runs.missing_window
    assert outcome["state"] == "failed", outcome.get("tasks")
    assert outcome["tasks"]["check_params"] == "failed"
    assert outcome["tasks"]["validate_training_data"] == "upstream_failed"
    assert "window_start" in outcome["log"]


def test_unknown_param_fails_the_first_task_naming_it(bad_params):
    outcome = bad_params[-1]
    assert outcome["state"] == "failed"
    assert outcome["tasks"]["check_params"] == "failed"
    assert outcome["tasks"]["validate_training_data"] == "upstream_failed"
    assert "windw_end: unknown parameter" in outcome["log"]
