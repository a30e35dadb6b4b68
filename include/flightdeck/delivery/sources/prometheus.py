"""Prometheus as a metric source: windows from the counters and histograms the gateway exports.

`PrometheusSource` reads them through Prometheus's HTTP API; its window is
[`WindowStart.epoch`, now], at scrape resolution.

How the Prometheus window differs from the gateway's stats window (the metrics carry less):

* Time, not route version: the window runs from the last scrape at or before `epoch` to the
  last scrape before now. Up to one scrape interval of traffic before the step can leak in
  and up to one interval of the newest traffic is not visible yet. Prometheus must have been
  scraping the gateway before the step began (a series with no sample in the `lookback_s`
  before `epoch` is taken to have started at zero inside the window).
* Counts are exact at those scrapes: the source reads the raw samples and adds their
  increases itself (a drop is a counter reset, e.g. a restarted gateway, and counts from
  zero). PromQL's `increase()` is not used: it extrapolates to the window's edges (counts
  come out fractional) and a series born inside the window loses its first value, so a
  candidate's first errors, or its only error, would vanish.
* `latency_sumsq` is estimated from the latency histogram (values spread evenly within each
  bucket; the open last bucket at its mean from the exact sum); `latency_sum` is exact. With
  the gateway's buckets (each 2–2.5× the last) the standard deviation comes out ~10–45 % too
  high for typical latency spreads, up to ~3× when a variant's latencies all sit in one
  bucket: latency gates decide more slowly, not over-confidently. Latencies above the last
  bucket (2.5 s) count as equal, so a heavy tail there is under-estimated.
* Scores sit in `le` buckets (upper edge inclusive) while the running sums bin [lo, hi): a
  score exactly on an edge (0.1, 0.2, ...) lands one bin lower here.
* Failures: the gateway counts a failed model call in `flightdeck_errors_total` (under the
  variant's own model version) but not in `flightdeck_requests_total`, and observes no
  latency or score for it. Here `requests` = answered + failures no fallback answered
  (errors − fallbacks, when positive) and `errors` = the larger of model failures and
  fallback answers (a fallback also answers while the breaker is open, without a failure).
  A fallback's answer is counted under the variant but the fallback's model version, in both
  sources, while the failure is counted under the variant's own version here and under the
  fallback's version (as an error of that answer) in the running sums: only the sum over a
  variant's versions (`by_variant`) agrees between the sources. A request whose fallback
  failed too is an error here and is missing from the running sums.
  The running sums (as of this writing) also leave out requests that failed with no
  fallback configured, so only this source sees those failures.
* Cost: the answer holds every sample of ~35 series per (variant, model_version) over the
  window plus `lookback_s`; at 15 s scrapes a one-hour window is a few hundred kB.
* Shadows: the gateway exports only mirrored requests, disagreements and failures for a
  shadow (no latency, no scores). A shadow window here has `requests`, `errors`,
  `shadow_disagreements`, and `shadow_rows` = mirrored requests − failures, exact only when
  each request carries one row; `rows`, `score_bins` and latency stay zero. A variant's
  failures are attributed to its shadow role first (up to its mirrored requests): a variant
  that is live and shadow inside one window splits its errors approximately.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import httpx

from flightdeck.delivery.sources.base import (
    MetricSourceError,
    Role,
    WindowKey,
    WindowStart,
    bucket_counts,
    check_role,
    estimate_sumsq,
    unreachable,
)
from flightdeck.delivery.window import VariantWindow
from flightdeck.stats import N_SCORE_BINS, SCORE_EDGES

# Prometheus's default lookback: a series scraped in the last 5 minutes is "present".
DEFAULT_LOOKBACK_S = 300.0

_REQUESTS = "flightdeck_requests_total"
_ERRORS = "flightdeck_errors_total"
_FALLBACKS = "flightdeck_fallbacks_total"
_LATENCY_BUCKET = "flightdeck_request_latency_seconds_bucket"
_LATENCY_SUM = "flightdeck_request_latency_seconds_sum"
_SCORE_BUCKET = "flightdeck_score_bucket"
_SHADOW_REQUESTS = "flightdeck_shadow_requests_total"
_SHADOW_DISAGREEMENTS = "flightdeck_shadow_disagreements_total"
_METRICS = (_REQUESTS, _ERRORS, _FALLBACKS, _LATENCY_BUCKET, _LATENCY_SUM, _SCORE_BUCKET, _SHADOW_REQUESTS,
            _SHADOW_DISAGREEMENTS)
_SCORE_LES = (*SCORE_EDGES[1:], math.inf)


class PrometheusSource:
    """Windows from the gateway's metrics in Prometheus (GET /api/v1/query).

    One query per look: the raw samples of the gateway's counters and histograms for the
    endpoint over [epoch − lookback_s, now], summed over workers and instances. `selector`
    adds label matchers (e.g. `job="gateway-prod"`) when one Prometheus scrapes several
    gateways that share endpoint names. Differences from the stats window: module docstring.
    """

    kind = "prometheus"

    def __init__(self, prometheus_url: str, endpoint: str, timeout: float = 10.0, selector: str = "",
                 lookback_s: float = DEFAULT_LOOKBACK_S) -> None:
        self.prometheus_url = prometheus_url.rstrip("/")
        self.endpoint = endpoint
        self.timeout = timeout
        self.selector = selector.strip().strip(",")
        self.lookback_s = lookback_s

    def config(self) -> dict:
        config = {"kind": self.kind, "url": self.prometheus_url, "endpoint": self.endpoint, "timeout": self.timeout}
        if self.selector:
            config["selector"] = self.selector
        if self.lookback_s != DEFAULT_LOOKBACK_S:
            config["lookback_s"] = self.lookback_s
        return config

    def query(self, now: float, since_epoch: float) -> str:
        """The PromQL range selector read at `now` for a window starting at `since_epoch`."""
        names = "|".join(_METRICS)
        # PromQL strings take Go escapes; JSON's are a subset of them.
        matchers = [f'__name__=~"{names}"', f"endpoint={json.dumps(self.endpoint)}"]
        if self.selector:
            matchers.append(self.selector)
        range_ms = max(int(math.ceil((now - since_epoch + self.lookback_s) * 1000)), 1)
        return "{" + ",".join(matchers) + f"}}[{range_ms}ms]"

    def windows(self, since: WindowStart, role: Role = "live") -> dict[WindowKey, VariantWindow]:
        check_role(role)
        now = time.time()
        url = f"{self.prometheus_url}/api/v1/query"
        try:
            response = httpx.get(url, params={"query": self.query(now, since.epoch), "time": f"{now:.3f}"},
                                 timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise unreachable("Prometheus", url, exc, "start Prometheus, correct the source's url, or use the "
                              "gateway's stats (kind 'gateway')") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise MetricSourceError(url, f"answered HTTP {response.status_code} with something that is not "
                                    f"Prometheus's API JSON ({_content_type(response)})",
                                    "point the source's url at Prometheus (the base URL, without /api/v1)",
                                    transient=response.status_code >= 500)
        series = parse_query_response(payload, url, transient=response.status_code >= 500)
        return windows_from_series(series, since.epoch, role, url)


def parse_query_response(payload: dict, url: str = "prometheus", transient: bool = False) -> list[dict]:
    """The `result` of a /api/v1/query answer for a range selector (a matrix).

    Raises MetricSourceError when Prometheus reports an error or the shape is not a matrix.
    """
    if payload.get("status") != "success":
        problem = f"{_short(payload.get('errorType', 'error'))}: {_short(payload.get('error', 'no error message'))}"
        raise MetricSourceError(url, f"Prometheus refused the query ({problem})",
                                "check the source's endpoint and selector (label matchers such as "
                                "job=\"gateway\")", transient=transient or payload.get("errorType") in
                                ("timeout", "canceled", "internal", "unavailable"))
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise MetricSourceError(url, f"answered a {_shape(data)} where a matrix was expected",
                                "point the source's url at Prometheus's API (base URL, without /api/v1)")
    return data["result"]


def _content_type(response: httpx.Response) -> str:
    """A short, safe description of an answer: its media type only, never its body."""
    media = response.headers.get("content-type", "").split(";")[0].strip()[:40]
    return f"content type {media!r}" if re.fullmatch(r"[A-Za-z0-9.+/-]+", media) else "no valid content type"


def _short(text: Any, limit: int = 80) -> str:
    """A server-supplied reason cut short, reduced to printable ASCII: what reaches a log."""
    cleaned = re.sub(r"[^ -~]", "?", str(text))
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


def _shape(data: Any) -> str:
    return _short(repr(data.get("resultType")), 40) if isinstance(data, dict) else type(data).__name__


def series_increase(values: list, start: float) -> float:
    """How much one counter series grew after `start`, from its raw [timestamp, "value"] samples.

    The baseline is the last sample at or before `start` (none: the series began inside the
    window, at zero). A drop is a counter reset: the new value counts from zero.
    """
    increase = 0.0
    previous: float | None = None
    for timestamp, text in values:
        value = float(text)
        if math.isnan(value):
            continue
        if float(timestamp) <= start:
            previous = value
            continue
        if previous is None:
            previous = 0.0
        increase += value - previous if value >= previous else value
        previous = value
    return increase


def score_bins_from_buckets(cumulative: dict[float, float]) -> tuple[int, ...]:
    """The ten score bins from `flightdeck_score` buckets (le 0.1 … 1.0, +Inf).

    Scores above 1.0 (+Inf bucket) join the last bin, as in the running sums.
    """
    if not cumulative:
        return (0,) * N_SCORE_BINS
    if tuple(sorted(cumulative)) != _SCORE_LES:
        raise ValueError(f"score buckets {sorted(cumulative)} are not the gateway's {list(_SCORE_LES)}")
    counts = bucket_counts(cumulative)
    above_one = counts.pop()
    counts[-1] += above_one
    return tuple(round(c) for c in counts)


@dataclass
class _Sums:
    """Increases of one (variant, model_version) over the window, summed over series."""

    counters: dict[str, float]
    latency: dict[float, float]
    scores: dict[float, float]


def windows_from_series(series: list[dict], start: float, role: Role = "live",
                        url: str = "prometheus") -> dict[WindowKey, VariantWindow]:
    """`VariantWindow`s for `role` from a matrix of the gateway's metrics (`parse_query_response`).

    Every series' increase after `start` is summed per (variant, model_version) and `le`
    over workers and instances; keys with nothing in the window are left out.
    """
    check_role(role)
    sums: dict[WindowKey, _Sums] = defaultdict(lambda: _Sums(defaultdict(float), defaultdict(float),
                                                             defaultdict(float)))
    try:
        for item in series:
            labels = item["metric"]
            name = labels["__name__"]
            key = (labels["variant"], labels["model_version"])
            increase = series_increase(item["values"], start)
            if name == _LATENCY_BUCKET:
                sums[key].latency[float(labels["le"])] += increase
            elif name == _SCORE_BUCKET:
                sums[key].scores[float(labels["le"])] += increase
            else:
                sums[key].counters[name] += increase
    except (KeyError, TypeError, ValueError) as exc:
        raise MetricSourceError(url, f"returned a series that is not the gateway's metrics ({exc!r})",
                                "check the source's selector; the gateway labels every series with "
                                "endpoint, variant and model_version") from exc
    windows = {}
    for key, found in sums.items():
        try:
            window = _shadow_window(found) if role == "shadow" else _live_window(found)
        except ValueError as exc:  # histogram buckets other than the gateway's
            raise MetricSourceError(url, str(exc), "upgrade the gateway and this client together") from exc
        if window != VariantWindow():
            windows[key] = window
    return windows


def _shadow_errors(c: dict[str, float]) -> float:
    return min(c[_ERRORS], c[_SHADOW_REQUESTS])


def _live_window(found: _Sums) -> VariantWindow:
    c = found.counters
    errors = c[_ERRORS] - _shadow_errors(c)
    unanswered = max(errors - c[_FALLBACKS], 0.0)  # failures no fallback answered
    bins = score_bins_from_buckets(found.scores)
    latency_sum = c[_LATENCY_SUM]
    return VariantWindow(
        requests=round(c[_REQUESTS] + unanswered), errors=round(max(errors, c[_FALLBACKS])),
        latency_sum=latency_sum, latency_sumsq=estimate_sumsq(found.latency, latency_sum) if found.latency else 0.0,
        rows=sum(bins), score_bins=bins)


def _shadow_window(found: _Sums) -> VariantWindow:
    c = found.counters
    requests, errors = round(c[_SHADOW_REQUESTS]), round(_shadow_errors(c))
    return VariantWindow(requests=requests, errors=errors, shadow_rows=requests - errors,
                         shadow_disagreements=round(c[_SHADOW_DISAGREEMENTS]))
