"""Sensors that wait without holding a worker slot (they defer to a trigger)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from flightdeck.airflow.triggers import MetricGateTrigger, PartitionTrigger, partition_ready
from flightdeck.data.layout import partition_path
from flightdeck.errors import FlightdeckError


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


class MetricGateSensor(BaseSensorOperator):
    """The metric gate of one rollout step: waits (deferred) until the gate decides.

    `rollout` is the resolved plan and `step_state` what the step's traffic task returned
    (both XComs). The window starts where the step's traffic state began, so clearing this
    task re-evaluates the same window. "fail" fails the task (and the rollback runs);
    "inconclusive" fails it too unless the plan says `on_inconclusive: ask`, in which case it
    passes with the report marked, and the approval gate becomes mandatory.
    `baseline_gates` (post-promotion bake): task ids of earlier gates whose last baseline
    window stands in for the baseline, which no longer takes traffic.
    """

    template_fields = ("rollout", "step_state")
    ui_color = "#fce8b2"

    def __init__(self, *, rollout: Any, step_state: Any, final: bool = False, bake_seconds_key: str = "bake_seconds",
                 baseline_gates: list[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", 7 * 24 * 3600)  # the trigger owns the step's deadline
        super().__init__(**kwargs)
        self.rollout = rollout
        self.step_state = step_state
        self.final = final
        self.bake_seconds_key = bake_seconds_key
        self.baseline_gates = baseline_gates or []

    def poke(self, context: Any) -> bool:  # pragma: no cover - always deferred, see execute
        return False

    def execute(self, context: Any) -> dict | None:
        from flightdeck.airflow.release import gate_trigger_arguments

        if not self.step_state.get("in_plan", True):
            self.log.info("step not in this plan: nothing to gate")
            return {"decision": "not_in_plan"}
        fixed = None
        if self.baseline_gates:
            reports = [r for r in (context["ti"].xcom_pull(task_ids=self.baseline_gates) or []) if r and
                       r.get("baseline")]
            if reports:
                fixed = reports[-1]["baseline"]
        arguments = gate_trigger_arguments(self.rollout, self.step_state, final=self.final,
                                           bake_seconds_key=self.bake_seconds_key, fixed_baseline=fixed)
        trigger = MetricGateTrigger(**arguments)
        # One look before deferring: a gate that has already decided (a re-run after the bake,
        # a canary failing at once) answers here, and a trigger that would fire within a second
        # of deferring cannot race the scheduler's bookkeeping of the deferral.
        try:
            outcome = trigger.look()
        except FlightdeckError as exc:
            self.log.warning("metric source not answering yet (%s); deferring", exc)
        else:
            if outcome["decision"] != "wait":
                return self.execute_complete(context, outcome)
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict:
        from flightdeck.airflow.release import gate_outcome

        return gate_outcome(self.rollout, event, self.log)
