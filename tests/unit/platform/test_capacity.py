"""The M/M/c capacity model: Erlang C against table values and closed forms, a simulation of the
response-time tail, monotonicity, the plan's arithmetic and the errors bad input gets."""

from __future__ import annotations

import heapq
import json
import math
import random

import pytest

from flightdeck.cli import main
from flightdeck.platform import capacity
from flightdeck.platform.capacity import CapacityInputError


@pytest.mark.parametrize(("servers", "load", "expected"), [
    (1, 0.5, 0.5),          # M/M/1: P(wait) = ρ
    (2, 1.0, 1 / 3),        # a²/2 · 2/(2−1) over 1 + 1 + that: 1/3 exactly
    (5, 3.0, 0.2362),       # queueing tables (c = 5, a = 3)
    (10, 8.0, 0.4092),      # queueing tables (c = 10, a = 8)
])
def test_erlang_c_matches_known_values(servers, load, expected):
    assert capacity.erlang_c(servers, load) == pytest.approx(expected, abs=5e-5)


def test_erlang_c_equals_the_direct_sum():
    for c, a in [(3, 2.5), (7, 4.2), (30, 27.0)]:
        top = a ** c / math.factorial(c) * c / (c - a)
        direct = top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)
        assert capacity.erlang_c(c, a) == pytest.approx(direct, rel=1e-10)


def test_mm1_response_time_is_exponential():
    lam, mu = 60.0, 100.0
    for t in (0.0, 0.01, 0.05, 0.2):
        assert capacity.response_tail(t, 1, lam, mu) == pytest.approx(math.exp(-(mu - lam) * t), rel=1e-9)
    assert capacity.response_quantile(0.99, 1, lam, mu) == pytest.approx(math.log(100) / (mu - lam), rel=1e-6)


def test_wait_tail_is_erlang_c_at_zero_and_decays():
    assert capacity.wait_tail(0, 4, 300, 100) == pytest.approx(capacity.erlang_c(4, 3.0))
    assert capacity.wait_tail(0.01, 4, 300, 100) == pytest.approx(capacity.erlang_c(4, 3.0) * math.exp(-1.0))


def test_response_quantile_matches_a_simulated_queue():
    """FCFS M/M/3 at ρ = 0.8, 60,000 customers: the empirical p99 within 6 % of the model's."""
    rng = random.Random(7)
    c, lam, mu = 3, 240.0, 100.0
    free = [0.0] * c
    clock, times = 0.0, []
    for _ in range(60_000):
        clock += rng.expovariate(lam)
        start = max(clock, heapq.heappop(free))
        end = start + rng.expovariate(mu)
        heapq.heappush(free, end)
        times.append(end - clock)
    times = sorted(times[5_000:])
    simulated = times[int(0.99 * len(times))]
    assert simulated == pytest.approx(capacity.response_quantile(0.99, c, lam, mu), rel=0.06)


def test_monotone_in_servers_load_rate_and_target():
    assert all(capacity.erlang_c(c, 4.0) > capacity.erlang_c(c + 1, 4.0) for c in range(5, 20))
    assert all(capacity.erlang_c(8, a) < capacity.erlang_c(8, a + 0.5) for a in (1, 3, 5, 7))
    replicas = [capacity.plan(rate, 50, 4.5).replicas for rate in (10, 100, 400, 1000, 5000)]
    assert replicas == sorted(replicas) and replicas[0] < replicas[-1]
    by_target = [capacity.plan(1000, p99, 4.5).workers for p99 in (25, 30, 50, 200)]
    assert by_target == sorted(by_target, reverse=True) and by_target[0] > by_target[-1]


def test_plan_is_the_smallest_size_meeting_the_target():
    p = capacity.plan(1000, 50, 4.5, workers_per_replica=2, headroom=0.25)
    mu = 1000 / 4.5
    assert capacity.response_quantile(0.99, p.workers, 1250, mu) <= 0.050
    assert p.workers - 1 <= 1250 / mu or capacity.response_quantile(0.99, p.workers - 1, 1250, mu) > 0.050
    assert p.replicas == math.ceil(p.workers / 2)
    assert p.p99_s <= 0.050 and 0 < p.utilisation < 1
    # One replica at its maximum rate sits exactly on the target.
    assert capacity.response_quantile(0.99, 2, p.max_rate_per_replica, mu) == pytest.approx(0.050, rel=1e-3)
    assert 0 < p.hpa_cpu_percent <= 100
    assert p.ecs_requests_per_target_minute == math.floor(60 * p.max_rate_per_replica / 1.25)
    assert "Erlang C" in p.explain() and f"c = {p.workers} workers" in p.explain()


@pytest.mark.parametrize(("call", "words"), [
    (lambda: capacity.plan(0, 50, 4.5), "--rate"),
    (lambda: capacity.plan(float("nan"), 50, 4.5), "--rate"),
    (lambda: capacity.plan(100, -1, 4.5), "--p99-ms"),
    (lambda: capacity.plan(100, 50, 0), "--service-ms"),
    (lambda: capacity.plan(100, 50, 4.5, workers_per_replica=0), "--workers-per-replica"),
    (lambda: capacity.plan(100, 50, 4.5, headroom=-0.1), "--headroom"),
    (lambda: capacity.plan(100, 10, 4.5), "no number of replicas"),
    (lambda: capacity.erlang_c(2, 2.0), "unstable"),
    (lambda: capacity.erlang_c(0, 1.0), "servers"),
    (lambda: capacity.response_quantile(1.0, 2, 1, 2), "quantile"),
])
def test_bad_input_is_named(call, words):
    with pytest.raises(CapacityInputError, match=words):
        call()


def test_service_time_from_the_committed_benchmark(capsys):
    report = json.loads(capacity_cli_default().read_text())
    ms, why = capacity.service_time_from_benchmark(report)
    rps = report["result"]["results"]["flightdeck"]["wrk"]["rps"]
    assert ms == pytest.approx(2000 / rps) and "S = 2 /" in why
    assert main(["capacity", "--rate", "500", "--p99-ms", "50"]) == 0
    out = capsys.readouterr().out
    assert f"{ms:.3f} ms" in out and "replicas = ceil(" in out and "HPA" in out and "ECS" in out


def test_service_ms_overrides_and_bad_reports_are_refused(capsys, tmp_path):
    assert main(["capacity", "--rate", "100", "--p99-ms", "50", "--service-ms", "10"]) == 0
    assert "--service-ms 10" in capsys.readouterr().out
    broken = tmp_path / "serving.json"
    broken.write_text(json.dumps({"result": {"results": {}}}))
    assert main(["capacity", "--rate", "100", "--p99-ms", "50", "--benchmark", str(broken)]) == 2
    assert "pass --service-ms" in capsys.readouterr().err
    assert main(["capacity", "--rate", "100", "--p99-ms", "50", "--benchmark", str(tmp_path / "none")]) == 2


def capacity_cli_default():
    from flightdeck.platform.cli import DEFAULT_BENCHMARK

    return DEFAULT_BENCHMARK
