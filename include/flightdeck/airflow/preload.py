"""Import the domain code the tasks need once, in the scheduler, so that LocalExecutor tasks
start with it already loaded.

Under LocalExecutor every task instance is a fork of a worker process, which is itself a fork
of the scheduler. A task that resolves a model imports MLflow, scikit-learn, pandas and Dask
from scratch: 5-10 s of CPU on a small machine, for every task instance, and most of a short
task's cost. Imported once in the scheduler before its workers are forked, those modules are
shared by every task (copy-on-write) and a task pays only for what it does.

Only domain modules are preloaded: the import-linter contract keeps them free of Airflow, so
importing them while Airflow is still initialising (Airflow reads `airflow_local_settings`
during `import airflow`) cannot re-enter it. Nothing here opens a connection or starts a
thread; the unit tests check both. deploy/airflow/airflow_local_settings.py calls
`preload_for_tasks` in every Airflow component; it acts only in a LocalExecutor scheduler.

This module must not import Airflow either.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

# The domain modules that the task functions of flightdeck.airflow import when they run
# (tests/unit/airflow/test_preload.py keeps this list equal to those imports).
TASK_MODULES = (
    "flightdeck",
    "flightdeck.batch.params",
    "flightdeck.batch.pipeline",
    "flightdeck.batch.scoring",
    "flightdeck.cockpit",
    "flightdeck.cockpit.pages",
    "flightdeck.cockpit.releases",
    "flightdeck.config",
    "flightdeck.data.generator",
    "flightdeck.delivery.backtest",
    "flightdeck.delivery.gates",
    "flightdeck.delivery.gating",
    "flightdeck.delivery.plan",
    "flightdeck.delivery.preflight",
    "flightdeck.delivery.release",
    "flightdeck.delivery.targets.factory",
    "flightdeck.edge.errors",
    "flightdeck.edge.export",
    "flightdeck.edge.keys",
    "flightdeck.edge.params",
    "flightdeck.edge.publish",
    "flightdeck.edge.store",
    "flightdeck.errors",
    "flightdeck.experiments.definitions",
    "flightdeck.experiments.params",
    "flightdeck.experiments.runs",
    "flightdeck.pipeline",
    "flightdeck.registry",
    "flightdeck.serverless.deploy",
    "flightdeck.serverless.package",
    "flightdeck.serverless.params",
    "flightdeck.serverless.verify",
    "flightdeck.serving.client",
    "flightdeck.serving.db",
    "flightdeck.streaming.drift",
    "flightdeck.streaming.kinesis",
    "flightdeck.streaming.params",
    "flightdeck.streaming.replay",
    "flightdeck.training.params",
    "flightdeck.training.pipeline",
)


def forks_tasks(argv: Sequence[str], executor: str) -> bool:
    """True in the process whose forks run the tasks: `airflow scheduler` with LocalExecutor
    (alone or first in a list of executors). Every other component (api-server, dag-processor,
    triggerer, the CLI) would only pay for modules it never uses."""
    command = list(argv[1:2])
    first_executor = executor.split(",")[0].strip().rsplit(".", 1)[-1]
    return command == ["scheduler"] and first_executor == "LocalExecutor"


def preload_for_tasks(argv: Sequence[str], executor: str) -> list[str]:
    """Import TASK_MODULES when this process forks the tasks; the names imported (none elsewhere)."""
    if not forks_tasks(argv, executor):
        return []
    for name in TASK_MODULES:
        importlib.import_module(name)
    return list(TASK_MODULES)
