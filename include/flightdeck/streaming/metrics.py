"""Prometheus metrics of the stream scorer, labelled like the gateway's {endpoint, variant, model_version}."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from flightdeck.serving.metrics import LABELS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StreamMetrics:
    """Throughput, lag, event-to-result latency, dead letters, late events and model switches."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry or CollectorRegistry()
        self.events = Counter("flightdeck_stream_events", "Events scored, by the variant that scored them.",
                              LABELS, registry=registry)
        self.dead_letters = Counter("flightdeck_stream_dead_letters", "Events sent to the dead-letter stream.",
                                    ("endpoint",), registry=registry)
        self.late_events = Counter("flightdeck_stream_late_events", "Events that arrived after their window closed.",
                                   ("endpoint", "window"), registry=registry)
        self.clamped_events = Counter("flightdeck_stream_clamped_events",
                                      "Events whose event time was too far ahead of their arrival, clamped.",
                                      ("endpoint", "window"), registry=registry)
        self.batches = Counter("flightdeck_stream_batches", "Batches committed.", ("endpoint",), registry=registry)
        self.model_switches = Counter("flightdeck_stream_model_switches", "Model version changes picked up.",
                                      ("endpoint",), registry=registry)
        self.drift_alerts = Counter("flightdeck_stream_drift_alerts", "Drift alerts published, by kind "
                                    "(score_drift, feature_drift).", ("endpoint", "kind"), registry=registry)
        self.lag = Gauge("flightdeck_stream_consumer_lag", "Records in the source not yet processed.",
                         ("endpoint",), registry=registry)
        self.throughput = Gauge("flightdeck_stream_throughput_events_per_second",
                                "Records processed per second over the last batch.", ("endpoint",), registry=registry)
        self.latency = Histogram("flightdeck_stream_event_to_result_seconds",
                                 "Broker append time to committed result.", ("endpoint",),
                                 buckets=LATENCY_BUCKETS, registry=registry)


def observe_many(histogram, amounts) -> None:
    """`histogram.observe(a)` for every amount of a batch, in one step per bucket instead of one
    call per amount (the same bucket counts; the sum added once)."""
    values = np.asarray(amounts, dtype=np.float64)
    if not len(values):
        return
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if bounds is None or buckets is None or total is None:  # a client without these internals: one by one
        for value in values.tolist():
            histogram.observe(value)
        return
    histogram._raise_if_not_observable()
    # observe() counts an amount in the first bucket whose upper bound is >= it (the last is +Inf)
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left"),
                         minlength=len(bounds))
    total.inc(float(values.sum()))
    for bucket, count in zip(buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
