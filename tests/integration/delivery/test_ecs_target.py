"""EcsTarget against a moto server over real HTTP on loopback: ELBv2 (a weighted listener rule over
two target groups) and ECS (a blue and a green Fargate service).

moto keeps a rule's forward weights as given and reports a service's runningCount equal to its
desiredCount after an update; it runs no tasks and registers none in a target group, so the world
registers two task addresses per colour itself (moto reports registered targets healthy).
"""

from __future__ import annotations

import pytest

from flightdeck.delivery.plan import ResolvedRollout, RolloutPlan
from flightdeck.delivery.policy import ReleasePolicy
from flightdeck.delivery.targets.ecs import (
    MODEL_TAG,
    VERSION_TAG,
    CandidateNotDeployedError,
    EcsNotFoundError,
    EcsTarget,
    LiveStateError,
    ServiceNotReadyError,
)
from flightdeck.delivery.targets.factory import make_target, pin_target
from flightdeck.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLUSTER = "flightdeck"
BLUE, GREEN = "flightdeck-gateway-blue", "flightdeck-gateway-green"


class World:
    """A VPC, an ALB with a weighted rule, and the two colours' services, the baseline on blue."""

    def __init__(self, server) -> None:
        self.ec2, self.elb, self.ecs = server.client("ec2"), server.client("elbv2"), server.client("ecs")
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24",
                                          AvailabilityZone=f"us-east-1{z}")["Subnet"]["SubnetId"]
                   for i, z in ((1, "a"), (2, "b"))]
        group = self.ec2.create_security_group(GroupName="gw", Description="gateway", VpcId=vpc)["GroupId"]
        lb = self.elb.create_load_balancer(Name="flightdeck", Subnets=subnets)["LoadBalancers"][0]
        self.groups = {c: self.elb.create_target_group(Name=f"gw-{c}", Protocol="HTTP", Port=8000, VpcId=vpc,
                                                       TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
                       for c in ("blue", "green")}
        listener = self.elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])
        self.rule_arn = self.elb.create_rule(
            ListenerArn=listener["Listeners"][0]["ListenerArn"], Priority=10,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
            Actions=[self.forward(100, 0)])["Rules"][0]["RuleArn"]
        self.ecs.create_cluster(clusterName=CLUSTER)
        baseline = self.task_definition("3")
        for colour, name in (("blue", BLUE), ("green", GREEN)):
            self.ecs.create_service(
                cluster=CLUSTER, serviceName=name, taskDefinition=baseline, desiredCount=2 if colour == "blue" else 0,
                launchType="FARGATE",
                loadBalancers=[{"targetGroupArn": self.groups[colour], "containerName": "gateway",
                                "containerPort": 8000}],
                networkConfiguration={"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [group]}})
            self.elb.register_targets(TargetGroupArn=self.groups[colour],
                                      Targets=self.task_addresses(colour))

    @staticmethod
    def task_addresses(colour: str) -> list[dict]:
        return [{"Id": f"10.0.{1 if colour == 'blue' else 2}.{i}", "Port": 8000} for i in (10, 11)]

    def forward(self, blue: int, green: int, extra: str | None = None) -> dict:
        groups = [{"TargetGroupArn": self.groups["blue"], "Weight": blue},
                  {"TargetGroupArn": self.groups["green"], "Weight": green}]
        if extra:
            groups.append({"TargetGroupArn": extra, "Weight": 1})
        return {"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}

    def set_weights(self, blue: int, green: int) -> None:
        self.elb.modify_rule(RuleArn=self.rule_arn, Actions=[self.forward(blue, green)])

    def weights(self) -> dict[str, int]:
        rule = self.elb.describe_rules(RuleArns=[self.rule_arn])["Rules"][0]
        names = {arn: colour for colour, arn in self.groups.items()}
        return {names[g["TargetGroupArn"]]: g["Weight"] for g in rule["Actions"][0]["ForwardConfig"]["TargetGroups"]}

    def task_definition(self, version: str, model: str = "credit") -> str:
        return self.ecs.register_task_definition(
            family="flightdeck-gateway", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512",
            memory="1024", containerDefinitions=[{"name": "gateway", "image": "registry.example.com/gw:1",
                                                  "environment": [{"name": "FLIGHTDECK_HOME", "value": "/opt/flightdeck"}],
                                                  "portMappings": [{"containerPort": 8000}]}],
            tags=[{"key": MODEL_TAG, "value": model}, {"key": VERSION_TAG, "value": version}],
        )["taskDefinition"]["taskDefinitionArn"]

    def service(self, name: str) -> dict:
        return self.ecs.describe_services(cluster=CLUSTER, services=[name])["services"][0]

    def served_version(self, name: str) -> str:
        arn = self.service(name)["taskDefinition"]
        tags = self.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])["tags"]
        return {t["key"]: t["value"] for t in tags}[VERSION_TAG]

    def target(self, baseline: str = "3", candidate: str = "4", **kwargs) -> EcsTarget:
        return EcsTarget(self.ecs, self.elb, cluster=CLUSTER, blue_service=BLUE, green_service=GREEN,
                         listener_rule_arn=self.rule_arn, model_name="credit", baseline_version=baseline,
                         candidate_version=candidate, poll_seconds=0.05, ready_timeout=5, **kwargs)


@pytest.fixture
def world(moto_server) -> World:
    return World(moto_server)


def test_canary_steps_cut_over_and_a_fresh_process_keeps_the_colours(world):
    target = world.target()
    assert target.baseline_colour == "blue" and target.variant_names() == ("v3", "v4")
    state = target.deploy()
    assert (state.baseline, state.candidate, state.candidate_percent) == ("3", "4", 0.0)
    green = world.service(GREEN)
    assert world.served_version(GREEN) == "4" and green["desiredCount"] == 2 and world.served_version(BLUE) == "3"
    container = world.ecs.describe_task_definition(taskDefinition=green["taskDefinition"])["taskDefinition"][
        "containerDefinitions"][0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert "v4:" in env["FLIGHTDECK_ROUTES_YAML"] and "version: '4'" in env["FLIGHTDECK_ROUTES_YAML"]
    assert env["FLIGHTDECK_HOME"] == "/opt/flightdeck" and container["entryPoint"] == ["sh", "-c"]
    registered = len(world.ecs.list_task_definitions()["taskDefinitionArns"])
    target.deploy()  # a re-run registers nothing new
    assert len(world.ecs.list_task_definitions()["taskDefinitionArns"]) == registered

    for percent in (5, 25, 50):
        assert target.set_weight(percent).candidate_percent == percent
        assert world.weights() == {"blue": 100 - percent, "green": percent}
    # Another task (another process) rebuilds the target from what the first one recorded.
    later = EcsTarget.from_dict(target.to_dict(), world.ecs, world.elb)
    assert later.promote().candidate_percent == 100
    assert world.weights() == {"blue": 0, "green": 100}
    assert world.service(BLUE)["desiredCount"] == 2  # the old colour stays warm
    # Once the candidate has all the traffic, the pinned target still knows blue as the baseline.
    assert later.baseline_colour == "blue" and later.rollback().candidate_percent == 0
    assert world.weights() == {"blue": 100, "green": 0}


def test_rollback_after_a_step_and_refusals(world):
    target = world.target()
    with pytest.raises(CandidateNotDeployedError, match=GREEN):
        target.set_weight(5)
    target.deploy()
    target.set_weight(25)
    assert target.rollback().candidate_percent == 0 and target.left_alone is None
    assert world.weights() == {"blue": 100, "green": 0}
    with pytest.raises(ConfigError, match="whole"):
        target.set_weight(2.5)
    # The rule now also forwards to a target group that is not one of the colours: refused, not overwritten.
    stranger = world.elb.create_target_group(Name="other", Protocol="HTTP", Port=80, VpcId=world.ec2.describe_vpcs()[
        "Vpcs"][-1]["VpcId"], TargetType="ip")["TargetGroups"][0]["TargetGroupArn"]
    world.elb.modify_rule(RuleArn=world.rule_arn, Actions=[world.forward(90, 0, extra=stranger)])
    with pytest.raises(LiveStateError, match="outside this rollout"):
        target.set_weight(5)
    assert target.rollback().candidate_percent == 0 and "outside this rollout" in target.left_alone
    rule = world.elb.describe_rules(RuleArns=[world.rule_arn])["Rules"][0]
    assert len(rule["Actions"][0]["ForwardConfig"]["TargetGroups"]) == 3  # left as it was


def test_a_later_rollout_owns_the_colours_so_an_old_rollback_moves_nothing(world):
    first = world.target()
    first.deploy()
    first.promote()
    record = first.to_dict()
    # The next rollout (v4 → v5) resolves green as its baseline and deploys v5 on blue.
    second = world.target(baseline="4", candidate="5")
    assert second.baseline_colour == "green"
    second.deploy()
    second.set_weight(25)
    assert world.served_version(BLUE) == "5"
    old = EcsTarget.from_dict(record, world.ecs, world.elb)
    old.rollback()
    assert "not 3" in old.left_alone
    assert world.weights() == {"blue": 25, "green": 75}


def test_resolving_refuses_a_split_rule_a_wrong_live_version_and_a_busy_idle_colour(world):
    world.set_weights(50, 50)
    with pytest.raises(LiveStateError, match="splits traffic"):
        world.target().baseline_colour  # noqa: B018
    world.set_weights(100, 0)
    with pytest.raises(LiveStateError, match="serves model version 3, not the baseline 2"):
        world.target(baseline="2", candidate="4").baseline_colour  # noqa: B018
    # A pinned rollout whose idle colour took traffic for someone else's version: deploy refuses.
    target = world.target()
    target.baseline_colour  # noqa: B018
    world.ecs.update_service(cluster=CLUSTER, service=GREEN, taskDefinition=world.task_definition("9"))
    world.set_weights(90, 10)
    with pytest.raises(LiveStateError, match="would replace live tasks"):
        target.deploy()
    assert world.served_version(GREEN) == "9"


def test_deploy_waits_for_healthy_targets_and_moves_no_traffic_without_them(world):
    world.elb.deregister_targets(TargetGroupArn=world.groups["green"], Targets=world.task_addresses("green"))
    target = world.target()
    target.ready_timeout = 0.3
    with pytest.raises(ServiceNotReadyError, match="0 healthy in its target group"):
        target.deploy()
    with pytest.raises(ServiceNotReadyError):
        target.deploy()  # a retry waits again rather than going on
    assert world.weights() == {"blue": 100, "green": 0}
    world.elb.register_targets(TargetGroupArn=world.groups["green"], Targets=world.task_addresses("green"))
    assert target.deploy().candidate_percent == 0 and target.set_weight(5).candidate_percent == 5


def test_missing_rule_and_cluster_are_named(world):
    arn = world.rule_arn.rsplit("/", 1)[0] + "/ffffffffffffffff"
    target = EcsTarget(world.ecs, world.elb, cluster=CLUSTER, blue_service=BLUE, green_service=GREEN,
                       listener_rule_arn=arn, model_name="credit", baseline_version="3", candidate_version="4")
    with pytest.raises(EcsNotFoundError, match="listener rule"):
        target.state()
    target = world.target()
    target.cluster = "nope"
    with pytest.raises(EcsNotFoundError, match="nope"):
        target.deploy()


def test_factory_pins_the_baseline_colour_from_the_plan(world):
    policy = ReleasePolicy(require_approval=False, prometheus_urls=["http://127.0.0.1"],
                           ecs={"clusters": [CLUSTER], "services": [BLUE, GREEN], "listener_rule_arns": [world.rule_arn]})
    plan = RolloutPlan.parse({"strategy": "blue_green", "model_name": "credit", "model_ref": "4", "target": "ecs",
                              "metrics_source": "prometheus", "prometheus_url": "http://127.0.0.1:9090",
                              "require_approval": False,
                              "target_options": {"cluster": CLUSTER, "blue_service": BLUE, "green_service": GREEN,
                                                 "listener_rule_arn": world.rule_arn, "test_percent": 10}}, policy)
    assert plan.step_percents == [10.0]
    rollout = ResolvedRollout(plan=plan, baseline_version="3", candidate_version="4")
    pinned = pin_target(rollout, make_target(rollout, ecs_clients=(world.ecs, world.elb)))
    assert pinned.target_state["baseline_colour"] == "blue"
    target = make_target(pinned, ecs_clients=(world.ecs, world.elb))
    target.deploy()
    assert target.set_weight(plan.step_percents[0]).candidate_percent == 10
    assert target.promote().candidate_percent == 100 and world.weights() == {"blue": 0, "green": 100}
