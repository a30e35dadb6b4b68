"""
### batch_score

Nightly batch scoring of yesterday's partition with the `champion` (or a pinned version):
resolve the model once → wait for `raw/ds={{ ds }}` (deferrable) → validate with Great
Expectations and quarantine bad rows → score on Dask with the ONNX artifact →
`predictions/ds={{ ds }}` written atomically → check the output → drift, volume and
throughput monitoring, logged to MLflow with an HTML report; alerts go to the
`flightdeck_alerts` connection.

Backfill history with `airflow backfill create --dag-id batch_score --from-date … --to-date …`
(add `--dag-run-conf '{"model_version": "3"}'` to reproduce history with one version).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, chain, task

from flightdeck.airflow.defaults import DEFAULT_ARGS, fail_fast_on_user_error
from flightdeck.airflow.notify import alert_on_failure
from flightdeck.airflow.sensors import PartitionSensor
from flightdeck.config import get_settings

DAG_ID = "batch_score"


def _registry():
    from flightdeck.registry import Registry

    return Registry.from_settings()


@task
def resolve_model(params=None) -> dict:
    """Pin the model version for the whole run (an unknown version stops the run here)."""
    from flightdeck.batch.pipeline import resolve_model as resolve

    with fail_fast_on_user_error():
        return resolve(params["model_name"], params["model_version"], _registry())


@task
def validate_input(ds=None, params=None) -> dict:
    from flightdeck.batch.pipeline import validate

    with fail_fast_on_user_error():
        return validate(ds, params["bad_fraction_threshold"])


@task
def score_partition(model: dict, validation: dict, ds=None, run_id=None, dag_run=None) -> dict:
    from flightdeck.batch.pipeline import score

    with fail_fast_on_user_error():
        return score(ds, model, validation, run_id, dag_run.start_date, _registry())


@task
def check_output(model: dict, validation: dict, ds=None) -> dict:
    from flightdeck.batch.pipeline import check_output as check

    with fail_fast_on_user_error():
        return check(ds, model, validation)


@task
def monitor_partition(model: dict, validation: dict, scoring: dict, ds=None, run_id=None) -> dict:
    from flightdeck.airflow.notify import send_alert
    from flightdeck.batch.pipeline import monitor

    with fail_fast_on_user_error():
        result = monitor(ds, model, validation, scoring, run_id, _registry())
    if result["alert"]:
        send_alert(f"flightdeck: drift or volume alert for ds={ds}", f"{result['summary']}\nReport: {result['report']}")
    return result


settings = get_settings()

with DAG(
    dag_id=DAG_ID,
    description="Nightly Dask scoring with the champion: validate, score, check, monitor.",
    doc_md=__doc__,
    # Interval timetable: the run at 02:00 on day D covers [D-1 02:00, D 02:00), so {{ ds }} = D-1.
    schedule=CronDataIntervalTimetable(settings.batch_cron, timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args={**DEFAULT_ARGS, "on_failure_callback": alert_on_failure},
    tags=["flightdeck", "batch"],
    params={
        "model_name": Param(settings.model_name, type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"),
        "model_version": Param(None, type=["null", "string"], pattern=r"^[0-9]+$",
                               description="Pin a registered version (to reproduce history); empty = champion."),
        "bad_fraction_threshold": Param(settings.bad_fraction_threshold, type="number", minimum=0, maximum=1,
                                        description="Fail the run when more of the input than this is bad."),
    },
) as dag:
    model = resolve_model()
    wait_for_input_partition = PartitionSensor(
        task_id="wait_for_input_partition", root=str(settings.raw_dir), ds="{{ ds }}",
        timeout=settings.sensor_timeout_seconds, poll_interval=60)
    validation = validate_input()
    scoring = score_partition(model, validation)
    checked = check_output(model, validation)
    monitored = monitor_partition(model, validation, scoring)

    chain(model, wait_for_input_partition, validation, scoring, checked, monitored)
