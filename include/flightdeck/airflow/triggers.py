"""Triggers run in the triggerer's event loop while a deferred task holds no worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from flightdeck.data.layout import data_files


def partition_ready(path: str | Path) -> bool:
    """A partition is ready once its folder holds a visible parquet file.

    Partitions are swapped in whole (see flightdeck.data.partitions), so a visible file
    means a complete day, never one being written.
    """
    return bool(data_files(path))


class PartitionTrigger(BaseTrigger):
    """Fires when `path` is ready, or with status "timeout" once `deadline` (epoch s) passes.

    The trigger owns the deadline, rather than Airflow's deferral timeout, so the sensor can
    fail with a message that names the path and the day instead of a generic timeout.
    """

    def __init__(self, path: str, deadline: float, poll_interval: float = 60.0) -> None:
        super().__init__()
        self.path = path
        self.deadline = deadline
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"path": self.path, "deadline": self.deadline, "poll_interval": self.poll_interval})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            if await asyncio.to_thread(partition_ready, self.path):
                yield TriggerEvent({"status": "ready", "path": self.path})
                return
            if time.time() >= self.deadline:
                yield TriggerEvent({"status": "timeout", "path": self.path})
                return
            await asyncio.sleep(min(self.poll_interval, max(self.deadline - time.time(), 0.0)))
