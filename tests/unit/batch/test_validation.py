"""Input validation and quarantine of one day: nothing is dropped without a reason."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from flightdeck.batch.validation import (
    REASON,
    SOURCE_FILE,
    SOURCE_ROW,
    TooManyBadRowsError,
    validate_input_partition,
)
from flightdeck.data.generator import generate_partition, injected_defects
from flightdeck.data.partitions import partition_path, write_parquet, write_partition_atomically
from flightdeck.errors import MissingPartitionError

DS = "2026-02-01"


@pytest.fixture
def roots(tmp_path):
    return tmp_path / "raw", tmp_path / "quarantine"


def _quarantined(quarantine, ds=DS) -> pd.DataFrame:
    path = partition_path(quarantine, ds) / "rows.parquet"
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def test_clean_day_passes_and_leaves_an_empty_quarantine(roots):
    raw, quarantine = roots
    write_partition_atomically(generate_partition(DS, rows=500), raw, DS)
    result = validate_input_partition(raw, DS, quarantine, threshold=0.05)
    assert (result.rows, result.bad_rows, result.bad_fraction) == (500, 0, 0.0)
    assert result.exclude_rows == {} and _quarantined(quarantine).empty
    assert json.loads((partition_path(quarantine, DS) / "summary.json").read_text())["valid_rows"] == 500


def test_corrupt_rows_are_quarantined_with_reasons_and_excluded(roots):
    raw, quarantine = roots
    write_partition_atomically(generate_partition(DS, "corrupt", rows=1000), raw, DS)
    defects = injected_defects(DS, rows=1000)
    result = validate_input_partition(raw, DS, quarantine, threshold=0.10)
    assert result.exclude_rows == {"part-0.parquet": sorted(defects)}
    assert result.valid_rows == 1000 - len(defects)
    rows = _quarantined(quarantine)
    assert sorted(rows[SOURCE_ROW]) == sorted(defects)
    assert set(rows[SOURCE_FILE]) == {"part-0.parquet"}
    assert rows[REASON].str.len().gt(0).all()
    assert rows[REASON].str.contains("duplicated").any() and rows[REASON].str.contains("out of range|not a number").any()


def test_too_many_bad_rows_fails_naming_the_checks_after_quarantining(roots):
    raw, quarantine = roots
    write_partition_atomically(generate_partition(DS, "corrupt", rows=1000, corrupt_fraction=0.2), raw, DS)
    with pytest.raises(TooManyBadRowsError) as info:
        validate_input_partition(raw, DS, quarantine, threshold=0.05)
    message = str(info.value)
    assert "above the 5.0% threshold" in message
    assert "expect_column_values_to_not_be_null" in message and "expect_column_values_to_be_unique" in message
    assert len(_quarantined(quarantine)) > 150, "the evidence is kept even though the run fails"


def test_unreadable_file_is_quarantined_whole_and_the_rest_still_counts(roots):
    raw, quarantine = roots
    folder = write_partition_atomically(generate_partition(DS, rows=400), raw, DS)
    write_parquet(generate_partition(DS, rows=400, seed=9), folder / "part-1.parquet")
    (folder / "part-2.parquet").write_bytes(b"PAR1 this is not parquet")
    result = validate_input_partition(raw, DS, quarantine, threshold=0.5)
    assert set(result.unreadable) == {"part-2.parquet"} and "unreadable parquet" in result.unreadable["part-2.parquet"]
    assert [p.rsplit("/", 1)[-1] for p in result.files] == ["part-0.parquet", "part-1.parquet"]
    assert result.estimated_unreadable_rows == 400
    assert result.bad_fraction == pytest.approx(400 / 1200)
    assert (partition_path(quarantine, DS) / "files" / "part-2.parquet").read_bytes() == b"PAR1 this is not parquet"
    with pytest.raises(TooManyBadRowsError, match="unreadable file"):
        validate_input_partition(raw, DS, quarantine, threshold=0.05)


def test_duplicates_across_files_of_one_day_are_caught(roots):
    raw, quarantine = roots
    day = generate_partition(DS, rows=300)
    folder = write_partition_atomically(day, raw, DS)
    write_parquet(day.head(10), folder / "part-1.parquet")
    result = validate_input_partition(raw, DS, quarantine, threshold=0.5)
    assert result.exclude_rows == {"part-1.parquet": list(range(10))}


def test_missing_day_names_the_partition(roots):
    raw, quarantine = roots
    with pytest.raises(MissingPartitionError, match=f"ds={DS}"):
        validate_input_partition(raw, DS, quarantine, threshold=0.05)


def test_rerun_replaces_yesterdays_verdict(roots):
    raw, quarantine = roots
    write_partition_atomically(generate_partition(DS, "corrupt", rows=500), raw, DS)
    validate_input_partition(raw, DS, quarantine, threshold=0.5)
    assert not _quarantined(quarantine).empty
    write_partition_atomically(generate_partition(DS, rows=500), raw, DS)
    validate_input_partition(raw, DS, quarantine, threshold=0.5)
    assert _quarantined(quarantine).empty
