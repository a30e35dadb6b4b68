"""The shared statistics: score bins, PSI, smoothed rates, the confidence-sequence half-width and
the rate-increase e-process, against hand-computed values and independent restatements of the
formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flightdeck.stats import (
    INCREASE_RATIOS,
    N_SCORE_BINS,
    PSI_EPSILON,
    SCORE_EDGES,
    mixture_half_width,
    proportion_variance,
    psi,
    rate_increase_log_e_value,
    score_bin,
    score_bin_counts,
    smoothed_rate,
)


# ------------------------------------------------------------------------------ score bins
def test_score_bins_are_ten_half_open_tenths():
    assert SCORE_EDGES[0] == 0.0 and SCORE_EDGES[-1] == 1.0 and N_SCORE_BINS == 10
    assert [score_bin(s) for s in (0.0, 0.05, 0.1, 0.19999, 0.2, 0.95, 1.0)] == [0, 0, 1, 1, 2, 9, 9]
    assert score_bin(-0.3) == 0 and score_bin(1.7) == 9  # out of range: the end bins


def test_bin_counts_agree_with_the_one_score_binning_on_every_edge():
    rng = np.random.default_rng(11)
    edges = np.asarray(SCORE_EDGES)
    scores = np.concatenate([rng.uniform(-0.2, 1.2, 5_000), edges, np.nextafter(edges, -1),
                             np.nextafter(edges, 2)])
    expected = np.zeros(N_SCORE_BINS, dtype=int)
    for s in scores:
        expected[score_bin(float(s))] += 1
    counts = score_bin_counts(scores)
    assert counts.tolist() == expected.tolist() and counts.sum() == scores.size
    assert score_bin_counts(np.empty(0)).tolist() == [0] * N_SCORE_BINS


# ------------------------------------------------------------------------------------- PSI
def test_psi_of_identical_histograms_is_zero_for_counts_or_shares():
    bins = np.array([5, 50, 120, 0, 7, 300, 2, 0, 0, 16])
    assert float(psi(bins, bins)) == 0.0
    assert float(psi(bins, 3 * bins)) == pytest.approx(0.0, abs=1e-12)
    assert float(psi(bins / bins.sum(), bins)) == pytest.approx(0.0, abs=1e-12)


def test_psi_matches_hand_computed_values_and_is_symmetric():
    b = [50, 50, 0, 0]
    c = [25, 75, 0, 0]
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert float(psi(b, c)) == pytest.approx(expected)
    assert float(psi(b, c)) == pytest.approx(0.274653, abs=1e-6)
    assert float(psi(c, b)) == pytest.approx(expected)


def test_psi_floors_an_empty_bucket_at_epsilon():
    e, a = [0.5, 0.5, 0.0], [0.25, 0.5, 0.25]
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - PSI_EPSILON) * math.log(0.25 / PSI_EPSILON)
    assert float(psi(e, a)) == pytest.approx(expected)
    assert float(psi([50, 50, 0], [1, 2, 1])) == pytest.approx(expected)
    eps = 1e-3
    looser = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - eps) * math.log(0.25 / eps)
    assert float(psi(e, a, epsilon=eps)) == pytest.approx(looser)


def test_psi_works_on_stacked_histograms_and_is_undefined_without_observations():
    b = np.array([[50, 50, 0], [10, 10, 10], [0, 0, 0]])
    c = np.array([[25, 75, 0], [10, 10, 10], [1, 2, 3]])
    values = psi(b, c)
    assert values.shape == (3,)
    assert values[0] == pytest.approx(float(psi(b[0], c[0])))
    assert values[1] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(values[2])  # one side has no observations: no PSI


def test_psi_refuses_different_buckets():
    with pytest.raises(ValueError, match="same buckets"):
        psi([0.5, 0.5], [1.0])


# ------------------------------------------------------------------------------- rates
def test_smoothed_rates_never_reach_zero_or_one():
    assert float(smoothed_rate(0, 0)) == 0.5
    assert float(smoothed_rate(0, 100)) == pytest.approx(0.5 / 101)
    assert float(smoothed_rate(100, 100)) == pytest.approx(100.5 / 101)
    p = 3.5 / 11
    assert float(proportion_variance(3, 10)) == pytest.approx(p * (1 - p))
    assert float(proportion_variance(100, 100)) > 0  # all events: still a positive variance
    assert proportion_variance(np.array([0, 5]), np.array([10, 10])).shape == (2,)


# --------------------------------------------------------------- confidence sequences
def test_mixture_half_width_matches_a_hand_computed_value():
    # V = 1e-4, τ = 0.01, α = 0.05: V(V+τ²)/τ² = 2e-4 and (V+τ²)/(Vα²) = 800.
    assert float(mixture_half_width(1e-4, 0.01, 0.05)) == pytest.approx(math.sqrt(2e-4 * math.log(800)), rel=1e-12)
    assert float(mixture_half_width(1e-4, 0.01, 0.05)) == pytest.approx(0.0365639, abs=1e-7)


@pytest.mark.parametrize(("v", "tau", "alpha"), [(1e-4, 0.01, 0.05), (3e-7, 0.005, 0.0017), (2.5, 0.1, 0.2)])
def test_half_width_is_where_the_msprt_statistic_reaches_one_over_alpha(v, tau, alpha):
    # Johari et al.'s mixture likelihood ratio, written out independently of the module.
    h = float(mixture_half_width(v, tau, alpha))
    t2 = tau ** 2
    lam = math.sqrt(v / (v + t2)) * math.exp(t2 * h ** 2 / (2 * v * (v + t2)))
    assert lam == pytest.approx(1 / alpha, rel=1e-9)


def test_half_width_shrinks_with_data_and_grows_with_confidence():
    widths = mixture_half_width(np.array([1e-3, 1e-4, 1e-5, 1e-6]), 0.01, 0.01)
    assert np.all(np.diff(widths) < 0)
    assert mixture_half_width(1e-4, 0.01, 0.001) > mixture_half_width(1e-4, 0.01, 0.01)
    assert np.isfinite(mixture_half_width(0.0, 0.01, 0.01))  # a zero variance does not crash


# ------------------------------------------------------------- rate-increase e-process
def test_rate_increase_e_value_is_a_mixture_of_binomial_likelihood_ratios():
    """Restated with scipy: given e events, arm a's count is binomial with the probability
    θ_R = ρR / (ρR + 1 − ρ) under ratio R, and ρ under no difference."""
    from scipy import stats

    events_a, n_a, events_b, n_b = 60, 3_000, 570, 57_000
    rho, e = n_a / (n_a + n_b), events_a + events_b
    theta = rho * INCREASE_RATIOS / (rho * INCREASE_RATIOS + 1 - rho)
    weights = np.exp(-0.5 * np.log(INCREASE_RATIOS) ** 2)
    weights /= weights.sum()
    ratios = stats.binom.pmf(events_a, e, theta) / stats.binom.pmf(events_a, e, rho)
    expected = math.log(float(weights @ ratios))
    assert float(rate_increase_log_e_value(events_a, n_a, events_b, n_b)) == pytest.approx(expected, rel=1e-9)
    # Against a tolerated ratio R0 the null share is θ(R0) and the alternatives are R0 × INCREASE_RATIOS.
    theta0 = rho * 1.5 / (rho * 1.5 + 1 - rho)
    theta = rho * 1.5 * INCREASE_RATIOS / (rho * 1.5 * INCREASE_RATIOS + 1 - rho)
    ratios = stats.binom.pmf(events_a, e, theta) / stats.binom.pmf(events_a, e, theta0)
    tolerant = float(rate_increase_log_e_value(events_a, n_a, events_b, n_b, tolerance=1.5))
    assert tolerant == pytest.approx(math.log(float(weights @ ratios)), rel=1e-9) and tolerant < expected
    # Elementwise on arrays, and no evidence (E = 1) without trials or events.
    got = rate_increase_log_e_value([events_a, 0, 5], [n_a, 100, 0], [events_b, 0, 5], [n_b, 100, 100])
    assert got[0] == pytest.approx(expected) and got[1] == pytest.approx(0.0) and got[2] == 0.0


def test_rate_increase_e_value_grows_with_the_canary_share_of_events_only():
    # As many events as trials would give (share 5 %): below 1; twice as many: far above.
    assert float(rate_increase_log_e_value(30, 3_000, 570, 57_000)) < 0
    assert float(rate_increase_log_e_value(60, 3_000, 570, 57_000)) > math.log(1_000)
    # Fewer events than its share: evidence against an increase, E lower still.
    assert float(rate_increase_log_e_value(5, 3_000, 570, 57_000)) < float(
        rate_increase_log_e_value(30, 3_000, 570, 57_000)) - 1
    # Only the split matters, not the common rate: a shared incident at four times the rate
    # with the same share of events gives no more evidence than before it.
    quiet = float(rate_increase_log_e_value(30, 3_000, 570, 57_000))
    incident = float(rate_increase_log_e_value(120, 3_000, 2_280, 57_000))
    assert incident < quiet < 0
