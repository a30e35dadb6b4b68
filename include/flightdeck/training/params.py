"""The parameters of a training run, validated before any work starts."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from flightdeck.config import NAME_PATTERN, get_settings
from flightdeck.params import RunParams

MAX_WINDOW_DAYS = 400


class TrainParams(RunParams):
    """What to train on and how to judge it. Unknown keys are rejected, not ignored."""

    what: ClassVar[str] = "training parameters"

    model_name: str = Field(default_factory=lambda: get_settings().model_name, pattern=NAME_PATTERN,
                            description="Registered model to compare with and register into.")
    window_start: date = Field(description="First day of training data.")
    window_end: date = Field(description="Last day of training data.")
    labels_as_of: date | None = Field(
        None, description="Use labels that had arrived by this day; default the window's last day.")
    model_type: Literal["logistic_regression", "mlp"] = "logistic_regression"
    margin: float = Field(default_factory=lambda: get_settings().promotion_margin, ge=0, le=1,
                          description="ROC AUC the new model must gain over the champion.")
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
