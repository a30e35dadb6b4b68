"""The GX suite and the report that names failures and bad rows."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from flightdeck.data.expectations import (
    SUITE_NAME,
    ExpectationFailure,
    ValidationReport,
    build_raw_suite,
    validate_raw,
)
from flightdeck.data.generator import WRONG_TYPE_COLUMN, generate_partition, injected_defects
from flightdeck.data.schema import (
    CATEGORICAL_FEATURES,
    ENTITY_ID,
    FEATURES,
    NUMERIC_FEATURES,
    RAW_COLUMNS,
)
from flightdeck.errors import DataValidationError

DAY = date(2024, 7, 1)
NOT_NULL = "expect_column_values_to_not_be_null"
IN_TYPES = "expect_column_values_to_be_in_type_list"
BETWEEN = "expect_column_values_to_be_between"
UNIQUE = "expect_column_values_to_be_unique"


@pytest.fixture(scope="module")
def clean_report() -> ValidationReport:
    return validate_raw(generate_partition(DAY), "raw ds=2024-07-01")


@pytest.fixture(scope="module")
def corrupt_report() -> ValidationReport:
    return validate_raw(generate_partition(DAY, "corrupt"), "raw ds=2024-07-01 corrupt")


@pytest.fixture(scope="module")
def plan() -> dict[int, str]:
    return injected_defects(DAY)


def _failures(report: ValidationReport, kind: str) -> dict[str | None, ExpectationFailure]:
    return {f.column: f for f in report.failures if f.expectation == kind}


def test_suite_covers_the_contract():
    suite = build_raw_suite()
    assert suite.name == SUITE_NAME == "raw_features"
    by_type: dict[str, set] = {}
    for e in suite.expectations:
        by_type.setdefault(e.expectation_type, set()).add(getattr(e, "column", None))
    assert by_type[NOT_NULL] == {ENTITY_ID, "event_time", *FEATURES}
    assert by_type[IN_TYPES] == set(NUMERIC_FEATURES)
    assert by_type[BETWEEN] == set(NUMERIC_FEATURES)
    assert by_type["expect_column_values_to_be_in_set"] == {"label", *CATEGORICAL_FEATURES}
    assert by_type[UNIQUE] == {ENTITY_ID}
    assert "expect_column_pair_values_a_to_be_greater_than_b" in by_type
    assert "expect_table_row_count_to_be_between" in by_type
    (column_set,) = [
        e for e in suite.expectations if e.expectation_type == "expect_table_columns_to_match_set"
    ]
    assert set(column_set.column_set) == set(RAW_COLUMNS) and column_set.exact_match


def test_clean_partition_passes(clean_report):
    assert clean_report.success
    assert clean_report.failures == [] and clean_report.bad_rows == {}
    assert clean_report.n_rows == 2000 and clean_report.n_expectations == len(
        build_raw_suite().expectations
    )
    assert clean_report.bad_fraction == 0.0
    assert "passed" in clean_report.summary()


@pytest.mark.parametrize("scenario", ["feature_drift", "label_drift"])
def test_drifted_data_is_still_valid(scenario):
    # Drift is the monitor's business; the raw contract must not reject it.
    assert validate_raw(generate_partition(DAY, scenario, rows=500), scenario).success


def test_corrupt_partition_fails_each_kind_with_counts(corrupt_report, plan):
    assert not corrupt_report.success
    kinds = pd.Series(plan).value_counts()
    unique = _failures(corrupt_report, UNIQUE)[ENTITY_ID]
    assert unique.unexpected_count == kinds["duplicate_id"]
    wrong_type = _failures(corrupt_report, IN_TYPES)
    assert set(wrong_type) == {WRONG_TYPE_COLUMN}
    assert wrong_type[WRONG_TYPE_COLUMN].unexpected_count == kinds["wrong_type"]
    nulls = _failures(corrupt_report, NOT_NULL)
    assert len(nulls) >= 5 and all(f.unexpected_count >= 1 for f in nulls.values())
    assert sum(f.unexpected_count for f in nulls.values()) >= kinds["null"]
    ranges = _failures(corrupt_report, BETWEEN)
    assert {"age", "credit_score", "utilization"} & set(ranges)
    assert all(f.unexpected_count >= 1 and "out of range" in f.detail for f in ranges.values())


def test_range_check_runs_on_parsable_values_of_a_text_column(corrupt_report, plan):
    data = generate_partition(DAY, "corrupt")
    negative = pd.to_numeric(data[WRONG_TYPE_COLUMN], errors="coerce") < 0
    assert negative.any()
    failure = _failures(corrupt_report, BETWEEN)[WRONG_TYPE_COLUMN]
    assert failure.unexpected_count == negative.sum()
    for pos in np.flatnonzero(negative):
        assert any(
            r.startswith(f"{WRONG_TYPE_COLUMN}: out of range") for r in corrupt_report.bad_rows[pos]
        )


def test_bad_rows_are_exactly_the_injected_rows(corrupt_report, plan):
    assert set(corrupt_report.bad_rows) == set(plan)
    assert corrupt_report.bad_fraction == pytest.approx(len(plan) / 2000)
    expected_reason = {
        "null": ": missing",
        "wrong_type": f"{WRONG_TYPE_COLUMN}: not a number (",
        "duplicate_id": f"{ENTITY_ID}: duplicated",
        "out_of_range": ": ",
    }
    for pos, kind in plan.items():
        reasons = corrupt_report.bad_rows[pos]
        assert reasons and any(expected_reason[kind] in r for r in reasons), (pos, kind, reasons)


def test_summary_names_the_data_set_and_each_failure(corrupt_report):
    text = corrupt_report.summary()
    assert text.splitlines()[0].startswith("raw ds=2024-07-01 corrupt")
    assert (
        f"{len(corrupt_report.failures)} of {corrupt_report.n_expectations} expectations failed"
        in text
    )
    lines = text.splitlines()[1:]
    assert len(lines) == len(corrupt_report.failures)
    for failure, line in zip(corrupt_report.failures, lines, strict=True):
        assert failure.expectation in line and f"[{failure.column}]" in line
        assert f"{failure.unexpected_count} bad row" in line
    assert str(DataValidationError(corrupt_report)) == text


def test_positions_not_index_labels_are_reported():
    df = generate_partition(DAY, rows=200)
    df.loc[df.index[5], "age"] = -1.0
    df.index = pd.Index(range(1000, 1200))
    report = validate_raw(df, "shifted index")
    assert report.bad_rows == {5: ["age: out of range [18, 100] (-1)"]}


def test_object_column_mixing_numbers_and_text():
    # What read_window returns when a corrupt day is concatenated with clean ones.
    df = generate_partition(DAY, rows=100)
    income = df[WRONG_TYPE_COLUMN].astype(object)
    income.iat[7], income.iat[9] = "n/a", "-12"
    report = validate_raw(df.assign(**{WRONG_TYPE_COLUMN: income}), "mixed")
    assert report.bad_rows == {
        7: [f"{WRONG_TYPE_COLUMN}: not a number ('n/a')"],
        9: [f"{WRONG_TYPE_COLUMN}: out of range [0, 5000000] (-12)"],
    }


def test_missing_column_and_empty_frame_are_table_failures():
    df = generate_partition(DAY, rows=20).drop(columns=["age"])
    report = validate_raw(df, "no age")
    (failure,) = report.failures
    assert failure.expectation == "expect_table_columns_to_match_set" and "age" in failure.detail
    empty = validate_raw(generate_partition(DAY, rows=20).iloc[:0], "empty")
    assert "expect_table_row_count_to_be_between" in {f.expectation for f in empty.failures}
