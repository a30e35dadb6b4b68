"""The self-running model pipeline: which links between the DAGs are on, for which model.

A drift verdict (batch_score's monitoring, or the stream scorer's alert) can request a retrain
of the drifted model on a sliding window; a registration can request the model's releases
(edge_export, serverless_package, and one promotion, canary or blue-green). Each link is off
unless the pipeline file (`FLIGHTDECK_PIPELINE_CONFIG`, default `$FLIGHTDECK_HOME/pipeline.yaml`)
turns it on for a model, by name: one model's links never fire for another model.

    models:
      flightdeck-classifier:
        retrain:
          on_batch_drift: true
          on_stream_drift: false
          window_days: 28
          label_delay_days: 7
          conf: {model_type: logistic_regression}
        on_registered:
          edge_export: {enabled: true, conf: {channel: beta}}
          serverless_package: {enabled: false}
          promotion: {enabled: true, strategy: canary, conf: {endpoint: default}}

This module decides; the Airflow side (`flightdeck.airflow.pipeline`) only emits and reads the
asset events. A missing file means every link is off.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flightdeck.config import NAME_PATTERN
from flightdeck.errors import ConfigError

Strategy = Literal["canary", "blue_green"]
# The DAGs a registration can start, by what they are called in the pipeline file.
RELEASE_CONSUMERS = ("edge_export", "serverless_package", "promote_canary", "promote_blue_green")
# Keys the link sets itself: a `conf` that sets them too is refused.
RETRAIN_OWNED = frozenset({"model_name", "window_start", "window_end", "labels_as_of"})
RELEASE_OWNED = frozenset({"model_name", "model_ref", "strategy"})
MAX_WINDOW_DAYS = 400  # as TrainParams allows


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrainLinks(_Strict):
    """When a drift verdict requests a retrain, and on which window."""

    on_batch_drift: bool = Field(False, description="batch_score's drift verdict requests a retrain.")
    on_stream_drift: bool = Field(False, description="The stream scorer's drift alert requests a retrain.")
    window_days: int = Field(28, ge=1, le=MAX_WINDOW_DAYS, description="Days of data the retrain trains on.")
    label_delay_days: int = Field(0, ge=0, le=365, description=(
        "How many days before the drifted day the window ends, so that its rows have their labels."))
    conf: dict[str, Any] = Field(default_factory=dict, description="Further train_register Params.")

    @model_validator(mode="after")
    def _conf_keys(self) -> RetrainLinks:
        from flightdeck.training.params import TrainParams

        _check_conf("retrain.conf", self.conf, set(TrainParams.model_fields) - RETRAIN_OWNED, RETRAIN_OWNED)
        return self

    @property
    def any(self) -> bool:
        return self.on_batch_drift or self.on_stream_drift


class ReleaseLink(_Strict):
    """One DAG a registration starts, with the Params it gets besides model and version."""

    enabled: bool = False
    conf: dict[str, Any] = Field(default_factory=dict)


class PromotionLink(ReleaseLink):
    """The promotion a registration starts: canary or blue-green (the approval gate stays)."""

    strategy: Strategy = "canary"


class ReleaseLinks(_Strict):
    edge_export: ReleaseLink = Field(default_factory=ReleaseLink)
    serverless_package: ReleaseLink = Field(default_factory=ReleaseLink)
    promotion: PromotionLink = Field(default_factory=PromotionLink)

    @model_validator(mode="after")
    def _conf_keys(self) -> ReleaseLinks:
        for consumer, link in self.links().items():
            _check_conf(f"on_registered.{_link_name(consumer)}.conf", link.conf,
                        set(_params_model(consumer).model_fields) - RELEASE_OWNED, RELEASE_OWNED)
        return self

    def links(self) -> dict[str, ReleaseLink]:
        """Consumer DAG id → its link; the promotion counts as the DAG of its strategy."""
        return {"edge_export": self.edge_export, "serverless_package": self.serverless_package,
                f"promote_{self.promotion.strategy}": self.promotion}

    def enabled(self) -> dict[str, ReleaseLink]:
        return {consumer: link for consumer, link in self.links().items() if link.enabled}


class ModelPipeline(_Strict):
    """The links of one registered model. Every link is off by default."""

    retrain: RetrainLinks = Field(default_factory=RetrainLinks)
    on_registered: ReleaseLinks = Field(default_factory=ReleaseLinks)


class PipelineConfig(_Strict):
    models: dict[str, ModelPipeline] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> PipelineConfig:
        import re

        bad = [name for name in self.models if not re.match(NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"model name(s) {bad} are not registered-model names ({NAME_PATTERN})")
        return self

    def for_model(self, name: str) -> ModelPipeline:
        """The model's links; a model the file does not name has every link off."""
        return self.models.get(name) or ModelPipeline()

    def stream_retrain_models(self) -> list[str]:
        return sorted(name for name, links in self.models.items() if links.retrain.on_stream_drift)


def _link_name(consumer: str) -> str:
    return "promotion" if consumer.startswith("promote_") else consumer


def _params_model(consumer: str) -> type[BaseModel]:
    if consumer == "edge_export":
        from flightdeck.edge.params import EdgeExportParams

        return EdgeExportParams
    if consumer == "serverless_package":
        from flightdeck.serverless.params import ServerlessPackageParams

        return ServerlessPackageParams
    from flightdeck.delivery.plan import RolloutPlan

    return RolloutPlan


def _check_conf(where: str, conf: dict, known: set[str], owned: frozenset[str]) -> None:
    taken = sorted(set(conf) & owned)
    if taken:
        raise ValueError(f"{where} sets {taken}, which the link sets itself (model, version, window)")
    unknown = sorted(set(conf) - known)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; known: {', '.join(sorted(known))}")


def load_pipeline_config(path: Path) -> PipelineConfig:
    """The pipeline file at `path`; no file means every link off. A malformed one raises
    ConfigError naming the file, the bad entry and the fix."""
    if not path.exists():
        return PipelineConfig()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read the pipeline file ({exc})",
                          "write it as YAML with a top-level `models:` mapping") from None
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(str(path), f"invalid pipeline file ({problems})",
                          "correct the named entries (see deploy/pipeline.yaml for every key)") from None


def pipeline_config() -> PipelineConfig:
    """The pipeline file the settings name."""
    from flightdeck.config import get_settings

    return load_pipeline_config(get_settings().pipeline_file)


# ---- retrain requests ----------------------------------------------------------------------
def retrain_window(drifted_day: date, links: RetrainLinks) -> dict[str, str]:
    """The sliding window a drift on `drifted_day` retrains on: `window_days` days ending
    `label_delay_days` before the drifted day, with the labels known on the drifted day (nothing
    from after the verdict)."""
    end = drifted_day - timedelta(days=links.label_delay_days)
    start = end - timedelta(days=links.window_days - 1)
    return {"window_start": start.isoformat(), "window_end": end.isoformat(),
            "labels_as_of": drifted_day.isoformat()}


def retrain_request(model_name: str, drifted_day: date, links: RetrainLinks, source: str,
                    detail: str = "") -> dict[str, Any]:
    """The extra of a retrain request: what train_register runs with, and why."""
    window = retrain_window(drifted_day, links)
    return {"model_name": model_name, "drifted_day": drifted_day.isoformat(), "source": source,
            "detail": detail[:500], "window": window,
            "conf": {**links.conf, "model_name": model_name, **window}}


def batch_drift_detected(monitored: dict) -> bool:
    """batch_score's drift verdict from its monitoring result: drifted features, or a drifted
    score (a volume alert alone is not drift)."""
    if monitored.get("drifted_features"):
        return True
    return bool(monitored.get("score_drifted"))


def stream_alert_origin(payload: dict, default_model: str) -> tuple[str, date]:
    """The model and the (UTC) day of a stream drift alert (the trigger's payload): the model the
    alert names, else the scorer's default model; the day its window ended."""
    import json

    try:
        body = json.loads(payload["data"]["data"])
        end = float(body["end"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError("stream drift alert", f"the alert {str(payload)[:200]} has no JSON body with an 'end' "
                          f"time ({exc})", "publish alerts with `flightdeck stream --alerts <stream>`") from None
    model = body.get("model_name") or default_model
    return str(model), datetime.fromtimestamp(end, UTC).date()


# ---- release requests ----------------------------------------------------------------------
def release_requests(model_name: str, links: ReleaseLinks, registration: dict, *, mlflow_run_id: str,
                     airflow_run_id: str, window: dict | None = None) -> dict[str, dict[str, Any]]:
    """Consumer DAG id → the extra of its release request, for every link that is on; nothing
    when no new version was registered (a re-run on the same data registers nothing new)."""
    if not registration.get("created"):
        return {}
    version = str(registration["version"])
    common = {"model_name": model_name, "version": version, "mlflow_run_id": mlflow_run_id,
              "run_id": airflow_run_id, "window": window or {}}
    return {consumer: {**common, "conf": {**link.conf, "model_name": model_name, "model_ref": version}}
            for consumer, link in links.enabled().items()}


def conf_from_events(extras: list[dict]) -> dict[str, Any]:
    """The Params an asset-triggered run takes from its triggering events: the newest event's
    `conf` (several events queued for one run are one request: the newest wins)."""
    confs = [extra["conf"] for extra in extras if isinstance(extra, dict) and isinstance(extra.get("conf"), dict)]
    return dict(confs[-1]) if confs else {}
