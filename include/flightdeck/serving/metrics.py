"""Prometheus metrics of the gateway, labelled {endpoint, variant, model_version}.

With several uvicorn workers, `flightdeck serve` sets PROMETHEUS_MULTIPROC_DIR before the
workers start, so prometheus_client keeps each worker's values in shared files and
`/metrics` (answered by any worker) adds them up.

The two histograms of every answer (latency, and one score per row) are counted in process
(`BatchedHistogram`: a bisect and two additions per value) and added to prometheus_client's
values by `flush()`, which the gateway calls every `FLUSH_SECONDS` and before it answers
/metrics: a histogram observation in multiprocess mode costs a lock and two file writes,
and this keeps them off the request path. Counters stay immediate.
"""

from __future__ import annotations

import os
from bisect import bisect_left

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from flightdeck.stats import SCORE_EDGES

LABELS = ("endpoint", "variant", "model_version")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = SCORE_EDGES[1:]  # the same bins as the gateway's running sums
# How often the gateway adds the histograms counted in process to the exported values.
FLUSH_SECONDS = 0.1


class BatchedHistogram:
    """Observations of one labelled histogram child, counted here and added to it by `flush()`.

    Exactly what `observe()` would have recorded (the same bucket for each value: the first
    upper bound >= it), with fewer writes to prometheus_client's multiprocess files."""

    __slots__ = ("child", "bounds", "counts", "total", "pending")

    def __init__(self, child) -> None:
        self.child = child
        self.bounds = list(child._upper_bounds)  # ends with +Inf
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.pending = False

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.pending = True

    def observe_many(self, values: list[float]) -> None:
        bounds, counts = self.bounds, self.counts
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        self.total += sum(values)
        self.pending = True

    def flush(self) -> None:
        if not self.pending:
            return
        counts, total = self.counts, self.total
        self.counts, self.total, self.pending = [0] * len(self.bounds), 0.0, False
        self.child._sum.inc(total)
        for bucket, count in zip(self.child._buckets, counts, strict=True):
            if count:
                bucket.inc(count)


class GatewayMetrics:
    """The gateway's metric families, with label children cached (labels() is the slow part)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        def counter(name: str, doc: str, labels=LABELS) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.requests = counter("flightdeck_requests", "Requests answered, by the variant that answered.")
        self.errors = counter("flightdeck_errors", "Requests a variant failed (exception or timeout).")
        self.rejected = counter("flightdeck_rejected_requests", "Requests refused with a 4xx.",
                                ("endpoint", "status"))
        self.latency = Histogram("flightdeck_request_latency_seconds", "Gateway time per request.",
                                 LABELS, buckets=LATENCY_BUCKETS, registry=registry)
        self.scores = Histogram("flightdeck_score", "Scores returned, one per row.",
                                LABELS, buckets=SCORE_BUCKETS, registry=registry)
        self.shadow_requests = counter("flightdeck_shadow_requests", "Requests mirrored to a shadow variant.")
        self.shadow_disagreements = counter(
            "flightdeck_shadow_disagreements", "Shadow rows whose decision differs from the live answer.")
        self.shadow_dropped = counter("flightdeck_shadow_dropped",
                                      "Mirrored requests dropped: queue full (requests or bytes).",
                                      ("endpoint",))
        self.forced = counter("flightdeck_forced_requests",
                              "Requests an admin forced onto a variant; not in flightdeck_requests.")
        self.fallbacks = counter("flightdeck_fallbacks", "Requests the fallback answered, by the primary that failed.")
        self.cache_hits = counter("flightdeck_cache_hits", "Responses served from the cache.")
        self.cache_misses = counter("flightdeck_cache_misses", "Cache lookups that missed.")
        self.predlog_dropped = Gauge("flightdeck_prediction_log_dropped", "Prediction-log rows dropped.",
                                     registry=registry, multiprocess_mode="livesum")
        self.predlog_written = Gauge("flightdeck_prediction_log_written", "Prediction-log rows written.",
                                     registry=registry, multiprocess_mode="livesum")
        self.predlog_failed = Gauge("flightdeck_prediction_log_failed",
                                    "Prediction-log rows the database refused or lost after retries.",
                                    registry=registry, multiprocess_mode="livesum")
        self.route_version = Gauge("flightdeck_route_version", "Route table version in force.",
                                   registry=registry, multiprocess_mode="livemax")
        self._children: dict[tuple, object] = {}
        self._batched: list[BatchedHistogram] = []

    def answered(self, endpoint: str, variant: str, model_version: str) -> tuple:
        """(requests counter, latency, scores) of one label set, cached together for the hot path;
        the two histograms are `BatchedHistogram`s (exported at the next `flush()`)."""
        key = ("answered", endpoint, variant, model_version)
        children = self._children.get(key)
        if children is None:
            labels = (endpoint, variant, model_version)
            latency = BatchedHistogram(self.latency.labels(*labels))
            scores = BatchedHistogram(self.scores.labels(*labels))
            self._batched += (latency, scores)
            children = self._children[key] = (self.requests.labels(*labels), latency, scores)
        return children

    def flush(self) -> None:
        """Add what the batched histograms counted since the last flush to the exported values."""
        for histogram in self._batched:
            histogram.flush()

    def child(self, family, *labels: str):
        """A cached label child of `family`."""
        key = (id(family), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """(body, content type) of /metrics: all workers' values in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
