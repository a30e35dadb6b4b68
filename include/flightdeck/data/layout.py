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
