"""The promotion DAGs end to end with dag.test() (approval turned off by a Param): a real
gateway under generated load, a real MLflow registry, gates reading the gateway's stats."""

from __future__ import annotations

import json

import pytest

from tests.support.models import MODEL

pytestmark = pytest.mark.integration

# Short steps for tests; the statistics are the same as in production.
FAST = {"steps": [20, 50], "bake_seconds": 3, "max_step_seconds": 60, "look_seconds": 1,
        "post_promotion_bake_seconds": 3, "require_approval": False,
        "gates": {"min_requests": 100, "min_requests_hard_fail": 30, "min_rows_for_distribution": 200},
        "backtest": {"auc_margin": 0.05, "logloss_margin": 1.0, "min_labelled_rows": 200, "max_rows": 2000}}


def endpoint(world) -> dict:
    with world.client() as client:
        return client.routes()["document"]["endpoints"]["default"]


def audit_records(world, version: str) -> list[dict]:
    tags = world.registry().client.get_model_version(MODEL, version).tags
    return [json.loads(v) for k, v in tags.items() if k.startswith("flightdeck.release.")]


def run(sqlite_sandbox, world, dag_id: str, conf: dict) -> dict:
    outcome = sqlite_sandbox.dag_test(dag_id, conf, env=world.env, timeout=420)
    assert "tasks" in outcome, outcome
    return outcome


def test_a_good_challenger_goes_through_every_step_and_becomes_champion(sqlite_sandbox, world):
    world.reset(candidate="2")
    with world.load() as load:
        outcome = run(sqlite_sandbox, world, "promote_canary", {**FAST, "model_ref": "challenger"})
    tasks = outcome["tasks"]
    assert outcome["state"] == "success", outcome["log"][-6000:]
    assert tasks["step_1_gate"] == tasks["step_2_gate"] == tasks["post_promotion_gate"] == "success"
    assert tasks["skip_approval"] == "success" and tasks["approve"] == "skipped"
    assert tasks["rollback"] == "skipped"
    assert world.registry().aliases(MODEL) == {"champion": "2", "previous": "1", "challenger": "2"}
    assert endpoint(world)["variants"] == {"stable": {"model": MODEL, "version": "2"}}
    assert set(load.statuses) == {200}, load.statuses
    assert load.versions["1"] and load.versions["2"]
    assert [r["outcome"] for r in audit_records(world, "2")] == ["promoted"]
    assert "gate decision: pass" in outcome["log"]


@pytest.mark.parametrize("case, conf, failing_check", [
    ("5 % errors", {"drill_faults": {"error_rate": 0.05}}, "error_rate"),
    ("+50 ms latency, gates on Prometheus", {"drill_faults": {"latency_ms": 50}, "metrics_source": "prometheus"},
     "latency"),
    ("shifted scores", {"model_ref": "3"}, "score_psi"),
])
def test_a_bad_challenger_is_rolled_back_before_the_second_step(sqlite_sandbox, world, case, conf, failing_check):
    world.reset(candidate=conf.get("model_ref", "2"))
    if conf.get("metrics_source") == "prometheus":
        conf = {**conf, "prometheus_url": world.prometheus_url}
    with world.load():
        outcome = run(sqlite_sandbox, world, "promote_canary", {**FAST, **conf})
    tasks = outcome["tasks"]
    assert outcome["state"] == "failed"
    assert "failed" in (tasks["step_1_gate"], tasks["step_2_gate"]), (case, tasks)
    assert tasks["step_2_gate"] != "success" and tasks["promote"] != "success"
    assert tasks["rollback"] == "success", outcome["log"][-6000:]
    assert f"{failing_check}" in outcome["log"] and "metric gate fail" in outcome["log"]
    assert world.registry().aliases(MODEL)["champion"] == "1"
    assert endpoint(world)["variants"] == {"stable": {"model": MODEL, "version": "1"}}
    candidate = conf.get("model_ref", "2")
    assert [r["outcome"] for r in audit_records(world, candidate)][-1] == "rolled_back"


def test_blue_green_cuts_over_under_steady_load_without_an_error(sqlite_sandbox, world):
    world.reset(candidate="2")
    with world.load() as load:
        outcome = run(sqlite_sandbox, world, "promote_blue_green",
                      {**{k: v for k, v in FAST.items() if k != "steps"}, "shadow_percent": 100})
    assert outcome["state"] == "success", outcome["log"][-6000:]
    assert outcome["tasks"]["rollback"] == "skipped"
    spec = endpoint(world)
    assert spec["policy"] == "blue_green" and spec["variants"][spec["active"]]["version"] == "2"
    assert set(load.statuses) == {200}, load.statuses
    assert load.versions["1"] and load.versions["2"]
    assert world.registry().aliases(MODEL)["champion"] == "2"


def test_bad_params_fail_the_first_task_and_move_nothing(sqlite_sandbox, world):
    world.reset(candidate="2")
    outcome = run(sqlite_sandbox, world, "promote_canary", {**FAST, "steps": [50, 20]})
    assert outcome["tasks"]["resolve_rollout"] == "failed"
    assert "steps must increase" in outcome["log"]
    assert outcome["tasks"]["rollback"] == "success"  # nothing to undo, said so
    assert "nothing to roll back" in outcome["log"]
    assert endpoint(world)["policy"] == "single"
