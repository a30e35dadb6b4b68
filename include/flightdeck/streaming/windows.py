"""Event-time windows of score statistics per model version, a watermark, and late events.

Windows are tumbling (`slide == size`) or sliding (`slide < size`, each event in
`size / slide` windows). The watermark is the largest event time seen minus
`allowed_lateness`; a window closes (its record is emitted) once the watermark passes its
end. Late-event policy: an event whose window has already closed is still scored and its
result written, but it does not change the closed window's statistics; it is *counted* in
that window's `late_events`, and the window record is emitted again with the new count.
Nothing is dropped silently.

Event times come from producers' clocks. One event stamped far in the future would move the
watermark past every open window and make each later event late, so an event time more than
`max_future_skew` ahead of the event's arrival (the broker's append time) is clamped to
arrival + skew for the windows (its result keeps the time it was sent with) and counted
(`clamped_total`, the metric flightdeck_stream_clamped_events).

Drift per window: PSI of the window's score histogram against a reference histogram
(`reference_bins`, e.g. the training profile's; default the first closed window of the same
model version), using `flightdeck.stats.psi`; and, when the model version has a training
reference profile (`feature_references`, filled by the scorer), the PSI of every feature
against it (`flightdeck.streaming.feature_drift`). A window adds up each event's feature buckets
(`add(..., buckets=)`) and reports `feature_psi` (None without a reference) when it closes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from flightdeck.data.schema import NUMERIC_FEATURES
from flightdeck.errors import ConfigError
from flightdeck.stats import N_SCORE_BINS, SCORE_EDGES, psi, score_bin
from flightdeck.streaming.feature_drift import FeatureReference

_SCORE_INNER_EDGES = np.asarray(SCORE_EDGES[1:-1])  # as `score_bin` bins, for an array of scores


@dataclass
class _Agg:
    count: int = 0
    score_sum: float = 0.0
    score_sumsq: float = 0.0
    bins: list[int] = field(default_factory=lambda: [0] * N_SCORE_BINS)
    feature_sums: dict[str, float] = field(default_factory=dict)
    feature_counts: np.ndarray | None = None  # flat bucket counts of every feature (with a reference)
    pending: list = field(default_factory=list)  # bucket rows added since the last fold

    def fold(self, reference: FeatureReference | None) -> None:
        """Add the pending bucket rows to `feature_counts` (one bincount for many events)."""
        if not self.pending:
            return
        if reference is not None:
            counts = reference.counts(self.pending)
            self.feature_counts = counts if self.feature_counts is None else self.feature_counts + counts
        self.pending = []


class Windows:
    """One window definition's open aggregates, watermark and late counts (JSON-serialisable)."""

    def __init__(self, kind: str, size_s: float, slide_s: float | None = None, allowed_lateness_s: float = 0.0,
                 reference_bins: list[float] | None = None, drift_features: tuple[str, ...] = NUMERIC_FEATURES[:4],
                 max_future_skew_s: float | None = 300.0):
        slide_s = size_s if slide_s is None else slide_s
        if size_s <= 0 or slide_s <= 0 or slide_s > size_s:
            raise ConfigError(f"windows.{kind}", f"size {size_s} s, slide {slide_s} s",
                              "use size > 0 and 0 < slide <= size")
        if allowed_lateness_s < 0:
            raise ConfigError("allowed_lateness", f"{allowed_lateness_s} s", "use 0 or more seconds")
        if max_future_skew_s is not None and max_future_skew_s < 0:
            raise ConfigError("max_future_skew", f"{max_future_skew_s} s", "use 0 or more seconds (or none)")
        self.max_future_skew = max_future_skew_s
        self.kind, self.size, self.slide, self.lateness = kind, float(size_s), float(slide_s), float(allowed_lateness_s)
        self.reference_bins = reference_bins
        self.drift_features = drift_features
        # model version -> its training reference (the scorer shares one dict with every Windows)
        self.feature_references: dict[str, FeatureReference] = {}
        self.reset()

    def reset(self) -> None:
        """Back to no events seen."""
        self.max_event_time = -math.inf
        self._open: dict[tuple[float, str], _Agg] = {}
        self._closed: dict[tuple[float, str], dict] = {}  # emitted records, kept for late counts
        self._references: dict[str, list[int]] = {}
        self.late_total = 0
        self.clamped_total = 0

    @property
    def watermark(self) -> float:
        return self.max_event_time - self.lateness

    def starts(self, t: float) -> list[float]:
        """Starts of every window that holds event time `t`."""
        last = math.floor(t / self.slide) * self.slide
        return [last - k * self.slide for k in range(int(math.ceil(self.size / self.slide)))
                if last - k * self.slide + self.size > t]

    def add(self, t: float, model_version: str, score: float, features: dict,
            arrival: float | None = None, buckets: np.ndarray | None = None) -> list[dict]:
        """Account one scored event that arrived at `arrival` (epoch seconds, when known), with its
        feature buckets on the version's reference (`FeatureReference.bucket_rows`) when it has one;
        returns window records re-emitted because of a late event."""
        if arrival is not None and self.max_future_skew is not None and t > arrival + self.max_future_skew:
            t = arrival + self.max_future_skew
            self.clamped_total += 1
        reemitted = []
        watermark = self.watermark
        for start in self.starts(t):
            key = (start, model_version)
            if start + self.size <= watermark:  # that window has closed: late
                self.late_total += 1
                record = self._closed.get(key) or self._record(start, model_version, _Agg())
                record["late_events"] += 1
                self._closed[key] = record
                reemitted.append(record)
                continue
            agg = self._open.get(key)
            if agg is None:
                agg = self._open[key] = _Agg()
            agg.count += 1
            agg.score_sum += score
            agg.score_sumsq += score * score
            agg.bins[score_bin(score)] += 1
            for name in self.drift_features:
                agg.feature_sums[name] = agg.feature_sums.get(name, 0.0) + features[name]
            if buckets is not None:
                agg.pending.append(buckets)
        self.max_event_time = max(self.max_event_time, t)
        return reemitted

    def add_batch(self, times, versions: list[str], scores, features: dict, arrivals=None,
                  buckets: np.ndarray | None = None, has_buckets: np.ndarray | None = None) -> tuple[list[dict], int]:
        """`add` of a batch of events, in their order, with numpy: the same aggregates (sums added in
        event order, so equal to the last bit), watermark, late counts and clamping as adding them
        one by one. Per event: `times`, `versions`, `scores`, `arrivals` (NaN when unknown) and, where
        `has_buckets`, a row of `buckets`; `features` maps each of `drift_features` to a column.
        Returns the records re-emitted because of late events, and how many event times were clamped."""
        t = np.array(times, dtype=np.float64)
        n = len(t)
        if n == 0:
            return [], 0
        clamped = 0
        if arrivals is not None and self.max_future_skew is not None:
            limit = np.asarray(arrivals, dtype=np.float64) + self.max_future_skew
            over = t > limit  # NaN (arrival unknown) compares False: not clamped
            clamped = int(over.sum())
            if clamped:
                t = np.where(over, limit, t)
                self.clamped_total += clamped
        running = np.maximum.accumulate(t)
        before = np.empty(n)  # the largest event time before each event: its watermark's base
        before[0] = self.max_event_time
        np.maximum(running[:-1], self.max_event_time, out=before[1:])
        watermark = before - self.lateness
        cell = np.floor(t / self.slide)
        last = cell * self.slide
        names = list(dict.fromkeys(versions))
        codes = np.zeros(n, dtype=np.int64) if len(names) == 1 else np.array(
            [names.index(v) for v in versions], dtype=np.int64)
        late: list[tuple[int, int, float]] = []
        parts = []  # (event, k, start, version code) of every event in an open window
        for k in range(int(math.ceil(self.size / self.slide))):
            start = last - k * self.slide
            inside = start + self.size > t
            is_late = inside & (start + self.size <= watermark)
            if is_late.any():
                late += [(i, k, float(start[i])) for i in np.flatnonzero(is_late).tolist()]
            on_time = np.flatnonzero(inside & ~is_late)
            parts.append((on_time, np.full(len(on_time), k), start[on_time], codes[on_time]))
        events = np.concatenate([p[0] for p in parts])
        order = np.argsort(events, kind="stable")  # event order inside every window
        events, ks, starts, vcodes = (np.concatenate([p[j] for p in parts])[order] for j in range(4))
        if len(events):
            self._aggregate(events, ks, starts, vcodes, cell, names, scores, features, buckets, has_buckets)
        reemitted = []
        for i, _, start in sorted(late):
            key = (start, versions[i])
            self.late_total += 1
            record = self._closed.get(key) or self._record(start, versions[i], _Agg())
            record["late_events"] += 1
            self._closed[key] = record
            reemitted.append(record)
        self.max_event_time = max(self.max_event_time, float(running[-1]))
        return reemitted, clamped

    def _aggregate(self, events, ks, starts, vcodes, cell, names, scores, features, buckets, has_buckets) -> None:
        """Add on-time events to their open windows: `events[j]` belongs to the window that starts at
        `starts[j]` (its k-th, counting back) of model version `names[vcodes[j]]`, in event order."""
        cells = cell[events] - ks  # the window's start in slides: an integer, while it fits a float's mantissa
        if np.abs(cells).max() < 2 ** 52:
            lowest = cells.min()
            keys, first, group = np.unique((cells - lowest).astype(np.int64) * len(names) + vcodes,
                                           return_index=True, return_inverse=True)
        else:
            keys, first, group = np.unique(np.stack([starts, vcodes.astype(np.float64)], axis=1), axis=0,
                                           return_index=True, return_inverse=True)
        group = group.reshape(-1)
        n_groups = len(keys)
        score_values = np.asarray(scores, dtype=np.float64)
        values = np.column_stack([score_values, score_values * score_values,
                                  *(np.asarray(features[name], dtype=np.float64) for name in self.drift_features)])
        # New windows enter `_open` in the order single adds would create them.
        aggs: list[_Agg] = [None] * n_groups  # type: ignore[list-item]
        versions = [names[c] for c in vcodes[first].tolist()]
        for g in sorted(range(n_groups), key=lambda g: (events[first[g]], ks[first[g]])):
            key = (float(starts[first[g]]), versions[g])
            agg = self._open.get(key)
            aggs[g] = agg if agg is not None else self._open.setdefault(key, _Agg())
        # np.add.at adds one event after the other, in event order, as `add` does: equal sums to the bit
        sums = np.array([[a.score_sum, a.score_sumsq, *(a.feature_sums.get(name, 0.0) for name in self.drift_features)]
                         for a in aggs])
        np.add.at(sums, group, values[events])
        bins = np.zeros((n_groups, N_SCORE_BINS), dtype=np.int64)
        np.add.at(bins, (group, np.searchsorted(_SCORE_INNER_EDGES, score_values[events], side="right")), 1)
        sizes = np.bincount(group, minlength=n_groups)
        feature_counts = self._feature_counts(events, group, n_groups, versions, buckets, has_buckets)
        for g, (agg, row, counts, size) in enumerate(zip(aggs, sums.tolist(), bins.tolist(), sizes.tolist(),
                                                         strict=True)):
            agg.count += size
            agg.score_sum, agg.score_sumsq = row[0], row[1]
            for name, total in zip(self.drift_features, row[2:], strict=True):
                agg.feature_sums[name] = total
            agg.bins = [a + b for a, b in zip(agg.bins, counts, strict=True)]
            added = feature_counts.get(g)
            if added is not None:
                agg.fold(self.feature_references[versions[g]])  # anything added before, by `add`
                agg.feature_counts = added if agg.feature_counts is None else agg.feature_counts + added

    def _feature_counts(self, events, group, n_groups, versions, buckets, has_buckets) -> dict[int, np.ndarray]:
        """Per window (group) whose version has a reference, the flat bucket counts of its events
        that have buckets: one bincount per model version."""
        if buckets is None:
            return {}
        out: dict[int, np.ndarray] = {}
        for version in dict.fromkeys(versions):
            reference = self.feature_references.get(version)
            if reference is None:
                continue
            local = np.full(n_groups, -1, dtype=np.int64)
            mine = [g for g in range(n_groups) if versions[g] == version]
            local[mine] = np.arange(len(mine))
            take = local[group] >= 0
            if has_buckets is not None:
                take &= has_buckets[events]
            if not take.any():
                continue
            rows = buckets[events[take]]
            flat = (local[group[take]][:, None] * reference.size + rows).ravel()
            counts = np.bincount(flat, minlength=len(mine) * reference.size).reshape(len(mine), reference.size)
            has_rows = np.bincount(local[group[take]], minlength=len(mine)) > 0
            out.update((g, counts[j]) for j, g in enumerate(mine) if has_rows[j])
        return out

    def close_ready(self) -> list[dict]:
        """Records of windows the watermark has passed (each emitted once here)."""
        watermark = self.watermark
        ready = sorted(k for k in self._open if k[0] + self.size <= watermark)
        records = self._records([(key[0], key[1], self._open.pop(key)) for key in ready])
        for key, record in zip(ready, records, strict=True):
            self._closed[key] = record
        # Keep closed records long enough to count stragglers, not forever.
        horizon = watermark - 10 * self.size
        for key in [k for k in self._closed if k[0] + self.size < horizon]:
            del self._closed[key]
        return records

    def _record(self, start: float, version: str, agg: _Agg) -> dict:
        return self._records([(start, version, agg)])[0]

    def _records(self, windows: list[tuple[float, str, _Agg]]) -> list[dict]:
        """The records of these windows (start, model version, aggregate), their PSIs found with one
        call per model version for the features and one for the scores."""
        feature_psi: list[dict | None] = [None] * len(windows)
        measured: dict[str, list[int]] = {}
        for i, (_, version, agg) in enumerate(windows):
            reference = self.feature_references.get(version)
            agg.fold(reference)
            if reference is not None and agg.feature_counts is not None and agg.count:
                measured.setdefault(version, []).append(i)
        for version, positions in measured.items():
            values = self.feature_references[version].feature_psi_many([windows[i][2].feature_counts for i in positions])
            for i, value in zip(positions, values, strict=True):
                feature_psi[i] = value
        # The score reference: given, or each version's first closed window with events (in this order).
        pairs = []
        for _, version, agg in windows:
            reference = self.reference_bins or self._references.setdefault(version, agg.bins) if agg.count else None
            pairs.append((reference, agg.bins) if agg.count and reference else None)
        compared = [p for p in pairs if p is not None]
        score_psi = iter(psi([list(e) for e, _ in compared], [a for _, a in compared]).tolist() if compared else [])
        records = []
        for (start, version, agg), pair, features in zip(windows, pairs, feature_psi, strict=True):
            mean = agg.score_sum / agg.count if agg.count else None
            std = math.sqrt(max(agg.score_sumsq / agg.count - mean * mean, 0.0)) if agg.count else None
            records.append({"kind": self.kind, "start": start, "end": start + self.size, "model_version": version,
                            "count": agg.count, "score_mean": mean, "score_std": std, "score_bins": list(agg.bins),
                            "score_psi": next(score_psi) if pair is not None else None,
                            "feature_means": {k: v / agg.count for k, v in agg.feature_sums.items()},
                            "feature_psi": features, "late_events": 0})
        return records

    # -- persistence (written in the same atomic commit as results and offsets) --------------
    def state(self) -> dict:
        """A snapshot (later events do not change it)."""
        for (_, version), agg in self._open.items():
            agg.fold(self.feature_references.get(version))
        return {"max_event_time": None if self.max_event_time == -math.inf else self.max_event_time,
                "late_total": self.late_total, "clamped_total": self.clamped_total,
                "references": dict(self._references),
                "open": [[s, v, a.count, a.score_sum, a.score_sumsq, list(a.bins), dict(a.feature_sums),
                          None if a.feature_counts is None else a.feature_counts.tolist()]
                         for (s, v), a in self._open.items()],
                "closed": [[s, v, dict(r)] for (s, v), r in self._closed.items()]}

    def restore(self, state: dict | None) -> None:
        if not state:
            return
        self.max_event_time = -math.inf if state["max_event_time"] is None else state["max_event_time"]
        self.late_total = state["late_total"]
        self.clamped_total = state.get("clamped_total", 0)
        self._references = dict(state["references"])
        self._open = {(entry[0], entry[1]): _restored(entry) for entry in state["open"]}
        self._closed = {(s, v): dict(r) for s, v, r in state["closed"]}


def _restored(entry: list) -> _Agg:
    """An open aggregate from `state()` (a state written before feature counts existed has 7 fields)."""
    _, _, count, score_sum, score_sumsq, bins, sums, *rest = entry
    counts = rest[0] if rest else None
    return _Agg(count, score_sum, score_sumsq, list(bins), dict(sums),
                None if counts is None else np.asarray(counts, dtype=np.int64))


def window_key(record: dict) -> str:
    """Identity of a window record: kind, start and model version."""
    return f"{record['kind']}|{record['start']:.3f}|{record['model_version']}"
