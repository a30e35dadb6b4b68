"""Validate a day's raw input before scoring; quarantine what fails, with reasons.

Nothing is dropped silently: every row that breaks the Great Expectations suite is written
to `quarantine/ds=…/rows.parquet` with its reasons, and a file that cannot be read at all
is copied whole to `quarantine/ds=…/files/` with the error. The scoring step then skips
exactly those rows (by file and position) and scores the rest.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from flightdeck.data.expectations import validate_raw
from flightdeck.data.layout import data_files, partition_path
from flightdeck.data.partitions import staged_partition, write_parquet
from flightdeck.errors import FlightdeckError, MissingPartitionError

REASON = "quarantine_reason"
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"


class TooManyBadRowsError(FlightdeckError):
    """More of the day's input failed validation than the configured threshold allows."""


@dataclass(frozen=True)
class InputValidation:
    """What validation found in one day's input, and which rows scoring must skip."""

    ds: str
    files: list[str]
    rows: int
    bad_rows: int
    estimated_unreadable_rows: int
    unreadable: dict[str, str] = field(default_factory=dict)
    exclude_rows: dict[str, list[int]] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    summary: str = ""

    @property
    def valid_rows(self) -> int:
        return self.rows - self.bad_rows

    @property
    def bad_fraction(self) -> float:
        total = self.rows + self.estimated_unreadable_rows
        return 1.0 if total == 0 else (self.bad_rows + self.estimated_unreadable_rows) / total

    def to_dict(self) -> dict:
        return {**asdict(self), "valid_rows": self.valid_rows, "bad_fraction": self.bad_fraction}


def input_files(raw_root: Path, ds: date | str) -> list[Path]:
    """The day's visible parquet files; MissingPartitionError when the day has none."""
    folder = partition_path(raw_root, ds)
    files = data_files(folder)
    if not files:
        raise MissingPartitionError(str(raw_root), [folder.name])
    return files


def validate_input_partition(raw_root: Path, ds: date | str, quarantine_root: Path,
                             threshold: float) -> InputValidation:
    """Validate every file of the day, write the quarantine partition, enforce the threshold.

    The quarantine partition is rewritten on every run (empty when nothing was bad), so a
    re-run never leaves yesterday's verdict behind.

    Raises:
        MissingPartitionError: the day has no input.
        TooManyBadRowsError: the bad fraction passes `threshold` (quarantine is written first).
    """
    files = input_files(raw_root, ds)
    ds = partition_path(raw_root, ds).name.removeprefix("ds=")
    frames, unreadable = [], {}
    for path in files:
        try:
            frames.append((path.name, pq.read_table(path).to_pandas()))
        except Exception as exc:  # any reader error means the whole file is unusable
            unreadable[path.name] = f"unreadable parquet: {type(exc).__name__}: {exc}"

    readable_rows = sum(len(frame) for _, frame in frames)
    # An unreadable file counts as an average file of the day (all of it, if none is readable).
    estimated = (readable_rows // len(frames) if frames else 1) * len(unreadable)
    bad, failures, summary = pd.DataFrame(), [], "no readable file"
    exclude: dict[str, list[int]] = {}
    if frames:
        # One validation over the whole day, so duplicated ids across files are caught too.
        combined = pd.concat([frame for _, frame in frames], ignore_index=True)
        origin = [(name, row) for name, frame in frames for row in range(len(frame))]
        report = validate_raw(combined, name=f"input ds={ds}")
        positions = sorted(report.bad_rows)
        bad = combined.iloc[positions].copy()
        bad[REASON] = ["; ".join(report.bad_rows[p]) for p in positions]
        bad[SOURCE_FILE] = [origin[p][0] for p in positions]
        bad[SOURCE_ROW] = [origin[p][1] for p in positions]
        for p in positions:
            exclude.setdefault(origin[p][0], []).append(origin[p][1])
        failures = [asdict(f) for f in report.failures]
        summary = report.summary()

    result = InputValidation(ds=ds, files=[str(p) for p in files if p.name not in unreadable],
                             rows=readable_rows, bad_rows=len(bad), estimated_unreadable_rows=estimated,
                             unreadable=unreadable, exclude_rows=exclude, failures=failures, summary=summary)
    _write_quarantine(quarantine_root, ds, bad, {p.name: p for p in files}, result)
    if result.bad_fraction > threshold:
        names = ", ".join(sorted({f["expectation"] for f in failures} | ({"unreadable file"} if unreadable else set())))
        raise TooManyBadRowsError(
            f"ds={ds}: {result.bad_fraction:.1%} of input is bad, above the {threshold:.1%} threshold "
            f"(failing checks: {names}). Quarantined rows and files are in {partition_path(quarantine_root, ds)}. "
            f"Fix the upstream data and re-run the day, or raise the threshold for this run.\n{summary}")
    return result


def _write_quarantine(root: Path, ds: str, bad: pd.DataFrame, paths: dict[str, Path],
                      result: InputValidation) -> None:
    with staged_partition(root, ds) as staging:
        if not bad.empty:
            # Mixed types (a numeric column sent as text) are kept as text, exactly as received.
            write_parquet(bad.astype({c: str for c in bad.columns if bad[c].dtype == object}), staging / "rows.parquet")
        if result.unreadable:
            (staging / "files").mkdir()
            for name in result.unreadable:
                shutil.copy2(paths[name], staging / "files" / name)
        (staging / "summary.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))

