"""The one MLflow wrapper: runs, ONNX models, versions and aliases.

Aliases, not stages: `champion` serves production, `challenger` is the newest version that
beat it, `previous` is the champion before the last promotion (for rollback).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
import onnx
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from flightdeck.config import MODEL_REF_PATTERN, Settings, get_settings
from flightdeck.errors import ConfigError, FlightdeckError, ModelNotFoundError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)

RUN_KEY = "flightdeck.run_key"
TRAINING_KEY = "flightdeck.training_key"
MODEL_URI_TAG = "flightdeck.onnx_model_uri"
ONNX_FILE = "model.onnx"


def _missing(exc: MlflowException) -> bool:
    return exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


@dataclass(frozen=True)
class Registration:
    """The outcome of `register`: the version, and whether this call created it."""

    version: str
    created: bool
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class ResolvedVersion:
    """A model reference pinned to a version: `ref` as asked ("champion", "3"), `version` as found."""

    name: str
    version: str
    ref: str
    run_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Registry:
    """MLflow tracking and registry at one URI, with flightdeck's idempotency rules."""

    def __init__(self, tracking_uri: str, artifact_root: str, experiment_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.experiment_name = experiment_name
        # Download progress bars go to stderr, which Airflow task logs show as errors.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # The fluent API (log_model, start_run) reads the process-wide URI.
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Registry:
        settings = settings or get_settings()
        if settings.tracking_uri.startswith("sqlite:///"):
            Path(settings.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return cls(settings.tracking_uri, settings.artifact_root, settings.experiment_name)

    # -- runs ---------------------------------------------------------------------------
    def experiment_id(self, experiment_name: str | None = None) -> str:
        """The experiment's id, created with our artifact root on first use."""
        name = experiment_name or self.experiment_name
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=f"{self.artifact_root.rstrip('/')}/{name}")
        except MlflowException:  # created concurrently by another task
            return self.client.get_experiment_by_name(name).experiment_id

    def find_run(self, key: str, experiment_name: str | None = None) -> str | None:
        """The run already logged under this idempotency key, if any (newest first)."""
        runs = self.client.search_runs(
            [self.experiment_id(experiment_name)], filter_string=f"tags.`{RUN_KEY}` = '{key}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def log_run(self, key: str, params: dict, metrics: dict[str, float], tags: dict[str, str], run_name: str,
                experiment_name: str | None = None, artifact_dir: Path | None = None) -> str:
        """Log one run; a second call with the same key returns the first run unchanged."""
        existing = self.find_run(key, experiment_name)
        if existing:
            log.info("run %s already logged for key %s: reusing it", existing, key[:12])
            return existing
        with mlflow.start_run(experiment_id=self.experiment_id(experiment_name), run_name=run_name) as run:
            mlflow.set_tags({**tags, RUN_KEY: key})
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            if artifact_dir is not None:
                mlflow.log_artifacts(str(artifact_dir))
            return run.info.run_id

    def log_json(self, run_id: str, data: dict, artifact_file: str) -> None:
        """Attach a JSON document to a run (e.g. the training reference profile)."""
        self.client.log_dict(run_id, data, artifact_file)

    def load_json(self, run_id: str, artifact_file: str) -> dict:
        """A JSON document attached to a run; ModelNotFoundError-style message when absent."""
        try:
            return mlflow.artifacts.load_dict(f"runs:/{run_id}/{artifact_file}")
        except (MlflowException, OSError) as exc:
            raise FlightdeckError(
                f"run {run_id} has no {artifact_file}. Fix: re-register the model with train_register, "
                "which logs it.") from exc

    def log_onnx_model(self, run_id: str, model: onnx.ModelProto, input_example: pd.DataFrame,
                       output_example, name: str = "model") -> str:
        """Attach the ONNX artifact, with signature and input example, to a run (once)."""
        run = self.client.get_run(run_id)
        if MODEL_URI_TAG in run.data.tags:
            return run.data.tags[MODEL_URI_TAG]
        # The signature names the artifact's own inputs, one [n, 1] tensor per feature: with a
        # column signature, pyfunc fed 1-D columns (strings as pandas arrays) that ONNX Runtime refused.
        from flightdeck import runtime

        feeds = runtime.to_feeds(runtime.load_session(model.SerializeToString()), input_example)
        signature = infer_signature(feeds, output_example)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.onnx.log_model(model, name=name, signature=signature, input_example=input_example,
                                         save_as_external_data=False)
            mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
        return info.model_uri

    # -- versions and aliases -------------------------------------------------------------
    def version_for_key(self, name: str, training_key: str) -> ModelVersion | None:
        """A version already registered from the same data and parameters, if any."""
        try:
            versions = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException as exc:
            if _missing(exc):
                return None
            raise
        matching = [v for v in versions if v.tags.get(TRAINING_KEY) == training_key]
        return min(matching, key=lambda v: int(v.version)) if matching else None

    def alias_version(self, name: str, alias: str) -> ModelVersion | None:
        """The version an alias points at, or None when the model or alias does not exist."""
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if _missing(exc) or "alias" in str(exc).lower():
                return None
            raise

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version for the registered model (empty if it does not exist)."""
        try:
            return {alias: str(v) for alias, v in self.client.get_registered_model(name).aliases.items()}
        except MlflowException as exc:
            if _missing(exc):
                return {}
            raise

    def register(self, name: str, model_uri: str, run_id: str, training_key: str,
                 description: str = "") -> Registration:
        """Register a new version as `challenger`, and as `champion` when there is none.

        Idempotent: a version already registered for `training_key` is returned as it is.
        """
        existing = self.version_for_key(name, training_key)
        if existing is not None:
            return Registration(str(existing.version), False, tuple(existing.aliases))
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = self.client.create_model_version(
            name, model_uri, run_id=run_id, tags={TRAINING_KEY: training_key}, description=description)
        aliases = [CHALLENGER]
        if self.alias_version(name, CHAMPION) is None:
            aliases.append(CHAMPION)
        for alias in aliases:
            self.client.set_registered_model_alias(name, alias, version.version)
        return Registration(str(version.version), True, tuple(aliases))

    def get_version(self, name: str, ref: str) -> ModelVersion:
        """A version by number ("3") or alias ("champion"); ModelNotFoundError when absent."""
        if ref.isdigit():
            try:
                return self.client.get_model_version(name, ref)
            except MlflowException as exc:
                raise ModelNotFoundError(name, f"version {ref}") from exc
        version = self.alias_version(name, ref)
        if version is None:
            raise ModelNotFoundError(name, f"alias {ref!r}")
        return version

    def resolve(self, name: str, ref: str) -> ResolvedVersion:
        """Pin a model reference (a version number or an alias such as "champion") to a version,
        once at the start of a run, so every later step uses the same one."""
        ref = str(ref)
        if not re.match(MODEL_REF_PATTERN, ref):
            raise ConfigError("model_ref", f"{ref!r} is neither a version number nor an alias name",
                              'pass a registered version number such as "3" or an alias such as "champion"')
        version = self.get_version(name, ref)
        resolved = ResolvedVersion(name=name, version=str(version.version), ref=ref, run_id=version.run_id)
        log.info("model %s %s is version %s", name, ref, resolved.version)
        return resolved

    def download_onnx(self, name: str, ref: str) -> tuple[str, bytes]:
        """(version, model bytes) of a version number or an alias of a registered model."""
        version = self.get_version(name, ref)
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version.version}", dst_path=tmp, tracking_uri=self.tracking_uri)
            return str(version.version), (Path(local) / ONNX_FILE).read_bytes()
