"""Test-wide environment: every store in a temporary folder, Airflow pointed at our dags/.

Airflow reads its configuration when it is first imported, so the variables are set here,
before any test module imports it.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="flightdeck-tests-"))

os.environ.update({
    "FLIGHTDECK_HOME": str(_SESSION_HOME / "flightdeck"),
    # Tests rehearse rollouts unattended (approval off, fault drills): a permissive release policy.
    "FLIGHTDECK_RELEASE_POLICY_FILE": str(REPO / "tests" / "support" / "release_policy.yaml"),
    "AIRFLOW_HOME": str(_SESSION_HOME / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "GX_ANALYTICS_ENABLED": "false",
    # MLflow's log_model infers a model's pip requirements in a subprocess that imports the
    # flavour (about 10 s on two busy cores, for every version a test registers, in this
    # process and in the Airflow tasks and gateways it starts). One second ends it and MLflow
    # writes its default requirements; no test reads them.
    "MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT": "1",
})


E2E = "tests/e2e/"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # A pytest-xdist worker runs as `python -c`: its __main__ has neither __file__ nor __spec__,
    # which pyspark.sql.connect takes for a doctest run and answers with sys.exit(0) on import
    # (MLflow imports it to infer a model signature), ending the test's session fixtures. A spec
    # named "__main__" says "not a doctest" and leaves multiprocessing's spawn alone (it does not
    # re-import a main module of that name in its children).
    import importlib.machinery
    import sys

    _main = sys.modules["__main__"]
    if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
        _main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e carries the `e2e` marker. In a pytest-xdist worker the e2e
    tests come first, so that they are the first unit of work handed out (see below)."""
    e2e = REPO / "tests" / "e2e"
    for item in items:
        if item.path.is_relative_to(e2e):
            item.add_marker(pytest.mark.e2e)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: not item.path.is_relative_to(e2e))  # stable: e2e first


def pytest_xdist_make_scheduler(config, log):
    """`pytest -n 2 --dist loadgroup`: units of work are the whole of tests/e2e (one `airflow
    standalone` and one release world, on one worker) and every other test module (its
    module-scoped fixtures, a gateway or a trained model, are built once), handed out in
    collection order with `--no-loadscope-reorder`, so tests/e2e first, then the integration
    modules, then the many short ones that even out the end.

    xdist's own loadgroup scheduling (the xdist_group mark) cannot be used: it renames items
    through `item._nodeid`, which pytest 9.2 no longer reads, so every test became a unit."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleAndE2EScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return E2E if path.startswith(E2E) else path

    return ModuleAndE2EScheduling(config, log)


@pytest.fixture(scope="session")
def postgres_admin():
    """An AUTOCOMMIT engine on the local PostgreSQL's `postgres` database (CREATE / DROP DATABASE)."""
    from tests.support.services import postgres_admin_engine

    admin = postgres_admin_engine()
    yield admin
    admin.dispose()


@pytest.fixture
def postgres_url(postgres_admin):
    """URL of a new, empty PostgreSQL database, dropped afterwards."""
    from tests.support.services import new_database

    with new_database(postgres_admin) as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url(postgres_admin):
    """URL of a new, empty PostgreSQL database shared by one test module (e.g. a running gateway)."""
    from tests.support.services import new_database

    with new_database(postgres_admin) as url:
        yield url


@pytest.fixture(scope="session")
def airflow_postgres_template(postgres_admin, tmp_path_factory):
    """Name of an Airflow metadata database on the local PostgreSQL, migrated once per session;
    clone it with tests.support.airflow.postgres_copy."""
    from tests.support.airflow import postgres_template

    with postgres_template(postgres_admin, tmp_path_factory.mktemp("airflow-pg-template")) as name:
        yield name


@pytest.fixture
def flightdeck_home(tmp_path, monkeypatch):
    """A fresh FLIGHTDECK_HOME (and fresh settings) for one test."""
    from flightdeck.config import get_settings

    home = tmp_path / "flightdeck"
    monkeypatch.setenv("FLIGHTDECK_HOME", str(home))
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@contextmanager
def _recording_webhook():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook_server():
    """A real HTTP server on loopback that records JSON POSTs: (base URL, received (path, body) pairs)."""
    with _recording_webhook() as server:
        yield server


@pytest.fixture(scope="module")
def module_webhook_server():
    """The same, shared by one test module (give each sender a path of its own)."""
    with _recording_webhook() as server:
        yield server
