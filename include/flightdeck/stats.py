"""Statistics every surface shares: the score bins, PSI, and the rate and sequence formulas.

The gateway's running sums, its Prometheus histogram, the stream scorer's windows and the
release gates all bin prediction scores on `SCORE_EDGES`; batch monitoring, the stream
scorer and the release gates all measure a shift with `psi`; the release gates and the
experiment statistics both build always-valid confidence sequences on
`mixture_half_width`; the release gates test "more errors than the baseline" with
`rate_increase_log_e_value`. Each is written once, here, on numpy alone, so any layer may use it.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------ score bins
# Prediction scores are probabilities: ten equal bins on [0, 1], the same edges as the
# gateway's `flightdeck_score` histogram, so every source bins scores identically.
SCORE_EDGES: tuple[float, ...] = tuple(i / 10 for i in range(11))
N_SCORE_BINS = len(SCORE_EDGES) - 1
# Bin i holds [SCORE_EDGES[i], SCORE_EDGES[i + 1]); the inner edges decide the bin.
_INNER_EDGES = SCORE_EDGES[1:-1]
_INNER_EDGES_ARRAY = np.asarray(_INNER_EDGES)


def score_bin(score: float) -> int:
    """Index of the bin of `score` (values outside [0, 1] fall in the first or last bin)."""
    return bisect_right(_INNER_EDGES, score)


def score_bin_counts(scores: np.ndarray) -> np.ndarray:
    """Scores per bin (length `N_SCORE_BINS`), binned exactly as `score_bin` bins one score."""
    index = np.searchsorted(_INNER_EDGES_ARRAY, np.asarray(scores, dtype=float), side="right")
    return np.bincount(index, minlength=N_SCORE_BINS)


# ------------------------------------------------------------------------------------- PSI
PSI_EPSILON = 1e-4  # floor of a bucket's share in `psi` (an empty bucket would give log(0))


def psi(expected: Any, actual: Any, epsilon: float = PSI_EPSILON) -> np.ndarray:
    """Population stability index Σ (a_i − e_i) ln(a_i / e_i) of two histograms (last axis).

    `expected` and `actual` hold counts or shares over the same buckets (each side is
    normalised); several pairs may be stacked on leading axes. Shares are floored at
    `epsilon`, so an empty bucket costs a large but bounded amount instead of log(0).
    PSI is the symmetrised Kullback-Leibler divergence of the binned distributions: 0 for
    identical histograms, and by the usual reading < 0.1 stable, 0.1–0.2 a moderate shift,
    > 0.2 a significant one. NaN where either side has no observations.

    Raises ValueError when the two sides do not have the same buckets.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.ndim == 0:
        raise ValueError(f"expected and actual need the same buckets, got shapes {e.shape} and {a.shape}")
    e_total = e.sum(axis=-1, keepdims=True)
    a_total = a.sum(axis=-1, keepdims=True)
    pe = np.maximum(e / np.maximum(e_total, 1e-300), epsilon)
    pa = np.maximum(a / np.maximum(a_total, 1e-300), epsilon)
    value = np.sum((pa - pe) * np.log(pa / pe), axis=-1)
    return np.where((e_total[..., 0] > 0) & (a_total[..., 0] > 0), value, np.nan)


# ------------------------------------------------------------------------------- rates
def smoothed_rate(events: Any, n: Any) -> np.ndarray:
    """(events + 0.5) / (n + 1): a rate that is never 0 or 1, for variances only.

    The +0.5 pseudo-count (Jeffreys / Agresti-Caffo style) keeps p(1 − p) positive when a
    variant has no events (or nothing but events), so zero counts never divide by zero or
    make an interval collapse to a point. Point estimates stay the raw events / n.
    """
    return (np.asarray(events, dtype=float) + 0.5) / (np.asarray(n, dtype=float) + 1.0)


def proportion_variance(events: Any, n: Any) -> np.ndarray:
    """Per-observation variance p̃ (1 − p̃) of a rate, with the smoothed p̃ of `smoothed_rate`."""
    p = smoothed_rate(events, n)
    return p * (1.0 - p)


# --------------------------------------------------------------- confidence sequences
_TINY = 1e-300


def mixture_half_width(variance: Any, tau: Any, alpha: Any) -> np.ndarray:
    """Half-width of the two-sided normal-mixture confidence sequence for a mean or difference.

    For an estimate θ̂ whose variance is V (V shrinks as data arrive),

        h(V) = sqrt( V (V + τ²) / τ² · log( (V + τ²) / (V α²) ) )

    and θ̂ ± h(V) covers θ at every look at once with probability ≥ 1 − α.

    Why: in the information scale I = 1/V, S = I (θ̂ − θ) behaves like a Brownian motion
    B(I). Mixing the exponential martingales exp(λS − λ²I/2) over λ ~ N(0, 1/τ²) gives
    M = sqrt(V / (V + τ²)) · exp( (θ̂ − θ)² τ² / (2 V (V + τ²)) ), a nonnegative martingale
    with mean 1, so by Ville's inequality P(∃ look: M ≥ 1/α) ≤ α; M < 1/α is the interval
    above. This is Robbins' normal mixture (Robbins 1970, "Statistical methods related to
    the law of the iterated logarithm"); the two-sample form with mixing variance τ² is the
    mixture SPRT of Johari, Koomen, Pekelis & Walsh ("Always valid inference: continuous
    monitoring of A/B tests", Operations Research 2022) and the two-sided normal-mixture
    boundary of Howard, Ramdas, McAuliffe & Sekhon ("Time-uniform, nonparametric,
    nonasymptotic confidence sequences", Ann. Statist. 2021), with ρ = 1/τ² in the
    information scale. With V estimated from the data (plug-in variances) the guarantee
    is asymptotic (Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, "Time-uniform central
    limit theory and asymptotic confidence sequences"); minimum sample sizes, the smoothed
    rates and pooled variance floors keep small samples from looking falsely precise.

    Works elementwise on numpy arrays; a variance of zero is treated as a tiny positive one.
    """
    v = np.maximum(np.asarray(variance, dtype=float), _TINY)
    t2 = np.asarray(tau, dtype=float) ** 2
    a = np.asarray(alpha, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sqrt(v * (v + t2) / t2 * np.log((v + t2) / (v * a * a)))


# ------------------------------------------------------------ e-process for a rate increase
# The alternatives mixed over by `rate_increase_log_e_value`: ratios R = rate_a / rate_b from
# +5 % to ×100, evenly spaced in log R, weighted by a half-normal density on log R with scale
# `INCREASE_LOG_RATIO_SCALE` (1: about half the weight lies below R = 2, i.e. doubling is where
# the test is tuned, and larger jumps are still caught within a handful of events).
INCREASE_LOG_RATIO_SCALE = 1.0
INCREASE_RATIOS = np.geomspace(1.05, 100.0, 48)
_INCREASE_LOG_WEIGHTS = -0.5 * (np.log(INCREASE_RATIOS) / INCREASE_LOG_RATIO_SCALE) ** 2
_INCREASE_LOG_WEIGHTS = _INCREASE_LOG_WEIGHTS - np.logaddexp.reduce(_INCREASE_LOG_WEIGHTS)


def rate_increase_log_e_value(events_a: Any, n_a: Any, events_b: Any, n_b: Any,
                              tolerance: Any = 1.0) -> np.ndarray:
    """log E, an e-process for "rate_a ≤ tolerance × rate_b" from two arms' cumulative counts.

    Two arms share one stream of trials at a fixed split (a canary and its baseline over one
    gate window); each trial is an event (an error) with its arm's probability. Given that
    an event happened, it came from arm a with probability
    θ(R) = ρ R / (ρ R + 1 − ρ), where ρ is arm a's share of the trials and R = rate_a / rate_b.
    Under the null R ≤ R0 (R0 = `tolerance`, 1 for "no increase at all") that probability is
    at most θ(R0), whatever the common rate does over time (a shared incident moves both
    arms and cancels out). For one alternative R > R0 the likelihood ratio of the events'
    arms is

        LR_R = (R / R0)^(events_a) · ((1 + ρ (R0 − 1)) / (1 + ρ (R − 1)))^(events_a + events_b),

    and E = Σ_k w_k LR_{R0 r_k}, a mixture over the ratios r_k = `INCREASE_RATIOS` with fixed
    weights, is a nonnegative supermartingale with E = 1 at the start under every null
    ratio (each LR_R is a product of factors whose mean, linear in the true θ, is 1 at
    θ(R0) and less below it). By Ville's inequality P(E ever reaches 1/α) ≤ α: rejecting
    the null once log E ≥ log(1/α) is valid at every look however often one looks.

    This is the conditional (multinomial) test of Lindon & Malek ("Anytime-valid inference
    for multinomial count data", NeurIPS 2022), in the spirit of the count-based canary tests
    of Lindon, Sanden & Shirikian ("Rapid regression detection in software deployments
    through sequential testing", KDD 2022), made one-sided and with a discrete mixture. It needs no variance estimate and no normal approximation; ρ is taken as the
    observed share n_a / (n_a + n_b) of the window, which within a window of fixed split
    differs from the configured one by sampling noise only.

    Events are assumed independent given the split: many errors of one client pinned to one
    arm by sticky routing count as many, for this test as for a confidence sequence.

    Returns 0 (E = 1, no evidence) where either arm has no trials.
    """
    ea = np.asarray(events_a, dtype=float)
    eb = np.asarray(events_b, dtype=float)
    na = np.asarray(n_a, dtype=float)
    nb = np.asarray(n_b, dtype=float)
    r0 = np.asarray(tolerance, dtype=float)[..., None]
    total = na + nb
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where((na > 0) & (nb > 0), na / np.maximum(total, 1.0), 0.0)[..., None]
    r = INCREASE_RATIOS
    terms = (ea[..., None] * np.log(r)
             + (ea + eb)[..., None] * (np.log1p(rho * (r0 - 1.0)) - np.log1p(rho * (r0 * r - 1.0)))
             + _INCREASE_LOG_WEIGHTS)
    log_e = np.logaddexp.reduce(terms, axis=-1)
    return np.where((na > 0) & (nb > 0), log_e, 0.0)
