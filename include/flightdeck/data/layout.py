"""Where a day's partition lives. Kept free of heavy imports: DAG files and sensors use it
at parse time."""

from __future__ import annotations

import os
from datetime import date, datetime
from pathlib import Path

from flightdeck.errors import ConfigError


def as_date(ds: date | str) -> date:
    """A date from a date, a datetime (its day) or Airflow's "YYYY-MM-DD" `ds` string."""
    if isinstance(ds, datetime):
        return ds.date()
    if isinstance(ds, str):
        try:
            return date.fromisoformat(ds)
        except ValueError as exc:
            raise ConfigError("ds", f"{ds!r} is not a date", "pass a date or 'YYYY-MM-DD'") from exc
    return ds


def partition_path(root: str | os.PathLike[str], ds: date | str) -> Path:
    """The folder of one day's partition: `root/ds=YYYY-MM-DD`."""
    return Path(root) / f"ds={as_date(ds):%Y-%m-%d}"


def is_data_file(name: str) -> bool:
    """A partition's parquet file; dot- and underscore-files are writers' temporaries and markers."""
    return name.endswith(".parquet") and not name.startswith((".", "_"))


def data_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The visible parquet files of a partition folder, sorted ([] when it does not exist)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_data_file(p.name)) if folder.is_dir() else []
