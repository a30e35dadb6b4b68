"""Both metric sources against the real thing: `flightdeck serve` (two uvicorn workers, PostgreSQL,
a real MLflow registry) scraped every second by a real Prometheus.

Some traffic before the step (which neither window may count), one round of known traffic on
three endpoints after it, then every test reads what the sources say:
  credit   canary 70/30; the canary (version 2) fails 20 % of its calls and is 5 ms slower,
           a fallback to the stable variant answers its failures
  flaky    one variant failing 30 % of its calls, no fallback (clients get 503)
  mirror   the champion live, version 2 as a 100 % shadow
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import pytest

from flightdeck.delivery.sources import make_source
from flightdeck.delivery.sources.base import WindowStart, by_variant
from flightdeck.delivery.sources.gateway import GatewayStatsSource
from flightdeck.delivery.sources.prometheus import PrometheusSource
from flightdeck.delivery.window import VariantWindow
from flightdeck.serving.client import GatewayClient
from flightdeck.stats import score_bin
from tests.support.gateway import (
    AUTH,
    TOKEN,
    gateway_process,
    register_two_versions,
)
from tests.support.models import records
from tests.support.poll import eventually
from tests.support.prometheus import prometheus_binary, prometheus_server, wait_for_scrape

pytestmark = pytest.mark.integration

CANARY_REQUESTS, FLAKY_REQUESTS, MIRROR_REQUESTS, WARM_UP_REQUESTS = 400, 150, 200, 50
SEED = {"endpoints": {"credit": {"policy": "single", "variants": {"stable": {"alias": "champion"}}}}}
ROUTES = {"endpoints": {
    "credit": {"policy": "canary", "weights": {"stable": 70, "canary": 30},
               "variants": {"stable": {"alias": "champion"},
                            "canary": {"version": "2", "faults": {"error_rate": 0.2, "latency_ms": 5}}},
               # A breaker that never opens: every fallback answer then follows a real failure.
               "fallback": {"variant": "stable", "latency_budget_ms": 5000, "failure_threshold": 1_000_000}},
    "flaky": {"policy": "single", "variants": {"flaky": {"version": "2", "faults": {"error_rate": 0.3}}}},
    "mirror": {"policy": "single", "variants": {"live": {"alias": "champion"}, "dark": {"version": "2"}},
               "shadow": {"variant": "dark", "percent": 100}},
}}


@dataclass
class Sent:
    """What the clients saw, per endpoint: answers per (variant, model_version), scores, failures."""

    answers: Counter = field(default_factory=Counter)
    fallbacks: Counter = field(default_factory=Counter)
    bins: dict = field(default_factory=lambda: defaultdict(lambda: [0] * 10))
    failed: int = 0


@dataclass
class Observed:
    gateway: str
    prometheus: str
    since: WindowStart
    sent: dict[str, Sent]
    stats: dict[tuple[str, str], dict]  # (endpoint, role) -> windows
    prom: dict[tuple[str, str], dict]
    timings: dict[str, float]


def wait_for_workers(base: str, version: int, workers: int = 2, timeout: float = 15) -> None:
    """Until `workers` distinct workers answer with route table `version` (fresh connections)."""
    seen: dict[str, int] = {}

    def all_switched() -> bool:
        with httpx.Client(timeout=5) as client:
            status = client.get(f"{base}/admin/status", headers=AUTH).json()
        seen[status["worker_id"]] = status["route_version"]
        return len(seen) >= workers and all(v == version for v in seen.values())

    eventually(all_switched, timeout, 0.05, what=f"every worker to switch to route table v{version}",
               detail=lambda: str(seen))


async def send(base: str, plan: list[tuple[str, dict]], concurrency: int = 8) -> dict[str, Sent]:
    sent: dict[str, Sent] = defaultdict(Sent)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        async def one(endpoint: str, row: dict) -> None:
            async with gate:
                response = await client.post(f"/endpoints/{endpoint}/invocations", json={"dataframe_records": [row]})
            tally = sent[endpoint]
            if response.status_code == 503:
                tally.failed += 1
                return
            assert response.status_code == 200, response.text
            body = response.json()
            key = (body["variant"], body["model_version"])
            tally.answers[key] += 1
            tally.fallbacks[key] += bool(body["fallback"])
            tally.bins[key][score_bin(body["predictions"][0])] += 1

        await asyncio.gather(*(one(endpoint, row) for endpoint, row in plan))
    return sent


def read(source, since: WindowStart, role: str = "live") -> dict:
    return source.windows(since, role=role)


@pytest.fixture(scope="module")
def observed(tmp_path_factory, module_postgres_url) -> Observed:
    prometheus_binary()  # skip (or fail under CI) before starting anything else
    timings: dict[str, float] = {}
    clock = time.monotonic()
    home = tmp_path_factory.mktemp("sources-home")
    register_two_versions(home)
    timings["register models"] = time.monotonic() - clock
    clock = time.monotonic()
    with gateway_process(home, module_postgres_url, SEED, workers=2, FLIGHTDECK_CACHE_BACKEND="off") as (gw, _):
        timings["gateway start"] = time.monotonic() - clock
        clock = time.monotonic()
        with prometheus_server([gw.removeprefix("http://")], scrape_interval="1s") as prom:
            timings["prometheus start"] = time.monotonic() - clock
            clock = time.monotonic()
            # Traffic before the step, under the seed table: both windows must leave it out.
            warm_up = asyncio.run(send(gw, [("credit", row) for row in records(WARM_UP_REQUESTS, seed=20)]))
            assert warm_up["credit"].answers == {("stable", "1"): WARM_UP_REQUESTS}
            wait_for_scrape(prom, time.time())
            timings["warm-up and first scrapes"] = time.monotonic() - clock
            clock = time.monotonic()
            with GatewayClient(gw, TOKEN) as admin:
                version = admin.replace_routes(ROUTES, comment="metric sources test")
            wait_for_workers(gw, version)
            since = WindowStart.now(version)

            plan = [("credit", row) for row in records(CANARY_REQUESTS, seed=21)]
            plan += [("flaky", row) for row in records(FLAKY_REQUESTS, seed=22)]
            plan += [("mirror", row) for row in records(MIRROR_REQUESTS, seed=23)]
            sent = asyncio.run(send(gw, plan))
            timings["traffic"] = time.monotonic() - clock
            clock = time.monotonic()

            # The stats are complete once every request (answered or failed) and every mirrored one is in them.
            sources = {name: GatewayStatsSource(gw, name) for name in ROUTES["endpoints"]}
            deadline = time.monotonic() + 15
            while True:
                stats = {(name, role): read(source, since, role) for name, source in sources.items()
                         for role in ("live", "shadow")}
                answered = {name: sum(w.requests for w in stats[(name, "live")].values()) for name in sources}
                mirrored = sum(w.requests for w in stats[("mirror", "shadow")].values())
                if answered == {n: sum(s.answers.values()) + s.failed for n, s in sent.items()} and \
                        mirrored == MIRROR_REQUESTS:
                    break
                assert time.monotonic() < deadline, f"stats incomplete: {answered}, {mirrored} mirrored"
                time.sleep(0.1)
            timings["stats settle"] = time.monotonic() - clock
            clock = time.monotonic()

            wait_for_scrape(prom, time.time())  # a scrape that began after everything was counted
            timings["scrape"] = time.monotonic() - clock
            prom_sources = {name: make_source("prometheus", prom, name) for name in ROUTES["endpoints"]}
            prom_windows = {(name, role): read(source, since, role) for name, source in prom_sources.items()
                            for role in ("live", "shadow")}
            yield Observed(gw, prom, since, dict(sent), stats, prom_windows, timings)
    print("timings (s):", {k: round(v, 2) for k, v in timings.items()})


def test_sources_count_the_canary_and_its_failures_alike(observed):
    sent = observed.sent["credit"]
    assert sent.failed == 0  # the fallback answered every canary failure
    stats, prom = observed.stats[("credit", "live")], observed.prom[("credit", "live")]
    # The stats are exact, per (variant, model_version): a fallback answer counts under the
    # variant that was chosen and the model version that answered, as an error.
    assert {k: w.requests for k, w in stats.items()} == dict(sent.answers)
    assert {k: w.errors for k, w in stats.items()} == {k: sent.fallbacks[k] for k in sent.answers}
    assert {k: w.score_bins for k, w in stats.items()} == {k: tuple(b) for k, b in sent.bins.items()}
    assert sum(w.requests for w in stats.values()) == CANARY_REQUESTS

    fallbacks = sent.fallbacks[("canary", "1")]
    canary_calls = sent.answers[("canary", "2")] + fallbacks
    assert 0 < fallbacks < canary_calls / 2  # 20 % injected

    # Prometheus, read after a scrape that followed the traffic, agrees exactly per variant ...
    stats_v, prom_v = by_variant(stats), by_variant(prom)
    assert set(stats_v) == set(prom_v) == {"stable", "canary"}
    for variant in stats_v:
        s, p = stats_v[variant], prom_v[variant]
        assert (p.requests, p.errors, p.rows, p.score_bins) == (s.requests, s.errors, s.rows, s.score_bins), variant
        assert sum(p.score_bins) == p.rows == p.requests
        assert p.latency_sum == pytest.approx(s.latency_sum, rel=1e-6)
        s_std = ((s.latency_sumsq - s.latency_sum ** 2 / s.requests) / (s.requests - 1)) ** 0.5
        p_std = ((p.latency_sumsq - p.latency_sum ** 2 / p.requests) / (p.requests - 1)) ** 0.5
        # Estimated from buckets, with values spread evenly over each bucket: never below the
        # exact spread, and at most about a bucket's width above (the canary's latencies sit in
        # the 5–10 ms bucket).
        assert 0.9 * s_std <= p_std <= s_std + 0.005, (variant, p_std, s_std)
    mean = {v: w.latency_sum / w.requests for v, w in prom_v.items()}
    assert mean["canary"] > mean["stable"] + 0.004  # the injected 5 ms, seen by both sources
    # ... but not per model version: Prometheus counts the failure under the canary's own version.
    assert (prom[("canary", "2")].errors, prom[("canary", "1")].errors) == (fallbacks, 0)
    assert (stats[("canary", "2")].errors, stats[("canary", "1")].errors) == (0, fallbacks)


def test_prometheus_counts_failures_no_fallback_answered(observed):
    sent = observed.sent["flaky"]
    assert 0 < sent.failed < FLAKY_REQUESTS / 2  # 30 % injected, clients got 503
    (window,) = observed.prom[("flaky", "live")].values()
    assert (window.requests, window.errors) == (FLAKY_REQUESTS, sent.failed)
    # Failed requests have no latency and no score in the gateway's metrics.
    assert window.rows == sum(window.score_bins) == FLAKY_REQUESTS - sent.failed


def test_stats_count_failures_no_fallback_answered(observed):
    sent = observed.sent["flaky"]
    (window,) = observed.stats[("flaky", "live")].values()
    assert (window.requests, window.errors) == (FLAKY_REQUESTS, sent.failed)


def test_shadow_disagreements_are_seen_by_both_sources(observed):
    live_key, dark_key = ("live", "1"), ("dark", "2")
    for windows in (observed.stats, observed.prom):
        assert {k: w.requests for k, w in windows[("mirror", "live")].items()} == {live_key: MIRROR_REQUESTS}
        assert set(windows[("mirror", "shadow")]) == {dark_key}
    stats, prom = observed.stats[("mirror", "shadow")][dark_key], observed.prom[("mirror", "shadow")][dark_key]
    assert stats.shadow_disagreements > 0  # versions 1 and 2 decide some rows differently
    assert (prom.requests, prom.errors, prom.shadow_rows, prom.shadow_disagreements) == \
        (stats.requests, stats.errors, stats.shadow_rows, stats.shadow_disagreements) == \
        (MIRROR_REQUESTS, 0, MIRROR_REQUESTS, stats.shadow_disagreements)
    # The gateway exports no scores or latency for a shadow: only the stats have them.
    assert sum(stats.score_bins) == stats.rows == MIRROR_REQUESTS and stats.latency_sum > 0
    assert (prom.rows, prom.latency_sum) == (0, 0.0)


def test_windows_that_begin_after_the_traffic_are_empty(observed):
    gw, prom = observed.gateway, observed.prometheus
    with GatewayClient(gw, TOKEN) as admin:
        version = admin.replace_routes(ROUTES, comment="next step")
    later = WindowStart.now(version)
    wait_for_scrape(prom, later.epoch + 0.01)  # a scrape inside the new window
    for name in ROUTES["endpoints"]:
        for role in ("live", "shadow"):
            assert GatewayStatsSource(gw, name).windows(later, role) == {}
            assert PrometheusSource(prom, name).windows(later, role) == {}
    # The old start still sees everything: nothing was lost by looking again.
    again = GatewayStatsSource(gw, "credit").windows(observed.since)
    assert sum(w.requests for w in again.values()) == CANARY_REQUESTS
    assert VariantWindow() not in again.values()
