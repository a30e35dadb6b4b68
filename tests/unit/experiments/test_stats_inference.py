"""Fixed-horizon tests agree with statsmodels / scipy to 1e-8 on fixed data sets; the delta
method and CUPED behave as their closed forms say; too little data is "insufficient data"."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from flightdeck.errors import ConfigError
from flightdeck.experiments.inference import (
    InsufficientDataError,
    cuped,
    delta_ratio,
    ratio_and_variance,
    two_proportion_z,
    welch_t,
    welch_t_from_moments,
)

TOL = 1e-8


@pytest.fixture(scope="module")
def samples():
    rng = np.random.default_rng(20261)
    return rng.lognormal(1.0, 0.8, 700), rng.lognormal(1.1, 0.9, 650)


@pytest.mark.parametrize("counts", [(120, 1000, 150, 1000), (31, 400, 22, 380), (5, 60, 0, 55)])
def test_two_proportion_z_matches_statsmodels(counts):
    s_c, n_c, s_t, n_t = counts
    result = two_proportion_z(s_c, n_c, s_t, n_t, alpha=0.1)
    z, p = proportions_ztest([s_t, s_c], [n_t, n_c])
    low, high = confint_proportions_2indep(s_t, n_t, s_c, n_c, method="wald", compare="diff", alpha=0.1)
    assert result.p_value == pytest.approx(p, abs=TOL)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=TOL)
    assert result.difference == pytest.approx(s_t / n_t - s_c / n_c, abs=TOL)
    # Hand-written pooled z, as a third opinion.
    pooled = (s_c + s_t) / (n_c + n_t)
    z_hand = (s_t / n_t - s_c / n_c) / np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    assert result.details["z"] == pytest.approx(z_hand, abs=TOL)
    assert result.significant == (p < 0.1)


def test_two_proportion_relative_lift_and_dict():
    result = two_proportion_z(100, 1000, 120, 1000)
    assert result.relative_lift == pytest.approx(0.2)
    d = result.to_dict()
    assert d["method"] == "two_proportion_z" and d["significant"] is result.significant
    assert two_proportion_z(0, 100, 3, 100).relative_lift is None


def test_welch_matches_scipy_and_statsmodels(samples):
    c, t = samples
    result = welch_t(c, t, alpha=0.05)
    scipy_result = stats.ttest_ind(t, c, equal_var=False)
    low, high = CompareMeans(DescrStatsW(t), DescrStatsW(c)).tconfint_diff(alpha=0.05, usevar="unequal")
    assert result.p_value == pytest.approx(scipy_result.pvalue, abs=TOL)
    assert result.details["t"] == pytest.approx(scipy_result.statistic, abs=TOL)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=TOL)
    ci = scipy_result.confidence_interval(0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), abs=TOL)
    moments = welch_t_from_moments(c.mean(), c.var(ddof=1), len(c), t.mean(), t.var(ddof=1), len(t))
    assert moments.p_value == pytest.approx(result.p_value, abs=1e-12)


def test_delta_method_reduces_to_mean_variance_with_unit_denominators(samples):
    y, _ = samples
    ratio, variance = ratio_and_variance(y, np.ones_like(y))
    assert ratio == pytest.approx(y.mean(), abs=1e-12)
    assert variance == pytest.approx(y.var(ddof=1) / len(y), rel=1e-12)
    # And the delta test then equals a z test on the means (Welch's SE, normal quantiles).
    c, t = samples
    result = delta_ratio(c, np.ones_like(c), t, np.ones_like(t))
    se = np.sqrt(c.var(ddof=1) / len(c) + t.var(ddof=1) / len(t))
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(t.mean() - c.mean()) / se), abs=TOL)


def test_delta_method_variance_matches_a_bootstrap():
    rng = np.random.default_rng(7)
    views = rng.poisson(4.0, 3000) + 1
    clicks = rng.binomial(views, rng.beta(2, 18, 3000))  # clicks correlated with views within a unit
    _, variance = ratio_and_variance(clicks.astype(float), views.astype(float))
    index = rng.integers(0, 3000, size=(1500, 3000))
    boot = clicks[index].sum(axis=1) / views[index].sum(axis=1)
    assert variance == pytest.approx(boot.var(ddof=1), rel=0.12)  # 1,500 resamples: ~4 % sd
    # Treating clicks per view as independent per view would understate it here.
    naive = (clicks.sum() / views.sum()) * (1 - clicks.sum() / views.sum()) / views.sum()
    assert variance > 1.2 * naive


def test_cuped_reduces_variance_on_correlated_data():
    rng = np.random.default_rng(11)
    x_c, x_t = rng.normal(10, 2, 800), rng.normal(10, 2, 800)
    y_c = 0.9 * x_c + rng.normal(0, 1, 800)
    y_t = 0.9 * x_t + rng.normal(0.2, 1, 800)
    plain = welch_t(y_c, y_t)
    adjusted = cuped(y_c, x_c, y_t, x_t)
    assert adjusted.method == "cuped"
    assert adjusted.details["theta"] == pytest.approx(0.9, abs=0.05)
    assert adjusted.details["standard_error"] < 0.6 * plain.details["standard_error"]
    assert adjusted.details["variance_reduction"] > 0.6
    assert adjusted.ci_high - adjusted.ci_low < plain.ci_high - plain.ci_low
    assert adjusted.ci_low < 0.2 < adjusted.ci_high


def test_cuped_equals_welch_when_theta_is_zero(samples):
    c, t = samples
    y = np.concatenate([c, t])
    rng = np.random.default_rng(3)
    x = rng.normal(size=len(y))
    # Make the covariate exactly uncorrelated with y (pooled sample covariance 0) -> theta = 0.
    yc = y - y.mean()
    x = x - x.mean() - (x @ yc) / (yc @ yc) * yc
    adjusted = cuped(c, x[:len(c)], t, x[len(c):])
    plain = welch_t(c, t)
    assert adjusted.details["theta"] == pytest.approx(0.0, abs=1e-12)
    for field in ("difference", "ci_low", "ci_high", "p_value"):
        assert getattr(adjusted, field) == pytest.approx(getattr(plain, field), abs=1e-10)
    # A constant covariate carries no information: theta 0, the same answer.
    constant = cuped(c, np.full(len(c), 5.0), t, np.full(len(t), 5.0))
    assert constant.details["theta"] == 0.0 and constant.p_value == pytest.approx(plain.p_value, abs=1e-12)


@pytest.mark.parametrize("call, arm", [
    (lambda: two_proportion_z(1, 1, 5, 100, arms=("stable", "candidate")), "stable"),
    (lambda: two_proportion_z(5, 100, 0, 0, arms=("stable", "candidate")), "candidate"),
    (lambda: two_proportion_z(0, 100, 0, 100), "control and treatment"),
    (lambda: welch_t([1.0, 2.0], [3.0], arms=("a", "b")), "b"),
    (lambda: welch_t([], [1.0, 2.0]), "control"),
    (lambda: welch_t([1.0, 1.0], [2.0, 2.0]), "control and treatment"),
    (lambda: delta_ratio([1.0, 2.0], [0.0, 0.0], [1.0, 2.0], [1.0, 1.0]), "control"),
    (lambda: cuped([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0], [1.0], arms=("a", "new")), "new"),
])
def test_insufficient_data_names_the_arm(call, arm):
    with pytest.raises(InsufficientDataError) as caught:
        call()
    assert caught.value.arm == arm
    assert f"in {arm}" in str(caught.value) and "insufficient data" in str(caught.value)


@pytest.mark.parametrize("call, name", [
    (lambda: two_proportion_z(12, 10, 5, 100), "proportion.control"),
    (lambda: welch_t([1.0, float("nan"), 2.0], [1.0, 2.0]), "mean.control.values"),
    (lambda: welch_t([1.0, 2.0], [[1.0, 2.0]]), "mean.treatment.values"),
    (lambda: delta_ratio([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 1.0]), "ratio.control"),
    (lambda: cuped([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0]), "mean.control.covariate"),
    (lambda: welch_t([1.0, 2.0], [1.0, 3.0], alpha=1.5), "alpha"),
])
def test_bad_input_is_refused_with_its_name(call, name):
    with pytest.raises(ConfigError) as caught:
        call()
    assert caught.value.name == name
