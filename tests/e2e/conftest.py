"""A real Airflow (`airflow standalone`: api-server, scheduler, dag-processor, triggerer on
SQLite + LocalExecutor) with this repository's DAGs, for tests that need the scheduler."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Airflow:
    """`airflow standalone` (started and stopped by the test) and the environment its CLI needs."""

    root: Path
    env: dict
    port: int
    process: subprocess.Popen | None = None

    def cli(self, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
        done = subprocess.run([str(BIN / "airflow"), *args], env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    def flightdeck(self, *args: str, timeout: int = 300) -> None:
        done = subprocess.run([str(BIN / "flightdeck"), *args], env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]

    def runs(self, dag_id: str) -> list[dict]:
        """dag_run rows straight from the metadata database (cheaper than a CLI call per poll)."""
        with contextlib.closing(sqlite3.connect(self.root / "airflow" / "airflow.db", timeout=30)) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT run_id, run_type, state, logical_date, end_date FROM dag_run "
                              "WHERE dag_id = ? ORDER BY logical_date", (dag_id,)).fetchall()
        return [dict(row) for row in rows]

    def backfill_completed(self, dag_id: str) -> bool:
        """Whether the DAG's latest backfill is marked complete."""
        with contextlib.closing(sqlite3.connect(self.root / "airflow" / "airflow.db", timeout=30)) as db:
            row = db.execute("SELECT completed_at FROM backfill WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
                             (dag_id,)).fetchone()
        return row is not None and row[0] is not None

    def wait_until(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            assert self.process is None or self.process.poll() is None, \
                f"airflow standalone exited:\n{self.log_tail()}"
            time.sleep(5)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return (self.root / "standalone.log").read_text(errors="replace")[-5000:]

    def start(self) -> None:
        """Start `airflow standalone` and wait until every component reports healthy."""
        with open(self.root / "standalone.log", "a") as log:
            self.process = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=self.env, cwd=self.root,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_until(self.healthy, 240, "a healthy api-server, scheduler, dag-processor, triggerer")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5) as r:
                health = json.loads(r.read())
        except OSError:
            return False
        return all(health.get(part, {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "triggerer", "dag_processor"))


@contextlib.contextmanager
def standalone_airflow(root: Path, **extra_env: str):
    """A migrated SQLite Airflow under `root` (not yet started) with this repo's DAGs; stopped after."""
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(root / "airflow"),
        # A long busy timeout: scheduler, dag-processor, api-server and the CLI share one SQLite file.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow' / 'airflow.db'}?timeout=60",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # Parse each DAG file once, not every 30 s: a dozen files re-parsed twice a minute cost
        # the dag-processor most of a core, which the scheduler and the tasks need here.
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        # Free log-server ports: two Airflows on one machine (a demo, a test) must not clash.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "FLIGHTDECK_HOME": str(root / "flightdeck"),
        **extra_env,
    }
    (root / "airflow").mkdir()
    instance = Airflow(root, env, port)
    instance.cli("db", "migrate", timeout=300)
    # Write-ahead logging lets the CLI and the test read while the scheduler writes; in the
    # default rollback journal a CLI write (e.g. `backfill create`) could fail half-way with
    # "database is locked". The mode is stored in the database file.
    with contextlib.closing(sqlite3.connect(root / "airflow" / "airflow.db")) as db:
        assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    with standalone_airflow(tmp_path_factory.mktemp("standalone")) as instance:
        yield instance
