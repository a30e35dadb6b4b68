"""Run DAGs with `dag.test()` in one fresh interpreter and print each outcome as JSON.

Airflow reads its configuration once per process, so each metadata database (SQLite,
PostgreSQL) gets its own process; within one, several runs share the import of Airflow,
the ML stack and the parse of the DAG folder. Each run's output goes to its own log file.
Usage: python dag_runner.py '[{"dag_id": …, "conf": {…}, "logical_date": … | null, "log": PATH,
"env": {…} (optional)}, …]'

A run with an `env` of its own runs with those variables set (and unset again afterwards) on a DAG
parsed under them, with fresh flightdeck settings: what a DAG file reads at parse time (a sensor's
timeout) and what a task reads when it runs (an alert connection) both see them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

import pendulum
from airflow.dag_processing.dagbag import DagBag


@contextlib.contextmanager
def output_to(path: str):
    """Send this process's stdout and stderr (file descriptors 1 and 2) to `path` meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_one(bag: DagBag, dag_id: str, conf: dict, logical_date: str | None) -> dict:
    # Runs share the DAG: a run's Params start from those of the run before in this interpreter
    # (measured: a train_register run without labels_as_of got the previous run's; a copy of the
    # DAG per run did not prevent it). Callers order their runs accordingly.
    dag = bag.get_dag(dag_id)
    try:
        run = dag.test(run_conf=conf, logical_date=pendulum.parse(logical_date) if logical_date else None)
    except Exception as exc:  # the outcome under test may be a rejected trigger
        return {"rejected": type(exc).__name__, "message": str(exc)}
    return {"state": str(run.state), "run_id": run.run_id,
            "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}


@contextlib.contextmanager
def environment(extra: dict[str, str]):
    """`extra` set in os.environ meanwhile, flightdeck's settings re-read on entry and on exit."""
    from flightdeck.config import get_settings

    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def main() -> None:
    runs = json.loads(sys.argv[1])
    folder = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
    bag = DagBag(dag_folder=folder)
    for run in runs:
        with output_to(run["log"]):
            if run.get("env"):
                with environment(run["env"]):
                    outcome = run_one(DagBag(dag_folder=folder), run["dag_id"], run["conf"], run.get("logical_date"))
            else:
                outcome = run_one(bag, run["dag_id"], run["conf"], run.get("logical_date"))
        print("DAG_OUTCOME " + json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
