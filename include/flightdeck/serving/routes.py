"""The route table: which model versions each gateway endpoint serves, and how it splits traffic.

A route table is a document (YAML or JSON) validated here; the admin API replaces it as a
whole, with a version number. Example:

    endpoints:
      default:
        policy: canary              # single | blue_green | canary | ab | ensemble | conditional
        variants:
          stable: {alias: champion}
          canary: {version: "7"}
        weights: {stable: 90, canary: 10}
        shadow: {variant: canary, percent: 10}
        fallback: {variant: stable, latency_budget_ms: 50}

Policies: `single` (one variant, besides any shadow or fallback), `blue_green` (`active` names the live colour; switching
it is instant), `canary` (weighted, per request), `ab` (weighted, sticky by unit id:
hash of `salt` and the id), `ensemble` (every member scores; mean or majority vote),
`conditional` (per row, first matching rule on a feature, else `default`).
Any endpoint may add a `shadow` (mirror a share of requests, answer discarded) and a
`fallback` (latency budget + circuit breaker). Admins (a valid admin token) force a variant
with the `X-Flightdeck-Variant` header; on an endpoint with `allow_override: false` a forced
variant or pinned version is refused (403 OverrideDisabledError), never routed by the policy instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flightdeck.serving.errors import RouteTableError

Policy = Literal["single", "blue_green", "canary", "ab", "ensemble", "conditional"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Faults(_Strict):
    """Injected faults for drills and tests: added latency and a share of failed calls."""

    latency_ms: float = Field(0.0, ge=0, le=60_000)
    error_rate: float = Field(0.0, ge=0, le=1)


class ModelRef(_Strict):
    """A registered model version, by alias (re-resolved as the alias moves) or by number.

    The one definition of "alias or version": route-table variants and experiment arms both
    extend it. Exactly one of `alias` and `version` is given.
    """

    model: str | None = Field(None, description="Registered model; default the settings' model_name.")
    alias: str | None = None
    version: str | None = Field(None, pattern=r"^[0-9]+$")

    @model_validator(mode="after")
    def _one_reference(self) -> ModelRef:
        if (self.alias is None) == (self.version is None):
            raise ValueError("give exactly one of `alias` or `version`")
        return self

    @property
    def ref(self) -> str:
        """The alias or the version number, as the registry resolves it."""
        return self.version or self.alias  # type: ignore[return-value]


class VariantSpec(ModelRef):
    """One variant of an endpoint: a model reference and, for drills, injected faults."""

    faults: Faults | None = None


class ShadowSpec(_Strict):
    variant: str
    percent: float = Field(100.0, gt=0, le=100)


class FallbackSpec(_Strict):
    """Answer from `variant` when the primary fails, exceeds the budget, or its breaker is open."""

    variant: str
    latency_budget_ms: float = Field(..., gt=0)
    failure_threshold: int = Field(5, gt=0, description="Consecutive failures that open the breaker.")
    reset_seconds: float = Field(10.0, gt=0, description="Open time before one trial request.")


class EnsembleSpec(_Strict):
    method: Literal["mean", "vote"] = "mean"
    members: list[str] | None = Field(None, description="Variants that vote; default all.")


class ConditionRule(_Strict):
    feature: str
    op: Literal["<", "<=", ">", ">=", "==", "!=", "in"]
    value: Any
    variant: str


class EndpointSpec(_Strict):
    policy: Policy
    variants: dict[str, VariantSpec] = Field(..., min_length=1)
    active: str | None = Field(None, description="blue_green: the live variant.")
    weights: dict[str, float] | None = Field(None, description="canary / ab: relative traffic shares.")
    salt: str | None = Field(None, description="ab: hash salt; change it to re-randomise units.")
    ensemble: EnsembleSpec | None = None
    conditions: list[ConditionRule] | None = None
    default: str | None = Field(None, description="conditional: variant when no rule matches.")
    shadow: ShadowSpec | None = None
    fallback: FallbackSpec | None = None
    allow_override: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> EndpointSpec:
        names = set(self.variants)

        def known(name: str | None, where: str) -> None:
            if name is not None and name not in names:
                raise ValueError(f"{where} names unknown variant {name!r}; variants are {sorted(names)}")

        if self.policy == "single" and len(self.live_variants) != 1:
            raise ValueError("policy single takes exactly one variant besides its shadow and fallback")
        if self.policy == "blue_green":
            if self.active is None:
                raise ValueError("policy blue_green needs `active`")
            known(self.active, "active")
        if self.policy in ("canary", "ab"):
            if not self.weights:
                raise ValueError(f"policy {self.policy} needs `weights`")
            for name, weight in self.weights.items():
                known(name, "weights")
                if weight < 0:
                    raise ValueError(f"weight of {name!r} is negative")
            if sum(self.weights.values()) <= 0:
                raise ValueError("weights must not all be zero")
        if self.policy == "ensemble":
            for name in (self.ensemble.members if self.ensemble and self.ensemble.members else []):
                known(name, "ensemble.members")
        if self.policy == "conditional":
            if not self.conditions or self.default is None:
                raise ValueError("policy conditional needs `conditions` and `default`")
            known(self.default, "default")
            for rule in self.conditions:
                known(rule.variant, "conditions")
                if rule.op == "in" and not isinstance(rule.value, list):
                    raise ValueError(f"condition on {rule.feature!r}: op `in` takes a list")
        if self.shadow:
            known(self.shadow.variant, "shadow.variant")
        if self.fallback:
            known(self.fallback.variant, "fallback.variant")
        return self

    @property
    def live_variants(self) -> list[str]:
        """Variants that take live traffic: all but those only named as shadow or fallback."""
        helpers = {spec.variant for spec in (self.shadow, self.fallback) if spec is not None}
        return [name for name in self.variants if name not in helpers]

    def model_refs(self, default_model: str) -> set[tuple[str, str]]:
        """Every (model, alias-or-version) this endpoint needs loaded."""
        return {(v.model or default_model, v.ref) for v in self.variants.values()}


class RouteTable(_Strict):
    endpoints: dict[str, EndpointSpec] = Field(..., min_length=1)
    default_endpoint: str | None = Field(None, description="Served by POST /invocations; default the first.")

    @model_validator(mode="after")
    def _default_exists(self) -> RouteTable:
        if self.default_endpoint is not None and self.default_endpoint not in self.endpoints:
            raise ValueError(f"default_endpoint {self.default_endpoint!r} is not an endpoint")
        for name in self.endpoints:
            if not name or "/" in name:
                raise ValueError(f"endpoint name {name!r} must be non-empty and contain no '/'")
        return self

    @property
    def default(self) -> str:
        return self.default_endpoint or next(iter(self.endpoints))


def parse_route_table(document: Any) -> RouteTable:
    """Validate a route table document; RouteTableError names each problem."""
    try:
        return RouteTable.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'table'}: {err['msg']}" for err in exc.errors())
        raise RouteTableError(f"route table is invalid: {problems}. Fix: correct those fields "
                              "(format in flightdeck.serving.routes).") from None


def load_route_file(path: Path) -> RouteTable:
    """A route table from a YAML or JSON file."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RouteTableError(f"cannot read route table {path}: {exc}. Fix: point "
                              "FLIGHTDECK_ROUTES_FILE at a readable YAML file.") from exc
    return parse_route_table(document)


def default_route_table(alias: str = "champion") -> RouteTable:
    """One endpoint, `default`, serving the registered model's champion."""
    return parse_route_table(
        {"endpoints": {"default": {"policy": "single", "variants": {alias: {"alias": alias}}}}})
