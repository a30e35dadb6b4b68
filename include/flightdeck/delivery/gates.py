"""Metric gates of a progressive rollout: is the canary worse than the baseline?

A canary and a baseline serve live traffic side by side. At every look (every 5-30 s) the
sensor reads both variants' cumulative counts over the current step's window
(`VariantWindow`) and asks `evaluate()` for a `GateReport`, then `decide()` turns the
report and the step's clock into "fail", "wait", "pass" or "inconclusive".

The checks
----------
* ``error_rate`` and ``latency`` compare the canary with the baseline through an
  always-valid confidence sequence (CS) for the difference canary − baseline (see
  `flightdeck.stats.mixture_half_width`). A CS stays valid however often it is looked at, so polling every
  few seconds does not inflate the false-rollback rate the way a threshold or a fixed-sample
  test checked at every look does. Each check is
  "fail" when the CS lies entirely above the non-inferiority margin (the canary is worse
  by more than the margin), "pass" when it lies entirely below it (non-inferiority is
  established), "undecided" otherwise and "insufficient" while a variant has fewer than
  `min_requests` requests (a clear failure may still be called from `min_requests_hard_fail`).
* ``error_increase`` asks the question a rollback needs answered first: does the canary make
  more errors than its baseline at all (or more than `error_increase_tolerance` times as
  many)? Over one window of live traffic split at a fixed share, an error comes from the
  canary with probability equal to the canary's share of the requests unless its error rate
  is higher; `flightdeck.stats.rate_increase_log_e_value` is an e-process for that (no
  variance estimate, no normal approximation, and a shared incident that raises both
  variants' rates cancels out). The check is "fail" once the
  e-value reaches 1/α (the canary's error rate is surely higher than the baseline's, times
  the tolerance; its `threshold` is the canary's share of the errors at that limit),
  "pass" otherwise (no such evidence; non-inferiority is the ``error_rate`` check's job) and
  "insufficient" below `min_requests` like the others. It is a test against "no
  increase", not against the margin: a doubled error rate at a 5 % canary share is caught
  within a few minutes, where telling it from "worse by the margin" would take a quarter of
  an hour of that traffic. It applies only when the two windows split one stream of traffic
  (not against a recorded baseline, not to a shadow candidate that sees copies of the
  baseline's requests): see `evaluate`'s `split_traffic`.
* ``score_psi`` compares the two score histograms (population stability index).
* ``shadow_disagreement`` (only when the canary window carries shadow rows) bounds the
  share of rows whose decision differed from the live answer, with the same CS.

Error budget
------------
`GateSettings.alpha` is the false-rollback budget of the whole rollout. A rollout has
several gate windows (one per step, plus the post-promotion bake); the caller passes
``settings.alpha_per_window(n_windows)`` (a Bonferroni split) to `evaluate()`, which splits
it again equally among the sequential checks that apply to the window (error rate, error
increase on split traffic, latency, plus shadow disagreement when present). By the union
bound the probability that a canary no worse than its baseline ever sees a sequential
"fail", at any look of any window, is at most `alpha` (for the confidence sequences
asymptotically, since their variances are estimated; see
`flightdeck.stats.mixture_half_width`). A canary worse than its baseline but within the
margins may be rolled back by ``error_increase``: that is the point of it (raise
`error_increase_tolerance` to let a given ratio pass). The PSI check is a
practical-significance threshold, not a test: for a canary that scores like its baseline
its false-fail probability is negligible once both sides have `min_rows_for_distribution`
rows (see `psi_sampling_bias`). The budget bounds false failures only: a window that reaches its deadline without enough evidence ends "inconclusive", which
is a matter of traffic and time (power), not of alpha.

Windows need not be of equal length: the post-promotion bake evaluates the new version's
window against the baseline window recorded before the switch. Within one window the
traffic split must stay fixed (it does: a step's window restarts when the weight changes).
Against a recorded (no longer growing) baseline the baseline's noise is one fixed draw
rather than a martingale; the CS then holds its level only approximately, through the
baseline term in V (its half-width never falls below sqrt(2 log(1/α)) standard errors).

Everything is written once on numpy arrays: `evaluate_batch()` / `decide_batch()` score
many windows at once (the benchmark runs thousands of rollouts through them), and
`evaluate()` / `decide()` are those functions on one window plus the human sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np

from flightdeck.delivery.plan import GateSettings  # defined with the rollout plan it is part of
from flightdeck.delivery.window import VariantWindow
from flightdeck.stats import (
    N_SCORE_BINS,
    SCORE_EDGES,
    mixture_half_width,
    proportion_variance,
    psi,
    rate_increase_log_e_value,
)

Status = Literal["insufficient", "undecided", "pass", "fail"]
Outcome = Literal["fail", "wait", "pass", "inconclusive"]

# Status codes of the array functions; index into STATUSES. NOT_APPLICABLE marks a check
# that does not apply to a window (no scores, no shadow rows) and is left out of reports.
NOT_APPLICABLE, INSUFFICIENT, UNDECIDED, PASS, FAIL = -1, 0, 1, 2, 3
STATUSES: tuple[Status, ...] = ("insufficient", "undecided", "pass", "fail")
# Outcome codes of `decide_batch`; index into OUTCOMES.
WAIT, PROMOTE, ROLLBACK, INCONCLUSIVE = 0, 1, 2, 3
OUTCOMES: tuple[Outcome, ...] = ("wait", "pass", "fail", "inconclusive")

CHECKS = ("error_rate", "error_increase", "latency", "score_psi", "shadow_disagreement")
SEQUENTIAL_CHECKS = ("error_rate", "error_increase", "latency", "shadow_disagreement")

LATENCY_VARIANCE_FLOOR = 1e-8  # s² (0.1 ms standard deviation) when no variance is known
_BIN_MIDPOINTS = np.array([(SCORE_EDGES[i] + SCORE_EDGES[i + 1]) / 2 for i in range(N_SCORE_BINS)])


# ----------------------------------------------------------------------------- settings
# ------------------------------------------------------------------------------ formulas
def mean_and_variance(total: Any, total_sq: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased per-observation variance from n, Σx and Σx² (NaN when undefined)."""
    n = np.asarray(n, dtype=float)
    total = np.asarray(total, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, total / np.maximum(n, 1.0), np.nan)
        ss = np.asarray(total_sq, dtype=float) - total * np.where(n > 0, mean, 0.0)
        var = np.where(n > 1, np.maximum(ss, 0.0) / np.maximum(n - 1.0, 1.0), np.nan)
    return mean, var


def difference_interval(mean_c: Any, var_c: Any, n_c: Any, mean_b: Any, var_b: Any, n_b: Any,
                        tau: Any, alpha: Any, *, variance_floor: float = 0.0
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Always-valid CS for mean_c − mean_b: returns (estimate, lower, upper).

    `var_*` are per-observation variances. Each is floored at the pooled within-variant
    variance ((n_c − 1) var_c + (n_b − 1) var_b) / (n_c + n_b − 2), so a variant with few
    observations (or an unusually steady run) borrows the other's spread instead of looking
    falsely precise, and at `variance_floor` when neither variant has a variance yet. Then
    V = var_c / n_c + var_b / n_b and the half-width is `mixture_half_width(V, tau, alpha)`.
    Slightly conservative when the canary's true variance is smaller than the baseline's.
    """
    n_c = np.asarray(n_c, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    var_c = np.asarray(var_c, dtype=float)
    var_b = np.asarray(var_b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        wc = np.where(np.isfinite(var_c), np.maximum(n_c - 1.0, 0.0), 0.0)
        wb = np.where(np.isfinite(var_b), np.maximum(n_b - 1.0, 0.0), 0.0)
        pooled = (wc * np.nan_to_num(var_c) + wb * np.nan_to_num(var_b)) / np.maximum(wc + wb, 1.0)
        pooled = np.where(wc + wb > 0, pooled, variance_floor)
        vc = np.fmax(var_c, pooled)  # fmax: a NaN variance takes the pooled one
        vb = np.fmax(var_b, pooled)
        v = vc / n_c + vb / n_b
        estimate = np.asarray(mean_c, dtype=float) - np.asarray(mean_b, dtype=float)
    h = mixture_half_width(v, tau, alpha)
    return estimate, estimate - h, estimate + h


def rate_interval(events: Any, n: Any, tau: Any, alpha: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Always-valid CS for one rate events / n (variance from `proportion_variance`)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(n > 0, np.asarray(events, dtype=float) / np.maximum(n, 1.0), np.nan)
        h = mixture_half_width(proportion_variance(events, n) / n, tau, alpha)
    return estimate, estimate - h, estimate + h


def psi_sampling_bias(baseline_bins: Any, canary_bins: Any) -> np.ndarray:
    """Expected PSI of two samples of the same distribution: (k − 1)(1/n_b + 1/n_c).

    k counts the bins non-empty on either side; 0 when either side has no rows.

    The score check compares histograms with `flightdeck.stats.psi` because both metric
    sources only deliver scores binned on the same edges (the gateway's stats and
    Prometheus' histogram), which rules out tests on raw scores such as Kolmogorov-Smirnov.
    Even when both variants score alike, sampling noise makes PSI positive, by about this
    bias (PSI's second-order expansion is a chi-square statistic with k − 1 degrees of
    freedom scaled by 1/n_b + 1/n_c). The gate subtracts it and judges only from
    `min_rows_for_distribution` rows, where the noise's standard deviation is about
    sqrt(2(k − 1)) (1/n_b + 1/n_c): with 500 rows a side that is a bias of 0.036 and a
    standard deviation of 0.017, far below the usual 0.2, so repeated looks do not turn
    noise into failures.
    """
    b = np.asarray(baseline_bins, dtype=float)
    c = np.asarray(canary_bins, dtype=float)
    n_b, n_c = b.sum(axis=-1), c.sum(axis=-1)
    k = np.count_nonzero((b + c) > 0, axis=-1)
    with np.errstate(divide="ignore"):
        bias = np.maximum(k - 1, 0) * (1.0 / np.maximum(n_b, 1.0) + 1.0 / np.maximum(n_c, 1.0))
    return np.where((n_b > 0) & (n_c > 0), bias, 0.0)


# --------------------------------------------------------------------------- batch path
@dataclass(frozen=True)
class WindowArrays:
    """Many `VariantWindow`s as arrays (one element per window): the batch functions' input."""

    requests: np.ndarray
    errors: np.ndarray
    latency_sum: np.ndarray
    latency_sumsq: np.ndarray
    rows: np.ndarray
    score_bins: np.ndarray  # shape (m, N_SCORE_BINS)
    shadow_rows: np.ndarray
    shadow_disagreements: np.ndarray

    @classmethod
    def from_windows(cls, windows: Sequence[VariantWindow]) -> WindowArrays:
        return cls(
            requests=np.array([w.requests for w in windows], dtype=float),
            errors=np.array([w.errors for w in windows], dtype=float),
            latency_sum=np.array([w.latency_sum for w in windows], dtype=float),
            latency_sumsq=np.array([w.latency_sumsq for w in windows], dtype=float),
            rows=np.array([w.rows for w in windows], dtype=float),
            score_bins=np.array([w.score_bins for w in windows], dtype=float).reshape(-1, N_SCORE_BINS),
            shadow_rows=np.array([w.shadow_rows for w in windows], dtype=float),
            shadow_disagreements=np.array([w.shadow_disagreements for w in windows], dtype=float),
        )

    def window(self, i: int) -> VariantWindow:
        """Element `i` back as a `VariantWindow` (counts rounded to integers)."""
        return VariantWindow(
            requests=int(round(self.requests[i])), errors=int(round(self.errors[i])),
            latency_sum=float(self.latency_sum[i]), latency_sumsq=float(self.latency_sumsq[i]),
            rows=int(round(self.rows[i])),
            score_bins=tuple(int(round(x)) for x in self.score_bins[i]),
            shadow_rows=int(round(self.shadow_rows[i])),
            shadow_disagreements=int(round(self.shadow_disagreements[i])))


@dataclass(frozen=True)
class CheckArrays:
    """One check over many windows. Rates are fractions, latencies milliseconds.

    `status` holds codes (`NOT_APPLICABLE`, `INSUFFICIENT`, `UNDECIDED`, `PASS`, `FAIL`);
    `estimate`, `lower`, `upper` the compared quantity and its CS (NaN when there is none);
    `baseline` / `canary` each variant's own value; `threshold` what `estimate` is held
    against (one number, or one per window for ``error_increase``: the canary's share of the
    errors at the tolerated ratio, its share of the requests at ratio 1; 0 without requests); `alpha` the check's share of the window budget (NaN for checks that are not
    tests); `detail` extra arrays for the message.
    """

    name: str
    unit: str
    status: np.ndarray
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    baseline: np.ndarray
    canary: np.ndarray
    threshold: float | np.ndarray
    n_baseline: np.ndarray
    n_canary: np.ndarray
    alpha: np.ndarray
    detail: dict[str, np.ndarray] = field(default_factory=dict)


def _sequential_status(lower, upper, threshold, n_min, settings: GateSettings) -> np.ndarray:
    fail = lower > threshold
    status = np.where(upper < threshold, PASS, UNDECIDED)
    status = np.where(fail, FAIL, status)
    status = np.where(n_min < settings.min_requests, INSUFFICIENT, status)
    return np.where(fail & (n_min >= settings.min_requests_hard_fail), FAIL, status).astype(np.int8)


def evaluate_batch(baseline: WindowArrays, canary: WindowArrays, settings: GateSettings,
                   alpha: float, *, split_traffic: bool = True) -> dict[str, CheckArrays]:
    """Every check on m pairs of windows at once; see `evaluate` for the one-window form.

    `alpha` is the window's budget (``settings.alpha_per_window(n)``), split equally among
    the sequential checks that apply to each window. Returns the checks by name, in
    `CHECKS` order.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    nb, nc = baseline.requests, canary.requests
    n_min = np.minimum(nb, nc)
    has_shadow = canary.shadow_rows > 0
    alpha_check = alpha / (2.0 + bool(split_traffic) + has_shadow)
    checks: dict[str, CheckArrays] = {}

    # Error rate: difference of proportions.
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_b = np.where(nb > 0, baseline.errors / np.maximum(nb, 1.0), np.nan)
        rate_c = np.where(nc > 0, canary.errors / np.maximum(nc, 1.0), np.nan)
    margin = settings.error_rate_margin
    est, lo, hi = difference_interval(rate_c, proportion_variance(canary.errors, nc), nc,
                                      rate_b, proportion_variance(baseline.errors, nb), nb,
                                      settings.mixture_scale * margin, alpha_check)
    checks["error_rate"] = CheckArrays(
        "error_rate", "rate", _sequential_status(lo, hi, margin, n_min, settings), est, lo, hi,
        rate_b, rate_c, margin, nb, nc, alpha_check)

    # Error increase: does the canary take more of the errors than of the requests (times the
    # tolerated ratio)? The threshold is the canary's share of the errors under that null.
    tolerance = settings.error_increase_tolerance
    log_e = rate_increase_log_e_value(canary.errors, nc, baseline.errors, nb, tolerance)
    with np.errstate(divide="ignore", invalid="ignore"):
        share_requests = np.where(nb + nc > 0, nc / np.maximum(nb + nc, 1.0), np.nan)
        share_null = share_requests * tolerance / (share_requests * tolerance + 1.0 - share_requests)
        share_null = np.nan_to_num(share_null, nan=0.0)  # thresholds stay finite: reports are strict JSON
        errors = canary.errors + baseline.errors
        share_errors = np.where(errors > 0, canary.errors / np.maximum(errors, 1.0), np.nan)
    fail = log_e >= np.log(1.0 / alpha_check)
    status = np.where(fail, FAIL, PASS)
    status = np.where(n_min < settings.min_requests, INSUFFICIENT, status)
    status = np.where(fail & (n_min >= settings.min_requests_hard_fail), FAIL, status)
    status = np.where(split_traffic, status, NOT_APPLICABLE).astype(np.int8)
    nan = np.full_like(share_requests, np.nan)
    checks["error_increase"] = CheckArrays(
        "error_increase", "rate", status, share_errors, nan, nan, rate_b, rate_c, share_null, nb, nc,
        np.where(split_traffic, alpha_check, np.nan), {"log_e": log_e, "share_requests": share_requests})

    # Latency: difference of means, computed in seconds and reported in milliseconds.
    mean_b, var_b = mean_and_variance(baseline.latency_sum, baseline.latency_sumsq, nb)
    mean_c, var_c = mean_and_variance(canary.latency_sum, canary.latency_sumsq, nc)
    margin_s = settings.latency_margin_ms / 1000.0
    est, lo, hi = difference_interval(mean_c, var_c, nc, mean_b, var_b, nb,
                                      settings.mixture_scale * margin_s, alpha_check,
                                      variance_floor=LATENCY_VARIANCE_FLOOR)
    checks["latency"] = CheckArrays(
        "latency", "ms", _sequential_status(lo, hi, margin_s, n_min, settings),
        est * 1000, lo * 1000, hi * 1000, mean_b * 1000, mean_c * 1000,
        settings.latency_margin_ms, nb, nc, alpha_check)

    # Score distribution: PSI minus its sampling bias; applies when either variant scores rows.
    rows_b, rows_c = baseline.rows, canary.rows
    raw = psi(baseline.score_bins, canary.score_bins)
    bias = psi_sampling_bias(baseline.score_bins, canary.score_bins)
    corrected = np.maximum(raw - bias, 0.0)
    enough = np.minimum(rows_b, rows_c) >= settings.min_rows_for_distribution
    status = np.where(enough, np.where(corrected > settings.psi_max, FAIL, PASS), INSUFFICIENT)
    status = np.where(rows_b + rows_c > 0, status, NOT_APPLICABLE).astype(np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_score_b = np.where(rows_b > 0, baseline.score_bins @ _BIN_MIDPOINTS / np.maximum(rows_b, 1), np.nan)
        mean_score_c = np.where(rows_c > 0, canary.score_bins @ _BIN_MIDPOINTS / np.maximum(rows_c, 1), np.nan)
    nan = np.full_like(corrected, np.nan)
    checks["score_psi"] = CheckArrays(
        "score_psi", "psi", status, corrected, nan, nan, mean_score_b, mean_score_c,
        settings.psi_max, rows_b, rows_c, nan, {"raw": raw, "bias": bias})

    # Shadow disagreement: one rate against a ceiling; applies when there are shadow rows.
    limit = settings.shadow_disagreement_max
    sr = canary.shadow_rows
    est, lo, hi = rate_interval(canary.shadow_disagreements, sr, settings.mixture_scale * limit,
                                alpha_check)
    status = _sequential_status(lo, hi, limit, sr, settings)
    status = np.where(has_shadow, status, NOT_APPLICABLE).astype(np.int8)
    checks["shadow_disagreement"] = CheckArrays(
        "shadow_disagreement", "rate", status, est, lo, hi, np.full_like(est, np.nan), est,
        limit, np.zeros_like(sr), sr, np.where(has_shadow, alpha_check, np.nan))
    return checks


def decide_batch(statuses: Any, *, elapsed_s: Any, bake_s: float, max_s: float,
                 final: Any) -> np.ndarray:
    """Outcome codes (`OUTCOMES` index) for m windows from their check status codes (m, k).

    The rules (the same as `decide`), first match wins:
    any check "fail" → fail, at once, even during the bake; elapsed < bake → wait; any
    check "insufficient" → wait, or inconclusive once elapsed ≥ max; in a final window any
    check "undecided" → wait, or inconclusive once elapsed ≥ max; otherwise pass.
    `elapsed_s` and `final` may be scalars or arrays of length m.
    """
    if not 0 <= bake_s <= max_s:
        raise ValueError(f"need 0 <= bake_s <= max_s, got bake_s={bake_s!r}, max_s={max_s!r}")
    st = np.asarray(statuses)
    if st.ndim == 1:
        st = st[:, None]
    any_fail = (st == FAIL).any(axis=1)
    any_insufficient = (st == INSUFFICIENT).any(axis=1)
    any_undecided = (st == UNDECIDED).any(axis=1)
    elapsed = np.broadcast_to(np.asarray(elapsed_s, dtype=float), any_fail.shape)
    final = np.broadcast_to(np.asarray(final, dtype=bool), any_fail.shape)
    blocked = any_insufficient | (final & any_undecided)
    out = np.where(blocked, np.where(elapsed >= max_s, INCONCLUSIVE, WAIT), PROMOTE)
    out = np.where(elapsed < bake_s, WAIT, out)
    return np.where(any_fail, ROLLBACK, out).astype(np.int8)


# ---------------------------------------------------------------------- one-window API
@dataclass(frozen=True)
class CheckResult:
    """One check of one window. Rates are fractions, latencies milliseconds, PSI unitless.

    `estimate` is what is compared with `threshold`: canary − baseline for error rate and
    latency, the bias-corrected PSI, the canary's disagreement rate. `lower`/`upper` bound it
    (always-valid CS) where the check is a test. `baseline`/`canary` are each variant's own
    value (error rate, mean latency, mean score from bin midpoints, disagreement rate).
    """

    name: str
    status: Status
    estimate: float | None
    lower: float | None
    upper: float | None
    threshold: float
    n_baseline: int
    n_canary: int
    message: str
    unit: str = ""
    baseline: float | None = None
    canary: float | None = None
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown check status {self.status!r}; expected one of {STATUSES}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CheckResult:
        return cls(**data)


@dataclass(frozen=True)
class GateReport:
    """Every applicable check of one look at one window, and the window budget used."""

    checks: list[CheckResult]
    alpha: float

    def check(self, name: str) -> CheckResult | None:
        return next((c for c in self.checks if c.name == name), None)

    def statuses(self) -> dict[str, Status]:
        return {c.name: c.status for c in self.checks}

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "checks": [c.to_dict() for c in self.checks]}

    @classmethod
    def from_dict(cls, data: dict) -> GateReport:
        return cls(checks=[CheckResult.from_dict(c) for c in data["checks"]], alpha=float(data["alpha"]))

    def to_markdown(self) -> str:
        """A table for a human approver, then each check's sentence."""
        lines = ["| check | status | baseline | canary | estimate | confidence sequence | threshold "
                 "| n baseline / canary |",
                 "|---|---|---|---|---|---|---|---|"]
        for c in self.checks:
            # Differences (canary − baseline) read as signed deltas, levels as plain values.
            fmt = _fmt_delta if c.name in ("error_rate", "latency") else _fmt_value
            interval = (f"[{fmt(c.lower, c.unit)}, {fmt(c.upper, c.unit)}]"
                        if c.lower is not None and c.upper is not None else "–")
            threshold = fmt(c.threshold, c.unit).lstrip("+")
            lines.append(f"| {c.name} | **{c.status}** | {_fmt_value(c.baseline, c.unit)} "
                         f"| {_fmt_value(c.canary, c.unit)} | {fmt(c.estimate, c.unit)} | {interval} "
                         f"| {threshold} | {c.n_baseline:,} / {c.n_canary:,} |")
        lines.append("")
        lines.append(f"Window false-rollback budget α = {self.alpha:.3g}, split equally among the "
                     "sequential checks (confidence sequences and the error-increase e-process, valid "
                     "at every look).")
        lines.append("")
        lines.extend(f"- **{c.name}**: {c.message}" for c in self.checks)
        return "\n".join(lines)


class Decision(NamedTuple):
    """What to do after a look: `outcome` in fail / wait / pass / inconclusive, and why."""

    outcome: Outcome
    reason: str

    def to_dict(self) -> dict:
        return {"outcome": self.outcome, "reason": self.reason}


def evaluate(baseline: VariantWindow, canary: VariantWindow, settings: GateSettings,
             alpha: float, *, split_traffic: bool = True) -> GateReport:
    """Run every applicable check on one look at one window.

    `alpha` is this window's share of the rollout's budget, normally
    ``settings.alpha_per_window(n_windows)``. The windows may differ in length (the
    post-promotion bake compares the new version with the baseline window recorded before
    the switch). `split_traffic` says that the two windows are the shares of one stream of
    live requests split at a fixed weight over the same time (a canary step); pass False
    against a recorded baseline or for a shadow candidate, and the ``error_increase`` check,
    which relies on it, does not apply. Checks that do not apply (no scored rows on either
    side, no shadow rows) are left out.
    """
    arrays = evaluate_batch(WindowArrays.from_windows([baseline]),
                            WindowArrays.from_windows([canary]), settings, alpha,
                            split_traffic=split_traffic)
    checks = []
    for name in CHECKS:
        a = arrays[name]
        code = int(a.status[0])
        if code == NOT_APPLICABLE:
            continue
        values = {key: _num(getattr(a, key)[0])
                  for key in ("estimate", "lower", "upper", "baseline", "canary", "alpha")}
        detail = {key: float(v[0]) for key, v in a.detail.items()}
        status = STATUSES[code]
        threshold = float(np.broadcast_to(a.threshold, a.status.shape)[0])
        checks.append(CheckResult(
            name=name, status=status, threshold=threshold,
            n_baseline=int(a.n_baseline[0]), n_canary=int(a.n_canary[0]), unit=a.unit,
            message=_message(name, status, values, threshold, int(a.n_baseline[0]),
                             int(a.n_canary[0]), detail, settings),
            **values))
    return GateReport(checks=checks, alpha=float(alpha))


def decide(report: GateReport, *, elapsed_s: float, bake_s: float, max_s: float,
           final: bool) -> Decision:
    """Turn a report and the window's clock into fail / wait / pass / inconclusive.

    * any check "fail" → "fail" at once (even before the bake time is over);
    * elapsed_s < bake_s → "wait";
    * any check "insufficient" → "wait" until elapsed_s ≥ max_s, then "inconclusive";
    * a `final` window (the last step before 100 %, the post-promotion bake) also needs every
      check "pass" (non-inferiority established): "undecided" → "wait" until max_s, then
      "inconclusive";
    * otherwise "pass": a non-final window passes with "undecided" checks, since it only
      guards against harm.
    What "inconclusive" leads to is `GateSettings.on_inconclusive`, the caller's business.
    """
    codes = np.array([[STATUSES.index(c.status) for c in report.checks]], dtype=np.int8)
    if not report.checks:
        codes = np.zeros((1, 0), dtype=np.int8)
    outcome = OUTCOMES[int(decide_batch(codes, elapsed_s=elapsed_s, bake_s=bake_s, max_s=max_s,
                                        final=final)[0])]
    by_status: dict[str, list[CheckResult]] = {s: [] for s in STATUSES}
    for c in report.checks:
        by_status[c.status].append(c)

    def names(status: str) -> str:
        return ", ".join(c.name for c in by_status[status])

    if outcome == "fail":
        reason = "; ".join(f"{c.name} failed: {c.message}" for c in by_status["fail"])
    elif outcome == "wait" and elapsed_s < bake_s:
        reason = f"baking: {elapsed_s:,.0f} s of {bake_s:,.0f} s elapsed, no check has failed"
    elif by_status["insufficient"]:
        what = "; ".join(c.message for c in by_status["insufficient"])
        reason = (f"waiting for data ({what})" if outcome == "wait"
                  else f"inconclusive after {elapsed_s:,.0f} s (deadline {max_s:,.0f} s): "
                       f"not enough data ({what})")
    elif final and by_status["undecided"]:
        reason = (f"final window: waiting until non-inferiority is established for {names('undecided')}"
                  if outcome == "wait" else
                  f"inconclusive after {elapsed_s:,.0f} s (deadline {max_s:,.0f} s): "
                  f"non-inferiority not established for {names('undecided')}")
    elif by_status["undecided"]:
        reason = (f"no check failed over {elapsed_s:,.0f} s (bake {bake_s:,.0f} s); not yet shown "
                  f"non-inferior: {names('undecided')}")
    else:
        reason = (f"every check passed after {elapsed_s:,.0f} s: {names('pass')}" if report.checks
                  else f"no checks apply; bake of {bake_s:,.0f} s elapsed")
    return Decision(outcome, reason)


# ------------------------------------------------------------------------------ messages
def _num(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _fmt_value(x: float | None, unit: str) -> str:
    if x is None:
        return "–"
    if unit == "rate":
        return f"{100 * x:.2f} %"
    if unit == "ms":
        return f"{x:.1f} ms"
    return f"{x:.3f}"


def _fmt_delta(x: float | None, unit: str) -> str:
    if x is None:
        return "–"
    if unit == "rate":
        return f"{100 * x:+.2f} pp"
    if unit == "ms":
        return f"{x:+.1f} ms"
    return f"{x:+.3f}"


def _level(alpha: float | None) -> str:
    if alpha is None:
        return ""
    level = 100 * (1 - alpha)
    digits = max(0, min(4, -math.floor(math.log10(max(100 - level, 1e-9))) + 1))
    return f"{level:.{digits}f} %"


def _message(name: str, status: str, v: dict, threshold: float, n_b: int, n_c: int,
             detail: dict, settings: GateSettings) -> str:
    if name == "error_increase":
        return _increase_message(status, v, threshold, n_b, n_c, detail, settings)
    if name == "score_psi":
        if status == "insufficient":
            return (f"score distribution: {n_c:,} canary / {n_b:,} baseline scored rows, below the "
                    f"minimum {settings.min_rows_for_distribution:,} per variant")
        verdict = "exceeds" if status == "fail" else "is within"
        return (f"score PSI {v['estimate']:.3f} (raw {detail['raw']:.3f} minus expected sampling "
                f"bias {detail['bias']:.3f}; mean score {_fmt_value(v['canary'], '')} vs "
                f"{_fmt_value(v['baseline'], '')}) {verdict} the limit {threshold:.3f}")
    if name == "shadow_disagreement":
        head = f"shadow disagreement {_fmt_value(v['estimate'], 'rate')} of {n_c:,} rows"
        if v["lower"] is None:
            return f"{head}: no interval yet"
        interval = (f"{_level(v['alpha'])} CS [{_fmt_value(v['lower'], 'rate')}, "
                    f"{_fmt_value(v['upper'], 'rate')}]")
        limit = _fmt_value(threshold, "rate")
        if status == "fail":
            return f"{head} ({interval}) exceeds the limit {limit}"
        if status == "pass":
            return f"{head} ({interval}) is below the limit {limit}"
        if status == "insufficient":
            return (f"{head}: below the minimum {settings.min_requests:,} shadow rows "
                    f"({interval}, limit {limit})")
        return f"{head} ({interval}): not yet distinguishable from the limit {limit}"

    label, unit = ("error rate", "rate") if name == "error_rate" else ("mean latency", "ms")
    if v["estimate"] is None:
        return (f"{label}: {n_c:,} canary / {n_b:,} baseline requests, below the minimum "
                f"{settings.min_requests:,} per variant")
    interval = (f"{_level(v['alpha'])} CS [{_fmt_delta(v['lower'], unit)}, {_fmt_delta(v['upper'], unit)}]"
                if v["lower"] is not None else "no interval yet")
    head = (f"{label} {_fmt_value(v['canary'], unit)} vs {_fmt_value(v['baseline'], unit)} "
            f"(Δ {_fmt_delta(v['estimate'], unit)}, {interval})")
    margin = _fmt_delta(threshold, unit).lstrip("+")
    if status == "fail":
        return f"{head} exceeds the margin {margin}"
    if status == "pass":
        return f"{head} is within the margin {margin}: non-inferior"
    if status == "insufficient":
        return (f"{head}: {n_c:,} canary / {n_b:,} baseline requests, below the minimum "
                f"{settings.min_requests:,} per variant")
    return f"{head}: not yet distinguishable from the margin {margin}"


def _increase_message(status: str, v: dict, share_null: float, n_b: int, n_c: int, detail: dict,
                      settings: GateSettings) -> str:
    rates = f"error rate {_fmt_value(v['canary'], 'rate')} vs {_fmt_value(v['baseline'], 'rate')}"
    if status == "insufficient" and v["canary"] is None:
        return (f"error increase: {n_c:,} canary / {n_b:,} baseline requests, below the minimum "
                f"{settings.min_requests:,} per variant")
    errors = ("no errors yet" if v["estimate"] is None
              else f"{_fmt_value(v['estimate'], 'rate')} of the errors")
    e_value = math.exp(min(detail["log_e"], 700.0))
    bound = 1.0 / v["alpha"] if v["alpha"] else math.inf
    tolerance = settings.error_increase_tolerance
    than = "the baseline's" if tolerance == 1 else f"{tolerance:g} × the baseline's"
    tolerated = ("" if tolerance == 1 else
                 f"; {tolerance:g} × the baseline's error rate would be {_fmt_value(share_null, 'rate')} of the errors")
    head = (f"the canary served {_fmt_value(detail['share_requests'], 'rate')} of the requests and {errors} "
            f"({rates}{tolerated}; e-value {e_value:,.3g}, limit 1/α = {bound:,.0f})")
    if status == "fail":
        return f"{head}: its error rate is surely higher than {than}"
    if status == "insufficient":
        return f"{head}: below the minimum {settings.min_requests:,} requests per variant"
    return f"{head}: no evidence of an error rate higher than {than}"
