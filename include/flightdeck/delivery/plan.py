"""A rollout plan: what the promotion DAGs were asked to do, validated in one place.

The DAGs' Params map one to one onto `RolloutPlan`; `RolloutPlan.parse` turns a bad Param
into a `RolloutPlanError` naming the field and the fix before any traffic moves, and a Param
below a floor of the deployment's release policy into a `PolicyFloorError`. The
resolved form (`ResolvedRollout`) adds what the plan found when it started (baseline and
candidate versions, the aliases as they were) so every later task, in whatever process,
works from the same facts and a rollback can restore them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flightdeck.config import MODEL_REF_PATTERN, get_settings
from flightdeck.delivery.limits import MAX_STEPS
from flightdeck.errors import FlightdeckError

if TYPE_CHECKING:
    from flightdeck.delivery.policy import ReleasePolicy

Strategy = Literal["canary", "blue_green"]
ECS_TEST_PERCENT = 5


class GateSettings(BaseModel):
    """How strict the gates are. Unknown keys are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    alpha: float = Field(0.01, gt=0, le=0.2)
    """False-rollback budget of the whole rollout: the probability that a canary no worse
    than its baseline is rolled back by a sequential check in any of the rollout's windows.
    Split over the windows with `alpha_per_window`."""

    min_requests: int = Field(200, ge=2, le=10_000_000)
    """Requests each variant needs in a window before a check may pass or stay undecided;
    below it a check is "insufficient" (unless it already fails clearly, see
    `min_requests_hard_fail`)."""

    min_requests_hard_fail: int = Field(50, ge=2, le=10_000_000)
    """Requests each variant needs before a check may fail while still below `min_requests`:
    a canary answering every request with an error is rolled back at once, not after
    `min_requests`. Must not exceed `min_requests`."""

    min_rows_for_distribution: int = Field(500, ge=10, le=10_000_000)
    """Scored rows each variant needs before the score-distribution (PSI) check is judged."""

    error_rate_margin: float = Field(0.005, gt=0, lt=1)
    """Non-inferiority margin on the error rate, absolute (0.005 = 0.5 percentage points):
    the canary fails when its error rate is surely higher than the baseline's by more than
    this, and passes when it is surely less than this higher."""

    error_increase_tolerance: float = Field(1.0, ge=1, le=100)
    """Ratio of the canary's error rate to the baseline's that the error-increase check lets
    pass: it fails when the canary's error rate is surely more than this many times the
    baseline's. 1 (the default) rolls back any increase the e-process can show; 1.5 lets a
    canary make up to half as many errors again as its baseline before it is rolled back."""

    latency_margin_ms: float = Field(10.0, gt=0, le=60_000)
    """Non-inferiority margin on the mean latency, in milliseconds (same reading as
    `error_rate_margin`)."""

    psi_max: float = Field(0.2, gt=0, le=10)
    """Largest population stability index between the canary's and the baseline's score
    histograms (after subtracting its expected sampling bias) before the canary fails.
    0.1 is a common "watch" level and 0.2 a common "act" level."""

    shadow_disagreement_max: float = Field(0.05, gt=0, lt=1)
    """Largest share of shadow rows whose decision may differ from the live answer."""

    mixture_scale: float = Field(1.0, gt=0, le=100)
    """Standard deviation of the normal mixing distribution of the confidence sequences, as a
    multiple of each check's margin (tau = mixture_scale × margin). The sequence is tightest
    when its half-width is about tau, i.e. when the evidence is about to cross the margin, so
    1.0 suits a regression about twice the margin; larger values favour larger, earlier
    regressions, smaller ones narrower regressions caught later. Fixed before the data:
    tuning it on the data would void the guarantee."""

    on_inconclusive: Literal["rollback", "ask"] = "rollback"
    """What the caller does when `decide()` says "inconclusive" (not enough evidence by the
    step's deadline): roll back, or ask a human approver (with the report's `to_markdown`)."""

    @model_validator(mode="after")
    def _check_minimums(self) -> GateSettings:
        if self.min_requests_hard_fail > self.min_requests:
            raise ValueError(f"min_requests_hard_fail ({self.min_requests_hard_fail}) must not "
                             f"exceed min_requests ({self.min_requests})")
        return self

    def alpha_per_window(self, n_windows: int) -> float:
        """The budget of one of `n_windows` gate windows (Bonferroni: alpha / n_windows).

        Count every window the rollout gates: each canary step's window and the
        post-promotion bake. Pass the result to `evaluate()`.
        """
        if isinstance(n_windows, bool) or not isinstance(n_windows, int) or n_windows < 1:
            raise ValueError(f"n_windows must be a positive integer, got {n_windows!r}")
        return self.alpha / n_windows


class BacktestSettings(BaseModel):
    """How much evidence a backtest needs and how much worse a challenger may be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_labelled_rows: int = Field(200, ge=1, description="Labelled rows below which the verdict is insufficient.")
    auc_margin: float = Field(0.01, ge=0, le=1, description="AUC the challenger may lose against the champion.")
    logloss_margin: float = Field(0.02, ge=0, description="Log loss the challenger may add to the champion's.")
    max_rows: int = Field(50_000, gt=0, description="Most recent live rows replayed.")
    lookback: timedelta = Field(timedelta(days=7), gt=timedelta(0), description="How far back rows are replayed.")
    decision_threshold: float | None = Field(
        None, gt=0, lt=1, description="Threshold of the agreement rate; default settings.decision_threshold.")
    fidelity_tolerance: float = Field(
        1e-9, ge=0, description="Largest |replayed − logged| champion score still counted as the same.")

    def since(self, now: datetime | None = None) -> datetime:
        """Start of the replay window: `lookback` before `now` (UTC)."""
        return (now or datetime.now(UTC)) - self.lookback

    def threshold(self) -> float:
        return self.decision_threshold if self.decision_threshold is not None else get_settings().decision_threshold


# The options the serverless targets of other clouds need (flightdeck.delivery.targets.factory).
TARGET_OPTIONS = {"cloud_run": {"project", "location", "service"},
                  "azure_slots": {"subscription_id", "resource_group", "app"}}


class RolloutPlanError(FlightdeckError):
    """A promotion was asked for with Params that cannot work."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RolloutPlan(_Strict):
    """One promotion of a candidate model version towards `champion`."""

    strategy: Strategy
    model_name: str = Field(..., min_length=1)
    model_ref: str = Field("challenger", pattern=MODEL_REF_PATTERN,
                           description="The candidate: a version number or an alias of the model.")
    target: Literal["gateway", "lambda", "kubernetes", "ecs", "cloud_run", "azure_slots"] = "gateway"
    endpoint: str = Field("default", min_length=1, description="Gateway endpoint the rollout owns.")
    target_options: dict = Field(default_factory=dict, description=(
        "kubernetes: namespace, app, gateway (the Gateway API gateway), optional manifests_dir "
        "(write manifests for a GitOps tool instead of applying them) and kubernetes_conn_id. "
        "lambda: function_name, alias, optional region, aws_conn_id and period (CloudWatch, s); the "
        "candidate is the version serverless_package published. "
        "ecs: cluster, blue_service, green_service, listener_rule_arn, optional container, region, "
        "aws_conn_id and test_percent (blue-green: the idle colour's whole-percent share during its gate, "
        "default 5). "
        "cloud_run: project, location, service, optional candidate_revision and api_base (whole-percent steps). "
        "azure_slots: subscription_id, resource_group, app, optional slot (default staging), package_url and "
        "api_base."))
    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0],
                               description="Canary: % of traffic per step, increasing, each in (0, 100).")
    bake_seconds: float = Field(300, ge=0, description="Minimum time each step runs before its gate may pass.")
    max_step_seconds: float = Field(1800, gt=0, description="A step's gate is inconclusive after this long.")
    look_seconds: float = Field(15, gt=0, le=3600, description="Time between two looks of a gate.")
    max_duration_seconds: float = Field(6 * 3600, gt=0, description=(
        "Whole rollout, steps, approval and bake included: a step or gate that starts later fails and the "
        "rollout rolls back."))
    shadow_percent: float = Field(100, ge=0, le=100,
                                  description="Blue-green: share of live traffic mirrored to the idle colour.")
    post_promotion_bake_seconds: float = Field(300, ge=0)
    metrics_source: Literal["gateway", "prometheus", "cloudwatch"] = "gateway"
    prometheus_url: str | None = None
    gates: GateSettings = Field(default_factory=GateSettings)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    on_backtest_insufficient: Literal["skip", "fail"] = Field(
        "skip", description="No or too few labelled logged rows: go on (logged as a warning) or stop.")
    require_approval: bool = Field(True, description=(
        "Ask a human before 100 %. Only a release policy that allows it lets this be off."))
    approvers: list[str] = Field(default_factory=list, description="Airflow users who may answer; empty = anyone.")
    approval_timeout_minutes: float = Field(60, gt=0, description="No answer in time = rejected (rolls back).")
    drill_faults: dict[str, float] | None = Field(
        None, description="Drills only, where the release policy allows them: faults injected into the "
                          "candidate on the gateway ({latency_ms, error_rate}), to rehearse an automatic rollback.")

    @model_validator(mode="after")
    def _consistent(self) -> RolloutPlan:
        if self.strategy == "canary":
            if not 1 <= len(self.steps) <= MAX_STEPS:
                raise ValueError(f"steps: a canary takes 1 to {MAX_STEPS} steps, got {len(self.steps)}")
            if any(not 0 < s < 100 for s in self.steps):
                raise ValueError("steps: each step is a share of traffic strictly between 0 and 100")
            if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
                raise ValueError(f"steps must increase, got {self.steps}")
        if self.max_step_seconds < self.bake_seconds:
            raise ValueError("max_step_seconds must be at least bake_seconds")
        if self.target == "kubernetes":
            missing = {"namespace", "app", "gateway"} - set(self.target_options)
            if missing:
                raise ValueError(f"target_options: target kubernetes needs {sorted(missing)}")
            if self.strategy != "canary":
                raise ValueError("target kubernetes runs canaries only: the route has no mirror for a "
                                 "blue-green shadow step")
            if self.metrics_source != "prometheus":
                raise ValueError("target kubernetes reads its gates from Prometheus: set metrics_source "
                                 "prometheus and prometheus_url")
        if self.target == "lambda":
            if self.metrics_source != "cloudwatch":
                raise ValueError("target lambda reads its gates from CloudWatch: set metrics_source cloudwatch")
            missing = {"function_name", "alias"} - set(self.target_options)
            if missing:
                raise ValueError(f"target_options: target lambda needs {sorted(missing)}")
            if self.strategy != "canary":
                raise ValueError("target lambda runs canaries only: a weighted alias splits traffic, it "
                                 "cannot mirror it for a blue-green shadow step")
        elif self.target == "ecs":
            missing = {"cluster", "blue_service", "green_service", "listener_rule_arn"} - set(self.target_options)
            if missing:
                raise ValueError(f"target_options: target ecs needs {sorted(missing)}")
            if self.metrics_source != "prometheus":
                raise ValueError("target ecs reads its gates from Prometheus (each colour's gateway tasks): set "
                                 "metrics_source prometheus and prometheus_url")
            if any(s != int(s) for s in self.step_percents):
                raise ValueError(f"steps: ALB listener weights are integers, so target ecs takes whole percents, "
                                 f"got {self.step_percents}")
            test = self.target_options.get("test_percent", ECS_TEST_PERCENT)
            if isinstance(test, bool) or not isinstance(test, int | float) or not 1 <= test <= 50:
                raise ValueError("target_options.test_percent: a whole percent from 1 to 50")
        elif self.target in TARGET_OPTIONS:
            missing = TARGET_OPTIONS[self.target] - set(self.target_options)
            if missing:
                raise ValueError(f"target_options: target {self.target} needs {sorted(missing)}")
            if self.target == "cloud_run" and any(s != int(s) for s in self.step_percents):
                raise ValueError(f"steps: Cloud Run splits traffic in whole percents, got {self.step_percents}")
        if self.metrics_source == "cloudwatch" and self.target != "lambda":
            raise ValueError("metrics_source cloudwatch reads Lambda metrics: use it with target lambda")
        if self.metrics_source == "prometheus" and not self.prometheus_url:
            raise ValueError("metrics_source prometheus needs prometheus_url")
        return self

    @property
    def step_percents(self) -> list[float]:
        """Traffic share of each gated step: the canary's steps, or blue-green's one shadow step (0 %).

        An ALB cannot mirror traffic, so on target ecs blue-green's one step sends the idle colour a
        small live share (`target_options.test_percent`) for its gate before the cut-over."""
        if self.strategy == "canary":
            return list(self.steps)
        if self.target == "ecs":
            return [float(self.target_options.get("test_percent", ECS_TEST_PERCENT))]
        return [0.0]

    @property
    def gate_windows(self) -> int:
        """How many gate windows share the rollout's false-rollback budget: steps + post-promotion bake."""
        return len(self.step_percents) + 1

    @classmethod
    def parse(cls, values: dict, policy: ReleasePolicy | None = None) -> RolloutPlan:
        """Validate Params, then hold them against the release policy (default: the configured file).

        RolloutPlanError names every bad field; PolicyFloorError the first Param below a floor.
        """
        from flightdeck.delivery.policy import check_plan

        try:
            plan = cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'plan'}: {err['msg']}"
                                 for err in exc.errors())
            raise RolloutPlanError(f"rollout Params are invalid: {problems}. Fix: correct those Params "
                                   "and trigger again.") from None
        check_plan(plan, policy)
        return plan


class RolloutExpiredError(RolloutPlanError):
    """The rollout ran past its plan's `max_duration_seconds`."""


@dataclass(frozen=True)
class ResolvedRollout:
    """A plan plus what it found when it started: the facts every later task works from.

    `target_state` is the deployment target as found at the start, where the target reads
    its baseline from the live system (a Lambda alias); `started_at` (epoch seconds) starts
    the clock of `max_duration_seconds`.
    """

    plan: RolloutPlan
    baseline_version: str
    candidate_version: str
    aliases_before: dict[str, str] = field(default_factory=dict)
    target_state: dict | None = None
    started_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {**asdict(self), "plan": self.plan.model_dump(mode="json")}

    @classmethod
    def from_dict(cls, data: dict) -> ResolvedRollout:
        return cls(plan=RolloutPlan.model_validate(data["plan"]), baseline_version=data["baseline_version"],
                   candidate_version=data["candidate_version"], aliases_before=dict(data["aliases_before"]),
                   target_state=data.get("target_state"), started_at=float(data.get("started_at") or time.time()))

    def with_target_state(self, target_state: dict) -> ResolvedRollout:
        return replace(self, target_state=dict(target_state))

    def seconds_left(self, now: float | None = None) -> float:
        """Time left of `max_duration_seconds` (negative once past it)."""
        return self.started_at + self.plan.max_duration_seconds - (time.time() if now is None else now)

    def check_time_left(self, now: float | None = None) -> float:
        """Seconds left; RolloutExpiredError once the whole rollout has run too long."""
        left = self.seconds_left(now)
        if left <= 0:
            raise RolloutExpiredError(
                f"the rollout of {self.plan.model_name} v{self.candidate_version} has run longer than "
                f"max_duration_seconds ({self.plan.max_duration_seconds:g} s); it is rolled back. Fix: raise "
                "max_duration_seconds, or shorten steps/bake_seconds, and trigger again.")
        return left
