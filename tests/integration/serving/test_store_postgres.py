"""The gateway database on SQLite and PostgreSQL: migrations, the versioned route store under
concurrent writers, and the published running sums."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
import sqlalchemy as sa

from flightdeck.errors import ConfigError
from flightdeck.serving import db
from flightdeck.serving.errors import RouteTableError, VersionConflictError
from flightdeck.serving.stats import RunningStats, StatsKey, StatsStore
from flightdeck.serving.store import RouteStore
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def table(weight_a: int) -> dict:
    return {"endpoints": {"default": {"variants": {"a": {"weight": weight_a}, "b": {"weight": 100 - weight_a}}}}}


# ---- migrations -------------------------------------------------------------------------------
def test_check_schema_names_the_database_and_the_fix_before_migration(gateway_db_url):
    engine = db.engine_for(gateway_db_url)

    with pytest.raises(ConfigError) as raised:
        db.check_schema(engine)

    message = str(raised.value)
    assert "never migrated" in message and "flightdeck gateway-migrate" in message
    assert engine.url.database in message


def test_upgrade_is_idempotent_and_uses_its_own_version_table(gateway_db_url):
    db.upgrade(gateway_db_url)
    db.upgrade(gateway_db_url)

    engine = db.engine_for(gateway_db_url)
    db.check_schema(engine)
    assert db.current_revision(engine) == db.head_revision()
    tables = set(sa.inspect(engine).get_table_names())
    assert {"route_tables", "variant_stats", "predictions", "outcomes", db.VERSION_TABLE} <= tables
    assert "alembic_version" not in tables  # free for Airflow's or MLflow's history


def test_migrations_match_the_table_definitions(gateway_engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with gateway_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "version_table": db.VERSION_TABLE})
        assert compare_metadata(context, db.metadata) == []


def test_autogenerate_leaves_the_release_lock_table_alone(gateway_engine):
    """Airflow's tasks keep the release lock in the gateway's database; a migration generated
    against a database that holds it must not propose dropping it."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from flightdeck.delivery.lock import TABLE, ReleaseLocks

    ReleaseLocks(gateway_engine).acquire("a-model", "a-run", expires_at=4e9)
    with gateway_engine.connect() as conn:
        unfiltered = MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE})
        assert ("remove_table", TABLE) in [(diff[0], diff[1].name) for diff in compare_metadata(unfiltered, db.metadata)]
        filtered = MigrationContext.configure(conn, opts={"version_table": db.VERSION_TABLE,
                                                          "include_name": db.own_tables_only})
        assert compare_metadata(filtered, db.metadata) == []


def test_check_schema_refuses_a_database_behind_or_ahead_of_the_code(gateway_engine):
    with gateway_engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {db.VERSION_TABLE} SET version_num = 'fffffff'"))

    with pytest.raises(ConfigError, match="newer than this code"):
        db.check_schema(gateway_engine)


def test_check_schema_reports_an_unreachable_database():
    engine = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/nowhere")

    with pytest.raises(ConfigError, match="cannot be reached"):
        db.check_schema(engine)


def test_concurrent_upgrades_from_several_processes(gateway_db_url):
    script = "import sys; from flightdeck.serving import db; db.upgrade(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", script, gateway_db_url], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]

    assert [proc.returncode for proc in procs] == [0, 0, 0], errors
    db.check_schema(db.engine_for(gateway_db_url))


# ---- route store ------------------------------------------------------------------------------
def test_empty_store(gateway_engine):
    store = RouteStore(gateway_engine)

    assert store.current() is None
    assert store.current_version() == 0
    assert store.history() == []
    assert store.get(1) is None


def test_replace_stores_numbered_versions_and_an_audit_trail(gateway_engine):
    store = RouteStore(gateway_engine)

    first = store.replace(table(100), author="alice", comment="initial")
    second = store.replace(table(90), author="bob", expected_version=1, comment="canary 10%")
    third = store.replace(table(50), author="carol")

    assert (first.version, second.version, third.version) == (1, 2, 3)
    assert store.current_version() == 3
    assert store.current() == third
    assert store.get(2) == second
    assert second.created_at.tzinfo is not None

    history = store.history()
    assert [(h.version, h.author, h.comment) for h in history] == [
        (3, "carol", None), (2, "bob", "canary 10%"), (1, "alice", "initial")]
    assert history[0].old_document == table(90) and history[0].new_document == table(50)
    assert history[2].old_document is None and history[2].new_document == table(100)
    # A limited history still knows the document each change replaced.
    assert [(h.version, h.old_document) for h in store.history(limit=1)] == [(3, table(90))]
    assert history[0].to_dict()["created_at"] == third.created_at.isoformat()


def test_replace_with_a_stale_expected_version_is_refused(gateway_engine):
    store = RouteStore(gateway_engine)
    store.replace(table(100), author="alice")
    store.replace(table(90), author="bob")

    with pytest.raises(VersionConflictError) as raised:
        store.replace(table(80), author="carol", expected_version=1)

    error = raised.value
    assert error.status == 409 and error.field == "expected_version"
    assert (error.expected_version, error.current_version) == (1, 2)
    assert "version 1" in str(error) and "version is 2" in str(error) and "GET the route table" in str(error)
    assert store.current_version() == 2


def test_replace_refuses_documents_that_are_not_json(gateway_engine):
    store = RouteStore(gateway_engine)

    with pytest.raises(RouteTableError, match="JSON"):
        store.replace({"endpoints": {1, 2}}, author="alice")
    with pytest.raises(RouteTableError, match="JSON object"):
        store.replace(["not", "a", "mapping"], author="alice")
    assert store.current_version() == 0


def test_racing_threads_get_unique_gap_free_versions(gateway_engine):
    store = RouteStore(gateway_engine)
    threads_n, each = 6, 8
    start = threading.Barrier(threads_n)
    failures: list[BaseException] = []

    def writer(index: int) -> None:
        start.wait()
        for i in range(each):
            try:
                store.replace(table(i), author=f"thread-{index}", comment=str(i))
            except BaseException as exc:  # surfaces in the assertion below
                failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    versions = [record.version for record in store.history(limit=1000)]
    assert sorted(versions) == list(range(1, threads_n * each + 1))
    # Every author's every change is there exactly once: nothing lost silently.
    assert sorted((h.author, h.comment) for h in store.history(limit=1000)) == sorted(
        (f"thread-{n}", str(i)) for n in range(threads_n) for i in range(each))


def test_racing_expected_version_writers_one_wins_the_rest_conflict(gateway_engine):
    store = RouteStore(gateway_engine)
    store.replace(table(100), author="seed")
    threads_n = 6
    start = threading.Barrier(threads_n)
    outcomes: list[object] = []

    def writer(index: int) -> None:
        start.wait()
        try:
            outcomes.append(store.replace(table(index), author=f"t{index}", expected_version=1).version)
        except VersionConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(o for o in outcomes if isinstance(o, int)) == [2]
    conflicts = [o for o in outcomes if isinstance(o, VersionConflictError)]
    assert len(conflicts) == threads_n - 1
    assert all(c.expected_version == 1 and c.current_version == 2 for c in conflicts)
    assert store.current_version() == 2


RACER = """
import os, sys, time
from flightdeck.serving import db
from flightdeck.serving.store import RouteStore
from tests.support.poll import eventually
url, go, name, count, ready = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
store = RouteStore(db.engine_for(url))
store.current_version()  # connect before the start signal, so the writers really overlap
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
for i in range(count):
    store.replace({"writer": name, "i": i}, author=name)
"""


def test_racing_processes_get_unique_gap_free_versions(gateway_engine, tmp_path):
    url = gateway_engine.url.render_as_string(hide_password=False)
    go = tmp_path / "go"
    procs_n, each = 4, 10
    ready = [tmp_path / f"ready-p{n}" for n in range(procs_n)]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, url, str(go), f"p{n}", str(each), str(ready[n])],
                              stderr=subprocess.PIPE, text=True) for n in range(procs_n)]

    def all_connected() -> bool:
        assert all(proc.poll() is None for proc in procs), [proc.communicate()[1] for proc in procs]
        return all(path.exists() for path in ready)

    eventually(all_connected, 60, 0.01, what="every writer to connect")  # then the writes start together
    go.touch()
    errors = [proc.communicate(timeout=90)[1] for proc in procs]

    assert [proc.returncode for proc in procs] == [0] * procs_n, errors
    history = RouteStore(gateway_engine).history(limit=1000)
    assert sorted(h.version for h in history) == list(range(1, procs_n * each + 1))
    assert sorted((h.new_document["writer"], h.new_document["i"]) for h in history) == sorted(
        (f"p{n}", i) for n in range(procs_n) for i in range(each))


# ---- running sums ----------------------------------------------------------------------------
def test_stats_publish_is_idempotent_and_sums_over_workers(gateway_engine):
    store = StatsStore(gateway_engine)
    w1, w2 = RunningStats(), RunningStats()
    w1.record(StatsKey("default", "a", "3", 1, "live"), 0.010, np.array([0.2, 0.4]))
    w1.record(StatsKey("default", "a", "3", 2, "live"), 0.030, np.array([0.6]), error=False)
    w2.record(StatsKey("default", "a", "3", 2, "live"), 0.020, np.empty(0), error=True)
    w2.record(StatsKey("default", "b", "4", 2, "shadow"), 0.050, np.array([0.9]))

    store.publish("w1", w1.snapshot())
    store.publish("w2", w2.snapshot())
    before = store.summary_as_dict("default")
    store.publish("w1", w1.snapshot())  # the same absolute totals again
    store.publish("w2", w2.snapshot())

    assert store.summary_as_dict("default") == before  # updated_at included: nothing changed
    (a,) = store.summary("default")
    assert (a.variant, a.model_version, a.requests, a.errors, a.rows, a.workers) == ("a", "3", 3, 1, 3, 2)
    assert a.score_mean == pytest.approx(0.4) and a.error_rate == pytest.approx(1 / 3)
    assert a.latency_mean_s == pytest.approx(0.02)

    since_2 = store.summary("default", since_route_version=2)
    assert [(s.requests, s.rows) for s in since_2] == [(2, 1)]
    (shadow,) = store.summary("default", role="shadow")
    assert (shadow.variant, shadow.requests, shadow.score_std) == ("b", 1, None)

    w1.record(StatsKey("default", "a", "3", 2, "live"), 0.030, np.array([0.8]))
    store.publish("w1", w1.snapshot())
    assert store.summary("default")[0].requests == 4
