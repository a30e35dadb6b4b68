"""The parameters of a training run, validated before any work starts."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flightdeck.config import get_settings
from flightdeck.errors import ConfigError

MAX_WINDOW_DAYS = 400


class TrainParams(BaseModel):
    """What to train on and how to judge it. Unknown keys are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(default_factory=lambda: get_settings().model_name,
                            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    window_start: date
    window_end: date
    labels_as_of: date | None = Field(
        None, description="Use labels that had arrived by this day; default the window's last day.")
    model_type: Literal["logistic_regression", "mlp"] = "logistic_regression"
    margin: float = Field(default_factory=lambda: get_settings().promotion_margin, ge=0, le=1)
    holdout_fraction: float = Field(default_factory=lambda: get_settings().holdout_fraction, gt=0.0, lt=0.5)
    seed: int = Field(default_factory=lambda: get_settings().seed, ge=0)

    @model_validator(mode="after")
    def _check_window(self) -> TrainParams:
        if self.window_end < self.window_start:
            raise ValueError(f"window_end {self.window_end} is before window_start {self.window_start}")
        if (self.window_end - self.window_start).days + 1 > MAX_WINDOW_DAYS:
            raise ValueError(f"the window spans more than {MAX_WINDOW_DAYS} days")
        if self.labels_as_of is not None and self.labels_as_of < self.window_start:
            raise ValueError(f"labels_as_of {self.labels_as_of} is before window_start {self.window_start}")
        return self

    @property
    def label_cutoff(self) -> date:
        return self.labels_as_of or self.window_end

    @classmethod
    def parse(cls, values: dict[str, Any]) -> TrainParams:
        """Validate a mapping (Airflow params, CLI options); raise ConfigError naming each bad Param."""
        cleaned = {k: v for k, v in values.items() if v is not None and v != ""}
        try:
            return cls.model_validate(cleaned)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = ".".join(str(part) for part in error["loc"]) or "window"
                message = "unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
                problems.append((name, message))
            names = ", ".join(name for name, _ in problems)
            detail = "; ".join(f"{name}: {message}" for name, message in problems)
            raise ConfigError(names, f"invalid training parameters ({detail})",
                              "correct the named Param(s) in the trigger form or run conf; "
                              f"known Params are {', '.join(cls.model_fields)}") from None
