"""Rollout Params: validated in one place, every problem named."""

from __future__ import annotations

import json

import pytest

from flightdeck.delivery.plan import (
    ResolvedRollout,
    RolloutExpiredError,
    RolloutPlan,
    RolloutPlanError,
)


def test_defaults_make_a_sensible_canary():
    plan = RolloutPlan.parse({"strategy": "canary", "model_name": "m"})
    assert plan.step_percents == [5.0, 25.0, 50.0]
    assert plan.gate_windows == 4  # three steps and the post-promotion bake share alpha
    assert plan.require_approval and plan.gates.on_inconclusive == "rollback"


def test_blue_green_has_one_shadow_step():
    plan = RolloutPlan.parse({"strategy": "blue_green", "model_name": "m"})
    assert plan.step_percents == [0.0] and plan.gate_windows == 2


@pytest.mark.parametrize("change, named", [
    ({"steps": [50, 20]}, "steps must increase"),
    ({"steps": [5, 100]}, "strictly between 0 and 100"),
    ({"steps": [1, 2, 3, 4, 5, 6]}, "1 to 5 steps"),
    ({"bake_seconds": 600, "max_step_seconds": 60}, "max_step_seconds must be at least bake_seconds"),
    ({"metrics_source": "prometheus"}, "needs prometheus_url"),
    ({"gates": {"alpha": 0.9}}, "gates.alpha"),
    ({"gates": {"alpah": 0.01}}, "gates.alpah"),
    ({"stepz": [5]}, "stepz"),
    ({"model_ref": "v2; drop"}, "model_ref"),
])
def test_bad_params_are_named(change, named):
    with pytest.raises(RolloutPlanError, match="rollout Params are invalid") as info:
        RolloutPlan.parse({"strategy": "canary", "model_name": "m", **change})
    assert named in str(info.value)


def test_a_resolved_rollout_survives_json():
    rollout = ResolvedRollout(RolloutPlan.parse({"strategy": "canary", "model_name": "m", "steps": [10]}),
                              baseline_version="1", candidate_version="2", aliases_before={"champion": "1"})
    assert ResolvedRollout.from_dict(rollout.to_dict()) == rollout
    pinned = rollout.with_target_state({"kind": "aws_lambda", "baseline": "4"})
    assert ResolvedRollout.from_dict(json.loads(json.dumps(pinned.to_dict()))) == pinned


def test_the_rollout_expires_after_max_duration_seconds():
    plan = RolloutPlan.parse({"strategy": "canary", "model_name": "m", "max_duration_seconds": 100})
    rollout = ResolvedRollout(plan, baseline_version="1", candidate_version="2", started_at=1000.0)
    assert rollout.check_time_left(now=1060.0) == pytest.approx(40.0)
    with pytest.raises(RolloutExpiredError, match="max_duration_seconds \\(100 s\\)"):
        rollout.check_time_left(now=1100.0)


@pytest.mark.parametrize("change, named", [
    ({"target": "kubernetes", "metrics_source": "prometheus", "prometheus_url": "http://p"}, "needs ['app'"),
    ({"target": "kubernetes", "target_options": {"namespace": "ml", "app": "a", "gateway": "g"}},
     "reads its gates from Prometheus"),
    ({"target": "lambda"}, "CloudWatch"),
])
def test_targets_other_than_the_gateway_say_what_they_need(change, named):
    with pytest.raises(RolloutPlanError) as info:
        RolloutPlan.parse({"strategy": "canary", "model_name": "m", **change})
    assert named in str(info.value)


def test_a_kubernetes_canary_renders_valid_manifests_for_each_step(tmp_path):
    from flightdeck.delivery.targets.kubernetes import KubernetesTarget, ManifestDirectory

    plan = RolloutPlan.parse({"strategy": "canary", "model_name": "credit", "target": "kubernetes",
                              "metrics_source": "prometheus", "prometheus_url": "http://127.0.0.1:9090",
                              "target_options": {"namespace": "ml", "app": "credit", "gateway": "edge"}})
    writer = ManifestDirectory(tmp_path)
    target = KubernetesTarget(model_name=plan.model_name, baseline_version="1", candidate_version="2",
                              applier=writer.apply, reader=writer.read_route, **plan.target_options)
    target.deploy()
    for percent in plan.step_percents:
        assert target.set_weight(percent).candidate_percent == percent
    assert target.promote().candidate_percent == 100
    assert target.rollback().candidate_percent == 0
