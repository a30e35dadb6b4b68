"""The raw-data contract and that generated clean data honours it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest

from flightdeck.data import schema
from flightdeck.data.generator import generate_partition

DS = date(2024, 3, 1)


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate_partition(DS, "clean", rows=2000, seed=42)


def test_feature_lists_are_rich_and_consistent():
    assert len(schema.NUMERIC_FEATURES) >= 16
    assert len(schema.CATEGORICAL_FEATURES) >= 5
    assert len(schema.FEATURES) >= 21
    assert schema.FEATURES == schema.NUMERIC_FEATURES + schema.CATEGORICAL_FEATURES
    assert len(set(schema.FEATURES)) == len(schema.FEATURES)
    assert set(schema.NUMERIC_RANGES) == set(schema.NUMERIC_FEATURES)
    assert set(schema.CATEGORY_VALUES) == set(schema.CATEGORICAL_FEATURES)
    assert all(low < high for low, high in schema.NUMERIC_RANGES.values())
    assert all(len(values) >= 2 for values in schema.CATEGORY_VALUES.values())
    for name in ("age", "annual_income", "credit_score", "debt_to_income", "utilization"):
        assert name in schema.NUMERIC_FEATURES


def test_raw_columns_order():
    assert schema.RAW_COLUMNS[:2] == (schema.ENTITY_ID, schema.EVENT_TIME)
    assert schema.RAW_COLUMNS[2:-2] == schema.FEATURES
    assert schema.RAW_COLUMNS[-2:] == (schema.LABEL, schema.LABEL_TIME)
    assert schema.DS not in schema.RAW_COLUMNS  # the partition key lives in the folder name


def test_clean_dtypes(clean):
    assert tuple(clean.columns) == schema.RAW_COLUMNS
    for column in schema.NUMERIC_FEATURES:
        assert clean[column].dtype == "float64", column
    for column in (*schema.CATEGORICAL_FEATURES, schema.ENTITY_ID):
        assert pd.api.types.is_string_dtype(clean[column]), column
    assert clean[schema.LABEL].dtype == "int64"
    for column in (schema.EVENT_TIME, schema.LABEL_TIME):
        assert isinstance(clean[column].dtype, pd.DatetimeTZDtype)
        assert str(clean[column].dt.tz) == "UTC"


def test_clean_values_within_contract(clean):
    assert not clean.isna().any().any()
    for column, (low, high) in schema.NUMERIC_RANGES.items():
        assert clean[column].between(low, high).all(), column
    for column, allowed in schema.CATEGORY_VALUES.items():
        assert set(clean[column]) <= set(allowed), column
    assert set(clean[schema.LABEL]) == {0, 1}


def test_ids_unique_and_well_formed(clean):
    ids = clean[schema.ENTITY_ID]
    assert ids.is_unique
    assert all(re.fullmatch(r"C\d{10}", i) for i in ids)


def test_event_times_inside_day_and_labels_arrive_7_to_60_days_later(clean):
    start = pd.Timestamp(datetime(2024, 3, 1, tzinfo=UTC))
    event = clean[schema.EVENT_TIME]
    assert (event >= start).all() and (event < start + timedelta(days=1)).all()
    delay = clean[schema.LABEL_TIME] - event
    assert (delay >= timedelta(days=7)).all() and (delay <= timedelta(days=60)).all()
    # The delay spreads over the window rather than being one constant.
    assert delay.dt.days.nunique() > 40
