"""The gateway's database engine and threads on the local PostgreSQL: its connect and statement
timeouts (every other engine has a connect timeout too), and live scoring that never queues
behind slow /stats queries."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from flightdeck.config import Settings
from flightdeck.serving import db
from flightdeck.serving.app import create_app
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.models import ModelPool
from flightdeck.serving.store import RouteStore
from tests.support.models import FakeRegistry, records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROUTES = {"endpoints": {"credit": {"policy": "single", "variants": {"blue": {"version": "1"}}}}}


def test_only_the_serving_engine_cuts_off_a_long_statement(postgres_url, monkeypatch):
    monkeypatch.setattr(db, "SERVING_STATEMENT_TIMEOUT_MS", 200)
    serving, plain = db.engine_for(postgres_url, serving=True), db.engine_for(postgres_url)
    with plain.connect() as conn:
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "0"
        conn.execute(sa.text("SELECT pg_sleep(0.4)"))  # analysis and migrations may run long
    with serving.connect() as conn, pytest.raises(sa.exc.OperationalError, match="statement timeout"):
        conn.execute(sa.text("SELECT pg_sleep(30)"))


@pytest.mark.parametrize("serving", [True, False], ids=["serving", "analysis"])
def test_every_engine_gives_up_on_a_server_that_never_answers(monkeypatch, serving):
    monkeypatch.setattr(db, "SERVING_CONNECT_TIMEOUT_S", 1)
    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as silent:  # accepts TCP connections (backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{silent.getsockname()[1]}/gateway"
        outcome: list[BaseException] = []

        def connect() -> None:
            try:
                db.engine_for(url, serving=serving).connect().close()
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                outcome.append(exc)

        attempt = threading.Thread(target=connect, daemon=True)
        attempt.start()
        attempt.join(30)  # without a connect timeout libpq would wait here for ever
        db.dispose_engine(url)
    assert not attempt.is_alive(), "the connection attempt is still waiting"
    assert outcome and isinstance(outcome[0], sa.exc.OperationalError), outcome


def waiting_on_locks(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar_one()


def test_scoring_is_answered_while_stats_queries_are_stuck(postgres_url):
    db.upgrade(postgres_url)
    RouteStore(db.engine_for(postgres_url)).replace(ROUTES, author="test")
    settings = Settings(gateway_database_url=postgres_url, grpc_port=0, cache_backend="off",
                        max_batch_rows=500, stats_flush_seconds=60)
    gateway = Gateway(settings, ModelPool(FakeRegistry()))
    locker = sa.create_engine(postgres_url)
    body = {"dataframe_records": records(100)}  # over INLINE_ROWS: scored on a thread
    with TestClient(create_app(settings, gateway)) as client, ThreadPoolExecutor(48) as pool:
        assert client.post("/endpoints/credit/invocations", json=body).status_code == 200
        lock = locker.connect()
        transaction = lock.begin()
        try:
            lock.execute(sa.text("LOCK TABLE variant_stats IN ACCESS EXCLUSIVE MODE"))
            stuck = [pool.submit(client.get, "/stats/credit") for _ in range(40)]
            # More /stats calls than the default executor has threads are blocked on the lock.
            previous, seen = -1, waiting_on_locks(locker)
            while seen != previous or seen == 0:
                time.sleep(0.5)
                previous, seen = seen, waiting_on_locks(locker)
            scored = pool.submit(client.post, "/endpoints/credit/invocations", json=body)
            reply = scored.result(timeout=30)
            assert reply.status_code == 200, reply.text
            assert not any(f.done() for f in stuck), "the stats queries were not held by the lock"
        finally:
            transaction.rollback()
            lock.close()
        assert all(f.result(timeout=60).status_code == 200 for f in stuck)
    locker.dispose()
    db.dispose_engine(postgres_url)
