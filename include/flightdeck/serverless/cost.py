"""What serving costs on Lambda against an always-on container, from the measured latency.

Lambda bills each request (`request_price`) plus its duration rounded up to 1 ms times its
memory (GB-seconds); the HTTP API in front adds a price per request. The container runs all
month whatever the traffic: enough replicas to keep each below `target_utilisation` of the
requests one vCPU can serve at the measured latency (never fewer than `min_replicas`), plus a
load balancer. The break-even is the request rate at which both cost the same per month.

Prices are inputs. The defaults are AWS list prices for us-east-1, x86, as published on
aws.amazon.com/lambda/pricing, /api-gateway/pricing, /fargate/pricing and
/elasticloadbalancing/pricing (PRICES_AS_OF); free tiers are left out. Check them before
quoting a figure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from flightdeck.errors import ConfigError

PRICES_AS_OF = "2025-01 (AWS list prices, us-east-1)"
SECONDS_PER_MONTH = 730 * 3600  # AWS prices a month as 730 hours
DEFAULT_RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


@dataclass(frozen=True)
class Prices:
    """Unit prices in USD; defaults as of PRICES_AS_OF (see the module docstring)."""

    lambda_gb_second: float = 0.0000166667      # Lambda x86 duration
    lambda_request: float = 0.20 / 1e6          # Lambda requests
    http_api_request: float = 1.00 / 1e6        # API Gateway HTTP API, first 300 M / month
    container_vcpu_hour: float = 0.04048        # Fargate Linux x86
    container_gb_hour: float = 0.004445         # Fargate memory
    load_balancer_hour: float = 0.0225          # ALB hour (LCUs left out: small at these rates)


@dataclass(frozen=True)
class Workload:
    """The measured service: latency per request and the sizes it runs at."""

    latency_ms: float                  # billed duration per request (measured warm latency)
    lambda_memory_mb: int = 128
    container_vcpu: float = 0.25
    container_memory_gb: float = 0.5
    target_utilisation: float = 0.6   # keep replicas below this share of their capacity
    min_replicas: int = 2              # always-on means surviving one replica's loss

    def __post_init__(self) -> None:
        if not (math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise ConfigError("latency_ms", f"{self.latency_ms!r} is not a positive duration",
                              "pass the measured warm latency in milliseconds (verify report's warm_mean_ms)")
        if not 128 <= self.lambda_memory_mb <= 10240:
            raise ConfigError("lambda_memory_mb", f"{self.lambda_memory_mb} is outside Lambda's 128-10240 MB",
                              "pick a memory size Lambda offers")
        if not 0 < self.target_utilisation <= 1 or self.container_vcpu <= 0 or self.min_replicas < 1:
            raise ConfigError("container", "utilisation must be in (0, 1], vCPU > 0, replicas >= 1",
                              "correct the container sizing")

    @property
    def replica_capacity(self) -> float:
        """Requests per second one replica serves at the target utilisation (CPU-bound scoring)."""
        return self.target_utilisation * self.container_vcpu * 1000.0 / self.latency_ms


def lambda_monthly(rate: float, work: Workload, prices: Prices = Prices()) -> float:
    """Lambda + HTTP API cost per month at `rate` requests per second."""
    billed_s = math.ceil(work.latency_ms) / 1000.0  # billed in 1 ms steps
    per_request = (billed_s * work.lambda_memory_mb / 1024 * prices.lambda_gb_second + prices.lambda_request
                   + prices.http_api_request)
    return rate * SECONDS_PER_MONTH * per_request


def replicas(rate: float, work: Workload) -> int:
    return max(work.min_replicas, math.ceil(rate / work.replica_capacity))


def container_monthly(rate: float, work: Workload, prices: Prices = Prices()) -> float:
    """Always-on containers (enough replicas for `rate`) + a load balancer, per month."""
    hourly = work.container_vcpu * prices.container_vcpu_hour + work.container_memory_gb * prices.container_gb_hour
    return (replicas(rate, work) * hourly + prices.load_balancer_hour) * SECONDS_PER_MONTH / 3600


def break_even(work: Workload, prices: Prices = Prices()) -> float | None:
    """The lowest rate (req/s) at which Lambda costs as much as the containers, or None if never.

    Lambda's cost is linear in the rate; the containers' is a step per replica. For each
    replica count k the line crosses that step at most once: the first crossing inside its
    step's range is the break-even."""
    unit = lambda_monthly(1.0, work, prices)
    capacity = work.replica_capacity
    for k in range(work.min_replicas, 100_000):
        low = 0.0 if k == work.min_replicas else (k - 1) * capacity
        high = k * capacity
        crossing = container_monthly(high, work, prices) / unit
        if low <= crossing <= high:
            return crossing
        if crossing < low:  # Lambda already dearer at the start of this step (it jumped over it)
            return low
    return None


@dataclass(frozen=True)
class CostRow:
    rate: float
    lambda_usd: float
    container_usd: float
    replicas: int

    def to_dict(self) -> dict:
        return asdict(self)


def cost_table(work: Workload, prices: Prices = Prices(), rates=DEFAULT_RATES) -> list[CostRow]:
    """Monthly cost of both options at each rate."""
    return [CostRow(r, lambda_monthly(r, work, prices), container_monthly(r, work, prices), replicas(r, work))
            for r in rates]


def format_table(rows: list[CostRow], even: float | None, work: Workload) -> str:
    lines = [f"latency {work.latency_ms:g} ms, Lambda {work.lambda_memory_mb} MB vs {work.min_replicas}+ x "
             f"{work.container_vcpu:g} vCPU / {work.container_memory_gb:g} GB containers; prices {PRICES_AS_OF}",
             f"{'req/s':>8} {'Lambda $/month':>15} {'container $/month':>18} {'replicas':>8}  cheaper"]
    for row in rows:
        cheaper = "Lambda" if row.lambda_usd < row.container_usd else "container"
        lines.append(f"{row.rate:>8g} {row.lambda_usd:>15.2f} {row.container_usd:>18.2f} {row.replicas:>8d}  {cheaper}")
    lines.append(f"break-even: {even:.2f} req/s" if even is not None else "break-even: none in range")
    return "\n".join(lines)


def plot(rows: list[CostRow], even: float | None, path: str | Path, work: Workload) -> Path:
    """Both monthly costs against the rate (log-log) with the break-even marked, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    rates = np.geomspace(min(r.rate for r in rows), max(r.rate for r in rows), 400)
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(rates, [lambda_monthly(r, work) for r in rates], label=f"Lambda {work.lambda_memory_mb} MB + HTTP API")
    axes.step(rates, [container_monthly(r, work) for r in rates], where="post", label="always-on containers + ALB")
    if even is not None:
        axes.axvline(even, color="grey", linestyle="--", label=f"break-even {even:.1f} req/s")
    axes.set(xscale="log", yscale="log", xlabel="requests per second", ylabel="USD per month",
             title=f"Serving cost at {work.latency_ms:g} ms per request ({PRICES_AS_OF})")
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
