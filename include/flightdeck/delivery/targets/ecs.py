"""Roll a model out on ECS Fargate: two gateway services (blue, green), each in its own target
group, behind one weighted rule of an Application Load Balancer listener.

A model version is an ECS task definition revision of the gateway whose route table is pinned
to that version (variant `v<version>`), tagged `flightdeck:model` / `flightdeck:model-version`.
When the rollout resolves, the target pins the *baseline colour* (the service whose target
group takes all of the rule's traffic) and the candidate colour (the other one). Then:

| method          | rule weights (baseline/candidate) | candidate service              |
|-----------------|-----------------------------------|--------------------------------|
| deploy()        | 100 / 0                           | candidate's task definition, as many tasks as the baseline, waited until running and healthy in its target group |
| set_weight(p)   | 100 - p / p                       | unchanged                      |
| promote()       | 0 / 100                           | unchanged (the baseline colour stays warm for a fast rollback) |
| rollback()      | 100 / 0                           | unchanged                      |

ALB weights are integers, so a share is a whole percent. The ELBv2 API has no compare-and-set
on rules: every method reads the rule and both services first and refuses (`LiveStateError`)
when they are not what this rollout expects (the rule forwards to another target group, the
idle colour carries traffic for a version that is not this rollout's, the baseline colour
serves another task definition); `rollback()` leaves such a state alone and says why in
`left_alone`. A write racing another writer between the read and `ModifyRule` is not caught:
one rollout per model at a time is the release lock's job.

Only boto3 here (no Airflow). A task rebuilds the target from `to_dict()` of the task that
resolved the rollout, so every later task, the rollback included, acts on the same colours.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

import yaml

from flightdeck.delivery.targets.base import TrafficState
from flightdeck.errors import ConfigError, FlightdeckError

log = logging.getLogger(__name__)

MODEL_TAG = "flightdeck:model"
VERSION_TAG = "flightdeck:model-version"
ROUTES_FILE = "/opt/flightdeck/routes.yaml"  # under the gateway image's FLIGHTDECK_HOME
# The gateway image has no route file of its own: the task writes the pinned table, then serves.
START_COMMAND = 'printf "%s" "$FLIGHTDECK_ROUTES_YAML" > "$FLIGHTDECK_ROUTES_FILE" && exec flightdeck serve'
_VERSION = re.compile(r"^[0-9]+$")
# What RegisterTaskDefinition accepts back from DescribeTaskDefinition.
_REGISTERABLE = ("family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions", "volumes",
                 "placementConstraints", "requiresCompatibilities", "cpu", "memory", "pidMode", "ipcMode",
                 "proxyConfiguration", "inferenceAccelerators", "ephemeralStorage", "runtimePlatform")


class EcsTargetError(FlightdeckError):
    """An ECS rollout cannot proceed; the message names the service, rule or task definition."""


class LiveStateError(EcsTargetError):
    """The listener rule or a service is not in a state this rollout set or expects."""


class EcsNotFoundError(EcsTargetError):
    """The cluster, a service, or the listener rule does not exist."""


class CandidateNotDeployedError(EcsTargetError):
    def __init__(self, service: str, version: str) -> None:
        super().__init__(f"service {service!r} does not run model version {version}. Fix: run deploy() (the "
                         "promotion DAG's deploy task) before moving traffic.")


class ServiceNotReadyError(EcsTargetError):
    """The candidate's service did not reach its desired count of running tasks in time."""


def _check_percent(percent: float) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not math.isfinite(percent) \
            or not 0 <= percent <= 100 or percent != int(percent):
        raise ConfigError("percent", f"{percent!r} is not a whole share between 0 and 100",
                          "ALB listener weights are integers: pass a whole percent, e.g. 25")
    return int(percent)


def route_table(model_name: str, version: str) -> dict:
    """The gateway's route table pinned to one model version (variant `v<version>`)."""
    return {"default_endpoint": "default",
            "endpoints": {"default": {"policy": "single", "allow_override": False,
                                      "variants": {f"v{version}": {"model": model_name, "version": version}}}}}


class EcsTarget:
    """Blue and green ECS services behind one weighted ALB listener rule, as a `DeliveryTarget`.

    Args:
        ecs_client, elbv2_client: boto3 clients, or zero-argument callables returning them; None
            builds them with boto3's default chain in `region`.
        cluster: the ECS cluster (name or ARN).
        blue_service, green_service: the two services; each has exactly one target group.
        listener_rule_arn: the rule whose forward action splits traffic between their target groups.
        model_name, baseline_version, candidate_version: the model versions of the rollout.
        container: the gateway container in the task definition.
        baseline_colour: "blue" or "green"; None reads it from the rule (the colour with all the
            traffic) on first use. `to_dict()` records it.
        ready_timeout, poll_seconds: how long deploy() waits for the candidate's tasks.
    """

    def __init__(self, ecs_client: Any = None, elbv2_client: Any = None, *, cluster: str, blue_service: str,
                 green_service: str, listener_rule_arn: str, model_name: str, baseline_version: str | int,
                 candidate_version: str | int, container: str = "gateway", baseline_colour: str | None = None,
                 name: str | None = None, region: str | None = None, ready_timeout: float = 600.0,
                 poll_seconds: float = 5.0) -> None:
        for field, value in (("cluster", cluster), ("blue_service", blue_service),
                             ("green_service", green_service), ("container", container)):
            if not isinstance(value, str) or not value:
                raise ConfigError(field, f"{value!r} is empty", f"name the {field.replace('_', ' ')}")
        if blue_service == green_service:
            raise ConfigError("green_service", f"is the same service as blue_service ({blue_service!r})",
                              "name two services, one per colour")
        if not isinstance(listener_rule_arn, str) or ":listener-rule/" not in listener_rule_arn:
            raise ConfigError("listener_rule_arn", f"{listener_rule_arn!r} is not a listener rule ARN",
                              "pass the weighted rule's ARN (terraform output listener_rule_arn)")
        self.baseline_version = self._version(baseline_version, "baseline_version")
        self.candidate_version = self._version(candidate_version, "candidate_version")
        if self.baseline_version == self.candidate_version:
            raise ConfigError("candidate_version", f"{self.candidate_version} is also the baseline",
                              "roll out a different model version")
        if baseline_colour not in (None, "blue", "green"):
            raise ConfigError("baseline_colour", f"{baseline_colour!r} is not blue or green", "pass blue or green")
        self.cluster, self.container, self.model_name = cluster, container, str(model_name)
        self.services = {"blue": blue_service, "green": green_service}
        self.listener_rule_arn = listener_rule_arn
        self._baseline_colour = baseline_colour
        self.name = name or f"ecs:{cluster}:{blue_service}/{green_service}"
        self.region = region
        self.ready_timeout, self.poll_seconds = float(ready_timeout), float(poll_seconds)
        self.left_alone: str | None = None  # why the last rollback changed nothing, if it chose not to
        self._clients = {"ecs": ecs_client, "elbv2": elbv2_client}
        self._built: dict[str, Any] = {}

    # -- construction across processes ---------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-safe description from which `from_dict` rebuilds this target (colours pinned)."""
        return {"kind": "ecs", "name": self.name, "cluster": self.cluster, "blue_service": self.services["blue"],
                "green_service": self.services["green"], "listener_rule_arn": self.listener_rule_arn,
                "model_name": self.model_name, "baseline_version": self.baseline_version,
                "candidate_version": self.candidate_version, "container": self.container,
                "baseline_colour": self.baseline_colour, "region": self.region,
                "ready_timeout": self.ready_timeout, "poll_seconds": self.poll_seconds}

    @classmethod
    def from_dict(cls, data: dict, ecs_client: Any = None, elbv2_client: Any = None) -> EcsTarget:
        fields = dict(data)
        kind = fields.pop("kind", "ecs")
        if kind != "ecs":
            raise ConfigError("kind", f"{kind!r} is not an ecs target", "pass EcsTarget.to_dict()")
        return cls(ecs_client, elbv2_client, **fields)

    def _client(self, service: str) -> Any:
        if service not in self._built:
            arg = self._clients[service]
            if arg is None:
                import boto3

                arg = boto3.client(service, region_name=self.region)
            elif callable(arg) and not hasattr(arg, "meta"):
                arg = arg()
            self._built[service] = arg
        return self._built[service]

    @property
    def ecs(self) -> Any:
        return self._client("ecs")

    @property
    def elbv2(self) -> Any:
        return self._client("elbv2")

    # -- colours -------------------------------------------------------------------------

    @property
    def baseline_colour(self) -> str:
        """The colour serving before the rollout: read from the rule once, then kept."""
        if self._baseline_colour is None:
            weights = self._weights()
            groups = self._target_groups()
            live = [colour for colour, tg in groups.items() if weights.get(tg, 0) > 0]
            if len(live) != 1:
                raise LiveStateError(
                    f"rule {self.listener_rule_arn} splits traffic {self._describe(weights)}: another rollout is "
                    "under way or was left half done. Fix: finish or roll it back (all traffic on one colour), "
                    "then trigger again.")
            colour = live[0]
            marked = self._version_of(self._service(self.services[colour])["taskDefinition"])
            if marked is not None and marked != self.baseline_version:
                raise LiveStateError(
                    f"the live colour {colour} ({self.services[colour]}) serves model version {marked}, not the "
                    f"baseline {self.baseline_version} this rollout expects. Fix: make the champion alias and "
                    "the live service agree (roll the service back, or move the alias), then trigger again.")
            self._baseline_colour = colour
        return self._baseline_colour

    @property
    def candidate_colour(self) -> str:
        return "green" if self.baseline_colour == "blue" else "blue"

    def variant_names(self) -> tuple[str, str]:
        """(baseline, candidate) as the metrics name them: each colour's route table has one variant."""
        return f"v{self.baseline_version}", f"v{self.candidate_version}"

    # -- the DeliveryTarget protocol -----------------------------------------------------

    def state(self) -> TrafficState:
        weights = self._weights()
        groups = self._target_groups()
        cand = weights.get(groups[self.candidate_colour], 0)
        total = sum(weights.values())
        if total == 0:
            raise LiveStateError(f"rule {self.listener_rule_arn} gives every target group weight 0. Fix: "
                                 "roll back (all traffic to the baseline colour).")
        return TrafficState(self.name, self.baseline_version, self.candidate_version, round(100 * cand / total, 4))

    def deploy(self) -> TrafficState:
        """The candidate's task definition on the idle colour, as many tasks as the baseline, running,
        with no traffic."""
        self._check_ours(allow_foreign_idle=True)
        baseline = self._service(self.services[self.baseline_colour])
        idle_name = self.services[self.candidate_colour]
        idle = self._service(idle_name)
        if not self._runs_candidate(idle):
            task_definition = self._register_candidate(baseline["taskDefinition"])
            log.info("ECS %s: %s now runs %s (model version %s)", self.cluster, idle_name, task_definition,
                     self.candidate_version)
            self.ecs.update_service(cluster=self.cluster, service=idle_name, taskDefinition=task_definition,
                                    desiredCount=max(int(baseline["desiredCount"]), 1))
        elif int(idle["desiredCount"]) < max(int(baseline["desiredCount"]), 1):
            self.ecs.update_service(cluster=self.cluster, service=idle_name,
                                    desiredCount=max(int(baseline["desiredCount"]), 1))
        self._wait_until_running(idle_name)
        self._set_weights(0)
        return self.state()

    def set_weight(self, percent: float) -> TrafficState:
        share = _check_percent(percent)
        self._check_ours()
        if share > 0:
            self._require_candidate()
        self._set_weights(share)
        return self.state()

    def promote(self) -> TrafficState:
        """All traffic to the candidate's colour; the baseline colour keeps running for a fast rollback."""
        return self.set_weight(100)

    def rollback(self) -> TrafficState:
        """All traffic to the baseline colour, but only while the rule and services are still this
        rollout's; otherwise nothing moves and `left_alone` says why."""
        self.left_alone = None
        try:
            self._check_ours()
        except LiveStateError as exc:
            reason = str(exc).split(" Fix:")[0]
            self.left_alone = f"{reason}; a later change owns it, so the rollback leaves it as it is"
            log.warning("%s", self.left_alone)
            return self.state()
        self._set_weights(0)
        return self.state()

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _version(value: str | int, field: str) -> str:
        text = str(value)
        if not _VERSION.match(text):
            raise ConfigError(field, f"{text!r} is not a registered model version number", "pass e.g. '7'")
        return text

    def _error_code(self, exc: Exception) -> str | None:
        response = getattr(exc, "response", None)
        return (response or {}).get("Error", {}).get("Code") if isinstance(response, dict) else None

    def _rule(self) -> dict:
        try:
            rules = self.elbv2.describe_rules(RuleArns=[self.listener_rule_arn])["Rules"]
        except Exception as exc:
            if self._error_code(exc) in ("RuleNotFound", "RuleNotFoundException"):
                raise EcsNotFoundError(f"listener rule {self.listener_rule_arn} does not exist. Fix: create it "
                                       "(terraform module gateway_ecs) or pass the right ARN.") from None
            raise
        return rules[0]

    def _forward(self, rule: dict) -> list[dict]:
        forwards = [a for a in rule.get("Actions", []) if a.get("Type") == "forward"]
        groups = (forwards[0].get("ForwardConfig") or {}).get("TargetGroups") if len(forwards) == 1 else None
        if not groups:
            raise LiveStateError(f"rule {self.listener_rule_arn} has no weighted forward action. Fix: give it one "
                                 "forward action over the blue and green target groups (terraform gateway_ecs).")
        return groups

    def _weights(self) -> dict[str, int]:
        return {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in self._forward(self._rule())}

    def _service(self, name: str) -> dict:
        try:
            found = self.ecs.describe_services(cluster=self.cluster, services=[name])
        except Exception as exc:
            if self._error_code(exc) == "ClusterNotFoundException":
                raise EcsNotFoundError(f"ECS cluster {self.cluster!r} does not exist. Fix: create it "
                                       "(terraform module gateway_ecs) or correct target_options.cluster.") from None
            raise
        services = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
        if not services:
            raise EcsNotFoundError(f"cluster {self.cluster!r} has no active service {name!r}. Fix: create it "
                                   "(terraform module gateway_ecs) or correct the service name.")
        return services[0]

    def _target_groups(self) -> dict[str, str]:
        """Each colour's target group, from its service's load balancer."""
        if "_groups" not in self._built:
            groups = {}
            for colour, name in self.services.items():
                arns = {lb["targetGroupArn"] for lb in self._service(name).get("loadBalancers", [])
                        if lb.get("targetGroupArn")}
                if len(arns) != 1:
                    raise EcsTargetError(f"service {name!r} has {len(arns)} target groups, not one. Fix: attach "
                                         "each colour's service to its own target group (terraform gateway_ecs).")
                groups[colour] = arns.pop()
            if groups["blue"] == groups["green"]:
                raise EcsTargetError("the blue and green services share one target group. Fix: give each colour "
                                     "its own (terraform gateway_ecs).")
            self._built["_groups"] = groups
        return self._built["_groups"]

    def _healthy_targets(self, colour: str) -> int:
        """Targets of a colour's target group that pass the load balancer's health check."""
        described = self.elbv2.describe_target_health(TargetGroupArn=self._target_groups()[colour])
        return sum(1 for t in described.get("TargetHealthDescriptions", [])
                   if (t.get("TargetHealth") or {}).get("State") == "healthy")

    def _tags(self, task_definition: str) -> dict[str, str]:
        described = self.ecs.describe_task_definition(taskDefinition=task_definition, include=["TAGS"])
        return {t["key"]: t["value"] for t in described.get("tags") or []}

    def _version_of(self, task_definition: str) -> str | None:
        tags = self._tags(task_definition)
        if tags.get(MODEL_TAG) not in (None, self.model_name):
            return f"{tags[MODEL_TAG]}/{tags.get(VERSION_TAG)}"
        return tags.get(VERSION_TAG)

    def _runs_candidate(self, service: dict) -> bool:
        return self._version_of(service["taskDefinition"]) == self.candidate_version

    def _require_candidate(self) -> None:
        name = self.services[self.candidate_colour]
        if not self._runs_candidate(self._service(name)):
            raise CandidateNotDeployedError(name, self.candidate_version)

    def _describe(self, weights: dict[str, int]) -> str:
        names = {arn: colour for colour, arn in self._target_groups().items()}
        return ", ".join(f"{names.get(arn, arn)}={w}" for arn, w in weights.items())

    def _check_ours(self, allow_foreign_idle: bool = False) -> None:
        """LiveStateError unless the rule forwards only to our colours, the baseline colour serves the
        baseline and any traffic on the idle colour goes to this rollout's candidate."""
        weights = self._weights()
        groups = self._target_groups()
        foreign = set(weights) - set(groups.values())
        if foreign:
            raise LiveStateError(f"rule {self.listener_rule_arn} forwards to {sorted(foreign)}, outside this "
                                 "rollout's blue and green target groups. Fix: restore the rule's forward action "
                                 "to the two colours, then retry.")
        base_name, idle_name = self.services[self.baseline_colour], self.services[self.candidate_colour]
        base_version = self._version_of(self._service(base_name)["taskDefinition"])
        if base_version not in (None, self.baseline_version):
            raise LiveStateError(f"the baseline colour's service {base_name!r} now serves model version "
                                 f"{base_version}, not {self.baseline_version}. Fix: a later rollout owns the "
                                 "colours; leave them to it.")
        idle_weight = weights.get(groups[self.candidate_colour], 0)
        if idle_weight > 0 and not self._runs_candidate(self._service(idle_name)):
            raise LiveStateError(
                f"the idle colour's service {idle_name!r} takes live traffic ({self._describe(weights)}) for a "
                f"version other than this rollout's candidate {self.candidate_version}"
                + (": deploying over it would replace live tasks" if allow_foreign_idle else "")
                + ". Fix: finish or roll back the rollout that owns it, then trigger again.")

    def _set_weights(self, candidate_percent: int) -> None:
        """The rule's forward action: (100 - p, p) over (baseline, candidate); no call when it already is."""
        groups = self._target_groups()
        wanted = {groups[self.baseline_colour]: 100 - candidate_percent,
                  groups[self.candidate_colour]: candidate_percent}
        rule = self._rule()
        current = {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in self._forward(rule)}
        if current == wanted:
            return
        forward = next(a for a in rule["Actions"] if a.get("Type") == "forward")
        config = dict(forward.get("ForwardConfig") or {})
        config["TargetGroups"] = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in wanted.items()]
        config.pop("TargetGroupArn", None)
        self.elbv2.modify_rule(RuleArn=self.listener_rule_arn,
                               Actions=[{"Type": "forward", "Order": forward.get("Order", 1), "ForwardConfig": config}])
        log.info("ECS %s: rule weights %s", self.name, self._describe(wanted))

    def _register_candidate(self, baseline_task_definition: str) -> str:
        """A new revision of the baseline's family serving the candidate version."""
        described = self.ecs.describe_task_definition(taskDefinition=baseline_task_definition, include=["TAGS"])
        definition = described["taskDefinition"]
        fields = {key: definition[key] for key in _REGISTERABLE if definition.get(key) not in (None, [], {})}
        containers = [dict(c) for c in fields["containerDefinitions"]]
        gateway = [c for c in containers if c.get("name") == self.container]
        if not gateway:
            raise EcsTargetError(f"task definition {baseline_task_definition} has no container {self.container!r} "
                                 f"(it has {[c.get('name') for c in containers]}). Fix: pass target_options."
                                 "container naming the gateway container.")
        env = {e["name"]: e["value"] for e in gateway[0].get("environment") or []}
        env.update({"FLIGHTDECK_MODEL_NAME": self.model_name, "FLIGHTDECK_ROUTES_FILE": ROUTES_FILE,
                    "FLIGHTDECK_ROUTES_YAML": yaml.safe_dump(route_table(self.model_name, self.candidate_version),
                                                             sort_keys=True)})
        gateway[0]["environment"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
        gateway[0]["entryPoint"] = ["sh", "-c"]
        gateway[0]["command"] = [START_COMMAND]
        fields["containerDefinitions"] = containers
        tags = {t["key"]: t["value"] for t in described.get("tags") or []}
        tags.update({MODEL_TAG: self.model_name, VERSION_TAG: self.candidate_version})
        registered = self.ecs.register_task_definition(**fields, tags=[{"key": k, "value": v}
                                                                       for k, v in sorted(tags.items())])
        return registered["taskDefinition"]["taskDefinitionArn"]

    def _wait_until_running(self, name: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            service = self._service(name)
            primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), {})
            if primary.get("rolloutState") == "FAILED":
                raise ServiceNotReadyError(f"the deployment of model version {self.candidate_version} on {name!r} "
                                           f"failed: {primary.get('rolloutStateReason')}. Fix: read the service's "
                                           "events and stopped tasks, correct the image or task definition, retry.")
            wanted = int(service["desiredCount"])
            healthy = self._healthy_targets(self.candidate_colour)
            if self._runs_candidate(service) and int(service.get("runningCount", 0)) >= wanted and healthy >= wanted:
                return
            if time.monotonic() > deadline:
                raise ServiceNotReadyError(
                    f"{name!r} runs {service.get('runningCount')} of {wanted} tasks, {healthy} healthy in its target "
                    f"group, after {self.ready_timeout:.0f} s. Fix: read the service's events and the target "
                    "group's health checks (image pulls, the readiness route), or raise ready_timeout.")
            time.sleep(self.poll_seconds)
