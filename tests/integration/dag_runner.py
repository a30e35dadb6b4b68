"""Run one DAG with `dag.test()` in a fresh interpreter and print its outcome as JSON.

Airflow reads its configuration once per process, so each metadata database (SQLite,
PostgreSQL) gets its own process.
Usage: python dag_runner.py DAG_ID '{"conf": …}' [LOGICAL_DATE]
"""

from __future__ import annotations

import json
import os
import sys

import pendulum
from airflow.dag_processing.dagbag import DagBag


def main() -> None:
    dag_id, conf = sys.argv[1], json.loads(sys.argv[2])
    logical_date = pendulum.parse(sys.argv[3]) if len(sys.argv) > 3 else None
    dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag(dag_id)
    try:
        run = dag.test(run_conf=conf, logical_date=logical_date)
    except Exception as exc:  # the outcome under test may be a rejected trigger
        outcome = {"rejected": type(exc).__name__, "message": str(exc)}
    else:
        outcome = {"state": str(run.state), "run_id": run.run_id,
                   "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
    print("DAG_OUTCOME " + json.dumps(outcome))


if __name__ == "__main__":
    main()
