"""Always-valid inference for experiments that are looked at every day: the normal-mixture mSPRT.

A fixed-horizon test read at every look inflates its false-positive rate (28 daily looks at
α = 0.05 reject a true null in roughly one experiment in five; benchmarks/experiments.py
measures it). The mixture sequential probability ratio test (mSPRT) of Johari, Koomen,
Pekelis & Walsh ("Always valid inference: continuous monitoring of A/B tests", Operations
Research 2022) does not: for the difference θ̂ = treatment − control with variance
V = σ_t²/n_t + σ_c²/n_c and a normal mixing distribution N(0, τ²) over the alternative,

    Λ_n = sqrt(V / (V + τ²)) · exp( θ̂² τ² / (2 V (V + τ²)) )

is (asymptotically) a nonnegative martingale under "no difference", so by Ville's
inequality P(Λ_n ≥ 1/α at any look) ≤ α. The always-valid p-value is
p_n = min(p_{n−1}, 1/Λ_n), and the (1 − α) confidence sequence is the set of differences
the same test would not reject, θ̂ ± h(V) with h from
`flightdeck.stats.mixture_half_width` (the release gates use the same sequence; it
is reused here, not rewritten). p_n < α exactly when the sequence at look n excludes 0.

Variances are plug-in estimates (per arm; proportions use the smoothed p̃(1 − p̃) of the
release gates so a zero count never gives a zero variance), so the guarantee is asymptotic,
as in Johari et al.; with a few hundred units per arm it holds (the A/A benchmark checks it).

Choosing τ
----------
τ is the scale of differences the test is tuned for: the sequence is tightest when √V is
near τ, i.e. a true difference of about τ is detected soonest. Pass the experiment's
minimum detectable effect (absolute) as `tau` when you have one. By default τ is one tenth
of a unit's pooled standard deviation (Cohen's d = 0.1, a small effect): for a conversion
rate p that is 0.1 · sqrt(p (1 − p)) — 0.03 at p = 0.1 — and for a mean 0.1 · s. Fix τ
before the experiment starts; choosing it after seeing the data voids the guarantee (the
default re-estimates only the standard deviation, which settles within the first looks).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from flightdeck.errors import ConfigError
from flightdeck.experiments.inference import ARMS, InsufficientDataError, _check_alpha, _need_units
from flightdeck.stats import mixture_half_width, proportion_variance

DEFAULT_TAU_SD_FRACTION = 0.1
_TINY = 1e-300

STOPPING_RULE = (
    "Look as often as you like (e.g. daily). Stop and decide as soon as the always-valid "
    "p-value (the normal-mixture mSPRT, p = min over looks of 1/likelihood-ratio) falls below "
    "alpha, equivalently as soon as the always-valid confidence sequence of the difference "
    "excludes 0; the sign of the difference then says which variant is better. Otherwise keep "
    "running until the planned maximum duration and report 'no significant difference'. A "
    "sample-ratio mismatch (chi-square p < 0.001) blocks every decision."
)


@dataclass(frozen=True)
class SequentialResult:
    """One look of the mSPRT: the difference, its always-valid interval and p-value."""

    metric: str
    n_control: int
    n_treatment: int
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    alpha: float
    stop: bool
    tau: float = math.nan
    likelihood_ratio: float = 1.0
    control_value: float = math.nan
    treatment_value: float = math.nan

    def to_dict(self) -> dict:
        return asdict(self)


def default_tau(sd: Any) -> np.ndarray:
    """The default mixing scale: `DEFAULT_TAU_SD_FRACTION` of a unit's standard deviation."""
    return DEFAULT_TAU_SD_FRACTION * np.asarray(sd, dtype=float)


def log_likelihood_ratio(difference: Any, variance: Any, tau: Any) -> np.ndarray:
    """log Λ of the normal-mixture SPRT for H0: difference = 0 (elementwise on arrays)."""
    v = np.maximum(np.asarray(variance, dtype=float), _TINY)
    t2 = np.asarray(tau, dtype=float) ** 2
    d = np.asarray(difference, dtype=float)
    return 0.5 * np.log(v / (v + t2)) + d * d * t2 / (2 * v * (v + t2))


def msprt_arrays(difference: Any, variance: Any, tau: Any, alpha: Any) -> tuple[np.ndarray, np.ndarray]:
    """(p-value of this look alone = min(1, 1/Λ), confidence-sequence half-width), elementwise.

    The always-valid p-value is the running minimum of the first output over the looks
    (``np.minimum.accumulate`` along the look axis). Used by the scalar functions below and
    by the benchmark's vectorised simulation.
    """
    p_look = np.minimum(1.0, np.exp(-log_likelihood_ratio(difference, variance, tau)))
    return p_look, mixture_half_width(variance, tau, alpha)


def _check_tau(tau: float | None) -> None:
    if tau is not None and not (math.isfinite(tau) and tau > 0):
        raise ConfigError("tau", f"must be a positive number, got {tau!r}",
                          "pass the minimum detectable effect (absolute) or leave it unset")


def _result(metric: str, n_c: int, n_t: int, value_c: float, value_t: float, variance: float, tau: float,
            alpha: float, previous_p_value: float) -> SequentialResult:
    if not 0 < previous_p_value <= 1:
        raise ConfigError("previous_p_value", f"must lie in (0, 1], got {previous_p_value!r}",
                          "pass the p-value of the previous look, or 1.0 at the first look")
    difference = value_t - value_c
    p_look, half = msprt_arrays(difference, variance, tau, alpha)
    p_value = float(min(previous_p_value, p_look))
    llr = float(log_likelihood_ratio(difference, variance, tau))
    return SequentialResult(metric, int(n_c), int(n_t), float(difference), float(difference - half),
                            float(difference + half), p_value, alpha, p_value < alpha, float(tau),
                            math.exp(min(llr, 700.0)), float(value_c), float(value_t))


def msprt_proportions(successes_control: int, n_control: int, successes_treatment: int, n_treatment: int, *,
                      alpha: float = 0.05, tau: float | None = None, previous_p_value: float = 1.0,
                      metric: str = "proportion", arms: tuple[str, str] = ARMS) -> SequentialResult:
    """mSPRT on the difference of two rates, from cumulative counts at this look."""
    _check_alpha(alpha)
    _check_tau(tau)
    for s, n, arm in ((successes_control, n_control, arms[0]), (successes_treatment, n_treatment, arms[1])):
        if s < 0 or s > n:
            raise ConfigError(f"{metric}.{arm}", f"{s} successes out of {n} units",
                              "successes must lie between 0 and the number of units")
        _need_units(int(n), metric, arm)
    pooled = (successes_control + successes_treatment) / (n_control + n_treatment)
    if pooled in (0.0, 1.0):
        raise InsufficientDataError(metric, f"{arms[0]} and {arms[1]}",
                                    "every unit has the same outcome, so the rates cannot be compared yet")
    variance = float(proportion_variance(successes_control, n_control) / n_control
                     + proportion_variance(successes_treatment, n_treatment) / n_treatment)
    if tau is None:
        tau = float(default_tau(math.sqrt(pooled * (1 - pooled))))
    return _result(metric, n_control, n_treatment, successes_control / n_control,
                   successes_treatment / n_treatment, variance, tau, alpha, previous_p_value)


def msprt_means(mean_c: float, var_c: float, n_c: int, mean_t: float, var_t: float, n_t: int, *,
                alpha: float = 0.05, tau: float | None = None, previous_p_value: float = 1.0,
                metric: str = "mean", arms: tuple[str, str] = ARMS) -> SequentialResult:
    """mSPRT on the difference of two means, from each arm's mean, sample variance and size."""
    _check_alpha(alpha)
    _check_tau(tau)
    for n, var, arm in ((n_c, var_c, arms[0]), (n_t, var_t, arms[1])):
        _need_units(int(n), metric, arm)
        if not math.isfinite(var) or var < 0:
            raise ConfigError(f"{metric}.{arm}.variance", f"must be finite and non-negative, got {var!r}",
                              "pass the sample variance (ddof=1)")
    if var_c == 0 and var_t == 0:
        raise InsufficientDataError(metric, f"{arms[0]} and {arms[1]}", "no variation in either arm")
    if tau is None:
        pooled_var = ((n_c - 1) * var_c + (n_t - 1) * var_t) / (n_c + n_t - 2)
        tau = float(default_tau(math.sqrt(pooled_var)))
    return _result(metric, n_c, n_t, mean_c, mean_t, var_c / n_c + var_t / n_t, tau, alpha, previous_p_value)
