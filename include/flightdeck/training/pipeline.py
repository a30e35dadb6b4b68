"""The stages of `train_register`, each a plain function an Airflow task (or the CLI) calls.

Stages hand each other small JSON-able dicts; the fitted pipeline and the ONNX file go
through a per-run staging folder that only these stages write and read.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import joblib
import onnx
import pandas as pd

import flightdeck
from flightdeck import runtime
from flightdeck.batch.monitoring import build_reference_profile
from flightdeck.config import get_settings, safe_run_id
from flightdeck.data.expectations import validate_raw
from flightdeck.data.partitions import read_window
from flightdeck.data.schema import DS, FEATURES, LABEL
from flightdeck.errors import DataValidationError
from flightdeck.golden import GOLDEN_SCORES_FILE, PARITY_METRIC, golden_scores_document
from flightdeck.registry import CHAMPION, TRAINING_KEY, Registry
from flightdeck.training.evaluate import classification_metrics, decide_registration
from flightdeck.training.export import check_parity, to_onnx
from flightdeck.training.params import TrainParams
from flightdeck.training.train import fit_pipeline, labelled_rows, split_holdout

log = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.joblib"
REFERENCE_PROFILE = "reference_profile.json"
ONNX_FILE = "model.onnx"


def staging_dir(run_id: str) -> Path:
    """The scratch folder of one run (created on demand)."""
    path = get_settings().staging_dir / safe_run_id(run_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _window(params: TrainParams) -> pd.DataFrame:
    return read_window(get_settings().raw_dir, params.window_start, params.window_end)


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the frame's columns and row contents (order-sensitive, index-free)."""
    digest = hashlib.sha256("|".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def training_key(params: TrainParams, data_fingerprint: str) -> str:
    """Identifies a model by what determines it: data, training parameters and code version.

    The margin is left out on purpose: it judges the model, it does not change it.
    """
    fields = params.model_dump(mode="json", exclude={"margin"})
    fields.update(data=data_fingerprint, code=flightdeck.__version__)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def validate_window(params: TrainParams) -> dict:
    """Run the raw-data suite over the window; raise DataValidationError naming each failure."""
    frame = _window(params).drop(columns=[DS])
    report = validate_raw(frame, name=f"raw partitions {params.window_start}..{params.window_end}")
    if not report.success:
        raise DataValidationError(report)
    data_fingerprint = fingerprint(frame)
    log.info("window valid: %d rows, %d expectations passed", len(frame), report.n_expectations)
    return {"rows": len(frame), "data_fingerprint": data_fingerprint,
            "training_key": training_key(params, data_fingerprint)}


def _split(params: TrainParams) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    frame = _window(params)
    train, holdout = split_holdout(labelled_rows(frame, params.label_cutoff), params.holdout_fraction, params.seed)
    return frame, train, holdout


def train(params: TrainParams, staging: Path) -> dict:
    """Fit the pipeline on the labelled, non-holdout rows and stage it for the next stages."""
    frame, train_rows, holdout = _split(params)
    pipeline = fit_pipeline(train_rows, params.model_type, params.seed)
    # Our own file, written by the previous stage of the same run; never one from outside.
    joblib.dump(pipeline, staging / PIPELINE_FILE)
    return {"window_rows": len(frame), "train_rows": len(train_rows), "holdout_rows": len(holdout)}


def evaluate(params: TrainParams, staging: Path, registry: Registry) -> dict:
    """Holdout metrics of the new model and of the current champion on the same rows."""
    _, _, holdout = _split(params)
    pipeline = joblib.load(staging / PIPELINE_FILE)
    labels = holdout[LABEL].to_numpy()
    challenger = classification_metrics(labels, pipeline.predict_proba(holdout[list(FEATURES)])[:, 1])
    champion, champion_version = None, None
    if registry.alias_version(params.model_name, CHAMPION) is not None:
        champion_version, model_bytes = registry.download_onnx(params.model_name, CHAMPION)
        champion = classification_metrics(labels, runtime.score(runtime.load_session(model_bytes), holdout))
    decision = decide_registration(challenger, champion, champion_version, params.margin)
    log.info("%s", decision.reason)
    return {"challenger": challenger, "champion": champion, "champion_version": champion_version,
            "decision": asdict(decision)}


def log_run(params: TrainParams, validation: dict, evaluation: dict, registry: Registry,
            airflow_run_id: str = "") -> str:
    """Log parameters, metrics and the data fingerprint to MLflow; returns the run id."""
    metrics = {f"holdout_{k}": v for k, v in evaluation["challenger"].items()}
    if evaluation["champion"]:
        metrics.update({f"champion_{k}": v for k, v in evaluation["champion"].items()})
    tags = {"flightdeck.data_fingerprint": validation["data_fingerprint"],
            "flightdeck.window": f"{params.window_start}..{params.window_end}",
            "flightdeck.airflow_run_id": airflow_run_id,
            "flightdeck.decision": evaluation["decision"]["reason"]}
    run_params = {**params.model_dump(mode="json"), "window_rows": validation["rows"]}
    tags[TRAINING_KEY] = validation["training_key"]
    return registry.log_run(validation["training_key"], run_params, metrics, tags,
                            run_name=f"{params.model_type}-{params.window_end}")


GOLDEN_ROWS = 200


def export_onnx(params: TrainParams, staging: Path, registry: Registry, run_id: str) -> dict:
    """Convert to ONNX, prove parity on `parity_rows` rows, and attach the artifact to the run."""
    settings = get_settings()
    pipeline = joblib.load(staging / PIPELINE_FILE)
    frame = _window(params)
    model = to_onnx(pipeline, params.model_name)
    parity = check_parity(pipeline, model, frame, settings.parity_tolerance, settings.parity_rows)
    onnx.save_model(model, staging / ONNX_FILE)
    scores = runtime.score(runtime.load_session(model.SerializeToString()), frame)
    example = frame[list(FEATURES)].head(5)
    model_uri = registry.log_onnx_model(run_id, model, example, scores[:5])
    registry.client.log_metric(run_id, PARITY_METRIC, parity.max_abs_diff)
    # Golden rows with the scikit-learn scores: a promotion's pre-flight re-scores them through
    # the registered artifact, so parity is re-proved on the bytes that will serve.
    golden = frame[list(FEATURES)].head(GOLDEN_ROWS)
    registry.log_json(run_id, golden_scores_document(golden, pipeline.predict_proba(golden)[:, 1]),
                      GOLDEN_SCORES_FILE)
    # What batch monitoring compares each scored day against (feature and score drift).
    registry.log_json(run_id, build_reference_profile(frame[list(FEATURES)], scores), REFERENCE_PROFILE)
    log.info("ONNX parity on %d rows: max |dp| = %.2e (tolerance %.0e)", parity.rows, parity.max_abs_diff,
             parity.tolerance)
    return {"model_uri": model_uri, "parity_max_abs_diff": parity.max_abs_diff, "parity_rows": parity.rows}


def register(params: TrainParams, registry: Registry, run_id: str, model_uri: str, key: str,
             reason: str) -> dict:
    """Register the exported model (idempotent on the training key) and set its aliases."""
    registration = registry.register(params.model_name, model_uri, run_id, key, description=reason)
    if registration.created:
        log.info("registered %s version %s with alias(es) %s", params.model_name, registration.version,
                 ", ".join(registration.aliases))
    else:
        log.info("version %s of %s was already registered from the same data and parameters: "
                 "nothing new registered", registration.version, params.model_name)
    return {"version": registration.version, "created": registration.created,
            "aliases": registry.aliases(params.model_name)}


def run_all(params: TrainParams, run_id: str = "cli") -> dict:
    """Every stage in order, without Airflow (the CLI's `flightdeck train`)."""
    registry = Registry.from_settings()
    staging = staging_dir(run_id)
    validation = validate_window(params)
    train(params, staging)
    evaluation = evaluate(params, staging, registry)
    mlflow_run = log_run(params, validation, evaluation, registry, airflow_run_id=run_id)
    exported = export_onnx(params, staging, registry, mlflow_run)
    result = {"mlflow_run_id": mlflow_run, **exported, "decision": evaluation["decision"]}
    if evaluation["decision"]["register"]:
        result["registration"] = register(params, registry, mlflow_run, exported["model_uri"],
                                          validation["training_key"], evaluation["decision"]["reason"])
    return result

