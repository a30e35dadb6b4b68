"""The Params of a batch_score run."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from flightdeck.config import MODEL_REF_PATTERN, NAME_PATTERN, get_settings
from flightdeck.params import RunParams


class BatchScoreParams(RunParams):
    """Which model scores the day, and how much bad input the run tolerates."""

    what: ClassVar[str] = "batch scoring parameters"

    model_name: str = Field(default_factory=lambda: get_settings().model_name, pattern=NAME_PATTERN,
                            description="Registered model to score with.")
    model_ref: str = Field("champion", pattern=MODEL_REF_PATTERN, description=(
        "Version number or alias, resolved once at the start of the run; pin a number to reproduce history."))
    bad_fraction_threshold: float = Field(default_factory=lambda: get_settings().bad_fraction_threshold,
                                          ge=0, le=1,
                                          description="Fail the run when more of the input than this is bad.")
