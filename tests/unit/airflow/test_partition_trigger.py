import asyncio
import time

import pandas as pd

from flightdeck.airflow.triggers import PartitionTrigger, partition_ready
from flightdeck.data.partitions import partition_path, write_partition_atomically


def _first_event(trigger):
    async def run():
        async for event in trigger.run():
            return event.payload
    return asyncio.run(asyncio.wait_for(run(), timeout=10))


def test_fires_ready_once_the_partition_lands(tmp_path):
    path = partition_path(tmp_path, "2026-01-02")
    assert not partition_ready(path)
    trigger = PartitionTrigger(str(path), deadline=time.time() + 5, poll_interval=0.05)

    async def land_later():
        await asyncio.sleep(0.3)
        await asyncio.to_thread(write_partition_atomically, pd.DataFrame({"a": [1]}), tmp_path, "2026-01-02")

    async def both():
        asyncio.get_running_loop().create_task(land_later())
        async for event in trigger.run():
            return event.payload

    assert asyncio.run(both()) == {"status": "ready", "path": str(path)}


def test_times_out_with_the_path(tmp_path):
    path = str(partition_path(tmp_path, "2026-01-03"))
    started = time.time()
    assert _first_event(PartitionTrigger(path, deadline=time.time() + 0.3, poll_interval=10)) == {
        "status": "timeout", "path": path}
    assert time.time() - started < 5, "the deadline, not the poll interval, bounds the wait"


def test_serializes_to_its_own_arguments(tmp_path):
    classpath, kwargs = PartitionTrigger("p", deadline=12.5, poll_interval=3).serialize()
    assert classpath == "flightdeck.airflow.triggers.PartitionTrigger"
    assert PartitionTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_hidden_or_empty_folders_are_not_ready(tmp_path):
    folder = partition_path(tmp_path, "2026-01-04")
    folder.mkdir()
    (folder / ".part-0.parquet.partial-1").write_bytes(b"x")
    assert not partition_ready(folder)
