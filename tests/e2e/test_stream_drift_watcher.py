"""Event-driven scheduling under a real triggerer: an entry in the scorer's drift-alert stream
becomes an asset event (the RedisStreamTrigger of the asset's watcher, run by the session's
`airflow standalone` triggerer), which starts stream_drift_investigation; its report lands on disk."""

from __future__ import annotations

import json

import pytest

from tests.support.services import redis_client

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
DAG_ID = "stream_drift_investigation"  # unpaused by the session fixture, so its watcher runs


def test_a_drift_alert_on_the_stream_starts_the_investigation(airflow, drift_alert_stream):
    client = redis_client()
    alert = {"alert": "score_drift", "kind": "tumbling", "start": 60.0, "end": 120.0, "model_version": "3",
             "count": 10, "score_mean": 0.6, "score_std": 0.1, "score_bins": [1] * 10, "score_psi": 0.4,
             "feature_means": {"age": 40.0}, "late_events": 0}
    # The watcher reads entries appended after it started; until the triggerer runs it, an alert
    # is not seen, so publish one every few seconds until a run appears.
    def a_run_started() -> bool:
        if airflow.runs(DAG_ID):
            return True
        client.xadd(drift_alert_stream, {"data": json.dumps(alert)})
        return False

    airflow.wait_until(a_run_started, 240, "an asset-triggered investigation run", interval=5)
    airflow.wait_until(lambda: any(r["state"] == "success" for r in airflow.runs(DAG_ID)),
                       240, "an asset-triggered investigation run to succeed")
    runs = airflow.runs(DAG_ID)
    assert {r["run_type"] for r in runs} == {"asset_triggered"}
    reports = list((airflow.home / "reports" / "stream-drift").glob("drift-*.json"))
    alert_ids = {i.decode() for i, _ in client.xrange(drift_alert_stream)}
    assert reports and {json.loads(p.read_text())["alert_id"] for p in reports} <= alert_ids
    assert json.loads(reports[0].read_text())["score_psi"] == 0.4
    client.close()
