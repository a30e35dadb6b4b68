"""Airflow's REST API as a user calls it, for scripts that drive Airflow from the outside
(the release demo, the end-to-end tests): trigger runs, follow task instances, read XComs and
logs, answer a human-in-the-loop approval. Plain HTTP: nothing here imports Airflow.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime
from urllib.parse import quote

import httpx

from flightdeck.errors import FlightdeckError


class AirflowApiError(FlightdeckError):
    """Airflow's REST API refused a call; the message has the status and Airflow's answer."""


class AirflowRest:
    """Airflow's REST API with a token from the simple auth manager (GET /auth/token, which
    answers only when `simple_auth_manager_all_admins` is on: local demos and tests)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = httpx.Client(base_url=f"{base_url}/api/v2", timeout=30)

    def close(self) -> None:
        self.http.close()

    def login(self) -> None:
        token = httpx.get(f"{self.base}/auth/token", timeout=30).json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.request(method, path, **kwargs)
        if response.status_code == 401:  # no token yet, or a restarted api-server signs with a new key
            self.login()
            response = self.http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise AirflowApiError(f"Airflow REST {method} {path} answered {response.status_code}: "
                                   f"{response.text[:1000]}")
        return response.json()

    def healthy(self) -> bool:
        try:
            health = httpx.get(f"{self.base}/api/v2/monitor/health", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return False
        return all(health.get(part, {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

    @staticmethod
    def run_path(dag_id: str, run_id: str) -> str:
        return f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"

    def trigger(self, dag_id: str, conf: dict, note: str | None = None) -> str:
        body = {"logical_date": None, "conf": conf, "note": note}
        return self.call("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def active_runs(self, dag_id: str) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns", params={"state": ["running", "queued"]})["dag_runs"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.call("GET", self.run_path(dag_id, run_id))["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.call("GET", f"{self.run_path(dag_id, run_id)}/taskInstances",
                         params={"limit": 100})["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str):
        """The task's return value, or None when it has none."""
        try:
            value = self.call("GET", f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/xcomEntries/"
                                     "return_value")["value"]
        except AirflowApiError:
            return None
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        return value

    def log_events(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> list:
        path = f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/logs/{max(try_number, 1)}"
        return self.call("GET", path, params={"full_content": True},
                         headers={"Accept": "application/json"}).get("content", [])

    def pending_approval(self, dag_id: str, run_id: str) -> dict | None:
        details = self.call("GET", f"{self.run_path(dag_id, run_id)}/hitlDetails",
                            params={"response_received": False})["hitl_details"]
        return next(iter(details), None)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def scheduler_heartbeat(self) -> datetime | None:
        """The scheduler's latest heartbeat (GET /monitor/health), None when it has none."""
        health = httpx.get(f"{self.base}/api/v2/monitor/health", timeout=10).json()
        beat = (health.get("scheduler") or {}).get("latest_scheduler_heartbeat")
        return datetime.fromisoformat(beat) if beat else None

    def wait_for_scheduler_loops(self, since: datetime, loops: int = 2, timeout: float = 120) -> None:
        """Wait until the scheduler has beaten `loops` times after `since`.

        A HITL task parks itself in `awaiting_input` and its process exits; the scheduler then
        processes that exit in a later loop. An answer given before that re-queues the task,
        and the stale exit event marks the re-queued task failed (seen on 3.3.2 when a busy
        scheduler took 5 s to get there). Two heartbeats after the task parked mean at least
        one whole loop ran after it.
        """
        seen: set[datetime] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            beat = self.scheduler_heartbeat()
            if beat is not None and beat > since:
                seen.add(beat)
                if len(seen) >= loops:
                    return
            time.sleep(0.5)
        raise AirflowApiError(f"the scheduler did not beat {loops} times in {timeout:.0f} s; is it running?")

    def respond(self, dag_id: str, run_id: str, option: str, task_id: str = "approve",
                parked_since: datetime | None = None) -> None:
        """Answer the run's pending approval with `option` ("Approve" or "Reject").

        `parked_since`: when the task was seen waiting; the answer then waits for the scheduler
        to have processed the parking (see `wait_for_scheduler_loops`)."""
        if parked_since is not None:
            self.wait_for_scheduler_loops(parked_since)
        self.call("PATCH", f"{self.run_path(dag_id, run_id)}/taskInstances/{task_id}/-1/hitlDetails",
                  json={"chosen_options": [option], "params_input": {}})
