"""The links of the self-running pipeline as Airflow assets (see `flightdeck.pipeline`).

Producers emit through an asset alias, so an event exists only when the link is on for the
model and there is something to say (a drift, a new version): a run whose link is off emits
nothing and starts nothing.

- `flightdeck_retrain_requests`: batch_score's `request_retrain` emits it on a drift verdict;
  train_register is scheduled on it (and on the stream scorer's drift-alert asset while some
  model has `on_stream_drift` on). Its extra carries the model and the sliding window.
- `flightdeck_registered_<dag_id>`: train_register's `request_releases` emits one per release
  link that is on, for edge_export, serverless_package, promote_canary or promote_blue_green,
  each scheduled on its own. Its extra carries model, version, MLflow run, Airflow run, window,
  and the consumer's Params (`conf`).

A run started by such an event takes its Params from the event's `conf`, the DAG's own
defaults for the rest; a run triggered by hand keeps its Params and run conf as before.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Asset, AssetAlias, task
from airflow.sdk.exceptions import AirflowSkipException

from flightdeck.airflow.defaults import fail_fast_on_user_error

log = logging.getLogger(__name__)

RETRAIN_ASSET = "flightdeck_retrain_requests"
RETRAIN_ALIAS = "flightdeck_retrain_request_alias"
RELEASE_ALIAS = "flightdeck_release_request_alias"


def release_asset_name(consumer: str) -> str:
    return f"flightdeck_registered_{consumer}"


def retrain_asset() -> Asset:
    return Asset(RETRAIN_ASSET)


def release_asset(consumer: str) -> Asset:
    return Asset(release_asset_name(consumer))


# ---- schedules -----------------------------------------------------------------------------
def retrain_schedule():
    """train_register's schedule: retrain requests, and the stream drift alerts while the
    pipeline file (read when the DAG file is parsed) turns `on_stream_drift` on for a model.
    A malformed file leaves the stream link out (and says so in the parse log)."""
    from flightdeck.pipeline import pipeline_config

    try:
        stream_models = pipeline_config().stream_retrain_models()
    except Exception:  # a parse must not fail on a bad file: the emitting task reports it
        log.exception("cannot read the pipeline file: the stream drift link is off")
        stream_models = []
    if not stream_models:
        return [retrain_asset()]
    from airflow.sdk import AssetAny

    from flightdeck.airflow.streaming import drift_alert_schedule

    return AssetAny(retrain_asset(), *drift_alert_schedule())


def release_schedule(consumer: str) -> list[Asset]:
    """A release DAG's schedule: the registrations whose link to it is on."""
    return [release_asset(consumer)]


# ---- reading the triggering events -----------------------------------------------------------
def triggering_extras(context: Any) -> dict[str, list[dict]]:
    """Asset name → the extras of the events that started this run (oldest first); empty for
    a run triggered by hand or by its timetable."""
    events = (context.get("triggering_asset_events") if context else None) or {}
    found: dict[str, list[dict]] = {}
    for asset, asset_events in events.items():
        name = getattr(asset, "name", None) or str(asset)
        found[name] = [dict(getattr(event, "extra", None) or {}) for event in asset_events]
    return found


def _current_context():
    from airflow.sdk import get_current_context

    try:
        return get_current_context()
    except RuntimeError:  # outside a running task (a direct call in a test)
        return {}


def asset_conf(consumer: str, context: Any = None) -> dict:
    """The Params a release DAG takes from the registration that started it (empty otherwise)."""
    from flightdeck.pipeline import conf_from_events

    extras = triggering_extras(context if context is not None else _current_context())
    return conf_from_events(extras.get(release_asset_name(consumer), []))


def with_asset_conf(consumer: str, params: dict | None, context: Any = None) -> dict:
    """`params` with the registration's Params over them when a registration started the run.
    A run triggered by hand has none, so its Params and run conf stay exactly as given."""
    return {**(params or {}), **asset_conf(consumer, context)}


def train_values(params: dict | None, dag_run: Any, context: Any = None) -> dict:
    """The values train_register validates: its Params and run conf when triggered by hand; the
    request's window when started by a retrain request or a stream drift alert (whose link is
    then checked: an alert for a model whose stream link is off skips the run)."""
    from flightdeck.pipeline import conf_from_events

    values = {**(params or {}), **((getattr(dag_run, "conf", None) or {}) if dag_run is not None else {})}
    context = context if context is not None else _current_context()
    requested = conf_from_events(triggering_extras(context).get(RETRAIN_ASSET, []))
    if requested:
        return {**values, **requested}
    from flightdeck.airflow.streaming import alerts_from_context

    alerts = alerts_from_context(context)  # a Kinesis event's batch counts as one alert per record
    if alerts:
        return {**values, **_stream_request(alerts[-1])}
    return values


def _stream_request(payload: dict) -> dict:
    from flightdeck.config import get_settings
    from flightdeck.pipeline import pipeline_config, retrain_request, stream_alert_origin

    with fail_fast_on_user_error():
        model, day = stream_alert_origin(payload, get_settings().model_name)
        links = pipeline_config().for_model(model).retrain
    if not links.on_stream_drift:
        raise AirflowSkipException(f"stream drift alert for {model} on {day}: its stream link is off")
    log.info("stream drift alert %s: retraining %s on the window before %s", payload.get("id"), model, day)
    return retrain_request(model, day, links, "stream_drift", str(payload.get("id")))["conf"]


# ---- emitting ------------------------------------------------------------------------------
@task(outlets=[AssetAlias(RETRAIN_ALIAS)])
def request_retrain(model: dict, monitored: dict, ds=None, outlet_events=None) -> dict:
    """batch_score's drift verdict → a retrain request for the scored model, if its link is on."""
    from datetime import date

    from flightdeck.pipeline import batch_drift_detected, pipeline_config, retrain_request

    with fail_fast_on_user_error():
        links = pipeline_config().for_model(model["name"]).retrain
    if not links.on_batch_drift:
        log.info("retrain link of %s is off: no retrain request", model["name"])
        return {"requested": False, "reason": "link off"}
    if not batch_drift_detected(monitored):
        log.info("no drift on %s: no retrain request", ds)
        return {"requested": False, "reason": "no drift"}
    extra = retrain_request(model["name"], date.fromisoformat(ds), links, "batch_drift", monitored.get("summary", ""))
    outlet_events[AssetAlias(RETRAIN_ALIAS)].add(retrain_asset(), extra=extra)
    log.info("drift on %s: retrain of %s requested on %s", ds, model["name"], extra["window"])
    return {"requested": True, **extra}


@task(outlets=[AssetAlias(RELEASE_ALIAS)])
def request_releases(train_params: dict, mlflow_run_id: str, registered: dict, run_id=None,
                     outlet_events=None) -> dict:
    """A new version → one release request per release link that is on (none for a re-run that
    registered nothing new)."""
    from flightdeck.pipeline import pipeline_config, release_requests

    model = train_params["model_name"]
    with fail_fast_on_user_error():
        links = pipeline_config().for_model(model).on_registered
    window = {key: train_params.get(key) for key in ("window_start", "window_end", "labels_as_of")}
    requests = release_requests(model, links, registered, mlflow_run_id=mlflow_run_id, airflow_run_id=run_id,
                                window=window)
    for consumer, extra in requests.items():
        outlet_events[AssetAlias(RELEASE_ALIAS)].add(release_asset(consumer), extra=extra)
    log.info("version %s of %s: release requests for %s", registered.get("version"), model,
             ", ".join(requests) or "nothing (no link on, or nothing new registered)")
    return {"requested": sorted(requests)}
