"""Run DAGs with `dag.test()` and print each outcome as JSON.

Airflow reads its configuration once per process, so each batch of runs (one metadata
database, one environment) gets a process of its own; within it, the runs share the import of
Airflow and the parse of the DAG folder. Each run's output goes to its own log file.

`python dag_runner.py --serve` is a fork server: it imports the Airflow-free domain modules the
tasks use (the scheduler's preload list: MLflow, scikit-learn, pandas, Dask) once, then reads one
request per line on stdin, `{"env": {…}, "cwd": PATH, "out": PATH, "runs": [RUN, …]}`, and
forks a child per request. The child takes the request's environment wholesale, imports
Airflow under it, runs the batch with its stdout and stderr in `out`, and exits; the server
answers `PID <pid>` when the child starts and `DONE <exit code>` when it has ended.
RUN = {"dag_id": …, "conf": {…}, "logical_date": … | null, "log": PATH, "env": {…} (optional)}.

A run with an `env` of its own runs with those variables set (and unset again afterwards) on a DAG
parsed under them, with fresh flightdeck settings: what a DAG file reads at parse time (a sensor's
timeout) and what a task reads when it runs (an alert connection) both see them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import traceback


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


def run_one(bag, dag_id: str, conf: dict, logical_date: str | None) -> dict:
    # Runs share the DAG: a run's Params start from those of the run before in this interpreter
    # (measured: a train_register run without labels_as_of got the previous run's; a copy of the
    # DAG per run did not prevent it). Callers order their runs accordingly.
    import pendulum

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


def run_batch(runs: list[dict]) -> None:
    """The runs in this process, one after the other; a DAG_OUTCOME line on stdout for each."""
    from airflow.dag_processing.dagbag import DagBag

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


def child(request: dict) -> int:
    """In the forked child: the request's environment, output file and runs."""
    from flightdeck.config import get_settings

    os.environ.clear()
    os.environ.update(request["env"])
    get_settings.cache_clear()
    os.chdir(request["cwd"])
    out = os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        run_batch(request["runs"])
        return 0
    except BaseException:  # noqa: BLE001 - reported in the output file, the exit code says it failed
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def serve() -> None:
    from flightdeck.airflow.preload import TASK_MODULES

    for module in TASK_MODULES:  # Airflow-free, and no thread is left running (tests/unit/airflow/test_preload.py)
        importlib.import_module(module)
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(request)
            finally:
                os._exit(code)
        answers.write(f"PID {pid}\n")
        _, status = os.waitpid(pid, 0)
        answers.write(f"DONE {os.waitstatus_to_exitcode(status)}\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        run_batch(json.loads(sys.argv[1]))
