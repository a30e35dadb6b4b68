"""Event-driven scheduling under a real triggerer: an entry in the scorer's drift-alert stream
becomes an asset event (the RedisStreamTrigger of the asset's watcher, run by `airflow
standalone`'s triggerer), which starts stream_drift_investigation; its report lands on disk."""

from __future__ import annotations

import json
import shutil
import time
import uuid

import pytest
import redis

from tests.e2e.conftest import REPO, standalone_airflow

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
REDIS_URL = "redis://127.0.0.1:6379/0"


def test_a_drift_alert_on_the_stream_starts_the_investigation(tmp_path):
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"fdtest-{uuid.uuid4().hex[:10]}:alerts"
    dags = tmp_path / "dags"  # only this DAG: parsing the whole folder costs the scheduler minutes
    dags.mkdir()
    shutil.copy(REPO / "dags" / "stream_drift_investigation.py", dags)
    alert = {"alert": "score_drift", "kind": "tumbling", "start": 60.0, "end": 120.0, "model_version": "3",
             "count": 10, "score_mean": 0.6, "score_std": 0.1, "score_bins": [1] * 10, "score_psi": 0.4,
             "feature_means": {"age": 40.0}, "late_events": 0}
    try:
        (tmp_path / "root").mkdir()
        # Unpaused on creation: the watcher's trigger runs only for an active DAG, and this
        # spares a `dags reserialize` + `dags unpause` before the start.
        with standalone_airflow(tmp_path / "root", AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                                AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
                                FLIGHTDECK_STREAM_ALERTS=stream) as airflow:
            airflow.start()
            # The watcher reads entries appended after it started; until the triggerer runs it,
            # an alert is not seen, so publish one every few seconds until a run appears.
            deadline = time.monotonic() + 240
            while not airflow.runs("stream_drift_investigation") and time.monotonic() < deadline:
                client.xadd(stream, {"data": json.dumps(alert)})
                time.sleep(5)
            airflow.wait_until(lambda: any(r["state"] == "success" for r in airflow.runs("stream_drift_investigation")),
                               240, "an asset-triggered investigation run to succeed")
            runs = airflow.runs("stream_drift_investigation")
            assert {r["run_type"] for r in runs} == {"asset_triggered"}
            reports = list((airflow.root / "flightdeck" / "reports" / "stream-drift").glob("drift-*.json"))
            alert_ids = {i.decode() for i, _ in client.xrange(stream)}
            assert reports and {json.loads(p.read_text())["alert_id"] for p in reports} <= alert_ids
            assert json.loads(reports[0].read_text())["score_psi"] == 0.4
    finally:
        client.delete(stream)
        client.close()
