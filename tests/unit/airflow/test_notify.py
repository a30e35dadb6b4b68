"""Alerts over real loopback HTTP and SMTP servers, configured as Airflow connections."""

from __future__ import annotations

import json
import threading
import time
import warnings

from flightdeck.airflow.notify import send_alert


def test_webhook_connection_receives_the_alert(webhook_server, monkeypatch):
    url, received = webhook_server
    monkeypatch.setenv("AIRFLOW_CONN_TEST_WEBHOOK", f"{url}/services/T0/B0/xyz")
    assert send_alert("drift on ds=2026-01-02", "credit_score PSI 0.31", conn_id="test_webhook") is True
    (path, body), = received
    assert path == "/services/T0/B0/xyz"
    assert "drift on ds=2026-01-02" in body["text"] and "credit_score PSI 0.31" in body["text"]


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
