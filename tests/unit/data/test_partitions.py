"""The one partition reader/writer: layout, atomic replacement, crash leftovers, windows."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from flightdeck.data import partitions
from flightdeck.data.generator import generate_partition
from flightdeck.data.partitions import (
    list_partitions,
    partition_path,
    read_partition,
    read_window,
    write_partition_atomically,
)
from flightdeck.data.schema import DS, ENTITY_ID
from flightdeck.errors import ConfigError, MissingPartitionError

DAY = date(2024, 4, 2)


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_partition_path(tmp_path):
    assert partition_path(tmp_path, date(2024, 1, 5)) == tmp_path / "ds=2024-01-05"
    assert partition_path(tmp_path, "2024-01-05") == tmp_path / "ds=2024-01-05"


@pytest.mark.parametrize("scenario", ["clean", "corrupt"])
def test_round_trip_preserves_values_and_dtypes(tmp_path, scenario):
    df = generate_partition(DAY, scenario, rows=300)
    folder = write_partition_atomically(df, tmp_path, DAY)
    assert folder == partition_path(tmp_path, DAY)
    back = read_partition(tmp_path, DAY)
    pd.testing.assert_frame_equal(back, df)
    assert back["annual_income"].dtype == df["annual_income"].dtype  # text in corrupt data
    assert str(back["event_time"].dt.tz) == "UTC"


def test_rewrite_replaces_the_partition_with_one_file_set(tmp_path):
    old = generate_partition(DAY, rows=100, seed=1)
    new = generate_partition(DAY, rows=80, seed=2)
    write_partition_atomically(old, tmp_path, DAY, filename="part-old.parquet")
    write_partition_atomically(new, tmp_path, DAY, filename="part-0.parquet")
    assert _entries(partition_path(tmp_path, DAY)) == ["part-0.parquet"]
    # Only the partition and its writer lock remain: no staging or retired folders.
    assert _entries(tmp_path) == [".ds=2024-04-02.lock", "ds=2024-04-02"]
    pd.testing.assert_frame_equal(read_partition(tmp_path, DAY), new)


def test_rewrite_without_atomic_exchange_still_replaces(tmp_path, monkeypatch):
    monkeypatch.setattr(partitions, "_exchange", lambda a, b: False)
    write_partition_atomically(generate_partition(DAY, rows=50, seed=1), tmp_path, DAY)
    new = generate_partition(DAY, rows=60, seed=2)
    write_partition_atomically(new, tmp_path, DAY)
    assert _entries(tmp_path) == [".ds=2024-04-02.lock", "ds=2024-04-02"]
    pd.testing.assert_frame_equal(read_partition(tmp_path, DAY), new)


def test_readers_see_old_or_new_never_a_mixture(tmp_path):
    versions = [generate_partition(DAY, rows=400, seed=s) for s in (1, 2)]
    first_ids = {v[ENTITY_ID].iat[0]: v for v in versions}
    write_partition_atomically(versions[0], tmp_path, DAY)
    stop, seen, errors = threading.Event(), [], []

    def reader() -> None:
        while not stop.is_set():
            try:
                got = read_partition(tmp_path, DAY)
                pd.testing.assert_frame_equal(got, first_ids[got[ENTITY_ID].iat[0]])
                seen.append(got[ENTITY_ID].iat[0])
            except Exception as exc:  # noqa: BLE001 - any error is a failure of atomicity
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(40):
        write_partition_atomically(versions[(i + 1) % 2], tmp_path, DAY)
    stop.set()
    thread.join()
    assert not errors
    assert len(seen) > 10 and len(set(seen)) == 2


def test_stale_temp_dir_is_ignored_then_cleaned_up(tmp_path):
    df = generate_partition(DAY, rows=50)
    write_partition_atomically(df, tmp_path, DAY)
    # A writer crashed half-way: a hidden staging folder with a truncated file.
    stale = tmp_path / ".ds=2024-04-03.tmp-deadbeef"
    stale.mkdir()
    (stale / "part-0.parquet").write_bytes(b"PAR1 truncated")
    (tmp_path / "notes").mkdir()  # not a partition either
    assert list_partitions(tmp_path) == [DAY]
    with pytest.raises(MissingPartitionError):
        read_partition(tmp_path, date(2024, 4, 3))

    write_partition_atomically(df, tmp_path, date(2024, 4, 3))
    assert not stale.exists()
    assert list_partitions(tmp_path) == [DAY, date(2024, 4, 3)]


def test_list_partitions_sorted_and_empty_for_missing_root(tmp_path):
    assert list_partitions(tmp_path / "nope") == []
    for d in (date(2024, 1, 3), date(2023, 12, 31), date(2024, 1, 1)):
        write_partition_atomically(generate_partition(d, rows=10), tmp_path, d)
    assert list_partitions(tmp_path) == [date(2023, 12, 31), date(2024, 1, 1), date(2024, 1, 3)]


def test_read_window_concatenates_and_adds_ds_strings(tmp_path):
    days = [date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)]
    frames = [generate_partition(d, rows=20) for d in days]
    for d, f in zip(days, frames, strict=True):
        write_partition_atomically(f, tmp_path, d)
    window = read_window(tmp_path, date(2024, 1, 2), "2024-01-03")
    assert list(window[DS].unique()) == ["2024-01-02", "2024-01-03"]
    assert pd.api.types.is_string_dtype(window[DS])
    assert list(window.index) == list(range(40))
    pd.testing.assert_frame_equal(window.drop(columns=DS), pd.concat(frames[1:], ignore_index=True))


def test_read_window_names_every_missing_day(tmp_path):
    for d in (date(2024, 1, 1), date(2024, 1, 3)):
        write_partition_atomically(generate_partition(d, rows=10), tmp_path, d)
    with pytest.raises(MissingPartitionError) as err:
        read_window(tmp_path, date(2024, 1, 1), date(2024, 1, 5))
    assert err.value.missing == ["2024-01-02", "2024-01-04", "2024-01-05"]
    assert err.value.root == str(tmp_path)
    assert "2024-01-04" in str(err.value)


def test_read_partition_missing_and_bad_window(tmp_path):
    with pytest.raises(MissingPartitionError) as err:
        read_partition(tmp_path, DAY)
    assert err.value.missing == ["2024-04-02"]
    with pytest.raises(ConfigError) as cfg:
        read_window(tmp_path, date(2024, 1, 2), date(2024, 1, 1))
    assert cfg.value.name == "start"


# -- a writer that dies or fails during the two-rename swap (no RENAME_EXCHANGE) ------------------
_CRASHING_WRITER = """
import os, sys
import pandas as pd
from flightdeck.data import partitions

root, crash_at = sys.argv[1], int(sys.argv[2])
partitions._exchange = lambda a, b: False
calls = 0
real_rename = os.rename

def rename(src, dst):
    global calls
    calls += 1
    if calls == crash_at:
        os._exit(9)  # dies here: no cleanup, no finally
    real_rename(src, dst)

partitions.os.rename = rename
partitions.write_partition_atomically(pd.read_parquet(sys.argv[3]), root, "2024-04-02")
os._exit(0 if crash_at > calls else 1)
"""


@pytest.mark.parametrize("crash_at, survivor, first_reader", [
    (1, "old", "read_partition"), (2, "old", "read_partition"), (3, "new", "read_partition"),
    (3, "new", "list_partitions"), (3, "new", "read_window"), (4, "new", "read_partition")])
def test_a_writer_killed_at_any_step_of_the_swap_leaves_a_complete_copy_that_is_restored(
        tmp_path, crash_at, survivor, first_reader):
    import subprocess
    import sys

    root = tmp_path / "root"
    old, new = generate_partition(DAY, rows=50, seed=1), generate_partition(DAY, rows=60, seed=2)
    write_partition_atomically(old, root, DAY)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    child = subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(root), str(crash_at),
                            str(tmp_path / "new.parquet")], capture_output=True, text=True, timeout=60)
    # 1 renames staging to ready, 2 retires the old folder, 3 moves the new one in; 4: no crash
    assert child.returncode == (9 if crash_at <= 3 else 0), child.stderr[-2000:]
    expected = {"old": old, "new": new}[survivor]
    # whichever reader comes first finds (and if need be restores) the newest complete copy ...
    if first_reader == "list_partitions":
        assert list_partitions(root) == [DAY]
    elif first_reader == "read_window":
        pd.testing.assert_frame_equal(read_window(root, DAY, DAY).drop(columns=[DS]), expected)
    pd.testing.assert_frame_equal(read_partition(root, DAY), expected)
    assert list_partitions(root) == [DAY]
    # ... and the next writer replaces it and leaves nothing behind
    newest = generate_partition(DAY, rows=70, seed=3)
    write_partition_atomically(newest, root, DAY)
    assert _entries(root) == [".ds=2024-04-02.lock", "ds=2024-04-02"]
    pd.testing.assert_frame_equal(read_partition(root, DAY), newest)


def test_the_next_writer_restores_before_it_writes(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "root"
    old, new = generate_partition(DAY, rows=50, seed=1), generate_partition(DAY, rows=60, seed=2)
    write_partition_atomically(old, root, DAY)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(root), "3", str(tmp_path / "new.parquet")],
                   capture_output=True, timeout=60)
    assert not partition_path(root, DAY).exists()  # killed between the two renames
    with pytest.raises(RuntimeError):  # a writer that fails: the restored copy must stay
        with partitions.staged_partition(root, DAY):
            raise RuntimeError("task failed")
    pd.testing.assert_frame_equal(read_partition(root, DAY), new)
    assert _entries(root) == [".ds=2024-04-02.lock", "ds=2024-04-02"]


def test_an_error_between_the_two_renames_keeps_a_complete_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(partitions, "_exchange", lambda a, b: False)
    old, new = generate_partition(DAY, rows=50, seed=1), generate_partition(DAY, rows=60, seed=2)
    write_partition_atomically(old, tmp_path, DAY)
    real_rename, calls = partitions.os.rename, []

    def failing_rename(src, dst):
        calls.append(Path(dst).name)
        if Path(dst).name == "ds=2024-04-02" and len(calls) == 3:
            raise OSError(5, "injected I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(partitions.os, "rename", failing_rename)
    with pytest.raises(OSError, match="injected"):
        write_partition_atomically(new, tmp_path, DAY)
    monkeypatch.setattr(partitions.os, "rename", real_rename)
    got = read_partition(tmp_path, DAY)
    assert len(got) in (50, 60)  # a complete copy, whichever the failed writer could restore
    pd.testing.assert_frame_equal(got, new if len(got) == 60 else old)
    assert _entries(tmp_path) == [".ds=2024-04-02.lock", "ds=2024-04-02"]
