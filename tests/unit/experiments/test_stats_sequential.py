"""The mSPRT: its likelihood ratio, p-value and confidence sequence agree with each other, with
the release gates' sequence, and with a hand computation; the p-value never rises."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flightdeck.errors import ConfigError
from flightdeck.experiments.inference import InsufficientDataError
from flightdeck.experiments.sequential import (
    STOPPING_RULE,
    default_tau,
    msprt_arrays,
    msprt_means,
    msprt_proportions,
)
from flightdeck.stats import mixture_half_width, proportion_variance


def hand_lambda(diff: float, v: float, tau: float) -> float:
    return math.sqrt(v / (v + tau * tau)) * math.exp(diff * diff * tau * tau / (2 * v * (v + tau * tau)))


def test_means_match_the_formula_by_hand():
    result = msprt_means(1.0, 4.0, 800, 1.3, 5.0, 900, tau=0.2, alpha=0.05)
    v = 4.0 / 800 + 5.0 / 900
    lam = hand_lambda(0.3, v, 0.2)
    assert result.likelihood_ratio == pytest.approx(lam, rel=1e-10)
    assert result.p_value == pytest.approx(min(1.0, 1 / lam), rel=1e-10)
    assert result.ci_high - result.difference == pytest.approx(float(mixture_half_width(v, 0.2, 0.05)), rel=1e-12)
    assert result.stop == (result.p_value < 0.05)
    assert result.to_dict()["tau"] == 0.2


def test_proportions_use_the_gates_smoothed_variance_and_default_tau():
    result = msprt_proportions(100, 2000, 140, 2000)
    v = float(proportion_variance(100, 2000) / 2000 + proportion_variance(140, 2000) / 2000)
    pooled = 240 / 4000
    assert result.tau == pytest.approx(0.1 * math.sqrt(pooled * (1 - pooled)))
    assert result.likelihood_ratio == pytest.approx(hand_lambda(0.02, v, result.tau), rel=1e-10)
    assert (result.control_value, result.treatment_value) == (0.05, 0.07)


def test_default_tau_is_a_tenth_of_the_pooled_sd():
    result = msprt_means(0.0, 4.0, 100, 0.0, 4.0, 100)
    assert result.tau == pytest.approx(0.2) == pytest.approx(float(default_tau(2.0)))


def test_p_value_never_rises_over_looks():
    rng = np.random.default_rng(5)
    previous, seen = 1.0, []
    s_c = s_t = n = 0
    for _ in range(20):
        s_c += rng.binomial(300, 0.10)
        s_t += rng.binomial(300, 0.12)
        n += 300
        result = msprt_proportions(s_c, n, s_t, n, previous_p_value=previous)
        assert result.p_value <= previous
        previous = result.p_value
        seen.append(result.p_value)
    assert seen == sorted(seen, reverse=True)
    assert seen[-1] < seen[0]


@settings(max_examples=100, deadline=None)
@given(diff=st.floats(-1, 1), var=st.floats(1e-6, 1.0), tau=st.floats(1e-3, 1.0),
       alpha=st.sampled_from([0.01, 0.05, 0.1]))
def test_rejecting_is_the_same_as_the_sequence_excluding_zero(diff, var, tau, alpha):
    p_look, half = msprt_arrays(diff, var, tau, alpha)
    if abs(abs(diff) - half) > 1e-9 * max(1.0, half):  # away from the boundary itself
        assert (p_look < alpha) == (abs(diff) > half)


def test_arrays_are_elementwise():
    diffs, variances = np.array([0.0, 0.1, -0.3]), np.array([0.01, 0.001, 0.02])
    p, h = msprt_arrays(diffs, variances, 0.1, 0.05)
    for i in range(3):
        p_i, h_i = msprt_arrays(diffs[i], variances[i], 0.1, 0.05)
        assert (p[i], h[i]) == (p_i, h_i)
    assert p[0] == 1.0  # no difference: the mixture ratio is below 1


def test_stopping_rule_is_written_down():
    assert "alpha" in STOPPING_RULE and "confidence sequence" in STOPPING_RULE and "0.001" in STOPPING_RULE


def test_bad_and_insufficient_input():
    with pytest.raises(InsufficientDataError, match="in treatment"):
        msprt_means(0.0, 1.0, 10, 0.0, 1.0, 1)
    with pytest.raises(InsufficientDataError, match="control and treatment"):
        msprt_proportions(0, 50, 0, 50)
    with pytest.raises(ConfigError, match="tau"):
        msprt_means(0.0, 1.0, 10, 0.0, 1.0, 10, tau=0.0)
    with pytest.raises(ConfigError, match="previous_p_value"):
        msprt_means(0.0, 1.0, 10, 0.0, 1.0, 10, previous_p_value=0.0)
    with pytest.raises(ConfigError, match="proportion.treatment"):
        msprt_proportions(1, 10, 11, 10)
