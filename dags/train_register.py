"""
### train_register

Validate the training window with Great Expectations → train a scikit-learn pipeline →
evaluate on a holdout and against the current `champion` → log to MLflow → export to ONNX
and check parity → register a new version with alias `challenger` (and `champion` when
there is none) **only if** it beats the champion by the margin.

Trigger it from the UI with a training window; bad Params are rejected before any work.
Re-running on the same data registers nothing new.

It also runs by itself when a **retrain request** arrives (asset `flightdeck_retrain_requests`,
from batch_score's drift verdict, or the stream scorer's drift alert when that link is on):
model and sliding window come from the request. A new version then **requests its releases**
(`edge_export`, `serverless_package`, `promote_canary` or `promote_blue_green`), each only if
the pipeline file turns its link on for the model.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, chain

from flightdeck.airflow import pipeline, training
from flightdeck.airflow.defaults import DEFAULT_ARGS

DAG_ID = "train_register"

with DAG(
    dag_id=DAG_ID,
    description="Validate, train, evaluate vs champion, log to MLflow, export ONNX, register.",
    doc_md=__doc__,
    schedule=pipeline.retrain_schedule(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["flightdeck", "registry", "training"],
    params=training.train_params(),
) as dag:
    train_params = training.check_params()
    validation = training.validate_training_data(train_params)
    trained = training.train_model(train_params)
    evaluation = training.evaluate_model(train_params)
    mlflow_run_id = training.log_to_mlflow(train_params, validation, evaluation)
    exported = training.export_onnx(train_params, mlflow_run_id)
    registered = training.register_model(train_params, validation, evaluation, mlflow_run_id, exported)

    releases = pipeline.request_releases(train_params, mlflow_run_id, registered)

    chain(train_params, validation, trained, evaluation, mlflow_run_id, exported,
          training.beats_champion(evaluation), registered, releases)
