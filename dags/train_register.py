"""
### train_register

Validate the training window with Great Expectations → train a scikit-learn pipeline →
evaluate on a holdout and against the current `champion` → log to MLflow → export to ONNX
and check parity → register a new version with alias `challenger` (and `champion` when
there is none) **only if** it beats the champion by the margin.

Trigger it from the UI with a training window; bad Params are rejected before any work.
Re-running on the same data registers nothing new.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, chain, task

from flightdeck.airflow.defaults import DEFAULT_ARGS, fail_fast_on_user_error
from flightdeck.config import get_settings

DAG_ID = "train_register"

DATE = {"type": "string", "format": "date"}


def _params(values: dict):
    from flightdeck.training.params import TrainParams

    return TrainParams.parse(values)


def _registry():
    from flightdeck.registry import Registry

    return Registry.from_settings()


def _staging(run_id: str):
    from flightdeck.training.pipeline import staging_dir

    return staging_dir(run_id)


@task
def check_params(params=None, dag_run=None) -> dict:
    """Reject unknown or malformed Params (including extra run-conf keys) before any work."""
    with fail_fast_on_user_error():
        return _params({**params, **(dag_run.conf or {})}).model_dump(mode="json")


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
        return evaluate(_params(train_params), _staging(run_id), _registry())


@task
def log_to_mlflow(train_params: dict, validation: dict, evaluation: dict, run_id=None) -> str:
    from flightdeck.training.pipeline import log_run

    return log_run(_params(train_params), validation, evaluation, _registry(), airflow_run_id=run_id)


@task
def export_onnx(train_params: dict, mlflow_run_id: str, run_id=None) -> dict:
    from flightdeck.training.pipeline import export_onnx as export

    with fail_fast_on_user_error():
        return export(_params(train_params), _staging(run_id), _registry(), mlflow_run_id)


@task.short_circuit
def beats_champion(evaluation: dict) -> bool:
    """Stop here, with the reason in the log, unless the model beats the champion by the margin."""
    import logging

    decision = evaluation["decision"]
    logging.getLogger("flightdeck.dags").info("%s: %s", "registering" if decision["register"] else "not registering",
                                     decision["reason"])
    return decision["register"]


@task
def register_model(train_params: dict, validation: dict, evaluation: dict, mlflow_run_id: str,
                   exported: dict) -> dict:
    from flightdeck.training.pipeline import register

    return register(_params(train_params), _registry(), mlflow_run_id, exported["model_uri"],
                    validation["training_key"], evaluation["decision"]["reason"])


settings = get_settings()

with DAG(
    dag_id=DAG_ID,
    description="Validate, train, evaluate vs champion, log to MLflow, export ONNX, register.",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "registry", "training"],
    params={
        "model_name": Param(settings.model_name, type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                            description="Registered model to compare with and register into."),
        "window_start": Param(type="string", format="date", description="First day of training data."),
        "window_end": Param(type="string", format="date", description="Last day of training data."),
        "labels_as_of": Param(None, type=["null", "string"], format="date",
                              description="Use labels that had arrived by this day (default: window_end)."),
        "model_type": Param("logistic_regression", enum=["logistic_regression", "mlp"]),
        "margin": Param(settings.promotion_margin, type="number", minimum=0, maximum=1,
                        description="ROC AUC the new model must gain over the champion."),
        "holdout_fraction": Param(settings.holdout_fraction, type="number", exclusiveMinimum=0,
                                  exclusiveMaximum=0.5),
        "seed": Param(settings.seed, type="integer", minimum=0),
    },
) as dag:
    train_params = check_params()
    validation = validate_training_data(train_params)
    trained = train_model(train_params)
    evaluation = evaluate_model(train_params)
    mlflow_run_id = log_to_mlflow(train_params, validation, evaluation)
    exported = export_onnx(train_params, mlflow_run_id)
    registered = register_model(train_params, validation, evaluation, mlflow_run_id, exported)

    chain(train_params, validation, trained, evaluation, mlflow_run_id, exported,
          beats_champion(evaluation), registered)
