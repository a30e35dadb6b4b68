"""The import floors: the import-linter contracts in pyproject.toml, the DAG files' imports,
and Airflow staying out of a process that imports every domain module."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import flightdeck

REPO = Path(__file__).resolve().parents[2]
DAGS = sorted((REPO / "dags").glob("*.py"))

# What a DAG file may import: it declares tasks and edges, the task bodies live in
# flightdeck.airflow. Exact module names, or a prefix ending in a dot.
DAG_IMPORTS_ALLOWED = (
    "__future__",
    "datetime",
    "pendulum",
    "airflow.sdk",
    "airflow.sdk.",
    # Wiring-only operators shipped with Airflow: a join point and a trigger of another DAG.
    "airflow.providers.standard.operators.empty",
    "airflow.providers.standard.operators.trigger_dagrun",
    "flightdeck.airflow",
    "flightdeck.airflow.",
    "flightdeck.config",
)


def test_import_linter_contracts_hold():
    """Each floor imports only the floors below it, no domain module imports Airflow, and no
    package has an import cycle between its modules (`[tool.importlinter]` in pyproject.toml;
    lazy imports inside functions count too)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert f"{len(contracts)} kept, 0 broken" in done.stdout, done.stdout[-2000:]


def test_the_airflow_contract_covers_every_module_but_flightdeck_airflow():
    """The forbidden contract lists its sources by name: a new top-level module must join it."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (forbidden,) = [c for c in contracts if c["type"] == "forbidden" and c["forbidden_modules"] == ["airflow"]]
    top_level = {f"flightdeck.{m.name}" for m in pkgutil.iter_modules(flightdeck.__path__)}
    assert set(forbidden["source_modules"]) == top_level - {"flightdeck.airflow"}


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def _allowed(module: str) -> bool:
    return any(module == rule or (rule.endswith(".") and module.startswith(rule))
               for rule in DAG_IMPORTS_ALLOWED)


def test_the_import_check_tells_wiring_from_logic():
    assert _allowed("airflow.sdk") and _allowed("airflow.sdk.definitions.param")
    assert _allowed("flightdeck.airflow") and _allowed("flightdeck.airflow.release")
    assert not _allowed("flightdeck.airflowish") and not _allowed("airflow.models")
    assert not _allowed("flightdeck.training.pipeline") and not _allowed("flightdeck.config.extra")


@pytest.mark.parametrize("dag_file", DAGS, ids=[p.name for p in DAGS])
def test_dag_files_import_only_wiring(dag_file: Path):
    """A DAG file imports the Airflow SDK, flightdeck.airflow and flightdeck.config, nothing
    of the domain: task bodies live in flightdeck.airflow."""
    wrong = [f"line {line}: {module}" for line, module in _imported_modules(dag_file) if not _allowed(module)]
    assert not wrong, f"{dag_file.name} imports beyond wiring: {wrong}"


def test_importing_every_domain_module_leaves_airflow_out():
    """Import-time check in one fresh interpreter: import-linter reads the source, this sees
    what importing actually loads (a dependency that pulls Airflow in would show here)."""
    code = ("import importlib, pkgutil, sys, flightdeck\n"
            "names = [m.name for m in pkgutil.walk_packages(flightdeck.__path__, 'flightdeck.')\n"
            "         if not m.name.startswith(('flightdeck.airflow', 'flightdeck.serving.migrations'))]\n"
            "for name in names: importlib.import_module(name)\n"
            "print(len(names), sorted({m.split('.')[0] for m in sys.modules} & {'airflow'}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    count, imported = done.stdout.split(maxsplit=1)
    assert int(count) > 40 and imported.strip() == "[]", done.stdout
