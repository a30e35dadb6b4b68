"""The end-to-end tests share ONE real Airflow: `airflow standalone` (api-server, scheduler,
dag-processor, triggerer, LocalExecutor) with this repository's DAGs on a fresh PostgreSQL
database (a copy of the session's migrated template, dropped at the end). Its tasks reach the
package's release world (registry, gateway) and a drift-alert stream of their own.

Every DAG starts paused but the drift watcher's; a test unpauses the DAGs it drives and pauses
them when done. The instance lives as long as this package's tests (package scope): it is
stopped before the session goes on to other tests (under pytest-xdist the worker that ran
tests/e2e takes other modules afterwards, and an idle scheduler, dag-processor and triggerer
would take CPU from them).
The DAGs' default model is BATCH_MODEL, which test_backfill trains and batch_score scores with;
the promotion tests name the release world's model in their conf.
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.browser import launch, screenshots_folder
from tests.support.airflow import postgres_copy, standalone_airflow
from tests.support.release_world import package_world
from tests.support.services import redis_client

BATCH_MODEL = "flightdeck-e2e-batch"
DRIFT_DAG = "stream_drift_investigation"


@pytest.fixture(scope="package")
def release_world(tmp_path_factory, postgres_admin):
    """The release world (registry, gateway, Prometheus) the promotion DAGs' tasks reach."""
    with package_world(tmp_path_factory, postgres_admin) as world:
        yield world


@pytest.fixture(scope="package")
def drift_alert_stream():
    """The Redis stream the drift watcher reads (a name of its own, deleted afterwards)."""
    client = redis_client()
    stream = f"fdtest-{uuid.uuid4().hex[:10]}:alerts"
    yield stream
    client.delete(stream)
    client.close()


@pytest.fixture(scope="package")
def airflow(tmp_path_factory, postgres_admin, airflow_postgres_template, release_world, drift_alert_stream):
    root = tmp_path_factory.mktemp("airflow-e2e")
    with postgres_copy(postgres_admin, airflow_postgres_template, prefix="flightdeck_e2e") as url, \
            standalone_airflow(root, url, **release_world.env, FLIGHTDECK_MODEL_NAME=BATCH_MODEL,
                               FLIGHTDECK_STREAM_ALERTS=drift_alert_stream,
                               # batch_score's local cluster: one worker process (with its scheduler,
                               # still a SubprocessCluster started from a task), not one per core.
                               FLIGHTDECK_DASK_WORKERS="1") as instance:
        # Every DAG serialized before a test unpauses or triggers one. The drift watcher's DAG is
        # unpaused before the start: a watcher's trigger is registered when an active DAG's file
        # is parsed, which the dag-processor does once, at its start.
        instance.cli("dags", "reserialize", timeout=300)
        instance.cli("dags", "unpause", DRIFT_DAG)
        instance.start()
        yield instance


@pytest.fixture(scope="package")
def browser():
    """Debian's Chromium driven by Playwright (tests/e2e/browser.py), one for the package."""
    with launch() as chromium:
        yield chromium


@pytest.fixture(scope="package")
def screenshots(tmp_path_factory, request):
    """The folder every browser check saves its screenshots to (FLIGHTDECK_UI_SCREENSHOTS, or a
    temporary one), named on the terminal at the end so the pictures can be looked at."""
    folder = screenshots_folder(tmp_path_factory.mktemp("ui-screenshots"))
    yield folder
    line = f"browser screenshots: {folder}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:  # a pytest-xdist worker has no terminal: the line goes to its captured output
        print(line)
