"""Monitoring statistics: PSI, the reference profile, drift and volume reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from flightdeck.batch.monitoring import (
    NULL_BUCKET,
    OTHER_BUCKET,
    PROFILE_VERSION,
    DriftReport,
    ProfileMismatchError,
    bucket_labels,
    build_reference_profile,
    drift_report,
    feature_distribution,
    throughput,
    volume_report,
)
from flightdeck.data.generator import generate_partition
from flightdeck.data.schema import CATEGORY_VALUES, FEATURES, NUMERIC_FEATURES
from flightdeck.errors import ConfigError, FlightdeckError

THRESHOLD = 0.2


def _scores(frame: pd.DataFrame) -> np.ndarray:
    """A stand-in model: a fixed logistic function of two features."""
    logit = -0.9 * (frame["credit_score"] - 680) / 70 + 1.5 * frame["utilization"] - 3
    return (1 / (1 + np.exp(-logit))).to_numpy()


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return generate_partition("2024-01-01", "clean", rows=5000)


@pytest.fixture(scope="module")
def profile(reference) -> dict:
    return build_reference_profile(reference, _scores(reference))


@pytest.fixture(scope="module")
def drifted_day() -> pd.DataFrame:
    return generate_partition("2024-02-01", "feature_drift", rows=2000)


@pytest.fixture(scope="module")
def clean_day() -> pd.DataFrame:
    return generate_partition("2024-02-01", "clean", rows=2000)


# --- PSI ---------------------------------------------------------------------------------


def test_profile_of_the_reference_itself_has_near_zero_psi(reference, profile):
    report = drift_report(profile, reference, _scores(reference), THRESHOLD)
    assert max(report.feature_psi.values()) < 1e-9
    assert report.score_psi < 1e-9


def test_feature_drift_scenario_is_detected(profile, drifted_day):
    report = drift_report(profile, drifted_day, _scores(drifted_day), THRESHOLD)
    # The generator shifts age by -8 years, moves channel mix to mobile and lowers
    # financial health (credit score): each must cross the threshold.
    for name in ("age", "channel", "credit_score"):
        assert report.feature_psi[name] > THRESHOLD, (name, report.feature_psi[name])
    # Region is drawn independently of the shifted traits.
    assert report.feature_psi["region"] < 0.1
    assert report.alert
    assert report.score_drifted
    assert "region" not in report.drifted_features
    psis = [report.feature_psi[n] for n in report.drifted_features]
    assert psis == sorted(psis, reverse=True)


def test_fresh_clean_day_does_not_alert(profile, clean_day):
    report = drift_report(profile, clean_day, _scores(clean_day), THRESHOLD)
    assert not report.alert, report.summary()
    assert report.drifted_features == []
    assert max(report.feature_psi.values()) < 0.1
    assert report.summary().startswith("No drift")


def test_report_covers_every_feature(profile, clean_day):
    report = drift_report(profile, clean_day, None, THRESHOLD)
    assert set(report.feature_psi) == set(FEATURES)
    assert report.score_psi is None and not report.score_drifted


# --- buckets: unseen values, extremes, nulls -------------------------------------------------


def test_unseen_category_lands_in_other_and_nulls_in_null(profile):
    entry = profile["features"]["channel"]
    values = pd.Series(["online", "fax", None, "telegraph"], dtype=object)
    dist = feature_distribution(entry, values)
    labels = bucket_labels(entry)
    assert len(dist) == len(labels) == len(CATEGORY_VALUES["channel"]) + 2
    by_label = dict(zip(labels, dist, strict=True))
    assert by_label["online"] == pytest.approx(0.25)
    assert by_label[OTHER_BUCKET] == pytest.approx(0.5)
    assert by_label[NULL_BUCKET] == pytest.approx(0.25)


def test_out_of_range_numbers_land_in_the_open_end_bins(profile):
    entry = profile["features"]["age"]
    values = [-1e9, 1e9, np.inf, -np.inf, np.nan, "not a number"]
    dist = feature_distribution(entry, values)
    assert dist.sum() == pytest.approx(1.0)
    assert dist[0] == pytest.approx(2 / 6)  # -1e9 and -inf
    assert dist[-2] == pytest.approx(2 / 6)  # 1e9 and inf
    assert dist[-1] == pytest.approx(2 / 6)  # NaN and unparseable text are null


def test_nulls_and_unseen_values_in_a_day_are_counted_as_drift(profile, clean_day):
    day = clean_day.copy()
    day["channel"] = day["channel"].astype(object)
    day.loc[: len(day) // 4, "channel"] = "fax"  # a quarter unseen
    day.loc[: len(day) // 4, "age"] = np.nan  # a quarter missing
    report = drift_report(profile, day, None, THRESHOLD)
    assert {"channel", "age"} <= set(report.drifted_features)
    assert report.feature_psi["region"] < 0.1


def test_corrupt_day_with_text_numbers_does_not_crash(profile):
    day = generate_partition("2024-02-01", "corrupt", rows=2000)
    report = drift_report(profile, day, None, THRESHOLD)
    assert all(np.isfinite(v) for v in report.feature_psi.values())


# --- profile -----------------------------------------------------------------------------


def test_profile_proportions_sum_to_one(profile):
    entries = [*profile["features"].values(), profile["score"]]
    for entry in entries:
        assert sum(entry["proportions"]) == pytest.approx(1.0)
        assert len(entry["proportions"]) == len(bucket_labels(entry))
    assert profile["version"] == PROFILE_VERSION
    assert profile["n_rows"] == 5000
    assert set(profile["features"]) == set(FEATURES)


def test_numeric_edges_are_sorted_unique_and_open_ended(profile):
    for name in NUMERIC_FEATURES:
        edges = profile["features"][name]["edges"]
        assert edges == sorted(set(edges)), name
        assert all(math.isfinite(e) for e in edges)
    # A continuous feature gets `bins` equal-mass bins: the open-ended ends hold data too.
    income = profile["features"]["annual_income"]
    assert len(income["edges"]) == 9
    assert income["proportions"][:-1] == pytest.approx([0.1] * 10, abs=0.002)
    assert income["proportions"][-1] == 0.0  # no nulls in training
    # A feature with many ties keeps fewer, deduplicated edges.
    assert len(profile["features"]["num_delinquencies_2y"]["edges"]) < 9


def test_profile_json_round_trip_gives_the_same_drift(profile, drifted_day):
    restored = json.loads(json.dumps(profile, allow_nan=False))
    scores = _scores(drifted_day)
    before = drift_report(profile, drifted_day, scores, THRESHOLD)
    after = drift_report(restored, drifted_day, scores, THRESHOLD)
    assert after == before


def test_profile_needs_every_feature(reference):
    with pytest.raises(ConfigError, match="age"):
        build_reference_profile(reference.drop(columns=["age"]), None)


def test_profile_mismatch_names_features_and_fix(profile, clean_day):
    with pytest.raises(ProfileMismatchError) as excinfo:
        drift_report(profile, clean_day.drop(columns=["age"]), None, THRESHOLD)
    assert isinstance(excinfo.value, FlightdeckError)
    assert "age" in str(excinfo.value) and "Fix:" in str(excinfo.value)

    smaller = {**profile, "features": {k: v for k, v in profile["features"].items() if k != "region"}}
    with pytest.raises(ProfileMismatchError, match="profile lacks region"):
        drift_report(smaller, clean_day, None, THRESHOLD)


def test_drift_rejects_wrong_score_length_and_bad_profiles(profile, clean_day):
    with pytest.raises(ConfigError, match="scores"):
        drift_report(profile, clean_day, np.zeros(3), THRESHOLD)
    with pytest.raises(ConfigError, match="version"):
        drift_report({**profile, "version": 99}, clean_day, None, THRESHOLD)
    with pytest.raises(ConfigError, match="no rows"):
        drift_report(profile, clean_day.iloc[:0], None, THRESHOLD)


def test_sampling_is_deterministic_and_bounded(profile, drifted_day):
    scores = _scores(drifted_day)
    a = drift_report(profile, drifted_day, scores, THRESHOLD, max_rows=500, seed=1)
    b = drift_report(profile, drifted_day, scores, THRESHOLD, max_rows=500, seed=1)
    assert a == b
    assert a.sampled_rows == 500 and a.n_rows == 2000
    assert "channel" in a.drifted_features


def test_drift_summary_names_drifted_features_with_psi():
    report = DriftReport({"age": 0.41, "channel": 0.7, "region": 0.01}, 0.05, 0.2, 100)
    assert report.drifted_features == ["channel", "age"]
    text = report.summary()
    assert "channel 0.700" in text and "age 0.410" in text and "region" not in text
    assert json.loads(json.dumps(report.to_dict()))["alert"] is True


def test_score_drift_alone_raises_the_alert():
    report = DriftReport({"age": 0.01}, score_psi=0.5, threshold=0.2, n_rows=100)
    assert report.drifted_features == [] and report.score_drifted and report.alert
    assert "score PSI 0.500" in report.summary() and "drifted" in report.summary()


# --- volume and throughput -----------------------------------------------------------------


def test_volume_without_history_never_alerts():
    report = volume_report(10, [], tolerance=0.5)
    assert not report.alert and report.ratio is None and report.trailing_mean is None
    assert "no trailing history" in report.summary()


def test_volume_within_tolerance_does_not_alert():
    report = volume_report(1800, [2000] * 7, tolerance=0.5)
    assert report.ratio == pytest.approx(0.9)
    assert not report.alert


def test_volume_drop_to_thirty_percent_alerts_and_names_numbers():
    report = volume_report(600, [1900, 2100, 2000, 2000, 2000, 2000, 2000], tolerance=0.5)
    assert report.trailing_mean == pytest.approx(2000.0)
    assert report.ratio == pytest.approx(0.3)
    assert report.alert
    text = report.summary()
    for piece in ("600", "2000.0", "0.30", "50%", "ALERT"):
        assert piece in text, piece


def test_volume_spike_alerts_and_zero_history_is_handled():
    assert volume_report(3100, [2000] * 3, tolerance=0.5).alert
    empty_history = volume_report(5, [0, 0], tolerance=0.5)
    assert empty_history.ratio is None and empty_history.alert
    assert not volume_report(0, [0, 0], tolerance=0.5).alert


def test_volume_rejects_bad_input():
    with pytest.raises(ConfigError):
        volume_report(-1, [10], tolerance=0.5)
    with pytest.raises(ConfigError):
        volume_report(1, [10], tolerance=0)


def test_throughput_guards_zero_duration():
    assert throughput(1000, 2.0) == pytest.approx(500.0)
    assert throughput(1000, 0.0) == 0.0
