"""Fixtures that run DAGs end to end: a raw data set, an Airflow metadata database
(SQLite, or a fresh database on the local PostgreSQL, each a copy of one migrated per
session), a temporary MLflow store, and the fork server that runs `dag.test()` batches."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.airflow import copy_sqlite, postgres_copy, sqlite_template

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("dag_runner.py")


class DagRunner:
    """tests/integration/dag_runner.py as a fork server, one per pytest worker: the ML stack is
    imported once, and each batch of runs is a fork of it that imports Airflow under the batch's
    own environment (before, every batch was a fresh interpreter that imported everything)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def _server(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, str(RUNNER), "--serve"], cwd=REPO, text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return self.process

    def _answer(self, server: subprocess.Popen, prefix: str, deadline: float) -> str | None:
        """The server's next line (which must start with `prefix`), or None at the deadline."""
        ready, _, _ = select.select([server.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return None
        line = server.stdout.readline()
        assert line.startswith(prefix), f"dag runner server answered {line!r} (exit {server.poll()})"
        return line.removeprefix(prefix).strip()

    def run(self, env: dict, runs: list[dict], out: Path, timeout: float) -> int:
        """Run the batch in a fork with `env`, its output in `out`; its exit code. A batch still
        running after `timeout` seconds is killed and fails the test."""
        server = self._server()
        server.stdin.write(json.dumps({"env": env, "cwd": str(REPO), "out": str(out), "runs": runs}) + "\n")
        server.stdin.flush()
        deadline = time.monotonic() + timeout
        pid = self._answer(server, "PID ", time.monotonic() + 60)
        assert pid is not None, f"dag runner server started no batch within 60 s (exit {server.poll()})"
        pid = int(pid)
        code = self._answer(server, "DONE ", deadline)
        if code is None:
            os.kill(pid, signal.SIGKILL)
            self._answer(server, "DONE ", time.monotonic() + 60)
            raise AssertionError(f"dag.test() batch still running after {timeout:g} s, killed:\n"
                                 f"{out.read_text(errors='replace')[-5000:]}")
        return int(code)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


@dataclass
class AirflowSandbox:
    """An AIRFLOW_HOME + FLIGHTDECK_HOME pair and the environment that points at them."""

    root: Path
    sql_alchemy_conn: str
    runner: DagRunner
    env: dict = field(init=False)

    @property
    def logs(self) -> Path:
        return self.root / "dag-logs"

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.root / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "FLIGHTDECK_HOME": str(self.root / "flightdeck"),
            "FLIGHTDECK_ROWS_PER_DAY": "400",
            # One Dask worker process per scoring run's local cluster (default: one per core): a
            # second worker adds only start-up time here. Scoring on several workers is proven by
            # tests/integration/test_dask_scoring.py and tests/unit/batch/test_cluster.py.
            "FLIGHTDECK_DASK_WORKERS": "1",
        }

    def run(self, *args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(args, env={**self.env, **(env or {})}, cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)

    def generate(self, start: str, end: str, scenario: str = "clean", *extra: str) -> None:
        """`flightdeck generate-data` with this sandbox's settings, in this process (an interpreter
        start per call cost more than the data)."""
        from flightdeck.cli import build_parser
        from flightdeck.config import Settings

        args = build_parser().parse_args(["generate-data", "--start", start, "--end", end, "--scenario", scenario,
                                          *extra])
        settings = Settings(home=Path(self.env["FLIGHTDECK_HOME"]),
                            rows_per_day=int(self.env["FLIGHTDECK_ROWS_PER_DAY"]))
        args.func(args, settings)

    def dag_test(self, dag_id: str, conf: dict, logical_date: str | None = None, timeout: int = 600,
                 env: dict | None = None) -> dict:
        """Run the DAG with dag.test(); returns {"state", "tasks", "log"} or {"rejected", "message", "log"}."""
        return self.dag_tests([(dag_id, conf, logical_date)], timeout=timeout, env=env)[0]

    def dag_tests(self, runs: list[tuple], timeout: int = 600, env: dict | None = None) -> list[dict]:
        """Several (dag_id, conf, logical_date[, run_env]) runs, one after the other in ONE
        interpreter (Airflow and the ML stack imported once); an outcome per run, each with its own
        log. `env` holds for every run; a run's own `run_env` only for that run (its DAG parsed
        again under it, see dag_runner.py)."""
        self.logs.mkdir(parents=True, exist_ok=True)
        specs = [{"dag_id": run[0], "conf": run[1], "logical_date": run[2],
                  "env": run[3] if len(run) > 3 else None,
                  "log": str(self.logs / f"{run[0]}-{uuid.uuid4().hex[:8]}.log")}
                 for run in runs]
        out = self.logs / f"runner-{uuid.uuid4().hex[:8]}.out"
        code = self.runner.run({**self.env, **(env or {})}, specs, out, timeout=timeout * len(runs))
        output = out.read_text(errors="replace")
        lines = [line for line in output.splitlines() if line.startswith("DAG_OUTCOME ")]
        tail = "\n".join(Path(s["log"]).read_text(errors="replace")[-3000:] for s in specs
                         if Path(s["log"]).exists())
        assert len(lines) == len(specs), \
            f"runner printed {len(lines)} of {len(specs)} outcomes (exit {code}):\n{output[-5000:]}\n{tail}"
        outcomes = []
        for line, spec in zip(lines, specs, strict=True):
            outcome = json.loads(line.removeprefix("DAG_OUTCOME "))
            outcome["log"] = Path(spec["log"]).read_text(errors="replace")
            outcomes.append(outcome)
        return outcomes

    def registry(self):
        from flightdeck.config import Settings
        from flightdeck.registry import Registry

        return Registry.from_settings(Settings(home=self.root / "flightdeck"))


@pytest.fixture(scope="session")
def airflow_sqlite_template(tmp_path_factory) -> Path:
    """One `airflow db migrate` per session; every SQLite sandbox starts from a copy of it."""
    return sqlite_template(tmp_path_factory.mktemp("airflow-template"))


@pytest.fixture(scope="session")
def dag_runner() -> DagRunner:
    """The worker's `dag.test()` fork server, started on first use."""
    runner = DagRunner()
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def sqlite_sandbox(tmp_path_factory, airflow_sqlite_template, dag_runner) -> AirflowSandbox:
    root = tmp_path_factory.mktemp("sqlite-sandbox")
    return AirflowSandbox(root, copy_sqlite(airflow_sqlite_template, root / "airflow.db"), dag_runner)


@pytest.fixture(scope="module")
def postgres_sandbox(tmp_path_factory, postgres_admin, airflow_postgres_template, dag_runner):
    """A throw-away database on the local PostgreSQL server (a copy of the migrated template), dropped afterwards."""
    with postgres_copy(postgres_admin, airflow_postgres_template) as url:
        yield AirflowSandbox(tmp_path_factory.mktemp("postgres-sandbox"), url, dag_runner)
