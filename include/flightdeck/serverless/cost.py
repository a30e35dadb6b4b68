"""What serving costs on AWS Lambda, Google Cloud Functions, Azure Functions and an always-on
container, from the measured latency.

* Lambda bills each request plus its duration rounded up to 1 ms times its memory
  (GB-seconds); the HTTP API in front adds a price per request.
* Cloud Functions (2nd gen runs on Cloud Run, request-based billing) bills vCPU-seconds and
  GiB-seconds while a request is served, rounded up to 100 ms, plus a price per request. One
  request per instance at a time is assumed (an upper bound: concurrent requests share the
  billed time).
* Azure Functions (Consumption plan) bills GB-seconds, the memory rounded up to 128 MB and
  the duration to at least 100 ms, plus a price per execution. (Deployment slots need the
  Premium plan, which bills instances like an always-on container.)
* The container runs all month whatever the traffic: enough replicas to keep each below
  `target_utilisation` of the requests one vCPU can serve at the measured latency (never
  fewer than `min_replicas`), plus a load balancer.

A break-even is the request rate at which a per-request option costs as much per month as
the containers. The prices are data: `prices.yaml` beside this module names each price's
source (URL) and date; pass another file of the same shape to use your own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path

from flightdeck.errors import ConfigError

PRICE_FILE = Path(__file__).with_name("prices.yaml")
SECONDS_PER_MONTH = 730 * 3600  # AWS, Google and Azure all price a month as 730 hours
DEFAULT_RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def load_price_table(path: str | Path = PRICE_FILE) -> dict[str, dict]:
    """The price file: {key: {usd, per, source, as_of}}; ConfigError naming what is wrong."""
    import yaml

    try:
        table = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("prices", f"cannot read {path} ({exc})", "pass a YAML price file shaped like "
                          "flightdeck/serverless/prices.yaml") from None
    if not isinstance(table, dict):
        raise ConfigError("prices", f"{path} is not a mapping of prices", "shape it like prices.yaml")
    wanted = {f.name for f in fields(Prices)}
    missing = sorted(wanted - set(table))
    if missing:
        raise ConfigError("prices", f"{path} lacks {missing}", "give every price of prices.yaml")
    for key in wanted:
        entry = table[key]
        if not isinstance(entry, dict) or not isinstance(entry.get("usd"), int | float) or entry["usd"] < 0 \
                or not entry.get("source") or not entry.get("as_of"):
            raise ConfigError(f"prices.{key}", f"{entry!r} is not {{usd: >= 0, per, source, as_of}}",
                              "give each price its amount in USD, the page it comes from and when it was read")
    return {key: dict(table[key]) for key in sorted(wanted)}


@cache
def _defaults() -> dict[str, dict]:
    return load_price_table(PRICE_FILE)


def _default(key: str) -> float:
    return float(_defaults()[key]["usd"])


@dataclass(frozen=True)
class Prices:
    """Unit prices in USD; the defaults are prices.yaml's (each with its source and date)."""

    lambda_gb_second: float = None      # type: ignore[assignment] - filled from prices.yaml
    lambda_request: float = None        # type: ignore[assignment]
    http_api_request: float = None      # type: ignore[assignment]
    gcf_vcpu_second: float = None       # type: ignore[assignment]
    gcf_gib_second: float = None        # type: ignore[assignment]
    gcf_request: float = None           # type: ignore[assignment]
    azure_gb_second: float = None       # type: ignore[assignment]
    azure_request: float = None         # type: ignore[assignment]
    container_vcpu_hour: float = None   # type: ignore[assignment]
    container_gb_hour: float = None     # type: ignore[assignment]
    load_balancer_hour: float = None    # type: ignore[assignment]

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) is None:
                object.__setattr__(self, f.name, _default(f.name))

    @classmethod
    def from_file(cls, path: str | Path) -> Prices:
        return cls(**{key: float(entry["usd"]) for key, entry in load_price_table(path).items()})


def prices_as_of(path: str | Path = PRICE_FILE) -> str:
    """When the prices were read: the oldest and newest `as_of` of the file."""
    dates = sorted({str(entry["as_of"]) for entry in load_price_table(path).values()})
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


PRICES_AS_OF = "see prices.yaml"  # kept for callers of the Lambda-only model; the file has the dates


@dataclass(frozen=True)
class Workload:
    """The measured service: latency per request and the sizes it runs at."""

    latency_ms: float                  # billed duration per request (measured warm latency)
    lambda_memory_mb: int = 128
    container_vcpu: float = 0.25
    container_memory_gb: float = 0.5
    target_utilisation: float = 0.6   # keep replicas below this share of their capacity
    min_replicas: int = 2              # always-on means surviving one replica's loss
    gcf_vcpu: float = 1.0              # terraform/modules/cloud_function's instance size
    gcf_memory_gib: float = 0.5
    azure_memory_mb: int = 128         # the handler's peak is under 128 MB

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
        if self.gcf_vcpu <= 0 or self.gcf_memory_gib <= 0 or not 1 <= self.azure_memory_mb <= 14336:
            raise ConfigError("functions", "Cloud Functions vCPU and memory must be > 0, Azure memory 1-14,336 MB",
                              "correct the function sizing")

    @property
    def replica_capacity(self) -> float:
        """Requests per second one replica serves at the target utilisation (CPU-bound scoring)."""
        return self.target_utilisation * self.container_vcpu * 1000.0 / self.latency_ms


def lambda_monthly(rate: float, work: Workload, prices: Prices | None = None) -> float:
    """Lambda + HTTP API cost per month at `rate` requests per second."""
    prices = prices or Prices()
    billed_s = math.ceil(work.latency_ms) / 1000.0  # billed in 1 ms steps
    per_request = (billed_s * work.lambda_memory_mb / 1024 * prices.lambda_gb_second + prices.lambda_request
                   + prices.http_api_request)
    return rate * SECONDS_PER_MONTH * per_request


def gcf_monthly(rate: float, work: Workload, prices: Prices | None = None) -> float:
    """Cloud Functions (2nd gen, Cloud Run request-based billing) per month at `rate` req/s."""
    prices = prices or Prices()
    billed_s = math.ceil(work.latency_ms / 100.0) / 10.0  # rounded up to 100 ms
    per_request = (billed_s * (work.gcf_vcpu * prices.gcf_vcpu_second + work.gcf_memory_gib * prices.gcf_gib_second)
                   + prices.gcf_request)
    return rate * SECONDS_PER_MONTH * per_request


def azure_monthly(rate: float, work: Workload, prices: Prices | None = None) -> float:
    """Azure Functions (Consumption plan) per month at `rate` req/s."""
    prices = prices or Prices()
    billed_s = max(math.ceil(work.latency_ms), 100) / 1000.0  # at least 100 ms
    memory_gb = math.ceil(work.azure_memory_mb / 128) * 128 / 1024
    return rate * SECONDS_PER_MONTH * (billed_s * memory_gb * prices.azure_gb_second + prices.azure_request)


def replicas(rate: float, work: Workload) -> int:
    return max(work.min_replicas, math.ceil(rate / work.replica_capacity))


def container_monthly(rate: float, work: Workload, prices: Prices | None = None) -> float:
    """Always-on containers (enough replicas for `rate`) + a load balancer, per month."""
    prices = prices or Prices()
    hourly = work.container_vcpu * prices.container_vcpu_hour + work.container_memory_gb * prices.container_gb_hour
    return (replicas(rate, work) * hourly + prices.load_balancer_hour) * SECONDS_PER_MONTH / 3600


# The per-request options, by the name `flightdeck cost` prints.
SERVERLESS: dict[str, Callable[..., float]] = {"Lambda": lambda_monthly, "Cloud Functions": gcf_monthly,
                                               "Azure Functions": azure_monthly}
CONTAINER = "container"


def break_even(work: Workload, prices: Prices | None = None, option: str = "Lambda") -> float | None:
    """The lowest rate (req/s) at which `option` costs as much as the containers, or None if never.

    A per-request option's cost is linear in the rate; the containers' is a step per replica.
    For each replica count k the line crosses that step at most once: the first crossing inside
    its step's range is the break-even."""
    prices = prices or Prices()
    monthly = SERVERLESS[option]
    unit = monthly(1.0, work, prices)
    capacity = work.replica_capacity
    for k in range(work.min_replicas, 100_000):
        low = 0.0 if k == work.min_replicas else (k - 1) * capacity
        high = k * capacity
        crossing = container_monthly(high, work, prices) / unit
        if low <= crossing <= high:
            return crossing
        if crossing < low:  # the option already dearer at the start of this step (it jumped over it)
            return low
    return None


@dataclass(frozen=True)
class CostRow:
    rate: float
    lambda_usd: float
    container_usd: float
    replicas: int
    gcf_usd: float = 0.0
    azure_usd: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def by_option(self) -> dict[str, float]:
        return {"Lambda": self.lambda_usd, "Cloud Functions": self.gcf_usd, "Azure Functions": self.azure_usd,
                CONTAINER: self.container_usd}

    @property
    def cheapest(self) -> str:
        costs = self.by_option()
        return min(costs, key=costs.get)


def cost_table(work: Workload, prices: Prices | None = None, rates=DEFAULT_RATES) -> list[CostRow]:
    """Monthly cost of every option at each rate."""
    prices = prices or Prices()
    return [CostRow(r, lambda_monthly(r, work, prices), container_monthly(r, work, prices), replicas(r, work),
                    gcf_monthly(r, work, prices), azure_monthly(r, work, prices)) for r in rates]


def break_evens(work: Workload, prices: Prices | None = None) -> dict[str, float | None]:
    """The break-even of each per-request option against the containers."""
    return {option: break_even(work, prices, option) for option in SERVERLESS}


def format_table(rows: list[CostRow], even: float | dict[str, float | None] | None, work: Workload,
                 price_file: str | Path = PRICE_FILE) -> str:
    evens = even if isinstance(even, dict) else {"Lambda": even}
    lines = [f"latency {work.latency_ms:g} ms; Lambda {work.lambda_memory_mb} MB + HTTP API, Cloud Functions "
             f"{work.gcf_vcpu:g} vCPU / {work.gcf_memory_gib:g} GiB, Azure Functions Consumption "
             f"{work.azure_memory_mb} MB, vs {work.min_replicas}+ x {work.container_vcpu:g} vCPU / "
             f"{work.container_memory_gb:g} GB containers + ALB",
             f"prices: {Path(price_file).name} (read {prices_as_of(price_file)}; each price's source is in the file)",
             f"{'req/s':>8} {'Lambda':>11} {'Cloud Fn':>11} {'Azure Fn':>11} {'container':>11} {'replicas':>8}  "
             "cheapest   ($ per month)"]
    for row in rows:
        lines.append(f"{row.rate:>8g} {row.lambda_usd:>11.2f} {row.gcf_usd:>11.2f} {row.azure_usd:>11.2f} "
                     f"{row.container_usd:>11.2f} {row.replicas:>8d}  {row.cheapest}")
    for option, value in evens.items():
        lines.append(f"break-even {option} vs container: "
                     + (f"{value:.2f} req/s" if value is not None else "none in range"))
    return "\n".join(lines)


def text_chart(work: Workload, prices: Prices | None = None, rates=DEFAULT_RATES, width: int = 48) -> str:
    """Monthly cost per option and rate as bars on a log scale: where each line crosses the
    container's shows as the bars passing the container's."""
    prices = prices or Prices()
    options = {**{name: fn for name, fn in SERVERLESS.items()}, CONTAINER: container_monthly}
    marks = {"Lambda": "L", "Cloud Functions": "G", "Azure Functions": "A", CONTAINER: "#"}
    costs = {r: {name: fn(r, work, prices) for name, fn in options.items()} for r in rates}
    low = math.log10(max(min(min(c.values()) for c in costs.values()), 1e-2))
    high = math.log10(max(max(c.values()) for c in costs.values()))
    span = max(high - low, 1e-9)
    lines = [f"$ per month, log scale from ${10 ** low:,.2f} to ${10 ** high:,.0f}  "
             + "  ".join(f"{m} {n}" for n, m in marks.items())]
    for r in rates:
        for name, cost in costs[r].items():
            bar = marks[name] * max(1, round(width * (math.log10(max(cost, 10 ** low)) - low) / span))
            label = f"{r:>7g}/s" if name == "Lambda" else " " * 9
            lines.append(f"{label} {bar:<{width}} {cost:>10,.2f}")
    return "\n".join(lines)


def plot(rows: list[CostRow], even: float | dict[str, float | None] | None, path: str | Path, work: Workload,
         prices: Prices | None = None) -> Path:
    """Every option's monthly cost against the rate (log-log) with the break-evens marked; PNG or
    SVG after the path's suffix (SVG without a timestamp, so the same inputs give the same file)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    prices = prices or Prices()
    evens = even if isinstance(even, dict) else {"Lambda": even}
    rates = np.geomspace(min(r.rate for r in rows), max(r.rate for r in rows), 400)
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    labels = {"Lambda": f"Lambda {work.lambda_memory_mb} MB + HTTP API",
              "Cloud Functions": f"Cloud Functions {work.gcf_vcpu:g} vCPU / {work.gcf_memory_gib:g} GiB",
              "Azure Functions": f"Azure Functions Consumption {work.azure_memory_mb} MB"}
    colours = {"Lambda": "tab:orange", "Cloud Functions": "tab:blue", "Azure Functions": "tab:purple"}
    for option, monthly in SERVERLESS.items():
        axes.plot(rates, [monthly(r, work, prices) for r in rates], label=labels[option], color=colours[option])
    axes.step(rates, [container_monthly(r, work, prices) for r in rates], where="post", color="tab:green",
              label="always-on containers + ALB")
    for option, value in evens.items():
        if value is not None:
            axes.axvline(value, color=colours[option], linestyle="--", alpha=0.7,
                         label=f"break-even {option}: {value:.1f} req/s")
    axes.set(xscale="log", yscale="log", xlabel="requests per second", ylabel="USD per month",
             title=f"Serving cost at {work.latency_ms:g} ms per request (prices of {prices_as_of()})")
    axes.legend(fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    if path.suffix == ".svg":
        matplotlib.rcParams["svg.hashsalt"] = "flightdeck"
        figure.savefig(path, metadata={"Date": None})
    else:
        figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
