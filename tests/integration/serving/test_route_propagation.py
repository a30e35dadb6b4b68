"""Route changes as a push: a blue-green cut-over reaches every worker of a running gateway in
milliseconds (PostgreSQL LISTEN/NOTIFY), and a route change that waits (PUT /admin/routes with
`wait`, and the promotion target that uses it) answers only once every worker serves it.

The multi-worker gateway polls the route version only every 30 s here, so nothing but the push
can explain a switch within the test's timings. The push-against-poll ratio is measured on two
gateways in process (two workers of one database), pushing and then polling only.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import httpx
import pytest

from flightdeck.config import Settings
from flightdeck.delivery.targets.gateway import GatewayTarget
from flightdeck.serving import db
from flightdeck.serving.client import GatewayClient
from flightdeck.serving.gateway import Gateway
from flightdeck.serving.models import ModelPool
from flightdeck.serving.store import RouteStore
from tests.support.gateway import AUTH, TOKEN, gateway_process
from tests.support.models import MODEL, FakeRegistry, records

pytestmark = [pytest.mark.integration]


def blue_green(active: str) -> dict:
    return {"endpoints": {"credit": {"policy": "blue_green", "active": active,
                                     "variants": {"blue": {"version": "1"}, "green": {"version": "2"}}}}}


@pytest.fixture(scope="module")
def base(registered_home, module_postgres_url):
    with gateway_process(registered_home, module_postgres_url, blue_green("blue"),
                         FLIGHTDECK_ROUTE_POLL_SECONDS="30") as (url, _):
        yield url


async def _load_during(base: str, change, concurrency: int = 12) -> tuple[list[tuple[float, int, str]], float, float]:
    """Single-row requests on fresh connections (spread over the workers) before, during and after
    `change()` (a coroutine); returns ([(sent_at, status, model_version)], change started, change returned)."""
    body = {"dataframe_records": records(1)}
    answers: list[tuple[float, int, str]] = []
    done = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def client() -> None:
            while not done.is_set():
                sent_at = time.monotonic()
                async with session.post("/endpoints/credit/invocations", json=body) as response:
                    answer = await response.json()
                    answers.append((sent_at, response.status, answer.get("model_version", "")))

        clients = [asyncio.create_task(client()) for _ in range(concurrency)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await change()
        returned = time.monotonic()
        await asyncio.sleep(0.5)  # answers of requests sent after the change returned
        done.set()
        await asyncio.gather(*clients)
    return answers, started, returned


def _after(answers, returned: float) -> set[str]:
    return {version for sent_at, _, version in answers if sent_at > returned}


def test_a_waiting_cut_over_is_in_force_on_every_worker_when_it_answers(base):
    put = {}

    async def cut_over() -> None:
        async with aiohttp.ClientSession(base, headers=AUTH) as session:
            async with session.put("/admin/routes", json={"document": blue_green("green"), "wait": True}) as response:
                put["status"], put["body"] = response.status, await response.json()

    answers, started, returned = asyncio.run(_load_during(base, cut_over))
    assert put["status"] == 200, put
    version, workers = put["body"]["version"], put["body"]["workers"]
    assert len(workers) == 2 and {w["route_version"] for w in workers} == {version}
    assert {status for _, status, _ in answers} == {200}
    before = {v for sent_at, _, v in answers if sent_at < started}
    assert before == {"1"}
    after = [v for sent_at, _, v in answers if sent_at > returned]
    assert len(after) > 20 and set(after) == {"2"}, f"old-version answers after the wait: {after.count('1')}"
    # The poll (30 s) cannot have done it: the push switched both workers.
    print(f"waiting cut-over answered after {1000 * (returned - started):.1f} ms (loaded machine)")
    assert returned - started < 5


def test_the_promotion_target_waits_for_every_worker(base):
    with GatewayClient(base, TOKEN) as client:
        client.replace_routes(blue_green("blue"), comment="start", wait=True)
        target = GatewayTarget(client, "credit", MODEL, baseline="1", candidate="2", strategy="blue_green")
        target.deploy()

        async def step(action):
            await asyncio.to_thread(action)

        answers, _, returned = asyncio.run(_load_during(base, lambda: step(lambda: target.set_weight(100))))
        assert _after(answers, returned) == {"2"}
        answers, _, returned = asyncio.run(_load_during(base, lambda: step(target.rollback)))
        assert _after(answers, returned) == {"1"}
        # A wait for a version that was never stored is the caller's mistake, not a hang.
        missing = httpx.get(f"{base}/admin/routes/wait", params={"version": 10_000}, headers=AUTH)
        assert missing.status_code == 404 and "no route table version 10000" in missing.json()["error"]


# ---- push against poll, in process ---------------------------------------------------------
POLL_S = 0.5  # the default route_poll_seconds


async def _propagation_times(settings: Settings, push: bool, trials: int) -> list[float]:
    """Seconds from a new table's commit to another gateway (worker) serving it, `trials` times."""
    writer = Gateway(settings, ModelPool(FakeRegistry()), push=push)
    reader = Gateway(settings, ModelPool(FakeRegistry()), push=push)
    await writer.start()
    await reader.start()

    def store(document: dict) -> tuple[int, float]:
        return writer.route_store.replace(document, "test").version, time.perf_counter()

    try:
        times = []
        for trial in range(trials):
            await asyncio.sleep(POLL_S * ((trial * 0.37) % 1))  # at different points of the poll cycle
            version, committed = await asyncio.to_thread(store, blue_green("green" if trial % 2 == 0 else "blue"))
            while reader.route_version != version:
                await asyncio.sleep(0.0005)
            times.append(max(time.perf_counter() - committed, 0.0))
        return times
    finally:
        await writer.stop()
        await reader.stop()


def test_push_beats_the_poll(postgres_url, tmp_path):
    settings = Settings(home=tmp_path, gateway_database_url=postgres_url, model_name=MODEL,
                        admin_tokens={"ops": TOKEN}, grpc_port=0, route_poll_seconds=POLL_S)
    db.upgrade(postgres_url)
    RouteStore(db.engine_for(postgres_url)).replace(blue_green("blue"), author="test")
    try:
        pushed = asyncio.run(_propagation_times(settings, True, 6))
        polled = asyncio.run(_propagation_times(settings, False, 6))
    finally:
        db.dispose_engine(postgres_url)
    ratio = statistics.median(pushed) / statistics.median(polled)
    print(f"commit to another worker serving it: push median {1000 * statistics.median(pushed):.1f} ms, "
          f"poll ({POLL_S} s) median {1000 * statistics.median(polled):.1f} ms, ratio {ratio:.3f} (loaded machine)")
    assert ratio < 0.25, (pushed, polled)
