"""
### batch_score

Nightly batch scoring of yesterday's partition with the `champion` (or a pinned version):
resolve the model once → wait for `raw/ds={{ ds }}` (deferrable) → validate with Great
Expectations and quarantine bad rows → score on Dask with the ONNX artifact →
`predictions/ds={{ ds }}` written atomically → check the output → drift, volume and
throughput monitoring, logged to MLflow with an HTML report; alerts go to the
`flightdeck_alerts` connection → on a drift verdict, **request a retrain** (asset
`flightdeck_retrain_requests`, which starts `train_register` on a sliding window) if the
pipeline file turns that link on for the model; otherwise nothing is emitted.

Backfill history with `airflow backfill create --dag-id batch_score --from-date … --to-date …`
(add `--dag-run-conf '{"model_ref": "3"}'` to reproduce history with one version).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, chain

from flightdeck.airflow import batch, pipeline
from flightdeck.airflow.defaults import DEFAULT_ARGS
from flightdeck.airflow.notify import alert_on_failure

DAG_ID = "batch_score"

with DAG(
    dag_id=DAG_ID,
    description="Nightly Dask scoring with the champion: validate, score, check, monitor.",
    doc_md=__doc__,
    schedule=batch.nightly_schedule(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args={**DEFAULT_ARGS, "on_failure_callback": alert_on_failure},
    tags=["flightdeck", "batch"],
    params=batch.batch_params(),
) as dag:
    model = batch.resolve_model()
    validation = batch.validate_input()
    scoring = batch.score_partition(model, validation)
    checked = batch.check_output(model, validation)
    monitored = batch.monitor_partition(model, validation, scoring)

    retrain = pipeline.request_retrain(model, monitored)

    chain(model, batch.wait_for_input_partition(), validation, scoring, checked, monitored, retrain)
