"""
### stream_drift_investigation

Event-driven: runs when the stream scorer publishes a drift alert. The DAG is scheduled on
the asset `flightdeck_stream_drift_alerts`, whose **asset watcher** (a `RedisStreamTrigger`
run by the triggerer) turns every entry of the scorer's alert stream into an asset event.
Each run reads the alert(s) from the triggering asset events, pulls the alerted window's
results from the scorer's output stream and its reference window from the scorer's window
state, writes `reports/stream-drift/drift-<alert id>.json`, and sends a short summary with
`send_alert` (connection `flightdeck_alerts`; logged when it is not defined).

With a Kinesis scorer (setting `stream_broker` = `kinesis`, `stream_alerts` = its `--alerts`
stream) the watcher is the Amazon provider's `KinesisTrigger` (connection `aws_default`), and
the window's results and reference are read from the scorer's DynamoDB table (Params
`dynamodb_table`, `consumer`, `aws_region`).

Re-investigate an old alert by hand: trigger with `{"alert_id": "<entry id in the alert stream>"}`
(Kinesis: `<shard id>:<sequence number>`).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, chain

from flightdeck.airflow import streaming
from flightdeck.airflow.defaults import DEFAULT_ARGS

DAG_ID = "stream_drift_investigation"

with DAG(
    dag_id=DAG_ID,
    description="Investigate a drift alert published by the stream scorer (event-driven).",
    doc_md=__doc__,
    schedule=streaming.drift_alert_schedule(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={**DEFAULT_ARGS, "retries": 1},
    tags=["flightdeck", "streaming", "monitoring"],
    params=streaming.investigation_params(),
) as dag:
    chain(streaming.investigate())
