"""Monitoring statistics for batch scoring: drift against the training reference, volume
against the trailing days, and throughput.

Drift is measured with the population stability index (PSI) over the buckets of a
*reference profile*: a small JSON document built from the training data and logged with
each model version, so a scoring job needs the profile only, never the training rows.

Buckets of a profile entry, in order:
- numeric: quantile bins of the training values, open-ended at both ends so values
  outside the training range still land somewhere, then one bucket for nulls (missing
  or not parseable as a number);
- categorical: one bucket per allowed category (`schema.CATEGORY_VALUES`), then
  `__other__` for anything else, then `__null__`.

Pure numpy/pandas: no plotting and no I/O (rendering lives in `flightdeck.batch.report`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flightdeck.data.schema import CATEGORY_VALUES, FEATURES, NUMERIC_FEATURES
from flightdeck.errors import ConfigError, FlightdeckError
from flightdeck.stats import psi

PROFILE_VERSION = 1
"""Format version of a reference profile; bump it when the layout changes."""

OTHER_BUCKET = "__other__"
NULL_BUCKET = "__null__"
SCORE_NAME = "score"
"""How the model's score is named in reports, next to the feature names."""


class ProfileMismatchError(FlightdeckError):
    """A reference profile and a frame to check against it do not have the same features."""

    def __init__(self, missing_in_profile: Sequence[str], missing_in_frame: Sequence[str]) -> None:
        self.missing_in_profile = sorted(missing_in_profile)
        self.missing_in_frame = sorted(missing_in_frame)
        parts = []
        if self.missing_in_profile:
            parts.append(f"the profile lacks {', '.join(self.missing_in_profile)} (present in the frame)")
        if self.missing_in_frame:
            parts.append(f"the frame lacks {', '.join(self.missing_in_frame)} (present in the profile)")
        super().__init__(
            "reference profile and scored frame disagree on features: "
            + "; ".join(parts)
            + ". Fix: score data with the columns the model was trained on, or rebuild the "
            "profile from that model's training data (build_reference_profile) and log it "
            "with the model version."
        )


# --- reference profile -------------------------------------------------------------------


def build_reference_profile(
    frame: pd.DataFrame, scores: np.ndarray | None, bins: int = 10
) -> dict[str, Any]:
    """Profile the training data: the reference every later day is compared with.

    Args:
        frame: Training rows; must hold every column of `schema.FEATURES` (others are ignored).
        scores: The model's scores on those rows (one per row, frame order), or None to
            profile the features only.
        bins: Number of quantile bins for numeric features and the score. Ties in the
            data can merge bins, so an entry may have fewer.

    Returns:
        A JSON-serialisable dict: `version`, `n_rows`, `bins`, `features` (name -> entry)
        and `score` (an entry, or None). An entry holds `kind`, its bucket definition
        (`edges` or `categories`) and `proportions`, one per bucket, summing to 1.

    Raises:
        ConfigError: `bins` < 2, the frame is empty or lacks features, or `scores` has
            a different length than the frame.
    """
    if bins < 2:
        raise ConfigError("bins", f"{bins} bins requested", "use at least 2 bins")
    if len(frame) == 0:
        raise ConfigError("frame", "the training frame has no rows", "profile the rows the model was trained on")
    missing = [c for c in FEATURES if c not in frame.columns]
    if missing:
        raise ConfigError(
            "frame",
            f"the training frame lacks features {', '.join(missing)}",
            "pass a frame with every column of flightdeck.data.schema.FEATURES",
        )
    _check_scores(scores, len(frame))
    features = {}
    for name in FEATURES:
        if name in NUMERIC_FEATURES:
            features[name] = _numeric_entry(frame[name], bins)
        else:
            features[name] = _categorical_entry(frame[name], CATEGORY_VALUES[name])
    return {
        "version": PROFILE_VERSION,
        "n_rows": int(len(frame)),
        "bins": int(bins),
        "features": features,
        "score": None if scores is None else _numeric_entry(np.asarray(scores), bins),
    }


def _numeric_entry(values, bins: int) -> dict[str, Any]:
    numbers = _as_numbers(values)
    finite = numbers[np.isfinite(numbers)]
    if finite.size:
        # Interior quantiles only: the first and last bins are open-ended.
        quantiles = np.quantile(finite, np.arange(1, bins) / bins)
        edges = [float(e) for e in np.unique(quantiles)]
    else:
        edges = []  # nothing to cut: one bin for every number, plus nulls
    entry = {"kind": "numeric", "edges": edges}
    entry["proportions"] = _proportions(_bucket_counts(entry, numbers))
    return entry


def _categorical_entry(values, categories: Sequence[str]) -> dict[str, Any]:
    entry = {"kind": "categorical", "categories": list(categories)}
    entry["proportions"] = _proportions(_bucket_counts(entry, values))
    return entry


def bucket_labels(entry: Mapping[str, Any]) -> list[str]:
    """Human-readable names of an entry's buckets, in the order of its proportions."""
    if entry["kind"] == "categorical":
        return [*entry["categories"], OTHER_BUCKET, NULL_BUCKET]
    edges = entry["edges"]
    bounds = ["-inf", *(f"{e:.6g}" for e in edges), "inf"]
    return [f"[{lo}, {hi})" for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)] + [NULL_BUCKET]


def feature_distribution(profile_entry: Mapping[str, Any], values) -> np.ndarray:
    """Proportion of `values` in each bucket of a profile entry (see `bucket_labels`).

    Values outside the training range fall in the open-ended first or last bin, unseen
    categories in `__other__`, missing (or, for numeric entries, unparseable) values in
    `__null__`: nothing is dropped. An empty input gives all zeros.
    """
    return _proportions_array(_bucket_counts(profile_entry, values))


def bucket_indices(entry: Mapping[str, Any], values) -> np.ndarray:
    """Index of each value's bucket in a profile entry (see `bucket_labels`), in input order.

    The per-value form of `feature_distribution`, for callers that add values up in several
    histograms (the stream scorer's windows): counting these indices gives the same buckets.
    """
    if entry["kind"] == "numeric":
        numbers = _as_numbers(values)
        edges = np.asarray(entry["edges"], dtype="float64")
        # Bin i holds [edges[i-1], edges[i]); -inf and +inf fall in the first and last bin.
        index = np.searchsorted(edges, numbers, side="right")
        return np.where(np.isnan(numbers), len(edges) + 1, index)
    if entry["kind"] == "categorical":
        series = pd.Series(values, copy=False)
        null = series.isna().to_numpy()
        categories = list(entry["categories"])
        # Codes are -1 for anything not in `categories` (unseen values and nulls alike).
        codes = pd.Categorical(series.astype(object), categories=categories).codes.astype(np.int64)
        return np.where(codes >= 0, codes, np.where(null, len(categories) + 1, len(categories)))
    raise ConfigError(
        "profile", f"unknown entry kind {entry['kind']!r}", "rebuild the profile with build_reference_profile"
    )


def _bucket_counts(entry: Mapping[str, Any], values) -> np.ndarray:
    size = len(entry["edges"]) + 2 if entry["kind"] == "numeric" else len(entry.get("categories", ())) + 2
    return np.bincount(bucket_indices(entry, values), minlength=size)


def _as_numbers(values) -> np.ndarray:
    """Float64 array; text that is not a number becomes NaN (counted as null)."""
    return pd.to_numeric(pd.Series(values, copy=False), errors="coerce").to_numpy(
        dtype="float64", na_value=np.nan
    )


def _proportions_array(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    if total == 0:
        return np.zeros(len(counts), dtype="float64")
    return counts.astype("float64") / total


def _proportions(counts: np.ndarray) -> list[float]:
    return [float(p) for p in _proportions_array(counts)]


# --- drift -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftReport:
    """PSI of every feature (and the score) of one day against the reference profile."""

    feature_psi: dict[str, float]
    score_psi: float | None
    threshold: float
    n_rows: int
    sampled_rows: int | None = None
    """Rows the PSI was computed on when the day was sampled down; None means all rows."""

    @property
    def drifted_features(self) -> list[str]:
        """Features whose PSI exceeds the threshold, largest PSI first."""
        drifted = [name for name, value in self.feature_psi.items() if value > self.threshold]
        return sorted(drifted, key=lambda name: (-self.feature_psi[name], name))

    @property
    def score_drifted(self) -> bool:
        return self.score_psi is not None and self.score_psi > self.threshold

    @property
    def alert(self) -> bool:
        return bool(self.drifted_features) or self.score_drifted

    def summary(self) -> str:
        """One or two lines: what drifted with its PSI, or that nothing did."""
        rows = f"{self.n_rows} rows" + (
            f", {self.sampled_rows} sampled" if self.sampled_rows is not None else ""
        )
        score = "" if self.score_psi is None else f"score PSI {self.score_psi:.3f}"
        drifted = self.drifted_features
        if not self.alert:
            top = max(self.feature_psi, key=self.feature_psi.get, default=None)
            largest = f"largest feature PSI {self.feature_psi[top]:.3f} ({top})" if top else "no features"
            details = ", ".join(p for p in (largest, score) if p)
            return f"No drift (PSI > {self.threshold:g}) in {rows}: {details}."
        lines = []
        if drifted:
            listed = ", ".join(f"{name} {self.feature_psi[name]:.3f}" for name in drifted)
            lines.append(
                f"Drift in {len(drifted)} of {len(self.feature_psi)} features "
                f"(PSI > {self.threshold:g}, {rows}): {listed}."
            )
        else:
            lines.append(f"No feature drifted (PSI > {self.threshold:g}, {rows}).")
        if score:
            lines.append(f"Model {score}" + (" — drifted." if self.score_drifted else "."))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, with the derived verdicts (for XCom, logs and report.json)."""
        return asdict(self) | {
            "drifted_features": self.drifted_features,
            "score_drifted": self.score_drifted,
            "alert": self.alert,
        }


def drift_report(
    profile: Mapping[str, Any],
    frame: pd.DataFrame,
    scores: np.ndarray | None,
    threshold: float,
    *,
    max_rows: int | None = None,
    seed: int = 0,
) -> DriftReport:
    """Compare one day's rows (and scores) with the training reference profile.

    Args:
        profile: From `build_reference_profile` (possibly through a JSON round-trip).
        frame: The day's rows. Its feature columns must match the profile's; columns
            that are not features (ids, timestamps, predictions) are ignored.
        scores: The model's scores on the rows, frame order, or None to skip score drift.
        threshold: PSI above which a feature or the score counts as drifted
            (`Settings.psi_alert_threshold`).
        max_rows: Compute PSI on a deterministic sample of at most this many rows (same
            rows for features and scores) to bound the cost on very large days.
        seed: Seed of that sample.

    Raises:
        ProfileMismatchError: The profile and the frame have different features.
        ConfigError: Malformed profile, empty frame, scores of the wrong length, scores
            given for a profile without a score entry, or a bad threshold/max_rows.
    """
    _check_profile(profile)
    if not threshold > 0:
        raise ConfigError("threshold", f"PSI threshold {threshold}", "use a threshold > 0, e.g. 0.2")
    if len(frame) == 0:
        raise ConfigError("frame", "the day has no rows", "drift needs at least one row; check the volume report")
    features = profile["features"]
    missing_in_frame = [name for name in features if name not in frame.columns]
    missing_in_profile = [c for c in frame.columns if c in FEATURES and c not in features]
    if missing_in_frame or missing_in_profile:
        raise ProfileMismatchError(missing_in_profile, missing_in_frame)
    _check_scores(scores, len(frame))
    if scores is not None and profile.get("score") is None:
        raise ConfigError(
            "scores",
            "scores were given but the profile has no score entry",
            "rebuild the profile with the training scores, or pass scores=None",
        )

    n_rows = len(frame)
    sampled_rows = None
    if max_rows is not None:
        if max_rows < 1:
            raise ConfigError("max_rows", f"{max_rows}", "use a positive number of rows, or None for all")
        if n_rows > max_rows:
            positions = np.sort(np.random.default_rng(seed).choice(n_rows, max_rows, replace=False))
            frame = frame.iloc[positions]
            scores = None if scores is None else np.asarray(scores)[positions]
            sampled_rows = max_rows

    feature_psi = {
        name: _entry_psi(entry, frame[name]) for name, entry in features.items()
    }
    score_psi = None
    if scores is not None:
        score_psi = _entry_psi(profile["score"], np.asarray(scores))
    return DriftReport(
        feature_psi=feature_psi,
        score_psi=score_psi,
        threshold=float(threshold),
        n_rows=int(n_rows),
        sampled_rows=sampled_rows,
    )


def _entry_psi(entry: Mapping[str, Any], values) -> float:
    return float(psi(entry["proportions"], _bucket_counts(entry, values)))


def _check_profile(profile: Mapping[str, Any]) -> None:
    fix = "pass the profile logged with the model version, or rebuild it with build_reference_profile"
    if not isinstance(profile, Mapping) or "features" not in profile:
        raise ConfigError("profile", "not a reference profile (no 'features')", fix)
    if profile.get("version") != PROFILE_VERSION:
        raise ConfigError(
            "profile", f"format version {profile.get('version')!r}, this code reads {PROFILE_VERSION}", fix
        )


def _check_scores(scores, n_rows: int) -> None:
    if scores is not None and len(scores) != n_rows:
        raise ConfigError(
            "scores", f"{len(scores)} scores for {n_rows} rows", "pass one score per row, in frame order"
        )


# --- volume and throughput ---------------------------------------------------------------


@dataclass(frozen=True)
class VolumeReport:
    """Today's row count against the mean of the trailing days."""

    rows: int
    trailing: list[int] = field(default_factory=list)
    """Row counts of the previous days, oldest first."""
    trailing_mean: float | None = None
    ratio: float | None = None
    """rows / trailing_mean; None without history (or when the history is all zeros)."""
    tolerance: float = 0.5
    alert: bool = False

    def summary(self) -> str:
        """One line with the numbers and the verdict."""
        if self.trailing_mean is None:
            return f"Volume: {self.rows} rows; no trailing history, no check."
        verdict = "ALERT" if self.alert else "ok"
        ratio = "undefined" if self.ratio is None else f"{self.ratio:.2f}"
        return (
            f"Volume: {self.rows} rows vs trailing {len(self.trailing)}-day mean "
            f"{self.trailing_mean:.1f} (ratio {ratio}, tolerance ±{self.tolerance:.0%}): {verdict}."
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def volume_report(rows: int, trailing: Sequence[int], tolerance: float) -> VolumeReport:
    """Check today's row count against the trailing days' mean.

    Alert when |rows / mean − 1| > tolerance. Without history there is no alert. A history
    of empty days has no ratio; then any rows today alert.

    Args:
        rows: Rows today.
        trailing: Rows of the previous days, oldest first (`Settings.trailing_days` of them).
        tolerance: Allowed relative deviation (`Settings.volume_tolerance`, 0.5 = ±50 %).

    Raises:
        ConfigError: A negative count or a tolerance <= 0.
    """
    history = [int(n) for n in trailing]
    if rows < 0 or any(n < 0 for n in history):
        raise ConfigError("rows", f"negative row count in {rows} / {history}", "pass row counts >= 0")
    if not tolerance > 0:
        raise ConfigError("tolerance", f"{tolerance}", "use a tolerance > 0, e.g. 0.5 for ±50 %")
    if not history:
        return VolumeReport(rows=int(rows), trailing=[], tolerance=float(tolerance))
    mean = float(np.mean(history))
    if mean == 0:
        ratio, alert = None, rows > 0
    else:
        ratio = rows / mean
        alert = abs(ratio - 1) > tolerance
    return VolumeReport(
        rows=int(rows),
        trailing=history,
        trailing_mean=mean,
        ratio=ratio,
        tolerance=float(tolerance),
        alert=bool(alert),
    )


def throughput(rows: int, seconds: float) -> float:
    """Rows per second; 0.0 when the duration is zero (too short to measure) or negative."""
    if seconds <= 0 or not math.isfinite(seconds):
        return 0.0
    return rows / seconds
