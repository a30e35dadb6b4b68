"""Power, sample size and MDE agree with statsmodels to 1e-8 and with each other; the sequential
sample size is the smallest n whose one-look bound reaches the power."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.proportion import power_proportions_2indep

from flightdeck.errors import ConfigError
from flightdeck.experiments import design
from flightdeck.experiments.sequential import default_tau

TOL = 1e-8


@pytest.mark.parametrize("baseline, mde, n, ratio", [(0.10, 0.01, 14000, 1.0), (0.30, -0.02, 5000, 1.0),
                                                     (0.05, 0.01, 8000, 2.0)])
def test_power_proportions_matches_statsmodels(baseline, mde, n, ratio):
    expected = power_proportions_2indep(-mde, baseline + mde, n, ratio=ratio, alpha=0.05).power
    assert design.power_proportions(baseline, mde, n, ratio=ratio) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("sd, mde, n, ratio", [(1.0, 0.1, 1500, 1.0), (12.0, -2.0, 400, 0.5)])
def test_power_means_matches_statsmodels(sd, mde, n, ratio):
    expected = TTestIndPower().power(abs(mde) / sd, n, 0.05, ratio=ratio)
    assert design.power_means(sd, mde, n, ratio=ratio) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("baseline, mde, ratio", [(0.10, 0.01, 1.0), (0.5, -0.05, 1.0), (0.02, 0.005, 3.0)])
def test_sample_size_proportions_is_the_smallest_n_reaching_power(baseline, mde, ratio):
    n = design.sample_size_proportions(baseline, mde, power=0.8, ratio=ratio)
    assert design.power_proportions(baseline, mde, n, ratio=ratio) >= 0.8
    assert design.power_proportions(baseline, mde, n - 1, ratio=ratio) < 0.8


def test_sample_size_means_is_statsmodels_solution_rounded_up():
    solved = TTestIndPower().solve_power(0.25, alpha=0.01, power=0.9, ratio=1.5)
    n = design.sample_size_means(4.0, 1.0, alpha=0.01, power=0.9, ratio=1.5)
    assert n == math.ceil(solved)
    assert design.power_means(4.0, 1.0, n, alpha=0.01, ratio=1.5) >= 0.9
    assert design.power_means(4.0, 1.0, n - 1, alpha=0.01, ratio=1.5) < 0.9


def test_mde_round_trips_through_power():
    mde = design.mde_proportions(0.1, 10_000, power=0.8)
    assert design.power_proportions(0.1, mde, 10_000) == pytest.approx(0.8, abs=1e-8)
    mde_m = design.mde_means(3.0, 700, alpha=0.05, power=0.9)
    assert design.power_means(3.0, mde_m, 700) == pytest.approx(0.9, abs=1e-8)
    assert mde_m == pytest.approx(3.0 * TTestIndPower().solve_power(None, nobs1=700, alpha=0.05, power=0.9),
                                  abs=TOL)


def test_sequential_sample_size_is_the_smallest_n_of_the_bound():
    fixed = design.sample_size_means(1.0, 0.1)
    n = design.sample_size_means(1.0, 0.1, sequential=True)
    tau = float(default_tau(1.0))
    assert fixed < n < 3 * fixed
    assert design.sequential_power_bound(0.1, 2 / n, tau, 0.05) >= 0.8
    assert design.sequential_power_bound(0.1, 2 / (n - 1), tau, 0.05) < 0.8
    # A tau matched to the effect needs fewer units than the small default one here.
    assert design.sample_size_means(1.0, 0.1, sequential=True, tau=0.1) <= n
    n_p = design.sample_size_proportions(0.1, 0.01, sequential=True)
    assert n_p > design.sample_size_proportions(0.1, 0.01)
    v = 0.1 * 0.9 / n_p + 0.11 * 0.89 / n_p
    pooled = 0.105
    assert design.sequential_power_bound(0.01, v, 0.1 * math.sqrt(pooled * (1 - pooled)), 0.05) >= 0.8


@pytest.mark.parametrize("call, name", [
    (lambda: design.sample_size_proportions(0.95, 0.1), "mde"),
    (lambda: design.sample_size_proportions(0.1, 0.0), "mde"),
    (lambda: design.sample_size_proportions(1.2, 0.01), "baseline"),
    (lambda: design.sample_size_means(0.0, 0.1), "sd"),
    (lambda: design.sample_size_means(1.0, 0.1, power=1.0), "power"),
    (lambda: design.sample_size_means(1.0, 0.1, ratio=-1), "ratio"),
    (lambda: design.power_means(1.0, 0.1, 1), "n_per_arm"),
    (lambda: design.mde_proportions(0.5, 3, power=0.99), "n_per_arm"),
    (lambda: design.sample_size_means(1.0, 1e-9), "mde"),
])
def test_bad_design_input_names_the_field(call, name):
    with pytest.raises(ConfigError) as caught:
        call()
    assert caught.value.name == name
