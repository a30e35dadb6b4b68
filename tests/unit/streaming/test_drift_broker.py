"""The drift investigation follows the configured stream broker: the schedule's watcher, the alert's
commit named by its Kinesis partition key, and the window collected from pages of results."""

from __future__ import annotations

import base64
import json

import pytest

from flightdeck.config import get_settings
from flightdeck.errors import ConfigError
from flightdeck.streaming.drift import (
    DriftAlert,
    InvalidAlertError,
    _alert_commit,
    collect_window,
    parse_alert,
)
from flightdeck.streaming.kinesis import alert_commit, alert_key


@pytest.fixture
def settings_env(monkeypatch):
    """Set FLIGHTDECK_* variables for one test; the settings are read again before and after."""
    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"FLIGHTDECK_{name.upper()}", value)
        get_settings.cache_clear()

    yield set_env
    get_settings.cache_clear()


def test_the_schedule_watches_the_kinesis_alert_stream_when_the_broker_is_kinesis(settings_env):
    from airflow.providers.amazon.aws.triggers.kinesis import KinesisTrigger

    from flightdeck.airflow.streaming import (
        DRIFT_ALERT_ASSET,
        RedisStreamTrigger,
        drift_alert_schedule,
    )

    settings_env(stream_broker="kinesis", stream_alerts="drift-alerts")
    (asset,) = drift_alert_schedule()
    (watcher,) = asset.watchers
    assert asset.name == DRIFT_ALERT_ASSET
    assert isinstance(watcher.trigger, KinesisTrigger) and watcher.trigger.stream_name == "drift-alerts"

    settings_env(stream_broker="redis")
    (asset,) = drift_alert_schedule()
    assert isinstance(asset.watchers[0].trigger, RedisStreamTrigger)


def test_a_kinesis_broker_with_a_redis_style_alert_stream_name_is_refused_with_the_setting_to_fix(settings_env):
    from flightdeck.airflow.streaming import drift_alert_schedule

    settings_env(stream_broker="kinesis", stream_alerts="flightdeck:alerts")
    with pytest.raises(ConfigError, match="FLIGHTDECK_STREAM_ALERTS: 'flightdeck:alerts' is not a Kinesis"):
        drift_alert_schedule()


def test_an_unknown_broker_setting_is_refused(settings_env):
    from pydantic import ValidationError

    settings_env(stream_broker="kafka")
    with pytest.raises(ValidationError, match="stream_broker"):
        get_settings()


def test_an_alert_partition_key_names_its_consumer_and_commit():
    assert alert_commit(alert_key("scorer:eu", "000000000000400", 2)) == ("scorer:eu", "000000000000400")
    assert alert_commit("customer-17") is None and alert_commit("a:b:c") is None
    payload = {"id": "shardId-0:5", "partition_key": alert_key("scorer", "000000000000400", 0)}
    assert _alert_commit(payload, "scorer") == "000000000000400"
    assert _alert_commit({"id": "x"}, "scorer") is None  # no key: read back from the newest results
    with pytest.raises(InvalidAlertError, match="consumer 'scorer'"):
        _alert_commit(payload, "other")


def test_a_trigger_batch_becomes_one_payload_per_alert_with_its_partition_key():
    from flightdeck.airflow.streaming import kinesis_alert_payloads

    body = {"alert": "score_drift", "kind": "tumbling", "start": 60, "end": 120, "model_version": "7",
            "score_psi": 0.4}
    batch = {"message_batch": [{"ShardId": "shardId-000000000000", "SequenceNumber": "42", "PartitionKey": "c:000:0",
                                "Data": base64.b64encode(json.dumps(body).encode()).decode()}]}
    (payload,) = kinesis_alert_payloads(batch, "alerts")
    assert payload["id"] == "shardId-000000000000:42" and payload["partition_key"] == "c:000:0"
    assert parse_alert(payload).score_psi == 0.4


def _row(t: float, version: str = "7") -> dict:
    return {"event_time": t, "model_version": version}


def test_the_window_is_collected_from_newest_first_pages_until_a_page_lies_before_it():
    alert = DriftAlert("1-0", "tumbling", 60.0, 120.0, "7", 0.4, {})
    pages = [[_row(130), _row(119), _row(118, "6")], [_row(90), _row(61)], [_row(60), _row(59)],
             [_row(58), _row(10)], [_row(70)]]  # the last page is never read: the one before lies before the window
    assert [r["event_time"] for r in collect_window(iter(pages), alert)] == [60, 61, 90, 119]
    assert collect_window(iter(pages), alert, max_scan=3) == [_row(119)]
