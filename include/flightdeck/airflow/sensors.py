"""Sensors that wait without holding a worker slot (they defer to a trigger)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from flightdeck.airflow.triggers import PartitionTrigger, partition_ready
from flightdeck.data.layout import partition_path


class PartitionSensor(BaseSensorOperator):
    """Wait for the raw partition `root/ds=<ds>`; fail naming the path and day on timeout.

    Always deferrable: the first check runs in the worker, then the wait moves to the
    triggerer. `timeout` is the total wait in seconds.
    """

    template_fields = ("root", "ds")

    def __init__(self, *, root: str, ds: str, poll_interval: float = 60.0, **kwargs: Any) -> None:
        super().__init__(poke_interval=poll_interval, **kwargs)
        self.root = root
        self.ds = ds

    def _path(self) -> str:
        return str(partition_path(self.root, self.ds))

    def poke(self, context: Any) -> bool:
        return partition_ready(self._path())

    def execute(self, context: Any) -> str:
        if self.poke(context):
            return self._path()
        self.defer(trigger=PartitionTrigger(self._path(), time.time() + self.timeout, self.poke_interval),
                   method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> str:
        if event["status"] == "ready":
            return event["path"]
        raise AirflowFailException(
            f"input partition for ds={self.ds} not found at {event['path']} after waiting "
            f"{timedelta(seconds=self.timeout)}. Fix: land the day's data there (or generate it) "
            f"and clear this task, or score another day.")
