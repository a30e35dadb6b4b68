"""The tasks of train_register: thin adapters over `flightdeck.training.pipeline`."""

from __future__ import annotations

import logging

from airflow.sdk import task

from flightdeck.airflow.defaults import fail_fast_on_user_error, registry

log = logging.getLogger(__name__)


# Filled in by a retrain request when the run is asset-triggered: Airflow validates a DAG's
# Params when it creates any run, and a run the scheduler starts has no conf to carry them.
WINDOW_PARAMS = ("window_start", "window_end")


def train_params() -> dict:
    """The DAG's Params: the fields of `TrainParams`; the window may be left empty in the form
    (then `check_params` fails at once naming it, unless a retrain request supplies it)."""
    from airflow.sdk import Param

    from flightdeck.airflow.params import params_from_model
    from flightdeck.training.params import TrainParams

    params = params_from_model(TrainParams)
    for name in WINDOW_PARAMS:
        schema = {**params[name].schema, "type": [params[name].schema["type"], "null"]}
        params[name] = Param(None, description=f"{params[name].description} Required when triggered by hand; "
                                               "a retrain request sets it.", **schema)
    return params


def _params(values: dict):
    from flightdeck.training.params import TrainParams

    return TrainParams.parse(values)


def _staging(run_id: str):
    from flightdeck.training.pipeline import staging_dir

    return staging_dir(run_id)


@task
def check_params(params=None, dag_run=None) -> dict:
    """Reject unknown or malformed Params (including extra run-conf keys) before any work; a run
    started by a retrain request (or a stream drift alert) takes model and window from it."""
    from flightdeck.airflow.pipeline import train_values
    from flightdeck.training.params import TrainParams

    with fail_fast_on_user_error():
        return TrainParams.parse(train_values(params, dag_run)).model_dump(mode="json")


@task
def validate_training_data(train_params: dict) -> dict:
    from flightdeck.training.pipeline import validate_window

    with fail_fast_on_user_error():
        return validate_window(_params(train_params))


@task
def train_model(train_params: dict, run_id=None) -> dict:
    from flightdeck.training.pipeline import train

    with fail_fast_on_user_error():
        return train(_params(train_params), _staging(run_id))


@task
def evaluate_model(train_params: dict, run_id=None) -> dict:
    from flightdeck.training.pipeline import evaluate

    with fail_fast_on_user_error():
        return evaluate(_params(train_params), _staging(run_id), registry())


@task
def log_to_mlflow(train_params: dict, validation: dict, evaluation: dict, run_id=None) -> str:
    from flightdeck.training.pipeline import log_run

    return log_run(_params(train_params), validation, evaluation, registry(), airflow_run_id=run_id)


@task
def export_onnx(train_params: dict, mlflow_run_id: str, run_id=None) -> dict:
    from flightdeck.training.pipeline import export_onnx as export

    with fail_fast_on_user_error():
        return export(_params(train_params), _staging(run_id), registry(), mlflow_run_id)


@task.short_circuit
def beats_champion(evaluation: dict) -> bool:
    """Stop here, with the reason in the log, unless the model beats the champion by the margin."""
    decision = evaluation["decision"]
    log.info("%s: %s", "registering" if decision["register"] else "not registering", decision["reason"])
    return decision["register"]


@task
def register_model(train_params: dict, validation: dict, evaluation: dict, mlflow_run_id: str,
                   exported: dict) -> dict:
    from flightdeck.training.pipeline import register

    return register(_params(train_params), registry(), mlflow_run_id, exported["model_uri"],
                    validation["training_key"], evaluation["decision"]["reason"])
