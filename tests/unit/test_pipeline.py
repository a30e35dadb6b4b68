"""The self-running pipeline's decisions: which links are on for which model, the sliding window
of a drifted day, and what a retrain or release request carries."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from flightdeck.errors import ConfigError
from flightdeck.pipeline import (
    PipelineConfig,
    RetrainLinks,
    batch_drift_detected,
    conf_from_events,
    load_pipeline_config,
    release_requests,
    retrain_request,
    retrain_window,
    stream_alert_origin,
)

REPO = Path(__file__).resolve().parents[2]

FILE = """
models:
  fraud:
    retrain: {on_batch_drift: true, window_days: 14, label_delay_days: 3, conf: {model_type: mlp}}
    on_registered:
      edge_export: {enabled: true, conf: {channel: beta, rollout_percent: 10}}
      promotion: {enabled: true, strategy: blue_green, conf: {endpoint: fraud, require_approval: true}}
  churn: {}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def test_no_file_means_every_link_off(tmp_path):
    config = load_pipeline_config(tmp_path / "absent.yaml")
    links = config.for_model("anything")
    assert not links.retrain.any
    assert links.on_registered.enabled() == {}


def test_links_are_keyed_by_model(tmp_path):
    config = load_pipeline_config(write(tmp_path, FILE))
    fraud, churn, other = (config.for_model(name) for name in ("fraud", "churn", "other"))
    assert fraud.retrain.on_batch_drift and not fraud.retrain.on_stream_drift
    assert sorted(fraud.on_registered.enabled()) == ["edge_export", "promote_blue_green"]
    assert not churn.retrain.any and churn.on_registered.enabled() == {}
    assert other == churn  # a model the file does not name: all off, like an empty entry


def test_the_sample_file_of_the_repository_is_valid():
    config = load_pipeline_config(REPO / "deploy" / "pipeline.yaml")
    assert config.models, "the sample should show at least one model's links"


@pytest.mark.parametrize(("text", "named"), [
    ("models: {m: {retrain: {on_batch_drift: yes, windw_days: 3}}}", "windw_days"),
    ("models: {m: {retrain: {conf: {window_start: '2026-01-01'}}}}", "window_start"),
    ("models: {m: {retrain: {conf: {marginn: 0.1}}}}", "marginn"),
    ("models: {m: {on_registered: {promotion: {enabled: true, strategy: linear}}}}", "strategy"),
    ("models: {m: {on_registered: {promotion: {conf: {model_ref: '3'}}}}}", "model_ref"),
    ("models: {m: {on_registered: {edge_export: {conf: {chanel: beta}}}}}", "chanel"),
    ("models: {'bad name': {}}", "bad name"),
    ("models: [", "YAML"),
])
def test_a_malformed_file_names_the_file_the_entry_and_the_fix(tmp_path, text, named):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path)
    message = str(info.value)
    assert str(path) in message and named in message and "Fix:" in message


def test_the_sliding_window_ends_the_label_delay_before_the_drifted_day():
    window = retrain_window(date(2026, 3, 20), RetrainLinks(window_days=14, label_delay_days=3))
    assert window == {"window_start": "2026-03-04", "window_end": "2026-03-17", "labels_as_of": "2026-03-20"}
    one_day = retrain_window(date(2026, 3, 20), RetrainLinks(window_days=1))
    assert one_day == {"window_start": "2026-03-20", "window_end": "2026-03-20", "labels_as_of": "2026-03-20"}


def test_a_retrain_request_carries_model_window_and_conf_train_register_accepts():
    from flightdeck.training.params import TrainParams

    links = RetrainLinks(on_batch_drift=True, window_days=10, conf={"model_type": "mlp", "margin": 0.0})
    extra = retrain_request("fraud", date(2026, 3, 20), links, "batch_drift", "x" * 2000)
    assert extra["model_name"] == "fraud" and extra["source"] == "batch_drift" and len(extra["detail"]) == 500
    params = TrainParams.parse(extra["conf"])
    assert (params.model_name, params.model_type, params.margin) == ("fraud", "mlp", 0.0)
    assert (str(params.window_start), str(params.window_end), str(params.labels_as_of)) == \
        ("2026-03-11", "2026-03-20", "2026-03-20")
    json.dumps(extra)  # an asset event's extra must be JSON


def test_drift_is_drifted_features_or_score_not_volume():
    assert batch_drift_detected({"alert": True, "drifted_features": ["income"]})
    assert batch_drift_detected({"alert": True, "drifted_features": [], "score_drifted": True})
    assert not batch_drift_detected({"alert": True, "drifted_features": [], "volume_ratio": 3.0})
    assert not batch_drift_detected({"alert": False, "drifted_features": []})


def test_a_stream_alert_names_its_model_and_the_day_its_window_ended():
    def payload(body):
        return {"id": "1-0", "data": {"data": json.dumps(body)}}

    end = 1_774_000_000.0  # 2026-03-20 09:46:40 UTC
    assert stream_alert_origin(payload({"end": end}), "default-model") == ("default-model", date(2026, 3, 20))
    assert stream_alert_origin(payload({"end": end, "model_name": "fraud"}), "x")[0] == "fraud"
    with pytest.raises(ConfigError, match="no JSON body"):
        stream_alert_origin({"id": "1-0", "data": {"data": "not json"}}, "x")


def test_a_new_version_requests_exactly_the_releases_whose_link_is_on(tmp_path):
    links = load_pipeline_config(write(tmp_path, FILE)).for_model("fraud").on_registered
    requests = release_requests("fraud", links, {"version": 7, "created": True}, mlflow_run_id="r1",
                                airflow_run_id="manual__x", window={"window_end": "2026-03-17"})
    assert sorted(requests) == ["edge_export", "promote_blue_green"]
    promotion = requests["promote_blue_green"]
    assert promotion["conf"] == {"endpoint": "fraud", "require_approval": True, "model_name": "fraud",
                                 "model_ref": "7"}
    assert (promotion["version"], promotion["mlflow_run_id"], promotion["run_id"]) == ("7", "r1", "manual__x")
    assert promotion["window"] == {"window_end": "2026-03-17"}
    assert requests["edge_export"]["conf"]["channel"] == "beta"


def test_the_promotion_request_follows_the_configured_strategy():
    config = PipelineConfig.model_validate(
        {"models": {"m": {"on_registered": {"promotion": {"enabled": True}}}}})
    requests = release_requests("m", config.for_model("m").on_registered, {"version": "2", "created": True},
                                mlflow_run_id="r", airflow_run_id="a")
    assert list(requests) == ["promote_canary"]


def test_nothing_is_requested_when_nothing_new_was_registered(tmp_path):
    links = load_pipeline_config(write(tmp_path, FILE)).for_model("fraud").on_registered
    assert release_requests("fraud", links, {"version": 7, "created": False}, mlflow_run_id="r",
                            airflow_run_id="a") == {}


def test_the_newest_event_conf_wins():
    assert conf_from_events([{"conf": {"model_ref": "2"}}, {"other": 1}, {"conf": {"model_ref": "3"}}]) == \
        {"model_ref": "3"}
    assert conf_from_events([{"payload": {}}]) == {}
