"""The gateway as deployed: `flightdeck serve` with two uvicorn workers on loopback, a real MLflow
registry, PostgreSQL for routes / stats / prediction log, Redis for the response cache.

Checks what only a real multi-worker server can show: traffic splits (chi-square over
10,000 requests), sticky assignment across workers and restarts, route changes under load
with no failed request, sums added over workers, gRPC on the same models.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp
import grpc
import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from scipy.stats import chisquare

from flightdeck.serving.client import grpc_infer
from flightdeck.serving.policies import unit_bucket
from flightdeck.serving.protos import grpc_predict_v2_pb2 as pb2
from flightdeck.serving.protos import grpc_predict_v2_pb2_grpc as pb2_grpc
from tests.support.gateway import AUTH, TOKEN, gateway_process
from tests.support.models import records, split
from tests.support.poll import eventually

pytestmark = [pytest.mark.integration]

CANARY = {"endpoints": {"credit": {"policy": "canary", "weights": {"stable": 70, "canary": 30},
                                   "variants": {"stable": {"alias": "champion"}, "canary": {"version": "2"}}}}}


@pytest.fixture(scope="module")
def home(registered_home):
    return registered_home


# Each worker draws its canary routing from random.Random(ROUTING_SEED). With seed 1, however the
# 10,000 requests of the canary test are shared between the two workers (n and 10,000 - n, each worker
# taking the first draws of the same sequence), the chi-square p-value against 70/30 stays above 0.47:
# the assertion keeps its strength and cannot flake.
ROUTING_SEED = "1"


@pytest.fixture(scope="module")
def server(home, module_postgres_url):
    with gateway_process(home, module_postgres_url, CANARY, FLIGHTDECK_CACHE_BACKEND="redis",
                         FLIGHTDECK_REDIS_URL="redis://127.0.0.1:6379/0",
                         FLIGHTDECK_ROUTING_SEED=ROUTING_SEED) as (base, grpc_port):
        yield base, grpc_port


def put_routes(base: str, document: dict, comment: str = "test", wait: bool = True) -> int:
    """Store a route table; with `wait`, return once both workers serve it (they poll the store)."""
    response = httpx.put(f"{base}/admin/routes", headers=AUTH, json={"document": document, "comment": comment})
    assert response.status_code == 200, response.text
    version = response.json()["version"]
    if wait:
        wait_for_workers(base, version)
    return version


def wait_for_workers(base: str, version: int, timeout: float = 10) -> None:
    def both_switched() -> bool:
        versions = workers_seen(base, attempts=12)
        return len(versions) == 2 and set(versions.values()) == {version}

    eventually(both_switched, timeout, what=f"both workers to switch to route table v{version}",
               detail=lambda: str(workers_seen(base, attempts=12)))


@dataclass
class Answer:
    status: int
    body: dict | None

    def json(self) -> dict:
        return self.body


async def fire(base: str, bodies: list[dict], headers: list[dict] | None = None,
               concurrency: int = 32, fresh_connections: bool = False) -> list[Answer | Exception]:
    """POST every body to /endpoints/credit/invocations over `concurrency` connections.

    aiohttp, not httpx: the client must outpace two gateway workers on the same two cores.
    `fresh_connections`: a new connection per request, so the kernel spreads them over the
    workers (kept-alive connections may all have been accepted by one worker).
    """
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=fresh_connections)
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int):
            async with gate:
                try:
                    async with session.post("/endpoints/credit/invocations", json=bodies[i],
                                            headers=headers[i] if headers else None) as response:
                        return Answer(response.status, await response.json())
                except aiohttp.ClientError as exc:
                    return exc

        return await asyncio.gather(*(one(i) for i in range(len(bodies))))


def distinct_bodies(n: int) -> list[dict]:
    """n different single-row requests (so the response cache does not answer them)."""
    base = records(1)[0]
    return [{"dataframe_records": [{**base, "annual_income": 20_000.0 + i}]} for i in range(n)]


def workers_seen(base: str, attempts: int = 40) -> dict[str, int]:
    """worker id -> route version in force, from `attempts` calls on fresh connections."""
    seen = {}
    for _ in range(attempts):
        with httpx.Client(timeout=5) as client:  # a new connection each time: the kernel spreads them
            status = client.get(f"{base}/admin/status", headers=AUTH).json()
            seen[status["worker_id"]] = status["route_version"]
    return seen


def test_canary_split_over_ten_thousand_requests(server):
    base, _ = server
    version = put_routes(base, CANARY, "70/30 canary")
    responses = asyncio.run(fire(base, distinct_bodies(10_000)))
    assert all(isinstance(r, Answer) and r.status == 200 for r in responses)
    answers = [r.json() for r in responses]
    assert {a["route_version"] for a in answers} == {version}
    counts = Counter(a["variant"] for a in answers)
    assert chisquare([counts["stable"], counts["canary"]], [7_000, 3_000]).pvalue > 0.001, counts
    assert {a["model_version"] for a in answers if a["variant"] == "canary"} == {"2"}
    assert {a["model_version"] for a in answers if a["variant"] == "stable"} == {"1"}  # champion alias


def test_sticky_assignment_holds_across_workers(server):
    base, _ = server
    ab = {"endpoints": {"credit": {"policy": "ab", "weights": {"a": 50, "b": 50}, "salt": "exp-7",
                                   "variants": {"a": {"version": "1"}, "b": {"version": "2"}}}}}
    put_routes(base, ab, "A/B test")
    assert len(workers_seen(base)) == 2
    units = [f"customer-{i}" for i in range(300)]
    bodies = distinct_bodies(len(units) * 4)
    headers = [{"X-Unit-Id": units[i % len(units)]} for i in range(len(bodies))]
    responses = asyncio.run(fire(base, bodies, headers))
    by_unit: dict[str, set[str]] = {}
    for header, response in zip(headers, responses, strict=True):
        by_unit.setdefault(header["X-Unit-Id"], set()).add(response.json()["variant"])
    assert all(len(v) == 1 for v in by_unit.values())
    # The assignment is the documented hash, so it is the same in every process and after restarts.
    expected = {u: "a" if unit_bucket("exp-7", u) < 0.5 else "b" for u in units}
    assert {u: v.pop() for u, v in by_unit.items()} == expected


def test_route_changes_under_load_drop_nothing(server):
    base, _ = server
    start_version = put_routes(base, CANARY, "before the changes")
    tables = [
        {"endpoints": {"credit": {**CANARY["endpoints"]["credit"], "weights": {"stable": 50, "canary": 50}}}},
        {"endpoints": {"credit": {"policy": "blue_green", "active": "green",
                                  "variants": {"blue": {"version": "1"}, "green": {"version": "2"}}}}},
        CANARY,
    ]

    async def scenario():
        changed = asyncio.Event()

        async def load():  # until after the last change, however fast the gateway answers
            answers = []
            while not changed.is_set():
                answers += await fire(base, distinct_bodies(500), concurrency=16)
            return answers + await fire(base, distinct_bodies(1_000), concurrency=16)

        running = asyncio.create_task(load())
        for table in tables:
            await asyncio.sleep(0.6)
            await asyncio.to_thread(put_routes, base, table, "under load", False)
        await asyncio.sleep(1.0)  # every worker polls the last table within route_poll_seconds
        changed.set()
        return await running

    responses = asyncio.run(scenario())
    failures = [r for r in responses if not isinstance(r, Answer) or r.status != 200]
    assert failures == []
    versions = [r.json()["route_version"] for r in responses]
    assert set(versions) >= {start_version, start_version + len(tables)}
    assert {v for v in versions if v > start_version + len(tables)} == set()
    # After the last change every worker answers with the last table.
    wait_for_workers(base, start_version + len(tables))
    final = asyncio.run(fire(base, distinct_bodies(200)))
    assert {r.json()["route_version"] for r in final} == {start_version + len(tables)}


def test_metrics_and_stats_add_up_over_workers(server):
    base, _ = server
    version = put_routes(base, {"endpoints": {"credit": {"policy": "blue_green", "active": "blue",
                                                         "variants": {"blue": {"version": "1"},
                                                                      "green": {"version": "2"}}}}})
    before = _requests_total(base, "blue", "1")
    responses = asyncio.run(fire(base, distinct_bodies(500), fresh_connections=True))
    assert {r.status for r in responses} == {200}
    assert _requests_total(base, "blue", "1") - before == 500
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = httpx.get(f"{base}/stats/credit", params={"since_route_version": version}).json()["variants"]
        if stats and stats[0]["requests"] == 500:
            break
        time.sleep(0.2)
    assert stats[0]["variant"] == "blue" and stats[0]["requests"] == 500 and stats[0]["workers"] == 2
    assert 0 < stats[0]["score_mean"] < 1 and stats[0]["latency_mean_s"] > 0


def _requests_total(base: str, variant: str, version: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    pattern = rf'flightdeck_requests_total{{endpoint="credit",model_version="{version}",variant="{variant}"}} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_prediction_log_lands_in_postgres(server, module_postgres_url):
    base, _ = server
    responses = asyncio.run(fire(base, distinct_bodies(300)))
    ids = [r.json()["request_id"] for r in responses]
    engine = sa.create_engine(module_postgres_url)
    query = sa.text("SELECT count(*) FROM predictions WHERE request_id = ANY(:ids) AND role = 'live'")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            logged = conn.execute(query, {"ids": ids}).scalar_one()
        if logged == 300:
            break
        time.sleep(0.2)
    engine.dispose()
    assert logged == 300
    status = httpx.get(f"{base}/admin/status", headers=AUTH).json()
    assert status["prediction_log"]["dropped"] == 0


def test_redis_cache_is_shared_by_workers(server):
    base, _ = server
    body = split(3)
    forced = {"X-Flightdeck-Variant": "blue", **AUTH}  # forcing a variant is an admin's privilege
    first = httpx.post(f"{base}/endpoints/credit/invocations", json=body, headers=forced).json()
    answers = asyncio.run(fire(base, [body] * 40, [forced] * 40, concurrency=8))
    assert all(a.json()["cached"] for a in answers)  # on both workers, from the first request's entry
    assert all(a.json()["predictions"] == first["predictions"] for a in answers)


def test_grpc_serves_the_same_scores(server):
    base, grpc_port = server
    rows = records(4)
    rest = httpx.post(f"{base}/endpoints/credit/invocations", json={"dataframe_records": rows},
                      headers={"X-Flightdeck-Variant": "green", **AUTH}).json()
    inputs = httpx.get(f"{base}/v2/models/credit").json()["inputs"]
    target = f"127.0.0.1:{grpc_port}"
    reply = grpc_infer(target, "credit", rows, inputs, variant="green", token=TOKEN)
    with grpc.insecure_channel(target) as channel:
        assert pb2_grpc.GRPCInferenceServiceStub(channel).ServerReady(pb2.ServerReadyRequest()).ready
    with pytest.raises(grpc.RpcError) as refused:
        grpc_infer(target, "nope", rows, inputs)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert reply.model_version == "2"
    np.testing.assert_allclose(list(reply.outputs[0].contents.fp64_contents), rest["predictions"], atol=1e-12)


def test_sticky_assignment_survives_a_restart(home, module_postgres_url, server):
    base, _ = server
    ab = {"endpoints": {"credit": {"policy": "ab", "weights": {"a": 30, "b": 70}, "salt": "restart",
                                   "variants": {"a": {"version": "1"}, "b": {"version": "2"}}}}}
    put_routes(base, ab)
    units = [f"u{i}" for i in range(100)]
    headers = [{"X-Unit-Id": u} for u in units]
    before = [r.json()["variant"] for r in asyncio.run(fire(base, distinct_bodies(100), headers))]
    # A second server process on the same store (the route table is stored, not in memory).
    with gateway_process(home, module_postgres_url, CANARY) as (other, _):
        after = [r.json()["variant"] for r in asyncio.run(fire(other, distinct_bodies(100), headers))]
    assert before == after
