"""The stages of `batch_score`, each a plain function an Airflow task (or the CLI) calls.

resolve model → validate + quarantine → score on Dask → check output → monitor.
Stages hand each other small JSON-able dicts.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from flightdeck.batch.cluster import dask_client
from flightdeck.batch.monitoring import drift_report, volume_report
from flightdeck.batch.report import render_batch_report
from flightdeck.batch.scoring import ModelArtifact, ScoringJob, score_partition
from flightdeck.batch.validation import validate_input_partition
from flightdeck.config import get_settings
from flightdeck.data.layout import data_files, partition_path
from flightdeck.data.partitions import read_partition
from flightdeck.data.schema import ENTITY_ID, FEATURES
from flightdeck.errors import FlightdeckError
from flightdeck.registry import Registry

log = logging.getLogger(__name__)

BATCH_EXPERIMENT_SUFFIX = "-batch"
REFERENCE_PROFILE = "reference_profile.json"
MONITOR_MAX_ROWS = 200_000


class OutputCheckError(FlightdeckError):
    """The predictions partition does not match what the run promised to write."""


def validate(ds: str, threshold: float | None = None) -> dict:
    """Validate and quarantine the day's input (see flightdeck.batch.validation)."""
    settings = get_settings()
    threshold = settings.bad_fraction_threshold if threshold is None else threshold
    result = validate_input_partition(settings.raw_dir, ds, settings.quarantine_dir, threshold)
    log.info("ds=%s: %d rows, %d quarantined (%.2f%%), %d unreadable file(s)", ds, result.rows,
             result.bad_rows, 100 * result.bad_fraction, len(result.unreadable))
    return result.to_dict()


def score(ds: str, model: dict, validation: dict, run_id: str, scored_at: datetime,
          registry: Registry) -> dict:
    """Score the valid rows on Dask and commit `predictions/ds=…` atomically."""
    settings = get_settings()
    version, model_bytes = registry.download_onnx(model["name"], model["version"])
    job = ScoringJob(
        ds=ds, input_files=[Path(f) for f in validation["files"]], output_root=settings.predictions_dir,
        model=ModelArtifact(model["name"], version, model_bytes), run_id=run_id, scored_at=scored_at,
        threshold=settings.decision_threshold, exclude_rows=validation["exclude_rows"])
    with dask_client(settings.dask_scheduler_address, settings.dask_workers) as client:
        result = score_partition(client, job)
    log.info("ds=%s: scored %d rows in %.1f s (%.0f rows/s)", ds, result.rows_scored, result.seconds,
             result.rows_per_second)
    return {k: (str(v) if isinstance(v, (Path, date)) else v) for k, v in asdict(result).items()}


def check_output(ds: str, model: dict, validation: dict) -> dict:
    """Row count equals the valid input rows; scores in [0, 1]; one row per entity; one version."""
    frame = read_partition(get_settings().predictions_dir, ds)
    problems = []
    if len(frame) != validation["valid_rows"]:
        problems.append(f"{len(frame)} rows written but {validation['valid_rows']} valid input rows")
    if frame["score"].isna().any() or not frame["score"].between(0.0, 1.0).all():
        problems.append("scores outside [0, 1] or missing")
    if frame[ENTITY_ID].duplicated().any():
        problems.append(f"{int(frame[ENTITY_ID].duplicated().sum())} duplicated {ENTITY_ID}")
    if set(frame["model_version"].astype(str)) != {model["version"]}:
        problems.append(f"model versions {sorted(set(frame['model_version'].astype(str)))} != {model['version']}")
    if problems:
        raise OutputCheckError(f"predictions ds={ds}: " + "; ".join(problems) +
                               ". Fix: re-run the day (the partition is replaced whole).")
    return {"rows": len(frame), "score_mean": float(frame["score"].mean()),
            "positive_rate": float(frame["predicted_label"].mean())}


def _rows_in(root: Path, ds: date) -> int | None:
    folder = partition_path(root, ds)
    files = data_files(folder)
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files) if files else None


def _monitored_rows(validation: dict, predictions: pd.DataFrame) -> pd.DataFrame:
    """Features of (at most MONITOR_MAX_ROWS) scored rows joined to their scores."""
    per_file = max(MONITOR_MAX_ROWS // max(len(validation["files"]), 1), 1)
    parts = []
    for path in validation["files"]:
        skip = set(validation["exclude_rows"].get(Path(path).name, ()))
        frame = next(pq.ParquetFile(path).iter_batches(batch_size=per_file + len(skip),
                                                       columns=[ENTITY_ID, *FEATURES])).to_pandas()
        parts.append(frame.drop(index=[i for i in skip if i < len(frame)]).head(per_file))
    features = pd.concat(parts, ignore_index=True)
    return features.merge(predictions[[ENTITY_ID, "score"]], on=ENTITY_ID, how="inner")


def monitor(ds: str, model: dict, validation: dict, scoring: dict, airflow_run_id: str,
            registry: Registry) -> dict:
    """Drift vs the training reference, volume vs trailing days, throughput → MLflow + report."""
    settings = get_settings()
    day = date.fromisoformat(ds)
    predictions = read_partition(settings.predictions_dir, ds)
    rows = _monitored_rows(validation, predictions)
    profile = registry.load_json(model["run_id"], REFERENCE_PROFILE)
    drift = drift_report(profile, rows[list(FEATURES)], rows["score"].to_numpy(), settings.psi_alert_threshold)
    trailing = [n for k in range(1, settings.trailing_days + 1)
                if (n := _rows_in(settings.predictions_dir, day - timedelta(days=k))) is not None]
    volume = volume_report(len(predictions), trailing, settings.volume_tolerance)
    report = render_batch_report(settings.reports_dir, ds, model["name"], model["version"], drift, volume,
                                 scoring["rows_per_second"], extra={"quarantined_rows": validation["bad_rows"]})

    metrics = {f"psi_{name}": value for name, value in drift.feature_psi.items()}
    metrics.update(rows=len(predictions), quarantined_rows=validation["bad_rows"],
                   rows_per_second=scoring["rows_per_second"], drifted_features=len(drift.drifted_features))
    if drift.score_psi is not None:
        metrics["psi_score"] = drift.score_psi
    if volume.ratio is not None:
        metrics["volume_ratio"] = volume.ratio
    registry.log_run(f"batch:{ds}:{airflow_run_id}", {"ds": ds, "model_version": model["version"]}, metrics,
                     {"flightdeck.ds": ds, "flightdeck.airflow_run_id": airflow_run_id,
                      "flightdeck.model": f"{model['name']}/{model['version']}"},
                     run_name=f"batch-{ds}", experiment_name=settings.experiment_name + BATCH_EXPERIMENT_SUFFIX,
                     artifact_dir=report.parent)
    alert = drift.alert or volume.alert
    summary = f"ds={ds} {model['name']} v{model['version']}: {drift.summary()} {volume.summary()}"
    (log.warning if alert else log.info)("%s Report: %s", summary, report)
    return {"alert": alert, "summary": summary, "report": str(report),
            "drifted_features": drift.drifted_features, "score_drifted": drift.score_drifted,
            "volume_ratio": volume.ratio}
