"""`flightdeck airflow-run DAG --conf JSON --wait`: start a DAG run from CI/CD and report its outcome.

Uses flightdeck.devtools.airflow_api's REST client. Credentials, in order: `AIRFLOW_TOKEN` (a JWT
bearer token), `AIRFLOW_USERNAME` + `AIRFLOW_PASSWORD` (POST /auth/token), else GET /auth/token,
which only a local Airflow with `simple_auth_manager_all_admins` answers.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import httpx

from flightdeck.devtools.airflow_api import AirflowApiError, AirflowRest
from flightdeck.errors import FlightdeckError

FINISHED = {"success", "failed"}


class AirflowRunError(FlightdeckError):
    """The run could not be started, failed, or did not finish in time."""


class CiAirflowRest(AirflowRest):
    """AirflowRest that logs in with a token or a user's password instead of the all-admins token."""

    def __init__(self, base_url: str, token: str | None = None, username: str | None = None,
                 password: str | None = None) -> None:
        super().__init__(base_url.rstrip("/"))
        self.token, self.username, self.password = token, username, password
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def login(self) -> None:
        if self.token:  # it was sent and refused
            raise AirflowRunError("Airflow refused AIRFLOW_TOKEN (401): it expired or is for another "
                                  "Airflow; issue a new one (POST /auth/token)")
        if self.username:
            response = httpx.post(f"{self.base}/auth/token", timeout=30,
                                  json={"username": self.username, "password": self.password or ""})
            if response.status_code >= 300:
                raise AirflowRunError(f"Airflow refused the login of {self.username!r} "
                                      f"({response.status_code}): check AIRFLOW_USERNAME / AIRFLOW_PASSWORD")
            self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
            return
        super().login()


def parse_conf(text: str) -> dict:
    try:
        conf = json.loads(text)
    except ValueError as exc:
        raise AirflowRunError(f"--conf is not JSON ({exc}): pass an object, e.g. "
                              "'{\"window_start\": \"2026-01-01\"}'") from exc
    if not isinstance(conf, dict):
        raise AirflowRunError(f"--conf must be a JSON object, got {type(conf).__name__}")
    return conf


def run_dag(client: AirflowRest, dag_id: str, conf: dict, wait: bool, timeout: float = 3600,
            poll_seconds: float = 10, say=print) -> tuple[str, str]:
    """Trigger `dag_id`; with `wait`, follow it to the end. Returns (run id, state)."""
    try:
        run_id = client.trigger(dag_id, conf, note="started by flightdeck airflow-run")
    except AirflowApiError as exc:
        raise AirflowRunError(f"could not start {dag_id}: {exc}") from exc
    say(f"started {dag_id} run {run_id}")
    if not wait:
        return run_id, "queued"
    deadline = time.monotonic() + timeout
    seen: dict[str, str | None] = {}
    while True:
        state = client.run_state(dag_id, run_id)
        try:
            tasks = client.task_states(dag_id, run_id)
        except AirflowApiError:
            tasks = {}
        for task, task_state in sorted(tasks.items()):
            if task_state and seen.get(task) != task_state:
                say(f"  {task}: {task_state}")
                seen[task] = task_state
        if state in FINISHED:
            break
        if time.monotonic() > deadline:
            raise AirflowRunError(f"{dag_id} run {run_id} still {state} after {timeout:g} s; it keeps running "
                                  "in Airflow (raise --timeout to wait longer)")
        time.sleep(poll_seconds)
    failed = sorted(t for t, s in seen.items() if s in {"failed", "upstream_failed"})
    say(f"{dag_id} run {run_id}: {state}" + (f" (failed tasks: {', '.join(failed)})" if failed else ""))
    if state != "success":
        raise AirflowRunError(f"{dag_id} run {run_id} ended {state}"
                              + (f"; failed tasks: {', '.join(failed)}" if failed else ""))
    return run_id, state


def main(args: argparse.Namespace) -> int:
    if args.timeout <= 0 or args.poll_seconds <= 0:
        raise AirflowRunError("--timeout and --poll-seconds must be > 0")
    conf = parse_conf(args.conf)
    url = args.url or os.environ.get("AIRFLOW_URL") or "http://127.0.0.1:8080"
    client = CiAirflowRest(url, token=os.environ.get("AIRFLOW_TOKEN") or None,
                           username=os.environ.get("AIRFLOW_USERNAME") or None,
                           password=os.environ.get("AIRFLOW_PASSWORD"))
    try:
        run_dag(client, args.dag_id, conf, args.wait, args.timeout, args.poll_seconds)
    except httpx.HTTPError as exc:
        raise AirflowRunError(f"Airflow at {url} did not answer ({exc!r}): check --url / AIRFLOW_URL") from exc
    finally:
        client.close()
    return 0
