"""Alerts to a person, through an Airflow connection the user points at Slack or e-mail.

- connection type `http`/`https`: a POST of `{"text": …}` to the URL (Slack incoming
  webhooks, Mattermost and Teams workflows accept it), e.g.
  `AIRFLOW_CONN_FLIGHTDECK_ALERTS='https://hooks.slack.com/services/…'`;
- connection type `smtp`: an e-mail over SMTP (STARTTLS when the port is 587), with the
  recipients in the extra field: `{"to": "ml-oncall@example.com", "from": "flightdeck@…"}`.
Without the connection an alert is logged, not lost, and the task is not failed for it.

The webhook is posted with `requests`, not the HTTP provider's `HttpHook`: the hook reads the
URL scheme from the connection's `schema`, where a URI-style connection (the form above)
keeps the webhook's path, so it cannot call a URL given that way.
"""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

import requests
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowNotFoundException

from flightdeck.config import get_settings
from flightdeck.errors import ConfigError

log = logging.getLogger(__name__)


def send_alert(subject: str, text: str, conn_id: str | None = None) -> bool:
    """Send one alert; True when it was delivered, False when no channel is configured."""
    conn_id = conn_id or get_settings().alert_conn_id
    try:
        conn = Connection.get(conn_id)
    except AirflowNotFoundException:
        log.warning("ALERT (not sent: no Airflow connection %r; define AIRFLOW_CONN_%s to deliver it): %s\n%s",
                    conn_id, conn_id.upper(), subject, text)
        return False
    if conn.conn_type in ("http", "https"):
        _post_webhook(conn_id, conn, f"*{subject}*\n{text}")
    elif conn.conn_type in ("smtp", "email"):
        _send_email(conn, subject, text)
    else:
        raise ConfigError(f"Airflow connection {conn_id!r}", f"has type {conn.conn_type!r}",
                          "give it type http or https (a webhook URL) or smtp (an e-mail server)")
    log.info("alert sent through %s (%s): %s", conn_id, conn.conn_type, subject)
    return True


def webhook_url(conn: Connection) -> str:
    """`http(s)://host[:port]/path` of a connection (Airflow keeps a URI's path in `schema`)."""
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
    return f"{conn.conn_type}://{conn.host}{port}{path}"


def _post_webhook(conn_id: str, conn: Connection, text: str) -> None:
    response = requests.post(webhook_url(conn), json={"text": text}, timeout=10)
    # The messages leave the URL out: a Slack webhook's path is its secret token.
    if 400 <= response.status_code < 500:
        raise ConfigError(f"Airflow connection {conn_id!r}", f"its webhook answered HTTP {response.status_code}",
                          "check the connection's host, path and token against the webhook's settings")
    if not response.ok:
        raise requests.HTTPError(f"the webhook of Airflow connection {conn_id!r} answered HTTP "
                                 f"{response.status_code}", response=response)


def _send_email(conn: Connection, subject: str, text: str) -> None:
    extra = conn.extra_dejson
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = extra.get("from", conn.login or "flightdeck@localhost")
    message["To"] = extra["to"]
    message.set_content(text)
    with smtplib.SMTP(conn.host, conn.port or 25, timeout=10) as smtp:
        if (conn.port or 25) == 587:
            smtp.starttls()
        if conn.login:
            smtp.login(conn.login, conn.password or "")
        smtp.send_message(message)


def alert_on_failure(context) -> None:
    """on_failure_callback: tell someone which task of which run failed, and why."""
    ti = context["ti"]
    send_alert(f"flightdeck: {ti.dag_id}.{ti.task_id} failed",
               f"run {context['run_id']}: {context.get('exception')!s}"[:3000])
