"""Every DAG file imports cleanly, parses fast (against the SDK's import time), keeps heavy libraries out of its top level,
and declares tags, an owner and retries."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = {"tensorflow", "mlflow", "sklearn", "dask", "distributed", "great_expectations",
         "onnxruntime", "onnx", "skl2onnx", "pandas", "keras", "joblib"}
# A DAG file may cost at most this share of the time Airflow's SDK takes to import, measured in
# the same interpreter: a ratio, so a loaded machine slows both sides alike.
PARSE_BUDGET_RATIO = 0.5

# Runs in one fresh interpreter: import Airflow's SDK first (the DAG processor has it loaded, and
# its import time is the yardstick), then parse each DAG file in a fork of that interpreter (so
# no file sees another's imports), timing only the file and reporting which heavy modules it
# pulled in. One SDK import for every file instead of one per file.
PROBE = """
import json, os, runpy, sys, time
start = time.perf_counter()
import airflow.sdk, pendulum
import airflow.sdk.definitions.dag
sdk_seconds = time.perf_counter() - start
heavy_names = set(json.loads(sys.argv[1]))
for path in sys.argv[2:]:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            before = set(sys.modules)
            start = time.perf_counter()
            runpy.run_path(path, run_name="dag_under_test")
            seconds = time.perf_counter() - start
            heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before} & heavy_names)
            print(json.dumps({"path": path, "ratio": seconds / sdk_seconds, "seconds": seconds, "heavy": heavy}))
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        print(json.dumps({"path": path, "failed": True}))
"""


def _probe(*paths: Path) -> dict[str, dict]:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sorted(HEAVY)), *map(str, paths)],
                         capture_output=True, text=True, timeout=120 + 30 * len(paths))
    assert out.returncode == 0, f"the parse probe failed:\n{out.stderr[-3000:]}"
    results = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            assert not result.get("failed"), f"{Path(result['path']).name} failed to parse:\n{out.stderr[-3000:]}"
            results[result["path"]] = result
    assert set(results) == set(map(str, paths)), f"probe printed {sorted(results)}:\n{out.stderr[-3000:]}"
    return results


@pytest.fixture(scope="module")
def parse_probes() -> dict[str, dict]:
    return _probe(*DAG_FILES)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_folder_has_dags():
    assert DAG_FILES, "no DAG files found"


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_id_matches_file_name(dagbag, path):
    assert path.stem in dagbag.dags, f"{path.name} should define DAG_ID = {path.stem!r}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_heavy_imports_at_module_top(path):
    tree = ast.parse(path.read_text(), str(path))
    offenders = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        offenders += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not offenders, f"{path.name} imports heavy libraries at top level: {offenders}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parses_fast_without_loading_heavy_libraries(parse_probes, path):
    probe = parse_probes[str(path)]
    assert probe["heavy"] == [], f"{path.name} pulls in {probe['heavy']} at parse time (transitively)"
    best = probe
    for _ in range(2):  # best of three when over budget: one probe can be unlucky
        if best["ratio"] < PARSE_BUDGET_RATIO:
            break
        best = min(best, _probe(path)[str(path)], key=lambda p: p["ratio"])
    assert best["ratio"] < PARSE_BUDGET_RATIO, (
        f"{path.name} took {best['seconds']:.2f} s to parse, {best['ratio']:.2f}× the SDK's import "
        f"(budget {PARSE_BUDGET_RATIO}×)")


def test_every_dag_has_tags_owner_and_retries(dagbag):
    from airflow.providers.standard.operators.hitl import HITLOperator

    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            if isinstance(task, HITLOperator):
                # A retry would ask the human again after a rejection or a timeout.
                assert task.retries == 0, f"{dag_id}.{task.task_id}: a human gate must not retry"
            else:
                assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


@pytest.mark.parametrize("dag_id", ["promote_canary", "promote_blue_green"])
def test_rollback_hangs_off_every_step_but_never_off_the_branch(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    rollback = dag.get_task("rollback")
    assert rollback.trigger_rule == "one_failed"
    assert "choose_approval" not in rollback.upstream_task_ids and "skip_approval" not in rollback.upstream_task_ids
    guarded = {t.task_id for t in dag.tasks} - {"rollback", "choose_approval", "skip_approval", "finish"}
    assert guarded <= rollback.upstream_task_ids, guarded - rollback.upstream_task_ids
    assert dag.get_task("promote" if dag_id == "promote_canary" else "cut_over").trigger_rule == \
        "none_failed_min_one_success"


def test_dag_files_read_their_doc(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.doc_md and dag_id in dag.doc_md, f"{dag_id} should use doc_md=__doc__ naming itself"


ALLOWED_IMPORTS = ("__future__", "pendulum", "airflow.sdk", "flightdeck.airflow", "flightdeck.config")


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_are_wiring_only(path):
    """A docstring, DAG_ID used as dag_id, Params and a chain of adapter tasks: no task bodies,
    no domain imports, nothing computed at the module's top."""
    tree = ast.parse(path.read_text(), str(path))
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    problems = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            problems += [f"line {node.lineno}: imports {m}" for m in modules
                         if not any(m == a or m.startswith(a + ".") for a in ALLOWED_IMPORTS)]
            if isinstance(node, ast.ImportFrom) and node.module == "flightdeck.airflow":
                problems += [f"line {node.lineno}: {a.name} as {a.asname}" for a in node.names
                             if a.asname and a.asname != a.name]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            problems.append(f"line {node.lineno}: defines {node.name} (belongs in flightdeck.airflow)")
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if names != ["DAG_ID"] or not isinstance(node.value, ast.Constant) or node.value.value != path.stem:
                problems.append(f"line {node.lineno}: module-level assignment {names}")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "DAG"]
    keywords = {k.arg: k.value for call in calls for k in call.keywords}
    assert getattr(keywords.get("dag_id"), "id", None) == "DAG_ID", f"{path.name}: dag_id=DAG_ID"
    assert getattr(keywords.get("doc_md"), "id", None) == "__doc__", f"{path.name}: doc_md=__doc__"
    assert any(getattr(n.func, "id", None) == "chain" for n in ast.walk(tree) if isinstance(n, ast.Call)), \
        f"{path.name} has no chain(...)"
    assert not problems, f"{path.name}: " + "; ".join(problems)


RELEASE_DAGS = ("edge_export", "serverless_package", "promote_canary", "promote_blue_green")


def _scheduled_on(dag) -> list[str] | None:
    condition = getattr(dag.timetable, "asset_condition", None)
    return sorted(asset.name for asset in condition.objects) if condition is not None else None


def test_the_pipeline_links_are_asset_schedules_of_their_own(dagbag):
    """train_register listens to retrain requests (and the stream drift alerts only while a
    pipeline file turns that link on: tests/integration/pipeline); each release DAG listens to
    the registrations meant for it alone, so a link that is off starts nothing."""
    assert "flightdeck_retrain_requests" in _scheduled_on(dagbag.dags["train_register"])
    for dag_id in RELEASE_DAGS:
        assert _scheduled_on(dagbag.dags[dag_id]) == [f"flightdeck_registered_{dag_id}"]
    assert _scheduled_on(dagbag.dags["batch_score"]) is None  # still its nightly timetable
    assert "request_retrain" in dagbag.dags["batch_score"].task_ids
    assert "request_releases" in dagbag.dags["train_register"].task_ids
