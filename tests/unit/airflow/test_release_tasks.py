"""The promotion DAGs' Airflow adapters: gate outcomes, trigger arguments, the trigger's loop."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from airflow.sdk.exceptions import AirflowFailException

from flightdeck.airflow import release
from flightdeck.airflow.triggers import MetricGateTrigger
from flightdeck.delivery.gates import GateSettings, evaluate
from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan
from flightdeck.delivery.window import VariantWindow
from flightdeck.errors import FlightdeckError

LOG = logging.getLogger("test")


def rollout(**plan) -> dict:
    values = {"strategy": "canary", "model_name": "m", "steps": [10, 50], **plan}
    return ResolvedRollout(RolloutPlan.parse(values), "1", "2", {"champion": "1"}).to_dict()


def event(decision: str) -> dict:
    window = VariantWindow(requests=500, latency_sum=1.0, latency_sumsq=0.01)
    report = evaluate(window, window, GateSettings(), 0.005)
    return {"decision": decision, "reason": "because", "report": report.to_dict()}


def test_a_passing_gate_returns_its_report():
    assert release.gate_outcome(rollout(), event("pass"), LOG)["decision"] == "pass"


@pytest.mark.parametrize("decision", ["fail", "error", "inconclusive"])
def test_fail_error_and_inconclusive_fail_the_task_with_the_report(decision):
    with pytest.raises(AirflowFailException, match=f"metric gate {decision}: because") as info:
        release.gate_outcome(rollout(), event(decision), LOG)
    assert "error_rate" in str(info.value)  # the markdown report rides along


def test_inconclusive_asks_a_human_when_the_plan_says_so():
    outcome = release.gate_outcome(rollout(gates={"on_inconclusive": "ask"}), event("inconclusive"), LOG)
    assert outcome["needs_human"] is True
    branch = release.choose_approval.function
    assert branch(rollout(require_approval=False), {"needs_human": True}) == "approve"
    assert branch(rollout(require_approval=False), {"needs_human": False}) == "skip_approval"
    assert branch(rollout(), {"needs_human": False}) == "approve"


def step_state(percent: float, last: bool, variants=("stable", "canary")) -> dict:
    return {"in_plan": True, "last": last, "variants": list(variants), "at": 100.0,
            "state": {"target": "gateway:default", "baseline": "1", "candidate": "2",
                      "candidate_percent": percent, "revision": 7, "changed_at": 1234.5}}


def test_trigger_arguments_start_the_window_where_the_step_began(monkeypatch):
    monkeypatch.setattr(release, "gateway_url_and_token", lambda: ("http://gw:8000", "t"))
    arguments = release.gate_trigger_arguments(rollout(), step_state(10, last=False), final=False,
                                               bake_seconds_key="bake_seconds", fixed_baseline=None)
    assert arguments["since"] == {"route_version": 7, "epoch": 1234.5}
    assert arguments["started_at"] == 1234.5  # a re-run keeps the step's clock
    assert arguments["alpha"] == pytest.approx(0.01 / 3)  # two steps and the post-promotion bake
    assert arguments["final"] is False and arguments["selector"]["candidate_role"] == "live"
    assert arguments["source"] == {"kind": "gateway", "url": "http://gw:8000", "endpoint": "default"}
    last = release.gate_trigger_arguments(rollout(), step_state(50, last=True), final=False,
                                          bake_seconds_key="bake_seconds", fixed_baseline=None)
    assert last["final"] is True  # the last step must prove non-inferiority


def test_blue_green_gates_the_idle_colour_on_its_shadow_traffic(monkeypatch):
    monkeypatch.setattr(release, "gateway_url_and_token", lambda: ("http://gw:8000", "t"))
    plan = rollout(strategy="blue_green", metrics_source="prometheus", prometheus_url="http://prom:9090")
    arguments = release.gate_trigger_arguments(plan, step_state(0, last=True, variants=("blue", "green")),
                                               final=False, bake_seconds_key="bake_seconds", fixed_baseline=None)
    assert arguments["selector"]["candidate_role"] == "shadow"
    assert arguments["selector"]["candidate_variant"] == "green"
    assert arguments["source"]["kind"] == "prometheus"


def trigger(**overrides) -> MetricGateTrigger:
    arguments = {"source": {}, "selector": {}, "since": {}, "gates": {}, "alpha": 0.01, "started_at": time.time(),
                 "bake_seconds": 0, "max_seconds": 30, "final": False, "look_seconds": 0.01, **overrides}
    return MetricGateTrigger(**arguments)


async def first_event(t: MetricGateTrigger) -> dict:
    async for fired in t.run():
        return fired.payload


def test_the_trigger_looks_until_the_gate_decides(monkeypatch):
    looks = iter([{"decision": "wait"}, {"decision": "wait"}, {"decision": "pass", "reason": "ok"}])
    t = trigger()
    monkeypatch.setattr(t, "look", lambda: next(looks))
    assert asyncio.run(first_event(t)) == {"decision": "pass", "reason": "ok"}


def test_an_unreachable_source_is_retried_until_the_deadline_then_reported(monkeypatch):
    t = trigger(started_at=time.time() - 29.95)

    def down():
        raise FlightdeckError("prometheus at http://p unreachable")

    monkeypatch.setattr(t, "look", down)
    fired = asyncio.run(first_event(t))
    assert fired == {"decision": "error", "reason": "prometheus at http://p unreachable"}


def test_the_trigger_round_trips_through_its_serialised_form():
    t = trigger(fixed_baseline={"requests": 3})
    path, kwargs = t.serialize()
    assert path == "flightdeck.airflow.triggers.MetricGateTrigger"
    assert MetricGateTrigger(**kwargs).serialize() == (path, kwargs)
