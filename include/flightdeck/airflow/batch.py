"""The tasks of batch_score: thin adapters over `flightdeck.batch.pipeline`."""

from __future__ import annotations

import logging

from airflow.sdk import CronDataIntervalTimetable, task

from flightdeck.airflow.defaults import fail_fast_on_user_error, registry
from flightdeck.airflow.notify import send_alert
from flightdeck.airflow.sensors import PartitionSensor

log = logging.getLogger(__name__)


def batch_params() -> dict:
    """The DAG's Params: the fields of `BatchScoreParams`."""
    from flightdeck.airflow.params import params_from_model
    from flightdeck.batch.params import BatchScoreParams

    return params_from_model(BatchScoreParams)


def nightly_schedule() -> CronDataIntervalTimetable:
    """An interval timetable on the configured cron: the run at 02:00 on day D covers
    [D-1 02:00, D 02:00), so {{ ds }} is D-1."""
    from flightdeck.config import get_settings

    return CronDataIntervalTimetable(get_settings().batch_cron, timezone="UTC")


def wait_for_input_partition() -> PartitionSensor:
    """The deferrable wait for `raw/ds={{ ds }}`."""
    from flightdeck.config import get_settings

    settings = get_settings()
    return PartitionSensor(task_id="wait_for_input_partition", root=str(settings.raw_dir), ds="{{ ds }}",
                           timeout=settings.sensor_timeout_seconds, poll_interval=60)


def _params(params: dict, dag_run=None):
    from flightdeck.airflow.params import validated
    from flightdeck.batch.params import BatchScoreParams

    return validated(BatchScoreParams, params, dag_run)


@task
def resolve_model(params=None, dag_run=None) -> dict:
    """Pin the model version for the whole run (an unknown version stops the run here), so a
    promotion during the run cannot mix two versions in one day."""
    checked = _params(params, dag_run)
    with fail_fast_on_user_error():
        resolved = registry().resolve(checked.model_name, checked.model_ref)
    log.info("scoring with %s v%s (model_ref %s)", resolved.name, resolved.version, resolved.ref)
    return resolved.to_dict()


@task
def validate_input(ds=None, params=None, dag_run=None) -> dict:
    from flightdeck.batch.pipeline import validate

    with fail_fast_on_user_error():
        return validate(ds, _params(params, dag_run).bad_fraction_threshold)


@task
def score_partition(model: dict, validation: dict, ds=None, run_id=None, dag_run=None) -> dict:
    from flightdeck.batch.pipeline import score

    with fail_fast_on_user_error():
        return score(ds, model, validation, run_id, dag_run.start_date, registry())


@task
def check_output(model: dict, validation: dict, ds=None) -> dict:
    from flightdeck.batch.pipeline import check_output as check

    with fail_fast_on_user_error():
        return check(ds, model, validation)


@task
def monitor_partition(model: dict, validation: dict, scoring: dict, ds=None, run_id=None) -> dict:
    from flightdeck.batch.pipeline import monitor

    with fail_fast_on_user_error():
        result = monitor(ds, model, validation, scoring, run_id, registry())
    if result["alert"]:
        send_alert(f"flightdeck: drift or volume alert for ds={ds}", f"{result['summary']}\nReport: {result['report']}")
    return result
