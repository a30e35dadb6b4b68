"""Airflow for tests: metadata databases migrated once and copied (SQLite file copy, PostgreSQL
`CREATE DATABASE … TEMPLATE`), and a real `airflow standalone` (api-server, scheduler,
dag-processor, triggerer, LocalExecutor) with this repository's DAGs.

`airflow db migrate` costs tens of seconds; a copy of a migrated database costs milliseconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flightdeck.devtools.airflow_api import AirflowRest
from flightdeck.devtools.launch import free_port, standalone_env, stop_process_group
from tests.support.poll import eventually
from tests.support.services import POSTGRES

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def airflow_cli(env: dict, *args: str, timeout: int = 300, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """`airflow <args>` in `env`; fails the test with the output when it exits non-zero."""
    done = subprocess.run([str(BIN / "airflow"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _migrate(folder: Path, sql_alchemy_conn: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    airflow_cli({**os.environ, "AIRFLOW_HOME": str(folder), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
                 "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}, "db", "migrate", timeout=600)


def sqlite_template(folder: Path) -> Path:
    """A migrated SQLite metadata database under `folder`; copy it with `copy_sqlite`."""
    path = folder / "airflow.db"
    _migrate(folder / "airflow", f"sqlite:///{path}")
    assert not path.with_name("airflow.db-wal").exists(), "the template must be a single file"
    return path


def copy_sqlite(template: Path, target: Path) -> str:
    """A private copy of the migrated template at `target`; returns its SQLAlchemy URL."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@contextmanager
def postgres_template(postgres_admin, folder: Path) -> Iterator[str]:
    """A migrated metadata database on the local PostgreSQL; yields its name, drops it after."""
    import sqlalchemy as sa

    name = f"flightdeck_airflow_template_{uuid.uuid4().hex[:10]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        _migrate(folder, f"{POSTGRES}/{name}")
        yield name
    finally:
        with postgres_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def postgres_copy(postgres_admin, template: str, prefix: str = "flightdeck_test") -> Iterator[str]:
    """A fresh database `<prefix>_<random>` cloned from the migrated `template`; yields its URL."""
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with postgres_admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with postgres_admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Airflow:
    """`airflow standalone` on a migrated metadata database, and the environment its CLI needs."""

    root: Path
    env: dict
    port: int
    sql_alchemy_conn: str
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        """The FLIGHTDECK_HOME its tasks use."""
        return Path(self.env["FLIGHTDECK_HOME"])

    def cli(self, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
        return airflow_cli(self.env, *args, timeout=timeout)

    def flightdeck(self, *args: str, timeout: int = 300) -> None:
        done = subprocess.run([str(BIN / "flightdeck"), *args], env=self.env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, done.stderr[-3000:]

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG of the running instance through the REST API (PATCH /dags/{id}, what
        the UI's toggle does): milliseconds, where `airflow dags pause` starts an interpreter."""
        api = AirflowRest(self.url)
        try:
            api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})
        finally:
            api.close()

    def query(self, sql: str, **params) -> list[dict]:
        """Rows of a read-only query on the metadata database (cheaper than a CLI call per poll)."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.sql_alchemy_conn, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]
        finally:
            engine.dispose()

    def runs(self, dag_id: str) -> list[dict]:
        """The DAG's dag_run rows, oldest logical date first; dates as ISO text."""
        rows = self.query("SELECT run_id, run_type, state, logical_date, end_date FROM dag_run "
                          "WHERE dag_id = :dag_id ORDER BY logical_date", dag_id=dag_id)
        for row in rows:
            for key in ("logical_date", "end_date"):
                if row[key] is not None and not isinstance(row[key], str):
                    row[key] = row[key].isoformat()
        return rows

    def backfill_completed(self, dag_id: str) -> bool:
        """Whether the DAG's latest backfill is marked complete."""
        rows = self.query("SELECT completed_at FROM backfill WHERE dag_id = :dag_id ORDER BY id DESC LIMIT 1",
                          dag_id=dag_id)
        return bool(rows) and rows[0]["completed_at"] is not None

    def wait_until(self, predicate, timeout: float, what: str, interval: float = 2):
        def checked():
            assert self.process is None or self.process.poll() is None, \
                f"airflow standalone exited:\n{self.log_tail()}"
            return predicate()
        return eventually(checked, timeout, interval, what=what, detail=self.log_tail)

    def log_tail(self) -> str:
        log = self.root / "standalone.log"
        return log.read_text(errors="replace")[-5000:] if log.exists() else ""

    def start(self) -> None:
        """Start `airflow standalone` and wait until every component reports healthy."""
        with open(self.root / "standalone.log", "a") as log:
            self.process = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=self.env, cwd=self.root,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_until(self.healthy, 240, "a healthy api-server, scheduler, dag-processor, triggerer")
        self.warm_execution_api()

    def warm_execution_api(self) -> None:
        """Build the api-server's Task Execution API now, once the instance is up. It is built on
        its first request (Cadwyn generates its versioned routes then), which held the api-server
        for about 25 s on a busy 2-core machine; left to a task's first call, the task waited for
        it, its supervisor timing out and retrying meanwhile, inside the test's own timeouts."""
        import httpx

        response = httpx.get(f"{self.url}/execution/health", timeout=180)
        assert response.status_code == 200, f"the Task Execution API answered {response.status_code}: {response.text}"

    def kill(self) -> None:
        """SIGKILL every process of the standalone at once, as a crashed machine would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_process_group(self.process, 60)

    def healthy(self) -> bool:
        api = AirflowRest(self.url)
        try:
            return api.healthy()
        finally:
            api.close()


@contextmanager
def standalone_airflow(root: Path, sql_alchemy_conn: str, **extra_env: str) -> Iterator[Airflow]:
    """An `airflow standalone` under `root` (not yet started) on the migrated database at
    `sql_alchemy_conn`, with this repository's DAGs and FLIGHTDECK_HOME under `root` unless
    `extra_env` says otherwise; stopped afterwards."""
    port = free_port()
    env = standalone_env(root / "airflow", str(REPO / "dags"), port, root / "flightdeck",
                         AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sql_alchemy_conn, **extra_env)
    (root / "airflow").mkdir(parents=True, exist_ok=True)
    instance = Airflow(root, env, port, sql_alchemy_conn)
    try:
        yield instance
    finally:
        instance.stop()
