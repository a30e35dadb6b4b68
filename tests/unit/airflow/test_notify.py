"""Alerts over real loopback HTTP and SMTP servers, configured as Airflow connections."""

from __future__ import annotations

import json
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

from flightdeck.airflow.notify import send_alert
from flightdeck.errors import ConfigError


@pytest.fixture
def answering_webhook():
    """A loopback webhook that answers every POST with `status[0]` and records (headers, body)."""
    status, received = [200], []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(status[0])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", status, received
    server.shutdown()
    server.server_close()


def test_webhook_connection_receives_the_alert(webhook_server, monkeypatch):
    url, received = webhook_server
    monkeypatch.setenv("AIRFLOW_CONN_TEST_WEBHOOK", f"{url}/services/T0/B0/xyz")
    assert send_alert("drift on ds=2026-01-02", "credit_score PSI 0.31", conn_id="test_webhook") is True
    (path, body), = received
    assert path == "/services/T0/B0/xyz"
    assert "drift on ds=2026-01-02" in body["text"] and "credit_score PSI 0.31" in body["text"]


def test_webhook_body_is_json_with_the_subject_in_bold(answering_webhook, monkeypatch):
    url, _, received = answering_webhook
    monkeypatch.setenv("AIRFLOW_CONN_TEST_WEBHOOK", f"{url}/hooks/abc")
    send_alert("rollout rolled back", "error rate 0.07 > 0.01", conn_id="test_webhook")
    (headers, body), = received
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"text": "*rollout rolled back*\nerror rate 0.07 > 0.01"}


def test_webhook_rejecting_the_alert_is_a_config_error_without_the_token(answering_webhook, monkeypatch):
    url, status, received = answering_webhook
    status[0] = 404
    monkeypatch.setenv("AIRFLOW_CONN_TEST_WEBHOOK", f"{url}/services/T0/B0/secret-token")
    with pytest.raises(ConfigError, match="'test_webhook'.*HTTP 404") as raised:
        send_alert("drift", "details", conn_id="test_webhook")
    assert "secret-token" not in str(raised.value) and len(received) == 1


def test_webhook_server_error_fails_the_send(answering_webhook, monkeypatch):
    url, status, _ = answering_webhook
    status[0] = 503
    monkeypatch.setenv("AIRFLOW_CONN_TEST_WEBHOOK", f"{url}/services/T0/B0/secret-token")
    with pytest.raises(requests.HTTPError, match="HTTP 503") as raised:
        send_alert("drift", "details", conn_id="test_webhook")
    assert "secret-token" not in str(raised.value)


def test_connection_of_another_type_is_a_config_error(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TEST_POSTGRES", "postgres://user@127.0.0.1:5432/db")
    with pytest.raises(ConfigError, match="'test_postgres'.*'postgres'.*http or https"):
        send_alert("drift", "details", conn_id="test_postgres")


def test_smtp_connection_sends_an_email(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import asyncore
        import smtpd

    messages = []

    class Sink(smtpd.SMTPServer):
        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
            messages.append((mailfrom, rcpttos, data))

    sink = Sink(("127.0.0.1", 0), None)
    port = sink.socket.getsockname()[1]

    sent = threading.Event()

    deadline = time.time() + 15

    def serve_until_sent():
        while not sent.is_set() and time.time() < deadline:
            asyncore.loop(timeout=0.05, count=1)

    thread = threading.Thread(target=serve_until_sent, daemon=True)
    thread.start()
    extra = json.dumps({"to": "oncall@example.com", "from": "flightdeck@example.com"})
    monkeypatch.setenv("AIRFLOW_CONN_TEST_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": extra}))
    assert send_alert("batch_score failed", "ds=2026-01-02: too many bad rows", conn_id="test_smtp") is True
    sent.set()
    thread.join(timeout=15)
    sink.close()
    (mailfrom, rcpttos, data), = messages
    assert mailfrom == "flightdeck@example.com" and rcpttos == ["oncall@example.com"]
    assert b"too many bad rows" in data


def test_missing_connection_logs_the_alert_instead_of_failing(caplog):
    with caplog.at_level("WARNING"):
        assert send_alert("drift", "details", conn_id="no_such_connection") is False
    assert "AIRFLOW_CONN_NO_SUCH_CONNECTION" in caplog.text and "details" in caplog.text
