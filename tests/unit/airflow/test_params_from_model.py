"""Params generated from a pydantic model check in the trigger form what the model checks."""

from __future__ import annotations

from typing import Literal

import pytest
from airflow.sdk.definitions.param import ParamsDict
from pydantic import BaseModel, ConfigDict, Field

from flightdeck.airflow.params import params_from_model
from flightdeck.airflow.release import rollout_params
from flightdeck.delivery.plan import RolloutPlan


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1)


class Example(BaseModel):
    name: str = Field(..., pattern=r"^[a-z]+$", description="Lower-case name.")
    size: int = Field(3, ge=1, le=10)
    mode: Literal["fast", "slow"] = "fast"
    note: str | None = None
    inner: Inner = Field(default_factory=Inner)


def resolved(params: dict, **values) -> dict:
    merged = ParamsDict(params)
    for key, value in values.items():
        merged[key] = value
    return merged.validate()


def test_fields_become_params_with_their_schema_and_defaults():
    params = params_from_model(Example, {"name": "credit"})
    assert list(params) == ["name", "size", "mode", "note", "inner"]
    assert params["name"].description == "Lower-case name."
    assert params["mode"].schema["enum"] == ["fast", "slow"]
    assert params["note"].schema["type"] == ["string", "null"]
    assert resolved(params) == {"name": "credit", "size": 3, "mode": "fast", "note": None,
                                "inner": {"alpha": 0.05}}


@pytest.mark.parametrize("field, value", [("name", "Credit!"), ("size", 0), ("size", 11), ("mode", "medium"),
                                          ("note", 5), ("inner", {"alpha": 2}), ("inner", {"beta": 1})])
def test_values_the_model_rejects_are_rejected_by_the_params(field, value):
    params = params_from_model(Example, {"name": "credit"})
    with pytest.raises(Exception, match=field if field != "inner" else None):
        resolved(params, **{field: value})
    with pytest.raises(ValueError):
        Example.model_validate({"name": "credit", field: value})


def test_a_required_field_without_override_has_no_default():
    params = params_from_model(Example)
    with pytest.raises(Exception, match="name"):
        resolved(params)
    assert resolved(params, name="ok")["name"] == "ok"


def test_unknown_override_or_exclusion_is_refused():
    with pytest.raises(ValueError, match="nope"):
        params_from_model(Example, {"nope": 1})
    with pytest.raises(ValueError, match="nope"):
        params_from_model(Example, exclude=["nope"])


@pytest.mark.parametrize("strategy", ["canary", "blue_green"])
def test_promotion_params_are_the_rollout_plan_and_their_defaults_parse(strategy):
    params = rollout_params(strategy)
    assert "strategy" not in params
    assert ("steps" in params) == (strategy == "canary") and ("shadow_percent" in params) != (strategy == "canary")
    values = resolved(params)
    assert RolloutPlan.parse({**values, "strategy": strategy}).model_dump(mode="json") == \
        {**RolloutPlan(strategy=strategy, model_name=values["model_name"]).model_dump(mode="json")}
