"""Per-feature drift of the stream scorer's windows against a model version's training reference.

The reference is the profile `train_register` logs with every version (`reference_profile.json`,
`flightdeck.batch.monitoring.build_reference_profile`): numeric features in quantile bins of the
training values, categoricals by category share. Batch monitoring compares a day with it; the
stream scorer compares each closed window with it, on the same buckets (`bucket_indices`) and
with the same PSI (`flightdeck.stats.psi`).

Each event's bucket in every feature is found once per batch (vectorised, per model version);
a window keeps one count per bucket of every feature, laid end to end in a flat vector, and its
record carries the PSI of each feature when it closes. A window alerts when its score PSI or any
feature's PSI crosses the threshold; the alert names the features that did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from flightdeck.data.schema import FEATURES
from flightdeck.errors import ConfigError
from flightdeck.stats import psi

REFERENCE_PROFILE = "reference_profile.json"
"""The artifact, on a version's training run, that holds its reference profile (train_register logs it)."""

SCORE_DRIFT = "score_drift"  # the window's score PSI crossed the threshold (perhaps features too)
FEATURE_DRIFT = "feature_drift"  # only features crossed it
ALERT_KINDS = (SCORE_DRIFT, FEATURE_DRIFT)


class FeatureReference:
    """A reference profile as the stream scorer uses it: each feature's buckets and training shares."""

    def __init__(self, profile: Mapping[str, Any], source: str = "the reference profile") -> None:
        # Batch monitoring brings pandas: loaded only by a scorer that has a reference to measure against.
        from flightdeck.batch.monitoring import PROFILE_VERSION

        fix = ("use the profile train_register logged with the model version (reference_profile.json "
               "on its run), or build one with flightdeck.batch.monitoring.build_reference_profile")
        if not isinstance(profile, Mapping) or not isinstance(profile.get("features"), Mapping):
            raise ConfigError("reference profile", f"{source} is not a reference profile (no 'features')", fix)
        if profile.get("version") != PROFILE_VERSION:
            raise ConfigError("reference profile", f"{source} has format version {profile.get('version')!r}, "
                              f"this scorer reads {PROFILE_VERSION}", fix)
        missing = [name for name in FEATURES if name not in profile["features"]]
        if missing:
            raise ConfigError("reference profile", f"{source} lacks features {', '.join(missing)}", fix)
        self.names: tuple[str, ...] = FEATURES
        self.entries = [profile["features"][name] for name in self.names]
        sizes = []
        for name, entry in zip(self.names, self.entries, strict=True):
            buckets = (len(entry.get("edges", ())) if entry.get("kind") == "numeric"
                       else len(entry.get("categories", ()))) + 2
            if entry.get("kind") not in ("numeric", "categorical") or len(entry.get("proportions", ())) != buckets:
                raise ConfigError("reference profile", f"{source}: the entry of {name!r} is malformed", fix)
            sizes.append(buckets)
        self.sizes = sizes
        self.offsets = [int(x) for x in np.cumsum([0, *sizes[:-1]])]
        self.size = int(sum(sizes))
        # One PSI call for all features: each feature is a row of a matrix padded with empty buckets,
        # which add nothing (both shares are floored at the same epsilon, and ln(1) = 0).
        self._rows = np.repeat(np.arange(len(sizes)), sizes)
        self._columns = np.concatenate([np.arange(n) for n in sizes])
        self._expected = np.zeros((len(sizes), max(sizes)))
        self._expected[self._rows, self._columns] = np.concatenate([e["proportions"] for e in self.entries])
        # For `bucket_columns`: numeric edges as arrays, each category's bucket by a dict look-up.
        self._edges = {name: np.asarray(e["edges"], dtype="float64")
                       for name, e in zip(self.names, self.entries, strict=True) if e["kind"] == "numeric"}
        self._codes = {name: {c: i for i, c in enumerate(e["categories"])}
                       for name, e in zip(self.names, self.entries, strict=True) if e["kind"] == "categorical"}
        self._offset_column = np.asarray(self.offsets, dtype=np.int64)[:, None]

    def bucket_rows(self, features: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """For each event (a dict of its features), the flat index of its bucket in every feature:
        shape (events, features)."""
        from flightdeck.batch.monitoring import bucket_indices

        columns = [bucket_indices(entry, [f[name] for f in features]) + offset
                   for name, entry, offset in zip(self.names, self.entries, self.offsets, strict=True)]
        return np.stack(columns, axis=1) if columns else np.empty((len(features), 0), dtype=np.int64)

    def bucket_columns(self, columns: Mapping[str, Any]) -> np.ndarray:
        """`bucket_rows` of validated events given column by column (numeric features as finite
        float arrays, categorical ones as lists of str, as `streaming.events.EventBatch` holds
        them): the same buckets as `batch.monitoring.bucket_indices`, without a pandas object."""
        n = len(columns[self.names[0]])
        out = np.empty((len(self.names), n), dtype=np.int64)  # a row per feature, turned at the end
        for k, name in enumerate(self.names):
            edges = self._edges.get(name)
            if edges is not None:
                # bucket i holds [edges[i-1], edges[i]); finite values only, so no null bucket
                out[k] = np.searchsorted(edges, np.asarray(columns[name], dtype="float64"), side="right")
            else:
                codes = self._codes[name]
                out[k] = list(map(codes.get, columns[name], repeat(len(codes), n)))  # unseen: the last
        out += self._offset_column
        return np.ascontiguousarray(out.T)

    def counts(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """The flat bucket counts of these events' rows (from `bucket_rows`; one row, or a block of them)."""
        if not rows:
            return np.zeros(self.size, dtype=np.int64)
        return np.bincount(np.concatenate([np.ravel(r) for r in rows]), minlength=self.size)

    def feature_psi(self, counts: Sequence[int]) -> dict[str, float]:
        """PSI of every feature's window histogram (flat `counts`) against the training shares."""
        return self.feature_psi_many([counts])[0]

    def feature_psi_many(self, counts: Sequence[Sequence[int]]) -> list[dict[str, float]]:
        """`feature_psi` of several windows' flat counts, in one PSI call."""
        if not len(counts):
            return []
        actual = np.zeros((len(counts), *self._expected.shape))
        actual[:, self._rows, self._columns] = np.asarray(counts, dtype=float)
        # Rounded to 6 decimals with numpy: round() per value is most of a window's closing time.
        values = np.round(psi(np.broadcast_to(self._expected, actual.shape), actual), 6).tolist()
        return [dict(zip(self.names, row, strict=True)) for row in values]


def drift_alert(record: Mapping[str, Any], threshold: float) -> dict | None:
    """The alert of a closed window record, or None: `score_drift` when the score PSI crossed
    `threshold`, else `feature_drift` when a feature's did; `drifted_features` lists those
    features, largest PSI first."""
    feature_psi = record.get("feature_psi") or {}
    score_drifted = record.get("score_psi") is not None and record["score_psi"] > threshold
    if not score_drifted and not any(value > threshold for value in feature_psi.values()):
        return None  # most windows: nothing crossed the threshold (NaN never does)
    drifted = [name for _, name in sorted((-value, name) for name, value in feature_psi.items() if value > threshold)]
    if not (score_drifted or drifted):
        return None
    return {"alert": SCORE_DRIFT if score_drifted else FEATURE_DRIFT, **record, "drifted_features": drifted}
