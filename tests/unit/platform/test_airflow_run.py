"""`flightdeck airflow-run` over real HTTP against a small stand-in for Airflow's REST API (the
endpoints it calls: POST /auth/token, POST and GET dagRuns, GET taskInstances), served on a
loopback port in this process. A real `airflow standalone` takes a minute to start; the e2e
tests drive it with the same client (flightdeck.devtools.airflow_api)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flightdeck.cli import main


class Airflow:
    """A DAG whose runs move queued → running → the outcome over three GETs."""

    def __init__(self, outcome: str = "success") -> None:
        self.outcome, self.runs, self.triggered, self.logins = outcome, {}, [], []

    def handler(self):
        airflow = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def authorised(self) -> bool:
                if self.headers.get("Authorization") != "Bearer jwt-1":
                    self.answer(401, {"detail": "Not authenticated"})
                    return False
                return True

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
                if self.path == "/auth/token":
                    airflow.logins.append(body)
                    ok = body == {"username": "ci", "password": "s3cret"}
                    return self.answer(201 if ok else 401, {"access_token": "jwt-1"} if ok else {"detail": "no"})
                if not self.authorised():
                    return None
                dag = self.path.split("/")[4]
                if dag != "train_register":
                    return self.answer(404, {"detail": f"The Dag with dag_id: `{dag}` was not found"})
                run_id = f"manual__{len(airflow.runs)}"
                airflow.runs[run_id] = 0
                airflow.triggered.append(body)
                return self.answer(200, {"dag_run_id": run_id})

            def do_GET(self):
                if not self.authorised():
                    return None
                parts = self.path.split("?")[0].split("/")
                run_id = parts[6]
                if self.path.split("?")[0].endswith("/taskInstances"):
                    looks = airflow.runs[run_id]
                    state = "success" if looks >= 2 else "running"
                    if looks >= 2 and airflow.outcome == "failed":
                        state = "failed"
                    return self.answer(200, {"task_instances": [{"task_id": "train_model", "state": state}]})
                airflow.runs[run_id] += 1
                looks = airflow.runs[run_id]
                return self.answer(200, {"state": ["queued", "running", airflow.outcome][min(looks - 1, 2)]})

        return Handler


@pytest.fixture
def airflow(monkeypatch):
    def start(outcome: str = "success") -> Airflow:
        fake = Airflow(outcome)
        server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("AIRFLOW_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("AIRFLOW_USERNAME", "ci")
        monkeypatch.setenv("AIRFLOW_PASSWORD", "s3cret")
        monkeypatch.delenv("AIRFLOW_TOKEN", raising=False)
        return fake

    servers: list[ThreadingHTTPServer] = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_waits_for_success_and_reports_each_task(airflow, capsys):
    fake = airflow("success")
    assert main(["airflow-run", "train_register", "--conf", '{"window_start": "2026-01-01"}', "--wait",
                 "--poll-seconds", "0.01"]) == 0
    out = capsys.readouterr().out
    assert fake.triggered[0]["conf"] == {"window_start": "2026-01-01"}
    assert fake.logins == [{"username": "ci", "password": "s3cret"}]
    assert "started train_register run manual__0" in out and "train_model: running" in out
    assert "train_register run manual__0: success" in out


def test_a_failed_run_exits_non_zero_naming_the_task(airflow, capsys):
    airflow("failed")
    assert main(["airflow-run", "train_register", "--wait", "--poll-seconds", "0.01"]) == 2
    err = capsys.readouterr().err
    assert "ended failed" in err and "train_model" in err


def test_without_wait_it_returns_once_started(airflow, capsys):
    fake = airflow("success")
    assert main(["airflow-run", "train_register"]) == 0
    assert fake.runs == {"manual__0": 0}


@pytest.mark.parametrize(("argv", "env", "words"), [
    (["airflow-run", "train_register", "--conf", "[1]"], {}, "JSON object"),
    (["airflow-run", "train_register", "--conf", "{bad"], {}, "not JSON"),
    (["airflow-run", "no_such_dag"], {}, "could not start no_such_dag"),
    (["airflow-run", "train_register"], {"AIRFLOW_PASSWORD": "wrong"}, "AIRFLOW_USERNAME / AIRFLOW_PASSWORD"),
    (["airflow-run", "train_register"], {"AIRFLOW_TOKEN": "stale"}, "refused AIRFLOW_TOKEN"),
])
def test_bad_input_and_refusals_are_named(airflow, monkeypatch, capsys, argv, env, words):
    airflow("success")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_an_unreachable_airflow_is_named(monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_TOKEN", "t")
    assert main(["airflow-run", "train_register", "--url", "http://127.0.0.1:9"]) == 2
    assert "did not answer" in capsys.readouterr().err
