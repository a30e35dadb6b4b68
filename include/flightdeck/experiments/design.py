"""Experiment design: sample size, minimum detectable effect (MDE) and power, on statsmodels.

All figures are per arm and two-sided. `mde` is ABSOLUTE (0.02 = two percentage points for a
rate, or the difference of means in the metric's unit). `ratio` = n_treatment / n_control;
the sample sizes returned are n_control (the treatment arm needs ceil(ratio · n)).

Fixed horizon (one look at the end)
-----------------------------------
* proportions: the power of the pooled two-proportion z test of `inference.two_proportion_z`,
  statsmodels ``power_proportions_2indep`` (pooled variance under the null, unpooled under
  the alternative); the sample size is the smallest n whose power reaches the target;
* means: the power of the two-sample t test, statsmodels ``TTestIndPower`` (Welch's test has
  the same power up to O(1/n) when the variances are equal, which is what a design assumes).

Sequential (`sequential=True`: the mSPRT of `flightdeck.experiments.sequential`, looked at
as often as you like)
-----------------------------------------------------------------------------------------
The sample size returned is the smallest n at which a SINGLE look, made with the mSPRT's
boundary, already has the target power: the test rejects at n when |θ̂| > h(V_n) (the
confidence-sequence half-width), so with θ̂ ~ N(δ, V_n)

    power_bound(n) = Φ((δ − h(V_n)) / √V_n) + Φ((−δ − h(V_n)) / √V_n).

Any run that is beyond the boundary at n has stopped by n, so the probability of having
stopped by n is at least this: planning with this n gives at least the target power
(conservative; earlier looks only add power). benchmarks/experiments.py simulates the
daily-looked mSPRT at this n and prints the power it reaches. τ defaults to the same rule
as the analysis (`sequential.default_tau`); pass the τ you will analyse with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import optimize, stats

from flightdeck.errors import ConfigError
from flightdeck.experiments.sequential import default_tau
from flightdeck.stats import mixture_half_width

_MAX_N = 10 ** 10


# ------------------------------------------------------------------------------ checks
def _check_level(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and 0 < value < 1):
        raise ConfigError(name, f"must lie strictly between 0 and 1, got {value!r}",
                          "use e.g. alpha=0.05, power=0.8")


def _check_proportions(baseline: float, mde: float, alpha: float, ratio: float) -> None:
    _check_level("baseline", baseline)
    _check_level("alpha", alpha)
    if not (isinstance(mde, int | float) and mde != 0 and 0 < baseline + mde < 1):
        raise ConfigError("mde", f"baseline {baseline} + mde {mde!r} must be a rate strictly between 0 and 1 "
                          "and mde must not be 0", "give the smallest absolute change worth detecting, "
                          "e.g. 0.01 for one percentage point")
    _check_ratio(ratio)


def _check_means(sd: float, mde: float, alpha: float, ratio: float) -> None:
    if not (isinstance(sd, int | float) and math.isfinite(sd) and sd > 0):
        raise ConfigError("sd", f"must be a positive standard deviation, got {sd!r}",
                          "estimate it from pre-period data")
    if not (isinstance(mde, int | float) and math.isfinite(mde) and mde != 0):
        raise ConfigError("mde", f"must be a non-zero difference, got {mde!r}",
                          "give the smallest absolute change worth detecting")
    _check_level("alpha", alpha)
    _check_ratio(ratio)


def _check_ratio(ratio: float) -> None:
    if not (isinstance(ratio, int | float) and math.isfinite(ratio) and ratio > 0):
        raise ConfigError("ratio", f"must be a positive n_treatment / n_control, got {ratio!r}",
                          "use 1.0 for an equal split")


def _check_n(n_per_arm: int) -> None:
    if not (isinstance(n_per_arm, int | np.integer) and n_per_arm >= 2):
        raise ConfigError("n_per_arm", f"must be an integer of at least 2, got {n_per_arm!r}",
                          "pass the number of units per arm")


def _smallest_n(power_at: Callable[[int], float], power: float, start: int) -> int:
    """The smallest n ≥ 2 with power_at(n) ≥ power (power_at increasing in n from `start` on)."""
    low, high = 1, max(2, start)
    while power_at(high) < power:
        low, high = high, high * 2
        if high > _MAX_N:
            raise ConfigError("mde", "needs more than 10^10 units per arm",
                              "choose a larger minimum detectable effect")
    while high - low > 1:  # invariant: power_at(low) < power <= power_at(high) (low = 1 is never tried)
        mid = (low + high) // 2
        if power_at(mid) >= power:
            high = mid
        else:
            low = mid
    return high


# ------------------------------------------------------------------------------ power
def _power_props(baseline: float, mde: float, n_control: float, alpha: float, ratio: float) -> float:
    from statsmodels.stats.proportion import power_proportions_2indep

    # Sample 1 = control (rate `baseline`), sample 2 = treatment; nobs2 = ratio · nobs1.
    result = power_proportions_2indep(-mde, baseline + mde, n_control, ratio=ratio, alpha=alpha,
                                      alternative="two-sided", return_results=True)
    return float(result.power)


def power_proportions(baseline: float, mde: float, n_per_arm: int, *, alpha: float = 0.05,
                      ratio: float = 1.0) -> float:
    """Power of the two-proportion z test with `n_per_arm` control units (fixed horizon)."""
    _check_proportions(baseline, mde, alpha, ratio)
    _check_n(n_per_arm)
    return _power_props(baseline, mde, n_per_arm, alpha, ratio)


def power_means(sd: float, mde: float, n_per_arm: int, *, alpha: float = 0.05, ratio: float = 1.0) -> float:
    """Power of the two-sample t test with `n_per_arm` control units (fixed horizon)."""
    from statsmodels.stats.power import TTestIndPower

    _check_means(sd, mde, alpha, ratio)
    _check_n(n_per_arm)
    return float(TTestIndPower().power(abs(mde) / sd, n_per_arm, alpha, ratio=ratio,
                                       alternative="two-sided"))


def sequential_power_bound(effect: float, variance: float, tau: float, alpha: float) -> float:
    """Lower bound on the mSPRT's power by the look where the difference has variance `variance`.

    The probability that a single look there is already beyond the boundary (module docstring).
    """
    se = math.sqrt(variance)
    h = float(mixture_half_width(variance, tau, alpha))
    return float(stats.norm.cdf((abs(effect) - h) / se) + stats.norm.cdf((-abs(effect) - h) / se))


# ------------------------------------------------------------------------------ sample size
def sample_size_proportions(baseline: float, mde: float, *, alpha: float = 0.05, power: float = 0.8,
                            ratio: float = 1.0, sequential: bool = False, tau: float | None = None) -> int:
    """Control units needed to detect `mde` on a rate `baseline` with the given power."""
    _check_proportions(baseline, mde, alpha, ratio)
    _check_level("power", power)
    fixed = _smallest_n(lambda n: _power_props(baseline, mde, n, alpha, ratio), power, 64)
    if not sequential:
        return fixed
    p_c, p_t = baseline, baseline + mde
    if tau is None:
        pooled = (p_c + ratio * p_t) / (1 + ratio)
        tau = float(default_tau(math.sqrt(pooled * (1 - pooled))))
    return _smallest_n(lambda n: sequential_power_bound(
        mde, p_c * (1 - p_c) / n + p_t * (1 - p_t) / (ratio * n), tau, alpha), power, fixed)


def sample_size_means(sd: float, mde: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0,
                      sequential: bool = False, tau: float | None = None) -> int:
    """Control units needed to detect a difference of means `mde` (unit sd `sd`) with the given power."""
    from statsmodels.stats.power import TTestIndPower

    _check_means(sd, mde, alpha, ratio)
    _check_level("power", power)
    effect = abs(mde) / sd
    # Start from the normal approximation; the search then finds the t test's exact smallest n
    # (statsmodels' own solve_power returns NaN when the root lies far out).
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    guess = min(_MAX_N, math.ceil(z * z * (1 + 1 / ratio) / (effect * effect)) + 2)
    fixed = _smallest_n(lambda n: float(TTestIndPower().power(effect, n, alpha, ratio=ratio,
                                                              alternative="two-sided")), power, guess)
    if not sequential:
        return fixed
    tau = float(default_tau(sd)) if tau is None else tau
    return _smallest_n(lambda n: sequential_power_bound(mde, sd * sd / n + sd * sd / (ratio * n), tau, alpha),
                       power, fixed)


# ------------------------------------------------------------------------------ MDE
def mde_proportions(baseline: float, n_per_arm: int, *, alpha: float = 0.05, power: float = 0.8,
                    ratio: float = 1.0) -> float:
    """Smallest absolute increase of the rate `baseline` detected with `power` (fixed horizon)."""
    _check_level("baseline", baseline)
    _check_level("alpha", alpha)
    _check_level("power", power)
    _check_ratio(ratio)
    _check_n(n_per_arm)
    top = (1 - baseline) * (1 - 1e-9)
    if _power_props(baseline, top, n_per_arm, alpha, ratio) < power:
        raise ConfigError("n_per_arm", f"{n_per_arm} units per arm cannot reach power {power} on a rate of "
                          f"{baseline} for any increase", "run the experiment on more units")
    return float(optimize.brentq(lambda d: _power_props(baseline, d, n_per_arm, alpha, ratio) - power,
                                 1e-12, top, xtol=1e-12))


def mde_means(sd: float, n_per_arm: int, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0) -> float:
    """Smallest difference of means detected with `power` (fixed horizon), in the metric's unit."""
    from statsmodels.stats.power import TTestIndPower

    _check_means(sd, 1.0, alpha, ratio)
    _check_level("power", power)
    _check_n(n_per_arm)
    return float(sd * TTestIndPower().solve_power(None, nobs1=n_per_arm, alpha=alpha, power=power, ratio=ratio,
                                                  alternative="two-sided"))
