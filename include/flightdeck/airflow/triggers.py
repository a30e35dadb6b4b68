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


class MetricGateTrigger(BaseTrigger):
    """Looks at a rollout step's metrics every `look_seconds` until its gate decides.

    Runs in the triggerer, so a step that bakes for an hour holds no worker slot. Each look
    reads the baseline's and the candidate's windows since the step began from the metric
    source and asks `flightdeck.delivery.gates`; it fires on "pass", "fail" or
    "inconclusive", or with "error" when the source stayed unreachable past the step's
    maximum duration. Every argument is JSON-safe: the trigger is stored in Airflow's database.
    """

    def __init__(self, *, source: dict, selector: dict, since: dict, gates: dict, alpha: float,
                 started_at: float, bake_seconds: float, max_seconds: float, final: bool,
                 look_seconds: float, fixed_baseline: dict | None = None) -> None:
        super().__init__()
        self.source = source
        self.selector = selector
        self.since = since
        self.gates = gates
        self.alpha = alpha
        self.started_at = started_at
        self.bake_seconds = bake_seconds
        self.max_seconds = max_seconds
        self.final = final
        self.look_seconds = look_seconds
        self.fixed_baseline = fixed_baseline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}",
                {"source": self.source, "selector": self.selector, "since": self.since, "gates": self.gates,
                 "alpha": self.alpha, "started_at": self.started_at, "bake_seconds": self.bake_seconds,
                 "max_seconds": self.max_seconds, "final": self.final, "look_seconds": self.look_seconds,
                 "fixed_baseline": self.fixed_baseline})

    def look(self) -> dict[str, Any]:
        """One look: the gate report and the decision, as a JSON-safe dict."""
        from flightdeck.delivery.gating import look_once

        return look_once(self.source, self.selector, self.since, self.gates, self.alpha,
                         elapsed_s=time.time() - self.started_at, bake_s=self.bake_seconds,
                         max_s=self.max_seconds, final=self.final, fixed_baseline=self.fixed_baseline)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from flightdeck.errors import FlightdeckError

        last_error = None
        while True:
            try:
                outcome = await asyncio.to_thread(self.look)
            except FlightdeckError as exc:  # source down: keep looking until the step's deadline
                last_error = str(exc)
                if time.time() - self.started_at >= self.max_seconds:
                    yield TriggerEvent({"decision": "error", "reason": last_error})
                    return
            else:
                if outcome["decision"] != "wait":
                    yield TriggerEvent(outcome)
                    return
            await asyncio.sleep(self.look_seconds)
