"""The pipeline's links on the DAGs themselves: the schedules the DAG files declare, what the
emitting tasks emit (through the same outlet-event accessors Airflow hands a task), and the
Params a run takes from the asset events that started it. The real scheduler's side is proven
by tests/e2e/test_pipeline.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowSkipException
from airflow.sdk.execution_time.context import OutletEventAccessors

from flightdeck.airflow import edge, pipeline, release, serverless, training
from flightdeck.config import get_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
MODEL = {"name": "fraud", "version": "3", "ref": "champion"}
DRIFTED = {"alert": True, "drifted_features": ["income"], "summary": "income drifted"}
CONFIG = """
models:
  fraud:
    retrain: {on_batch_drift: true, window_days: 10, label_delay_days: 2}
    on_registered:
      edge_export: {enabled: true, conf: {channel: beta}}
      promotion: {enabled: true, strategy: blue_green, conf: {endpoint: fraud-ep, bake_seconds: 5}}
  quiet: {}
"""


@pytest.fixture
def links_on(tmp_path, monkeypatch):
    path = tmp_path / "pipeline.yaml"
    path.write_text(CONFIG)
    monkeypatch.setenv("FLIGHTDECK_PIPELINE_CONFIG", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def emitted(events: OutletEventAccessors, alias: str) -> list[tuple[str, dict]]:
    """(asset name, extra) of every event added through `alias`."""
    return [(event.dest_asset_key.name, event.extra) for event in events[AssetAlias(alias)].asset_alias_events]


def triggered_by(asset: str, *extras: dict) -> dict:
    """A task context as Airflow builds it for a run started by events of `asset`."""
    return {"triggering_asset_events": {Asset(asset): [SimpleNamespace(extra=extra) for extra in extras]}}


def test_with_no_pipeline_file_a_drift_emits_nothing(flightdeck_home):
    events = OutletEventAccessors()
    result = pipeline.request_retrain.function(MODEL, DRIFTED, ds="2026-03-20", outlet_events=events)
    assert result == {"requested": False, "reason": "link off"}
    assert emitted(events, pipeline.RETRAIN_ALIAS) == []


def test_a_model_without_the_link_emits_nothing_even_when_another_has_it(links_on):
    events = OutletEventAccessors()
    pipeline.request_retrain.function({**MODEL, "name": "quiet"}, DRIFTED, ds="2026-03-20", outlet_events=events)
    assert emitted(events, pipeline.RETRAIN_ALIAS) == []


def test_no_drift_no_request(links_on):
    events = OutletEventAccessors()
    calm = {"alert": True, "drifted_features": [], "volume_ratio": 2.5}  # a volume alert is not drift
    assert pipeline.request_retrain.function(MODEL, calm, ds="2026-03-20", outlet_events=events)["requested"] is False
    assert emitted(events, pipeline.RETRAIN_ALIAS) == []


def test_a_drift_with_the_link_on_requests_a_retrain_on_the_sliding_window(links_on):
    events = OutletEventAccessors()
    pipeline.request_retrain.function(MODEL, DRIFTED, ds="2026-03-20", outlet_events=events)
    ((asset, extra),) = emitted(events, pipeline.RETRAIN_ALIAS)
    assert asset == "flightdeck_retrain_requests"
    assert extra["conf"] == {"model_name": "fraud", "window_start": "2026-03-09", "window_end": "2026-03-18",
                             "labels_as_of": "2026-03-20"}
    assert extra["source"] == "batch_drift" and "income" in extra["detail"]


def test_an_asset_triggered_train_register_derives_its_window_from_the_request(links_on, monkeypatch):
    events = OutletEventAccessors()
    pipeline.request_retrain.function(MODEL, DRIFTED, ds="2026-03-20", outlet_events=events)
    ((_, extra),) = emitted(events, pipeline.RETRAIN_ALIAS)
    monkeypatch.setattr(pipeline, "_current_context", lambda: triggered_by(pipeline.RETRAIN_ASSET, extra))
    params = {name: param.value for name, param in training.train_params().items()}  # the DAG's defaults
    checked = training.check_params.function(params=params, dag_run=SimpleNamespace(conf={}))
    assert (checked["model_name"], checked["window_start"], checked["window_end"], checked["labels_as_of"]) == \
        ("fraud", "2026-03-09", "2026-03-18", "2026-03-20")


def test_a_hand_triggered_train_register_still_needs_its_window(flightdeck_home, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setattr(pipeline, "_current_context", lambda: {})
    params = {name: param.value for name, param in training.train_params().items()}
    with pytest.raises(AirflowFailException, match="window_start"):
        training.check_params.function(params=params, dag_run=SimpleNamespace(conf={"window_end": "2026-02-10"}))
    checked = training.check_params.function(
        params=params, dag_run=SimpleNamespace(conf={"window_start": "2026-01-01", "window_end": "2026-02-10"}))
    assert checked["window_end"] == "2026-02-10" and checked["model_name"] == get_settings().model_name


def test_a_stream_alert_retrains_only_a_model_whose_stream_link_is_on(links_on, monkeypatch):
    alert = {"payload": {"id": "9-0", "data": {"data": json.dumps({"end": 1_774_000_000.0, "model_name": "fraud"})}}}
    monkeypatch.setattr(pipeline, "_current_context", lambda: triggered_by("flightdeck_stream_drift_alerts", alert))
    with pytest.raises(AirflowSkipException, match="stream link is off"):
        pipeline.train_values({}, None)
    links_on.write_text(CONFIG.replace("on_batch_drift: true", "on_stream_drift: true"))
    values = pipeline.train_values({}, None)
    assert (values["model_name"], values["window_end"], values["labels_as_of"]) == ("fraud", "2026-03-18", "2026-03-20")

    # A Kinesis scorer's event carries a batch of records: the newest alert of the batch counts.
    import base64

    records = [{"ShardId": "s-0", "SequenceNumber": str(n), "Data": base64.b64encode(json.dumps(
        {"end": end, "model_name": "fraud"}).encode()).decode()} for n, end in ((1, 1_773_000_000.0), (2, 1_774_000_000.0))]
    monkeypatch.setattr(pipeline, "_current_context", lambda: triggered_by(
        "flightdeck_stream_drift_alerts", {"payload": {"message_batch": records}}))
    assert pipeline.train_values({}, None)["labels_as_of"] == "2026-03-20"


def test_a_registration_requests_the_configured_releases_with_their_params(links_on):
    events = OutletEventAccessors()
    train_params = {"model_name": "fraud", "window_start": "2026-03-09", "window_end": "2026-03-18",
                    "labels_as_of": "2026-03-20"}
    result = pipeline.request_releases.function(train_params, "mlflow-run", {"version": "4", "created": True},
                                                run_id="asset_triggered__x", outlet_events=events)
    assert result == {"requested": ["edge_export", "promote_blue_green"]}
    sent = dict(emitted(events, pipeline.RELEASE_ALIAS))
    assert set(sent) == {"flightdeck_registered_edge_export", "flightdeck_registered_promote_blue_green"}
    promotion = sent["flightdeck_registered_promote_blue_green"]
    assert (promotion["model_name"], promotion["version"], promotion["run_id"]) == ("fraud", "4", "asset_triggered__x")
    assert promotion["window"]["window_end"] == "2026-03-18"

    # The consumers read them: model and version from the registration, the rest from the file.
    context = triggered_by("flightdeck_registered_promote_blue_green", promotion)
    values = pipeline.with_asset_conf("promote_blue_green", release.rollout_params("blue_green"), context)
    assert (values["model_name"], values["model_ref"], values["endpoint"], values["bake_seconds"]) == \
        ("fraud", "4", "fraud-ep", 5)
    edge_context = triggered_by("flightdeck_registered_edge_export", sent["flightdeck_registered_edge_export"])
    assert pipeline.asset_conf("edge_export", edge_context) == {"channel": "beta", "model_name": "fraud",
                                                                "model_ref": "4"}
    # Another consumer's event is not this DAG's request; a hand-triggered run has none.
    assert pipeline.asset_conf("serverless_package", edge_context) == {}
    assert pipeline.asset_conf("edge_export", {}) == {}


def test_a_rerun_that_registered_nothing_requests_nothing(links_on):
    events = OutletEventAccessors()
    pipeline.request_releases.function({"model_name": "fraud"}, "r", {"version": "4", "created": False},
                                       run_id="x", outlet_events=events)
    assert emitted(events, pipeline.RELEASE_ALIAS) == []


def test_the_release_dags_resolve_their_params_through_the_registration():
    # Each release DAG's Param reader goes through with_asset_conf (a hand-triggered run is unchanged).
    import inspect

    for function in (edge.resolve_export.function, serverless._params, release.resolve_rollout.function):
        assert "with_asset_conf" in inspect.getsource(function), function.__qualname__


PARSE = """
import json, runpy, sys
out = {}
for name in sys.argv[1:]:
    dag = runpy.run_path(f"dags/{name}.py")["dag"]
    condition = getattr(dag.timetable, "asset_condition", None)
    out[name] = sorted(a.name for a in condition.objects) if condition is not None else None
print(json.dumps(out))
"""


def parsed_schedules(env: dict, dags: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", PARSE, *dags], cwd=REPO, capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_stream_link_adds_the_drift_alerts_to_train_registers_schedule(tmp_path):
    """Read when the DAG file is parsed (the schedules with every link off: tests/dags)."""
    import os

    env = {**os.environ, "FLIGHTDECK_HOME": str(tmp_path / "home")}
    assert parsed_schedules(env, ["train_register"]) == {"train_register": ["flightdeck_retrain_requests"]}
    config = tmp_path / "pipeline.yaml"
    config.write_text("models: {fraud: {retrain: {on_stream_drift: true}}}")
    on = parsed_schedules({**env, "FLIGHTDECK_PIPELINE_CONFIG": str(config)}, ["train_register"])
    assert on["train_register"] == ["flightdeck_retrain_requests", "flightdeck_stream_drift_alerts"]
