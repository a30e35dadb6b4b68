"""
### stream_drift_investigation

Event-driven: runs when the stream scorer publishes a drift alert. The DAG is scheduled on
the asset `flightdeck_stream_drift_alerts`, whose **asset watcher** (a `RedisStreamTrigger`
run by the triggerer) turns every entry of the scorer's alert stream into an asset event.
Each run reads the alert(s) from the triggering asset events, pulls the alerted window's
results from the scorer's output stream and its reference window from the scorer's window
state, writes `reports/stream-drift/drift-<alert id>.json`, and sends a short summary with
`send_alert` (connection `flightdeck_alerts`; logged when it is not defined).

Re-investigate an old alert by hand: trigger with `{"alert_id": "<entry id in the alert stream>"}`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from flightdeck.airflow.defaults import DEFAULT_ARGS, fail_fast_on_user_error
from flightdeck.airflow.streaming import ALERT_STREAM, drift_alert_asset
from flightdeck.config import get_settings

DAG_ID = "stream_drift_investigation"


@task
def investigate(params=None) -> list[dict]:
    from flightdeck.airflow.notify import send_alert
    from flightdeck.airflow.streaming import alerts_from_context
    from flightdeck.streaming.drift import InvalidAlertError, investigate_payload, read_alert
    from flightdeck.streaming.redis_streams import connect

    settings = get_settings()
    redis_url = params["redis_url"] or settings.redis_url
    with fail_fast_on_user_error():
        payloads = alerts_from_context(get_current_context())
        if params["alert_id"]:
            client = connect(redis_url)
            try:
                payloads.append(read_alert(client, params["alert_stream"], params["alert_id"]))
            finally:
                client.close()
        if not payloads:
            raise InvalidAlertError("this run has no alert: it was neither started by an alert nor given one. "
                                    "Fix: trigger it with {\"alert_id\": \"<entry id in the alert stream>\"}.")
        done = []
        for payload in payloads:
            outcome = investigate_payload(redis_url, payload, params["output_stream"], params["state_prefix"],
                                          settings.home / "reports" / "stream-drift")
            send_alert(f"flightdeck: stream score drift (PSI {outcome['score_psi']:.2f})",
                       f"{outcome['summary']}\nreport: {outcome['report']}")
            done.append(outcome)
    return done


settings = get_settings()

with DAG(
    dag_id=DAG_ID,
    description="Investigate a drift alert published by the stream scorer (event-driven).",
    doc_md=__doc__,
    schedule=[drift_alert_asset(settings.redis_url, ALERT_STREAM)],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={**DEFAULT_ARGS, "retries": 1},
    tags=["flightdeck", "streaming", "monitoring"],
    params={
        "redis_url": Param(None, type=["null", "string"]),
        "alert_stream": Param(ALERT_STREAM, type="string"),
        "alert_id": Param(None, type=["null", "string"], description="Investigate this alert entry by hand."),
        "output_stream": Param("flightdeck:scores", type="string", description="The scorer's --output."),
        "state_prefix": Param("flightdeck:stream:stream-scorer", type="string",
                              description="flightdeck:stream:<the scorer's --consumer>."),
    },
) as dag:
    investigate()
