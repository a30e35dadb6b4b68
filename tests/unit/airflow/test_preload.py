"""The scheduler's preload of the tasks' domain code (flightdeck/airflow/preload.py and
deploy/airflow/airflow_local_settings.py): the list matches what the task functions import, it
acts only in a LocalExecutor scheduler, and it is safe to fork after (no Airflow, no threads)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flightdeck.airflow.preload import TASK_MODULES, forks_tasks, preload_for_tasks

REPO = Path(__file__).resolve().parents[3]
ADAPTERS = REPO / "include" / "flightdeck" / "airflow"
LOCAL_SETTINGS = REPO / "deploy" / "airflow" / "airflow_local_settings.py"


def _imported_in_functions(path: Path) -> set[str]:
    """The flightdeck domain modules a file's functions import when they run."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                names = [inner.module]
            elif isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            else:
                continue
            found.update(n for n in names if n.split(".")[0] == "flightdeck" and not n.startswith("flightdeck.airflow"))
    return found


def test_the_list_is_what_the_task_functions_import():
    imported = set().union(*(_imported_in_functions(path) for path in ADAPTERS.glob("*.py")))
    assert imported, "no function-level imports found: the scan is broken"
    missing, stale = imported - set(TASK_MODULES), set(TASK_MODULES) - imported
    assert not missing, f"task functions import {sorted(missing)}: add them to TASK_MODULES"
    assert not stale, f"TASK_MODULES lists {sorted(stale)}, which no task function imports: drop them"
    assert list(TASK_MODULES) == sorted(TASK_MODULES)


@pytest.mark.parametrize(("argv", "executor", "expected"), [
    (["airflow", "scheduler"], "LocalExecutor", True),
    (["/venv/bin/airflow", "scheduler", "--num-runs", "3"], "airflow.executors.local_executor.LocalExecutor", True),
    (["airflow", "scheduler"], "LocalExecutor,CeleryExecutor", True),
    (["airflow", "scheduler"], "CeleryExecutor", False),  # tasks run on Celery workers, not forks
    (["airflow", "api-server"], "LocalExecutor", False),
    (["airflow", "dag-processor"], "LocalExecutor", False),
    (["airflow", "triggerer"], "LocalExecutor", False),
    (["airflow", "dags", "list"], "LocalExecutor", False),
    (["airflow"], "LocalExecutor", False),
])
def test_only_a_local_executor_scheduler_preloads(argv, executor, expected):
    assert forks_tasks(argv, executor) is expected


def test_elsewhere_nothing_is_imported():
    assert preload_for_tasks(["airflow", "api-server"], "LocalExecutor") == []


def _fresh(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_scheduler_preload_imports_every_module_without_airflow_or_threads():
    report = _fresh(
        "import json, sys, threading\n"
        "from flightdeck.airflow.preload import TASK_MODULES, preload_for_tasks\n"
        "done = preload_for_tasks(['airflow', 'scheduler'], 'LocalExecutor')\n"
        "print(json.dumps({'done': done, 'loaded': [m for m in TASK_MODULES if m in sys.modules],\n"
        "                  'airflow': sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'),\n"
        "                  'threads': [t.name for t in threading.enumerate()]}))")
    assert report["done"] == report["loaded"] == list(TASK_MODULES)
    # Airflow reads the local settings during its own import: the preload must not re-enter it.
    assert report["airflow"] == []
    # Forking copies only the calling thread; a Python thread started here would be lost in every task.
    assert report["threads"] == ["MainThread"]


def test_airflow_reads_the_local_settings_and_stays_quiet_outside_the_scheduler():
    """The settings file as Airflow loads it (`import airflow` with it on the path): Airflow starts,
    no policy is registered from it, and a CLI process imports none of the task modules."""
    report = _fresh(
        f"import sys; sys.path.insert(0, {str(LOCAL_SETTINGS.parent)!r}); sys.argv = ['airflow', 'dags', 'list']\n"
        "import json, airflow, airflow.settings, airflow_local_settings\n"
        "print(json.dumps({'file': airflow_local_settings.__file__, 'all': airflow_local_settings.__all__,\n"
        "                  'training': 'flightdeck.training.pipeline' in sys.modules}))")
    assert report == {"file": str(LOCAL_SETTINGS), "all": [], "training": False}
