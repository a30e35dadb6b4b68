"""What every metric source shares: the protocol, the window start, the error, and the
histogram maths.

A metric source answers one question for a metric gate: what did each variant of one
endpoint do since a rollout step began? Every source gives the same answer shape, a
`VariantWindow` per (variant, model_version); "no data yet" is not an error, the variant is
simply absent (callers use `windows.get(key, VariantWindow())`). A source that cannot be
read raises `MetricSourceError`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Literal, Protocol

import httpx

from flightdeck.delivery.window import VariantWindow
from flightdeck.errors import ConfigError, FlightdeckError

Role = Literal["live", "shadow"]
ROLES: tuple[str, ...] = ("live", "shadow")
WindowKey = tuple[str, str]  # (variant, model_version)


class MetricSourceError(FlightdeckError):
    """A metric source could not be read, or answered something that is not metrics.

    `transient` is True when asking again may help (unreachable, timeout, 5xx): a gate keeps
    looking until its deadline; False when the answer itself is wrong (bad URL, garbage).
    """

    def __init__(self, url: str, problem: str, fix: str, transient: bool = False) -> None:
        self.url = url
        self.problem = problem
        self.fix = fix
        self.transient = transient
        super().__init__(f"{url}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class WindowStart:
    """Where a rollout step's window begins, in both coordinates the sources understand.

    `route_version` is the gateway route table version the step's weights were stored under
    (the stats source counts route versions >= it); `epoch` is the Unix time, in seconds,
    at which they were set (the Prometheus source counts from then).
    """

    route_version: int
    epoch: float

    @classmethod
    def now(cls, route_version: int) -> WindowStart:
        """A window starting at this moment, under `route_version`."""
        return cls(route_version, time.time())

    def to_dict(self) -> dict:
        return asdict(self)


class MetricSource(Protocol):
    """Reads the windows of every variant of one gateway endpoint."""

    kind: str

    def windows(self, since: WindowStart, role: Role = "live") -> dict[WindowKey, VariantWindow]:
        """A window per (variant, model_version) that has data since `since`, for `role`."""

    def config(self) -> dict:
        """JSON-safe arguments of `make_source` that rebuild this source."""


def merge(a: VariantWindow, b: VariantWindow) -> VariantWindow:
    """The window of both: every count and sum added."""
    values = {f.name: getattr(a, f.name) + getattr(b, f.name) for f in fields(VariantWindow)
              if f.name != "score_bins"}
    return VariantWindow(**values, score_bins=tuple(x + y for x, y in zip(a.score_bins, b.score_bins, strict=True)))


def by_variant(windows: dict[WindowKey, VariantWindow]) -> dict[str, VariantWindow]:
    """Windows summed over each variant's model versions.

    A request a fallback answered is counted under the fallback's model version, and (in
    Prometheus) its failure under the variant's own: a variant's error rate is only whole
    summed over its versions.
    """
    merged: dict[str, VariantWindow] = {}
    for (variant, _), window in windows.items():
        merged[variant] = merge(merged[variant], window) if variant in merged else window
    return merged


def check_role(role: str) -> None:
    """Refuse a role other than "live" or "shadow" (ConfigError naming the role)."""
    if role not in ROLES:
        raise ConfigError("role", f"must be one of {ROLES}, got {role!r}", "ask for 'live' or 'shadow'")


def unreachable(what: str, url: str, exc: Exception, fix: str) -> MetricSourceError:
    """The transient MetricSourceError of an HTTP source that timed out or could not be reached."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "is unreachable"
    return MetricSourceError(url, f"{what} {kind} ({type(exc).__name__}: {exc})", fix, transient=True)


def bucket_counts(cumulative: dict[float, float]) -> list[float]:
    """Per-bucket counts from cumulative `le` buckets (any order; +Inf included), in `le` order."""
    counts, below = [], 0.0
    for le in sorted(cumulative):
        counts.append(max(cumulative[le] - below, 0.0))
        below = max(below, cumulative[le])
    return counts


def estimate_sumsq(cumulative: dict[float, float], total: float) -> float:
    """Sum of squares of the observations behind a histogram, estimated from its buckets.

    The spread (variance) comes from the buckets, each value spread evenly over its bucket
    (the first from 0; the open +Inf bucket at the mean its values must have, from the exact
    `total`); the mean is the exact `total` / count. Returns count · (variance + mean²).
    """
    les = sorted(cumulative)
    counts = bucket_counts(cumulative)
    n = sum(counts)
    if n <= 0:
        return 0.0
    first = second = 0.0  # bucket estimates of Σx and Σx²
    lower = 0.0
    for le, count in zip(les, counts, strict=True):
        if count > 0:
            if math.isinf(le):
                value = max(lower, (total - first) / count)
                first += count * value
                second += count * value * value
            else:
                first += count * (lower + le) / 2
                second += count * (lower * lower + lower * le + le * le) / 3
        lower = le
    variance = max(second / n - (first / n) ** 2, 0.0)
    mean = total / n
    return n * (variance + mean * mean)
