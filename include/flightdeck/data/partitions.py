"""The one partition reader/writer: daily parquet folders `root/ds=YYYY-MM-DD/`.

Raw data, predictions and monitoring outputs all use it. Writes are atomic per day: the
new folder is written and fsynced beside the target, then swapped in with a rename, so a
reader sees the old complete partition or the new one, never a partial one or a mixture.
Re-writing a day replaces it (idempotent tasks, backfills).

Names starting with "." or "_" are never partitions: writers keep their staging folders
(`.ds=…tmp-…`) and lock files there, and readers skip them.

Without an atomic exchange (renameat2 RENAME_EXCHANGE) a swap is three renames: the complete,
fsynced staging folder becomes `.ds=….new-…` (ready), the old partition `.ds=….old-…`, then the
ready folder `ds=…`. A writer killed or failing in between leaves no `ds=…` folder for a moment;
the next writer of that day, or a reader that finds it missing, restores the newest complete copy
(ready, else old) under the writer lock before anything else (`_recover`).

`read_window` adds a `ds` column of strings "YYYY-MM-DD" — the same text as Airflow's
`{{ ds }}` and the folder name, so it can be compared and grouped without conversions.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import functools
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flightdeck.data.layout import as_date, is_data_file, partition_path
from flightdeck.data.schema import DS
from flightdeck.errors import ConfigError, MissingPartitionError

_PARTITION_NAME = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")
_SWAPPING = re.compile(r"\.(new|old)-[0-9a-f]+$")  # `.ds=….new-…` / `.ds=….old-…`: a swap under way
_READ_ATTEMPTS = 5  # a reader that loses a race with a swap retries; one swap takes ms


def write_partition_atomically(
    df: pd.DataFrame,
    root: str | os.PathLike[str],
    ds: date | str,
    filename: str = "part-0.parquet",
) -> Path:
    """Write `df` as the complete partition for `ds`, replacing any previous one atomically.

    Args:
        df: Rows of the day; its index is not stored, dtypes are.
        root: Folder holding the `ds=…` partitions (created if missing).
        ds: The day.
        filename: Parquet file name inside the partition folder.

    Returns:
        The partition folder.
    """
    with staged_partition(root, ds) as staging:
        write_parquet(df, staging / filename)
    return partition_path(root, ds)


@contextlib.contextmanager
def staged_partition(root: str | os.PathLike[str], ds: date | str) -> Iterator[Path]:
    """A private folder to fill with a day's files; on success it replaces the partition.

    Readers see the old complete partition until the block ends, then the new one; if the
    block raises (or the process dies), the partition is untouched and the folder is
    removed (or cleaned up by the next writer of that day). Files written into the folder
    by other processes (e.g. Dask workers) must be complete when the block ends.

    Yields:
        The staging folder, on the same filesystem as the partition.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    target = partition_path(root, ds)
    with _writer_lock(root, target.name):
        # Under the lock no other writer of this day is alive, so anything left beside the
        # partition belongs to a writer that crashed.
        _recover(root, target.name)
        staging = root / f".{target.name}.tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            yield staging
            for written in staging.iterdir():
                _fsync_file(written)
            _fsync_dir(staging)
            _swap_in(staging, target)
            _fsync_dir(root)
        finally:
            _recover(root, target.name)  # removes the old copy; after a failure, restores one


def list_partitions(root: str | os.PathLike[str]) -> list[date]:
    """Days that have a partition under `root`, sorted; staging and hidden folders are ignored."""
    root = Path(root)
    if not root.is_dir():
        return []
    days = []
    names = {entry.name for entry in root.iterdir()}
    for name in {_SWAPPING.sub("", n).removeprefix(".") for n in names if _SWAPPING.search(n)} - names:
        _restore_interrupted(root, name)  # a swap died between its renames
    for entry in root.iterdir():
        match = _PARTITION_NAME.match(entry.name)
        if match and entry.is_dir():
            with contextlib.suppress(ValueError):  # e.g. ds=2024-13-40: not ours
                days.append(date.fromisoformat(match.group(1)))
    return sorted(days)


def read_partition(root: str | os.PathLike[str], ds: date | str) -> pd.DataFrame:
    """Read one day's partition exactly as written (same columns and dtypes, RangeIndex).

    Raises:
        MissingPartitionError: The partition does not exist.
    """
    target = partition_path(root, ds)
    for attempt in range(_READ_ATTEMPTS):
        try:
            return _read_folder(target)
        except FileNotFoundError:
            # Either the day has no partition, or a writer swapped the folder between our
            # listing and opening a file (or, without an atomic exchange, between its
            # renames, or died there: then restore it): look again shortly; a folder missing
            # twice in a row is missing.
            if not target.is_dir() and _restore_interrupted(Path(root), target.name):
                continue
            if attempt > 0 and not target.is_dir():
                break
            time.sleep(0.02 * (attempt + 1))
    raise MissingPartitionError(str(root), [target.name.removeprefix("ds=")])


def read_window(root: str | os.PathLike[str], start: date | str, end: date | str) -> pd.DataFrame:
    """Read every day from `start` to `end` inclusive into one frame with a `ds` column.

    `ds` holds strings "YYYY-MM-DD" (overwriting any `ds` column in the files). The index
    is a fresh RangeIndex. Columns whose dtype differs between days are upcast by pandas
    (e.g. a numeric column that is text in one corrupt day becomes object).

    Raises:
        ConfigError: `start` is after `end`.
        MissingPartitionError: Any day of the window has no partition; names all of them.
    """
    days = _days(as_date(start), as_date(end))
    missing = [f"{d:%Y-%m-%d}" for d in days if not partition_path(root, d).is_dir()
               and not _restore_interrupted(Path(root), partition_path(root, d).name)]
    if missing:
        raise MissingPartitionError(str(root), missing)
    frames = []
    for day in days:
        frame = read_partition(root, day)
        frame[DS] = f"{day:%Y-%m-%d}"
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _days(start: date, end: date) -> list[date]:
    if start > end:
        raise ConfigError(
            "start", f"start {start} is after end {end}", "pass start <= end (both inclusive)"
        )
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` complete or not at all.

    Written under a hidden temporary name beside `path` (readers skip dot-files), flushed
    and fsynced, then renamed over `path`; on an exception the temporary file is removed.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex}")
    try:
        with open(partial, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write one parquet file completely or not at all (see `atomic_file`)."""
    with atomic_file(path) as fh:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), fh)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_folder(folder: Path) -> pd.DataFrame:
    # Pin the folder with a descriptor and open files relative to it: if a writer swaps
    # the partition meanwhile we still read one version only, or get FileNotFoundError.
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = sorted(
            n for n in os.listdir(dir_fd) if is_data_file(n)
        )
        if not names:
            raise FileNotFoundError(f"no parquet file in {folder}")
        tables = []
        for name in names:
            with os.fdopen(os.open(name, os.O_RDONLY, dir_fd=dir_fd), "rb") as fh:
                tables.append(pq.read_table(fh))
    finally:
        os.close(dir_fd)
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
    return table.to_pandas()


def _swap_in(staging: Path, target: Path) -> None:
    """Put the complete `staging` folder at `target`; the old version is left for `_recover`."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        return  # `staging` now holds the old version
    # No atomic exchange here: three renames (see the module docstring). Readers that hit the
    # short gap retry; after a crash in it, `_recover` finds the ready copy by its name.
    ready = target.with_name(f".{target.name}.new-{uuid.uuid4().hex}")
    os.rename(staging, ready)
    os.rename(target, target.with_name(f".{target.name}.old-{uuid.uuid4().hex}"))
    os.rename(ready, target)


def _recover(root: Path, name: str) -> None:
    """Under the writer lock: if `name` is missing, put the newest complete copy back (a ready
    new version, else the retired old one); then remove every other copy and staging folder."""
    target = root / name
    if not target.is_dir():
        ready = sorted(root.glob(f".{name}.new-*"), key=_mtime, reverse=True)
        retired = sorted(root.glob(f".{name}.old-*"), key=_mtime, reverse=True)
        for candidate in ready + retired:
            try:
                os.rename(candidate, target)
            except OSError:
                continue
            _fsync_dir(root)
            break
    for pattern in (".tmp-*", ".new-*", ".old-*"):
        for leftover in root.glob(f".{name}{pattern}"):
            shutil.rmtree(leftover, ignore_errors=True)


def _restore_interrupted(root: Path, name: str) -> bool:
    """A reader's part: when `name` is missing but a swap left copies, restore one under the
    writer lock (waiting for a live writer to finish first). True if `name` exists after."""
    if not (any(root.glob(f".{name}.new-*")) or any(root.glob(f".{name}.old-*"))):
        return False
    try:
        with _writer_lock(root, name):
            _recover(root, name)
    except OSError:  # e.g. a read-only copy of the data: nothing to restore from here
        return False
    return (root / name).is_dir()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux renameat2(RENAME_EXCHANGE); False if unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


@functools.cache
def _renameat2():
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return func


@contextlib.contextmanager
def _writer_lock(root: Path, name: str) -> Iterator[None]:
    # One writer per day at a time; the lock file stays (deleting it would race).
    with open(root / f".{name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
