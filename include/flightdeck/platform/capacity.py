"""How many gateway replicas a request rate needs, from an M/M/c queue.

Each uvicorn worker is one server of the queue (CPU-bound scoring on one event loop), a replica
runs `workers_per_replica` of them, and requests are spread over all workers. With arrival rate
λ, service rate μ = 1/S per worker and c workers (offered load a = λ/μ, utilisation ρ = a/c):

* Erlang C, C(c, a), is the probability that a request waits;
* the wait W is 0 with probability 1 − C and Exp(cμ − λ) otherwise: P(W > t) = C·e^{−(cμ−λ)t};
* the response time is R = W + S with S ~ Exp(μ), so
  P(R > t) = (1 − C)·e^{−μt} + C·P(Exp(cμ−λ) + Exp(μ) > t), the second term hypoexponential.

The p99 of R is found by bisection on that tail. Pure functions, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flightdeck.errors import FlightdeckError


class CapacityInputError(FlightdeckError):
    """A capacity-planning input is out of range; the message names it and what it must be."""


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise CapacityInputError(f"{name} must be a finite number > 0, got {value!r}")


def erlang_c(servers: int, offered_load: float) -> float:
    """C(c, a): the probability that an arrival waits in an M/M/c queue (a = λ/μ < c).

    Computed from Erlang B's recursion, B(k) = a·B(k−1) / (k + a·B(k−1)), which stays finite
    for thousands of servers, then C = c·B / (c − a·(1 − B)).
    """
    if not isinstance(servers, int) or servers < 1:
        raise CapacityInputError(f"servers must be an integer >= 1, got {servers!r}")
    _positive("offered load", offered_load)
    if offered_load >= servers:
        raise CapacityInputError(
            f"offered load {offered_load:g} Erlang needs more than {servers} servers: the queue is unstable "
            "(utilisation >= 1); add servers or lower the rate")
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_load * b / (k + offered_load * b)
    return servers * b / (servers - offered_load * (1 - b))


def wait_tail(t: float, servers: int, arrival_rate: float, service_rate: float) -> float:
    """P(W > t): the probability that a request waits longer than t seconds before service."""
    c = erlang_c(servers, arrival_rate / service_rate)
    return c * math.exp(-(servers * service_rate - arrival_rate) * t)


def response_tail(t: float, servers: int, arrival_rate: float, service_rate: float) -> float:
    """P(R > t) with R = wait + service, FCFS M/M/c."""
    _positive("service rate", service_rate)
    _positive("arrival rate", arrival_rate)
    if t < 0:
        raise CapacityInputError(f"t must be >= 0, got {t!r}")
    c = erlang_c(servers, arrival_rate / service_rate)
    mu, theta = service_rate, servers * service_rate - arrival_rate
    if math.isclose(theta, mu, rel_tol=1e-12):
        both = (1 + mu * t) * math.exp(-mu * t)
    else:
        both = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
    return (1 - c) * math.exp(-mu * t) + c * both


def response_quantile(q: float, servers: int, arrival_rate: float, service_rate: float) -> float:
    """The q-quantile of the response time in seconds (bisection on P(R > t) = 1 − q)."""
    if not 0 < q < 1:
        raise CapacityInputError(f"quantile must be in (0, 1), got {q!r}")
    target = 1 - q
    lo, hi = 0.0, 1.0 / service_rate
    while response_tail(hi, servers, arrival_rate, service_rate) > target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if response_tail(mid, servers, arrival_rate, service_rate) > target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(hi, 1e-9):
            break
    return hi


@dataclass(frozen=True)
class CapacityPlan:
    rate: float                 # requests/s asked for
    planned_rate: float         # rate × (1 + headroom): what the replicas are sized for
    service_s: float            # mean service time per request of one worker
    p99_target_s: float
    workers_per_replica: int
    workers: int                # c: the smallest worker count meeting the target at planned_rate
    replicas: int               # ceil(workers / workers_per_replica)
    p99_s: float                # the p99 of response time with replicas × workers_per_replica at planned_rate
    wait_probability: float     # Erlang C at that size
    utilisation: float          # ρ at the asked rate on the chosen replicas
    max_rate_per_replica: float  # the highest rate one replica takes with its p99 still ≤ target
    hpa_cpu_percent: int        # HPA averageUtilization: ρ at which a replica still meets the target, less headroom
    ecs_requests_per_target_minute: int  # ECS target tracking, ALBRequestCountPerTarget (a minute's count)

    def explain(self) -> str:
        mu = 1 / self.service_s
        lines = [
            f"service time S = {self.service_s * 1000:.3f} ms per request per worker (μ = {mu:.1f}/s)",
            f"rate λ = {self.rate:g}/s, sized for λ·(1 + headroom) = {self.planned_rate:g}/s, "
            f"offered load a = λ/μ = {self.planned_rate / mu:.3f} workers",
            "M/M/c: P(wait) = Erlang C(c, a); P(W > t) = C·exp(−(cμ − λ)t); response R = W + S, "
            "p99 of R by bisection on P(R > t) = 0.01",
            f"smallest c with p99(R) ≤ {self.p99_target_s * 1000:g} ms: c = {self.workers} workers",
            f"replicas = ceil({self.workers} / {self.workers_per_replica} workers per replica) = {self.replicas}"
            f" → p99 = {self.p99_s * 1000:.2f} ms, P(wait) = {self.wait_probability:.4f}, "
            f"utilisation at {self.rate:g}/s = {self.utilisation:.1%}",
            f"one replica keeps p99 ≤ target up to {self.max_rate_per_replica:.1f} requests/s",
            f"Kubernetes HPA: minReplicas {self.replicas}, CPU averageUtilization {self.hpa_cpu_percent}%",
            f"ECS target tracking: ALBRequestCountPerTarget {self.ecs_requests_per_target_minute} "
            f"(requests per target per minute), min capacity {self.replicas}",
        ]
        return "\n".join(lines)


def smallest_servers(arrival_rate: float, service_rate: float, p99_target_s: float,
                     quantile: float = 0.99, limit: int = 100_000) -> int:
    """The smallest c whose response-time quantile is ≤ the target."""
    _positive("p99 target", p99_target_s)
    # Even an idle server answers in S: the quantile of Exp(μ) alone must fit.
    floor = -math.log(1 - quantile) / service_rate
    if floor > p99_target_s:
        raise CapacityInputError(
            f"the p{quantile * 100:g} of the service time alone is {floor * 1000:.2f} ms, above the target "
            f"{p99_target_s * 1000:g} ms: no number of replicas meets it; raise --p99-ms or make scoring faster")
    c = max(1, math.floor(arrival_rate / service_rate) + 1)
    while response_quantile(quantile, c, arrival_rate, service_rate) > p99_target_s:
        c += 1
        if c > limit:
            raise CapacityInputError(f"more than {limit} workers needed; check --rate and --service-ms")
    return c


def max_rate(servers: int, service_rate: float, p99_target_s: float, quantile: float = 0.99) -> float:
    """The highest arrival rate c servers take with the response-time quantile ≤ the target."""
    lo, hi = 0.0, servers * service_rate
    if response_quantile(quantile, servers, 1e-9 * service_rate, service_rate) > p99_target_s:
        return 0.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if mid > 0 and response_quantile(quantile, servers, mid, service_rate) <= p99_target_s:
            lo = mid
        else:
            hi = mid
    return lo


def plan(rate: float, p99_ms: float, service_ms: float, workers_per_replica: int = 2,
         headroom: float = 0.25) -> CapacityPlan:
    """Replicas for `rate` requests/s with the response time's p99 ≤ `p99_ms`."""
    _positive("--rate", rate)
    _positive("--p99-ms", p99_ms)
    _positive("--service-ms", service_ms)
    if not isinstance(workers_per_replica, int) or workers_per_replica < 1:
        raise CapacityInputError(f"--workers-per-replica must be an integer >= 1, got {workers_per_replica!r}")
    if not (isinstance(headroom, (int, float)) and 0 <= headroom < 10):
        raise CapacityInputError(f"--headroom must be in [0, 10) (0.25 = 25 % spare), got {headroom!r}")
    service_s, target_s = service_ms / 1000, p99_ms / 1000
    mu = 1 / service_s
    planned = rate * (1 + headroom)
    workers = smallest_servers(planned, mu, target_s)
    replicas = math.ceil(workers / workers_per_replica)
    total = replicas * workers_per_replica
    per_replica = max_rate(workers_per_replica, mu, target_s)
    # The CPU share at which one replica is at its limit, less the headroom the plan keeps.
    hpa = max(1, math.floor(100 * per_replica / (workers_per_replica * mu) / (1 + headroom)))
    return CapacityPlan(
        rate=rate, planned_rate=planned, service_s=service_s, p99_target_s=target_s,
        workers_per_replica=workers_per_replica, workers=workers, replicas=replicas,
        p99_s=response_quantile(0.99, total, planned, mu), wait_probability=erlang_c(total, planned / mu),
        utilisation=rate / (total * mu), max_rate_per_replica=per_replica, hpa_cpu_percent=min(hpa, 100),
        ecs_requests_per_target_minute=max(1, math.floor(60 * per_replica / (1 + headroom))))


def service_time_from_benchmark(report: dict, server: str = "flightdeck") -> tuple[float, str]:
    """Mean service time (ms) per request per worker from a serving benchmark report.

    wrk runs a closed loop with more connections than workers, so every worker stays busy and
    throughput = workers / S: S = workers / rps. Returns the time and a sentence saying so.
    """
    try:
        run = report["result"]["results"][server]
        rps = float(run["wrk"]["rps"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CapacityInputError(
            f"the serving benchmark report has no wrk throughput for {server!r} ({exc!r}); "
            "pass --service-ms instead") from exc
    if run.get("failed") or rps <= 0 or run["wrk"].get("non_2xx"):
        raise CapacityInputError(f"the benchmark's {server!r} run failed or answered errors; pass --service-ms")
    words = str(report.get("command", "")).split()
    workers = 2  # benchmarks/serving.py's default
    if "--workers" in words and words.index("--workers") + 1 < len(words):
        workers = int(words[words.index("--workers") + 1])
    service_ms = 1000 * workers / rps
    return service_ms, (f"serving benchmark of {report.get('date', '?')}: {server} answered {rps:g} requests/s "
                        f"with {workers} saturated workers on {report.get('cores', '?')} cores → "
                        f"S = {workers} / {rps:g} = {service_ms:.3f} ms")
