"""A route change that waits for every worker (PUT /admin/routes with `wait`, GET /admin/routes/wait),
in process on SQLite: the worker registry it reads, a laggard named in a 504, a worker that died
without a goodbye no longer counted, bad parameters refused with a 4xx.

The push itself (PostgreSQL LISTEN/NOTIFY) and the wait on a real two-worker gateway are in
tests/integration/serving/test_route_propagation.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from flightdeck.config import Settings
from flightdeck.serving import db
from flightdeck.serving.app import create_app
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.models import ModelPool
from flightdeck.serving.store import RouteStore, WorkerRegistry
from tests.support.models import FakeRegistry

TOKEN = "wait-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def blue_green(active: str) -> dict:
    return {"endpoints": {"credit": {"policy": "blue_green", "active": active,
                                     "variants": {"blue": {"version": "1"}, "green": {"version": "2"}}}}}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("route-wait")
    settings = Settings(home=home, gateway_database_url=f"sqlite:///{home / 'gateway.db'}",
                        admin_tokens={"ops": TOKEN}, grpc_port=0, route_poll_seconds=0.05, stats_flush_seconds=0.05)
    db.upgrade(settings.gateway_db_url)
    RouteStore(db.engine_for(settings.gateway_db_url)).replace(blue_green("blue"), author="test")
    gateway = Gateway(settings, ModelPool(FakeRegistry()))
    with TestClient(create_app(settings, gateway)) as test_client:
        test_client.gateway = gateway
        yield test_client
    db.dispose_engine(settings.gateway_db_url)


def test_a_waiting_put_names_the_workers_that_serve_it(client):
    answer = client.put("/admin/routes", headers=AUTH, json={"document": blue_green("green"), "wait": True})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["workers"] == [{"worker_id": client.gateway.worker_id, "route_version": body["version"],
                                "heartbeat_at": body["workers"][0]["heartbeat_at"]}]
    waited = client.get("/admin/routes/wait", headers=AUTH, params={"version": body["version"]})
    assert waited.status_code == 200 and waited.json()["workers"][0]["route_version"] == body["version"]
    # Without `wait` the answer does not list workers (it does not wait for them).
    assert "workers" not in client.put("/admin/routes", headers=AUTH, json={"document": blue_green("blue")}).json()


def test_a_lagging_worker_is_named_and_a_dead_one_stops_counting(client):
    registry: WorkerRegistry = client.gateway.workers
    registry.announce("stuck-worker", 1)  # alive (fresh heartbeat) but on route version 1
    try:
        answer = client.put("/admin/routes", headers=AUTH,
                            json={"document": blue_green("green"), "wait": True, "wait_timeout_s": 0.2})
        assert answer.status_code == 504, answer.text
        error = answer.json()
        assert error["error_code"] == "RoutePropagationError" and "stuck-worker (v1)" in error["error"]
        # The table is stored and this worker serves it: only the laggard was missing.
        version = client.get("/admin/routes", headers=AUTH).json()["version"]
        assert f"/admin/routes/wait?version={version}" in error["error"]
        assert client.gateway.route_version == version
        # The stuck worker dies without a goodbye: once its heartbeat is older than the liveness
        # window it no longer counts, and the same wait succeeds.
        stale = db.utcnow() - timedelta(seconds=registry.live_within_s + 1)
        with db.write_transaction(registry.engine) as conn:
            conn.execute(sa.update(db.gateway_workers).where(db.gateway_workers.c.worker_id == "stuck-worker")
                         .values(heartbeat_at=stale))
        waited = client.get("/admin/routes/wait", headers=AUTH, params={"version": version, "timeout_s": 0.2})
        assert waited.status_code == 200
        assert [w["worker_id"] for w in waited.json()["workers"]] == [client.gateway.worker_id]
    finally:
        registry.forget("stuck-worker")


def test_announcements_never_go_backwards(client):
    registry: WorkerRegistry = client.gateway.workers
    registry.announce("late-heartbeat", 7)
    registry.announce("late-heartbeat", 6)  # a heartbeat read before the switch, committed after it
    try:
        assert {w.worker_id: w.route_version for w in registry.live()}["late-heartbeat"] == 7
    finally:
        registry.forget("late-heartbeat")
    assert "late-heartbeat" not in {w.worker_id for w in registry.live()}


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"version": 10_000}, 404, "version"),
    ({"version": 0}, 404, "version"),
    ({"version": 1, "timeout_s": 0}, 400, "timeout_s"),
    ({"version": 1, "timeout_s": 301}, 400, "timeout_s"),
])
def test_bad_waits_are_refused_naming_the_parameter(client, params, status, field):
    answer = client.get("/admin/routes/wait", headers=AUTH, params=params)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field


def test_waiting_needs_an_admin_and_a_sane_timeout(client):
    assert client.get("/admin/routes/wait", params={"version": 1}).status_code == 401
    refused = client.put("/admin/routes", headers=AUTH,
                         json={"document": blue_green("blue"), "wait": True, "wait_timeout_s": -1})
    assert refused.status_code == 422 and "wait_timeout_s" in refused.text
