"""Release policy: the floors a release's Params may not go below.

A rollout's Params are chosen per run by whoever triggers it; what keeps a release safe is
decided once, by the admins of a deployment, in a YAML file (default
include/config/release_policy.yaml, or the file named by `FLIGHTDECK_RELEASE_POLICY_FILE`).
`check_plan` holds a parsed `RolloutPlan` against that file and raises `PolicyFloorError`
naming the Param, the floor and the file that sets it; `check_role_arn` does the same for
serverless packaging.

Lists of allowed values are allow-lists: an empty list allows nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flightdeck.config import get_settings
from flightdeck.errors import ConfigError, FlightdeckError

if TYPE_CHECKING:
    from flightdeck.delivery.plan import RolloutPlan

DEFAULT_POLICY_FILE = Path(__file__).resolve().parents[2] / "config" / "release_policy.yaml"
POLICY_ENV = "FLIGHTDECK_RELEASE_POLICY_FILE"


class PolicyFloorError(FlightdeckError):
    """A Param asks for less safety than the deployment's release policy allows."""

    def __init__(self, param: str, value: object, floor: str, source: Path) -> None:
        self.param = param
        self.floor = floor
        self.source = source
        super().__init__(f"Param {param}={value!r} is refused: {floor} (release policy {source}). Fix: "
                         f"change the Param to meet the policy; only an admin changes the policy file "
                         f"(setting {POLICY_ENV}).")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateLimits(_Strict):
    """The loosest gate settings a run may ask for; None leaves a setting to the Params' own bounds."""

    alpha: float | None = Field(None, gt=0, description="Largest false-rollback budget.")
    min_requests: int | None = Field(None, ge=2, description="Fewest requests per variant and window.")
    min_requests_hard_fail: int | None = Field(None, ge=2, description="Fewest requests before a hard fail.")
    min_rows_for_distribution: int | None = Field(None, ge=10, description="Fewest rows for the PSI check.")
    error_rate_margin: float | None = Field(None, gt=0, description="Widest error-rate margin.")
    error_increase_tolerance: float | None = Field(
        None, ge=1, description="Largest error-rate ratio (canary / baseline) the error-increase check may let pass.")
    latency_margin_ms: float | None = Field(None, gt=0, description="Widest latency margin (ms).")
    psi_max: float | None = Field(None, gt=0, description="Largest PSI allowed to pass.")
    shadow_disagreement_max: float | None = Field(None, gt=0, description="Largest shadow disagreement.")


# Which way is looser: a larger value for "max" settings, a smaller one for "min" settings.
_LOOSER_WHEN_LARGER = {"alpha", "error_rate_margin", "error_increase_tolerance", "latency_margin_ms", "psi_max",
                       "shadow_disagreement_max"}


class KubernetesPolicy(_Strict):
    image_prefixes: list[str] = Field(default_factory=list, description="Registry prefixes images must start with.")
    namespaces: list[str] = Field(default_factory=list, description="Namespaces a rollout may deploy to.")
    locked_options: list[str] = Field(default_factory=lambda: ["env", "mlflow_tracking_uri"],
                                      description="target_options a run may not set.")


class EcsPolicy(_Strict):
    clusters: list[str] = Field(default_factory=list, description="ECS clusters a rollout may move traffic on.")
    services: list[str] = Field(default_factory=list, description="Services a rollout may deploy to (both colours).")
    listener_rule_arns: list[str] = Field(default_factory=list, description="Listener rules whose weights it may set.")


class ReleasePolicy(_Strict):
    """One deployment's release floors (see the module docstring)."""

    require_approval: bool = True
    allow_drill_faults: bool = False
    metric_sources: list[Literal["gateway", "prometheus", "cloudwatch"]] = Field(
        default_factory=lambda: ["gateway", "prometheus", "cloudwatch"])
    prometheus_urls: list[str] = Field(default_factory=list, description="Allowed Prometheus base URLs.")
    gates: GateLimits = Field(default_factory=GateLimits)
    kubernetes: KubernetesPolicy = Field(default_factory=KubernetesPolicy)
    ecs: EcsPolicy = Field(default_factory=EcsPolicy)
    lambda_role_arns: list[str] = Field(default_factory=list, description="Execution roles a run may name.")
    source: Path = Field(DEFAULT_POLICY_FILE, exclude=True)


def policy_path() -> Path:
    """The policy file in force: the setting `release_policy_file`, else the one in include/config."""
    return get_settings().release_policy_file or DEFAULT_POLICY_FILE


def load_policy(path: Path | None = None) -> ReleasePolicy:
    """Read and validate a policy file; ConfigError names the file and the problem."""
    path = Path(path or policy_path())
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(POLICY_ENV, f"release policy {path} cannot be read ({exc.__class__.__name__})",
                          "point it at a readable YAML release policy") from None
    if not isinstance(data, dict):
        raise ConfigError(POLICY_ENV, f"release policy {path} is not a mapping", "write the policy as YAML keys")
    try:
        return ReleasePolicy.model_validate({**data, "source": path})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(POLICY_ENV, f"release policy {path} is invalid: {problems}",
                          "correct those keys") from None


def url_allowed(url: str, allowed: list[str]) -> bool:
    """Whether `url` lies under one of the `allowed` base URLs: same scheme and host, the same
    port (any port when the base names none) and a path under the base's path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.username or parts.password or parts.scheme not in ("http", "https"):
        return False
    for base in allowed:
        b = urlsplit(base)
        if (b.scheme, b.hostname) != (parts.scheme, parts.hostname):
            continue
        if b.port is not None and b.port != port:
            continue
        base_path = b.path.rstrip("/")
        if parts.path.rstrip("/") == base_path or parts.path.startswith(base_path + "/"):
            return True
    return False


def check_plan(plan: RolloutPlan, policy: ReleasePolicy | None = None) -> None:
    """PolicyFloorError for the first Param of `plan` below a floor of `policy` (default: `load_policy()`)."""
    policy = policy or load_policy()
    src = policy.source
    if policy.require_approval and not plan.require_approval:
        raise PolicyFloorError("require_approval", False, "every release needs a human approval", src)
    if plan.drill_faults and not policy.allow_drill_faults:
        raise PolicyFloorError("drill_faults", plan.drill_faults, "fault drills are off in this deployment", src)
    if plan.metrics_source not in policy.metric_sources:
        raise PolicyFloorError("metrics_source", plan.metrics_source,
                               f"allowed metric sources are {policy.metric_sources}", src)
    if plan.metrics_source == "prometheus" and not url_allowed(plan.prometheus_url or "", policy.prometheus_urls):
        raise PolicyFloorError("prometheus_url", plan.prometheus_url,
                               f"allowed Prometheus base URLs are {policy.prometheus_urls}", src)
    for name, limit in policy.gates.model_dump().items():
        if limit is None:
            continue
        value = getattr(plan.gates, name)
        if name in _LOOSER_WHEN_LARGER and value > limit:
            raise PolicyFloorError(f"gates.{name}", value, f"gates.{name} may be at most {limit:g}", src)
        if name not in _LOOSER_WHEN_LARGER and value < limit:
            raise PolicyFloorError(f"gates.{name}", value, f"gates.{name} must be at least {limit:g}", src)
    if plan.target == "kubernetes":
        _check_kubernetes(plan.target_options, policy.kubernetes, src)
    if plan.target == "ecs":
        _check_ecs(plan.target_options, policy.ecs, src)


def _check_ecs(options: dict, policy: EcsPolicy, src: Path) -> None:
    allowed = {"cluster": policy.clusters, "blue_service": policy.services, "green_service": policy.services,
               "listener_rule_arn": policy.listener_rule_arns}
    for key, values in allowed.items():
        if options.get(key) not in values:
            raise PolicyFloorError(f"target_options.{key}", options.get(key), f"allowed values are {values}", src)


def _check_kubernetes(options: dict, policy: KubernetesPolicy, src: Path) -> None:
    for key in policy.locked_options:
        if key in options:
            raise PolicyFloorError(f"target_options.{key}", options[key],
                                   f"target_options {policy.locked_options} are set by the deployment", src)
    namespace = options.get("namespace")
    if namespace not in policy.namespaces:
        raise PolicyFloorError("target_options.namespace", namespace,
                               f"allowed namespaces are {policy.namespaces}", src)
    image = options.get("image")
    if image is not None and not any(isinstance(image, str) and image.startswith(p.rstrip("/") + "/")
                                     for p in policy.image_prefixes):
        raise PolicyFloorError("target_options.image", image,
                               f"images must come from the registries {policy.image_prefixes}", src)


def check_role_arn(role_arn: str | None, policy: ReleasePolicy | None = None) -> None:
    """PolicyFloorError unless `role_arn` is None or one of the policy's `lambda_role_arns`."""
    if role_arn is None:
        return
    policy = policy or load_policy()
    if role_arn not in policy.lambda_role_arns:
        raise PolicyFloorError("role_arn", role_arn, f"allowed execution roles are {policy.lambda_role_arns}",
                               policy.source)
