"""Experiment definitions: what an A/B test (or bandit) compares, on which unit, by which metrics.

A definition is a YAML file under `include/config/experiments/`, validated here before any
data is read. Example (see `include/config/experiments/credit_ab.yaml`):

    name: credit-challenger-ab
    endpoint: credit-experiment          # a gateway endpoint with policy `ab` (sticky by unit)
    unit: unit_id                        # the randomisation unit: the gateway's X-Unit-Id
    variants:
      a: {alias: champion, weight: 0.5}
      b: {alias: challenger, weight: 0.5}
    control: a
    primary_metric: log_loss
    secondary_metrics: [approval_rate, default_rate]
    guardrails: [{metric: latency_ms, tolerance: 5}]
    minimum_detectable_effect: 0.03      # absolute, in the primary metric's units
    alpha: 0.05
    power: 0.8
    start_date: 2026-12-01
    max_duration_days: 28
    policy: sequential                   # fixed | sequential | bandit

A bad definition raises `ConfigError` naming the field (`variants.b.weight`, `unit`, …).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flightdeck.config import NAME_PATTERN
from flightdeck.errors import ConfigError
from flightdeck.experiments.metrics import METRICS, Unit
from flightdeck.serving.routes import ModelRef

Policy = Literal["fixed", "sequential", "bandit"]
# Weights are shares written by people: allow rounding in the last digit (e.g. three thirds).
WEIGHT_TOLERANCE = 1e-6


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantDefinition(ModelRef):
    """One arm: a registered model version (by alias or number) and its share of units."""

    weight: float = Field(..., ge=0, le=1, description="Share of units; all weights sum to 1.")


class Guardrail(_Strict):
    """A metric the treatment must not make worse. `tolerance` (absolute, the metric's units)
    is harm too small to matter: a guardrail fails only on a significant harm beyond it."""

    metric: str
    tolerance: float = Field(0.0, ge=0)


class BanditSettings(_Strict):
    """Thompson sampling over the variants on a binary reward (the primary metric, a proportion)."""

    floor: float = Field(0.05, ge=0, lt=0.5, description="Minimum share of traffic per arm.")
    min_units: int = Field(100, ge=1, description="Units every arm needs before weights move.")
    top_two_beta: float = Field(0.5, gt=0, lt=1)
    seed: int | None = None


class CupedSettings(_Strict):
    """CUPED: reduce the primary metric's variance with the same metric of each unit before the test."""

    pre_period_days: int = Field(14, ge=1, le=365)


class ExperimentDefinition(_Strict):
    """A validated experiment. Metric names come from `flightdeck.experiments.metrics.METRICS`."""

    name: str = Field(..., pattern=NAME_PATTERN)
    description: str = ""
    endpoint: str = Field(..., min_length=1, description="Gateway endpoint that splits the traffic.")
    model_name: str | None = Field(None, description="Registered model; default the settings' model_name.")
    unit: Unit = Field(..., description="Randomisation unit: unit_id (X-Unit-Id) or request_id.")
    variants: dict[str, VariantDefinition] = Field(..., min_length=2)
    control: str
    primary_metric: str
    secondary_metrics: list[str] = Field(default_factory=list)
    guardrails: list[Guardrail] = Field(default_factory=list)
    minimum_detectable_effect: float = Field(..., gt=0, description="Absolute, in the primary metric's units.")
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    start_date: date
    max_duration_days: int = Field(..., ge=1, le=365)
    policy: Policy = "sequential"
    bandit: BanditSettings | None = None
    cuped: CupedSettings | None = None
    srm_threshold: float = Field(0.001, gt=0, lt=1)
    min_units_per_variant: int = Field(2, ge=2, description="Below this a variant has insufficient data.")
    promotion: dict[str, Any] = Field(default_factory=dict, description=(
        "Params of the promote_canary run triggered when the experiment ships (e.g. endpoint, steps); "
        "the candidate is the winning variant's model version."))

    @field_validator("guardrails", mode="before")
    @classmethod
    def _guardrail_shorthand(cls, value):
        # `guardrails: [latency_ms]` is shorthand for `[{metric: latency_ms}]`.
        if isinstance(value, list):
            return [{"metric": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentDefinition:
        if self.control not in self.variants:
            raise ValueError(f"control: {self.control!r} is not a variant; variants are {sorted(self.variants)}")
        total = sum(v.weight for v in self.variants.values())
        if abs(total - 1) > WEIGHT_TOLERANCE:
            shares = ", ".join(f"{k}={v.weight:g}" for k, v in self.variants.items())
            raise ValueError(f"variants: weights must sum to 1, got {total:g} ({shares})")
        named = [("primary_metric", self.primary_metric)]
        named += [(f"secondary_metrics[{i}]", m) for i, m in enumerate(self.secondary_metrics)]
        named += [(f"guardrails[{i}].metric", g.metric) for i, g in enumerate(self.guardrails)]
        for where, metric in named:
            if metric not in METRICS:
                raise ValueError(f"{where}: unknown metric {metric!r}; known metrics are {sorted(METRICS)}")
        if self.policy == "bandit" and METRICS[self.primary_metric].kind != "proportion":
            raise ValueError(f"primary_metric: policy bandit needs a proportion as reward, got {self.primary_metric!r} "
                             f"(proportions: {sorted(m for m, s in METRICS.items() if s.kind == 'proportion')})")
        from flightdeck.delivery.plan import RolloutPlan

        allowed = set(RolloutPlan.model_fields) - {"strategy", "model_ref"}  # the candidate is the winner
        unknown = sorted(set(self.promotion) - allowed)
        if unknown:
            raise ValueError(f"promotion: {unknown} are not promote_canary Params (known: {sorted(allowed)})")
        if self.bandit is not None and self.policy != "bandit":
            raise ValueError("bandit: settings given but policy is not bandit")
        if self.policy == "bandit" and len(self.variants) == 2 and self.bandit_settings.top_two_beta <= 0.5:
            # Top-two sampling gives arm 1 beta*p1 + (1-beta)*p2 with two arms: 1/2 at beta = 1/2,
            # whatever the evidence. A bandit that never moves traffic is not what anyone asks for.
            raise ValueError("bandit.top_two_beta: with two variants, top-two sampling at beta <= 0.5 keeps the "
                             "split at 50/50 forever; set it above 0.5 (e.g. 0.8) or add a variant")
        return self

    @property
    def treatments(self) -> list[str]:
        """Every variant but the control, in definition order."""
        return [name for name in self.variants if name != self.control]

    @property
    def weights(self) -> dict[str, float]:
        return {name: v.weight for name, v in self.variants.items()}

    @property
    def bandit_settings(self) -> BanditSettings:
        return self.bandit or BanditSettings()

    @property
    def metric_names(self) -> list[str]:
        """Primary, then secondary, then guardrail metrics, without repeats."""
        names = [self.primary_metric, *self.secondary_metrics, *(g.metric for g in self.guardrails)]
        return list(dict.fromkeys(names))


def parse_definition(document: object, source: str = "experiment definition") -> ExperimentDefinition:
    """Validate a definition document; ConfigError names every bad field."""
    if not isinstance(document, dict):
        raise ConfigError(source, f"must be a mapping of fields, got {type(document).__name__}",
                          "write the definition as YAML fields (see include/config/experiments/)")
    try:
        return ExperimentDefinition.model_validate(document)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            problems.append(message if not where else f"{where}: {message}")
        raise ConfigError(source, "is invalid: " + "; ".join(problems),
                          "correct those fields (format in flightdeck.experiments.definitions)") from None


def experiments_dir() -> Path:
    """Where definitions live: settings `experiments_dir`, else include/config/experiments/ of this repository."""
    from flightdeck.config import get_settings

    return get_settings().experiment_definitions_dir


def load_definition(path: str | Path) -> ExperimentDefinition:
    """A definition from a YAML file. A bare file name is looked up under `experiments_dir()`."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = experiments_dir() / path
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        known = sorted(p.name for p in experiments_dir().glob("*.yaml"))
        raise ConfigError(f"experiment definition {path}", "does not exist",
                          f"name one of {known} or give a path to a YAML file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"experiment definition {path}", f"cannot be read ({exc})",
                          "fix the YAML syntax") from None
    return parse_definition(document, f"experiment definition {path.name}")
