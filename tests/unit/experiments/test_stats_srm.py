"""Sample-ratio mismatch: a 52/48 split on 20,000 units is flagged, 50/50 is not; the chi-square
agrees with scipy; bad input names the variant."""

from __future__ import annotations

import pytest
from scipy.stats import chisquare

from flightdeck.errors import ConfigError
from flightdeck.experiments.inference import InsufficientDataError
from flightdeck.experiments.srm import srm_check


def test_52_48_on_20000_units_is_flagged():
    result = srm_check({"control": 10_400, "treatment": 9_600}, {"control": 0.5, "treatment": 0.5})
    assert result.mismatch
    assert result.chi2 == pytest.approx(32.0)
    assert result.p_value < 1e-6
    assert result.to_dict()["observed_share"] == {"control": 0.52, "treatment": 0.48}


def test_50_50_is_not_flagged():
    result = srm_check({"control": 10_000, "treatment": 10_000}, {"control": 0.5, "treatment": 0.5})
    assert not result.mismatch and result.p_value == pytest.approx(1.0)


def test_matches_scipy_with_relative_weights_and_three_arms():
    observed = {"a": 5_210, "b": 2_480, "c": 2_310}
    result = srm_check(observed, {"a": 50, "b": 25, "c": 25})  # route-table weights, not shares
    expected = chisquare([5_210, 2_480, 2_310], f_exp=[5_000, 2_500, 2_500])
    assert result.chi2 == pytest.approx(expected.statistic, abs=1e-8)
    assert result.p_value == pytest.approx(expected.pvalue, abs=1e-8)
    assert result.expected_share == {"a": 0.5, "b": 0.25, "c": 0.25}
    assert result.mismatch == (expected.pvalue < 0.001)


def test_a_variant_with_no_units_is_a_mismatch_not_missing_data():
    result = srm_check({"control": 1_000}, {"control": 0.5, "treatment": 0.5})
    assert result.observed == {"control": 1_000, "treatment": 0} and result.mismatch


def test_threshold_is_configurable():
    observed = {"control": 10_150, "treatment": 9_850}  # p ~ 0.034
    assert not srm_check(observed, {"control": 1, "treatment": 1}).mismatch
    assert srm_check(observed, {"control": 1, "treatment": 1}, threshold=0.05).mismatch


@pytest.mark.parametrize("observed, expected, name", [
    ({"control": 10, "other": 5}, {"control": 1, "treatment": 1}, "observed"),
    ({"control": 10}, {"control": 1}, "expected_share"),
    ({"control": 10}, {"control": 1, "treatment": 0}, "expected_share.treatment"),
    ({"control": -1}, {"control": 1, "treatment": 1}, "observed.control"),
])
def test_bad_input_names_the_field(observed, expected, name):
    with pytest.raises(ConfigError) as caught:
        srm_check(observed, expected)
    assert caught.value.name == name


def test_no_units_at_all_is_insufficient_data():
    with pytest.raises(InsufficientDataError):
        srm_check({}, {"control": 1, "treatment": 1})
