"""Target ecs in the rollout plan and the release policy, and the EcsTarget's argument checks
(no AWS: everything here is refused before a client is built)."""

from __future__ import annotations

import pytest

from flightdeck.delivery.plan import RolloutPlan, RolloutPlanError
from flightdeck.delivery.policy import PolicyFloorError, ReleasePolicy
from flightdeck.delivery.targets.ecs import EcsTarget, route_table
from flightdeck.errors import ConfigError

RULE = "arn:aws:elasticloadbalancing:us-east-1:111111111111:listener-rule/app/gw/abc/def/0123"
OPTIONS = {"cluster": "flightdeck", "blue_service": "gw-blue", "green_service": "gw-green", "listener_rule_arn": RULE}
POLICY = ReleasePolicy(require_approval=False, prometheus_urls=["http://prom:9090"],
                       ecs={"clusters": ["flightdeck"], "services": ["gw-blue", "gw-green"], "listener_rule_arns": [RULE]})


def plan(**changes):
    values = {"strategy": "canary", "model_name": "credit", "target": "ecs", "metrics_source": "prometheus",
              "prometheus_url": "http://prom:9090", "require_approval": False, "target_options": dict(OPTIONS),
              "steps": [5, 25, 50], **changes}
    return RolloutPlan.parse(values, POLICY)


def test_a_canary_and_a_blue_green_plan_on_ecs():
    assert plan().step_percents == [5, 25, 50]
    blue_green = plan(strategy="blue_green")
    assert blue_green.step_percents == [5.0] and blue_green.gate_windows == 2  # the idle colour's test share
    options = {**OPTIONS, "test_percent": 20}
    assert plan(strategy="blue_green", target_options=options).step_percents == [20.0]


@pytest.mark.parametrize(("changes", "message"), [
    ({"target_options": {"cluster": "flightdeck"}}, "target ecs needs"),
    ({"metrics_source": "gateway"}, "reads its gates from Prometheus"),
    ({"metrics_source": "cloudwatch"}, "Prometheus"),
    ({"steps": [2.5, 50]}, "whole percents"),
    ({"strategy": "blue_green", "target_options": {**OPTIONS, "test_percent": 0}}, "test_percent"),
    ({"strategy": "blue_green", "target_options": {**OPTIONS, "test_percent": 7.5}}, "whole percents"),
])
def test_bad_ecs_params_are_refused_naming_the_param(changes, message):
    with pytest.raises(RolloutPlanError, match=message):
        plan(**changes)


@pytest.mark.parametrize(("key", "value"), [("cluster", "prod"), ("green_service", "other"),
                                            ("listener_rule_arn", RULE.replace("0123", "9999"))])
def test_the_policy_allow_lists_the_cluster_services_and_rule(key, value):
    with pytest.raises(PolicyFloorError, match=f"target_options.{key}"):
        plan(target_options={**OPTIONS, key: value})


def test_the_target_refuses_bad_arguments_before_calling_aws():
    args = {"cluster": "c", "blue_service": "b", "green_service": "g", "listener_rule_arn": RULE,
            "model_name": "credit", "baseline_version": "3", "candidate_version": "4"}
    EcsTarget(object(), object(), **args)  # valid: nothing is called yet
    for change, field in (({"green_service": "b"}, "green_service"), ({"listener_rule_arn": "rule-1"}, "listener_rule_arn"),
                          ({"candidate_version": "3"}, "candidate_version"), ({"baseline_version": "v3"}, "baseline_version"),
                          ({"baseline_colour": "red"}, "baseline_colour"), ({"cluster": ""}, "cluster")):
        with pytest.raises(ConfigError, match=field):
            EcsTarget(object(), object(), **{**args, **change})
    target = EcsTarget(object(), object(), **args, baseline_colour="green")
    assert target.candidate_colour == "blue" and target.variant_names() == ("v3", "v4")
    assert EcsTarget.from_dict(target.to_dict(), object(), object()).to_dict() == target.to_dict()
    with pytest.raises(ConfigError, match="whole"):
        target.set_weight(12.5)


def test_each_version_is_pinned_in_its_own_route_table():
    table = route_table("credit", "4")
    assert table["endpoints"]["default"]["variants"] == {"v4": {"model": "credit", "version": "4"}}
    assert table["endpoints"]["default"]["allow_override"] is False
