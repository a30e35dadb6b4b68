"""The Params of the experiment DAGs: experiment_analysis and shadow_evaluation."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from flightdeck.params import RunParams


class ExperimentAnalysisParams(RunParams):
    """Which experiment definition to analyse."""

    what: ClassVar[str] = "experiment analysis parameters"

    definition: str = Field("credit_ab.yaml", pattern=r"^[A-Za-z0-9_.-]+\.ya?ml$",
                            description="Experiment definition file under include/config/experiments/.")


class ShadowEvaluationParams(RunParams):
    """The endpoint whose shadow variant is judged, and the thresholds of the recommendation."""

    what: ClassVar[str] = "shadow evaluation parameters"

    endpoint: str = Field("credit", min_length=1, description="Gateway endpoint with a shadow variant.")
    criteria: dict = Field(default_factory=dict, description=(
        "Recommendation thresholds (flightdeck.experiments.shadow.ShadowCriteria): min_pairs, max_disagreement, "
        "max_latency_overhead_ms, min_labelled_pairs, alpha, …"))
