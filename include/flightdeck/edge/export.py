"""Export a registered version for devices: ONNX float and int8, a distilled TFLite student in
three precisions, each measured (size, single-row latency, holdout AUC) and gated.

The rows come from the version's own training run: its window, label cut-off, holdout
fraction and seed (logged by train_register) re-create the same train/holdout split, so
the student learns from training rows and every artifact is judged on the holdout.

Output folder, one sub-folder per artifact (what a bundle ships):
    onnx_float/{model.onnx, golden.json}
    onnx_int8/{model.onnx, golden.json}              only when something was quantised
    tflite_{float32,float16,int8}/{model.tflite, preprocess.json, golden.json}
    report.json, table.md
golden.json holds holdout rows and the artifact's own scores for them, as the device's
runtime computes them: the agent's self-test must reproduce them.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from flightdeck.config import Settings, get_settings
from flightdeck.data.partitions import read_window
from flightdeck.data.schema import CATEGORICAL_FEATURES, FEATURES, LABEL, NUMERIC_FEATURES
from flightdeck.edge.bundle import GOLDEN, PREPROCESS
from flightdeck.edge.errors import EdgeError
from flightdeck.edge.gates import (
    AUC_LOSS_MAX,
    FLOAT_TOLERANCE,
    ArtifactRow,
    apply_gates,
    markdown_table,
)
from flightdeck.edge.models import load_model
from flightdeck.edge.preprocess import PreprocessSpec
from flightdeck.golden import GOLDEN_SCORES_FILE, PARITY_METRIC, golden_scores_document
from flightdeck.registry import Registry

log = logging.getLogger(__name__)

DISTIL_ROWS = 4000
HOLDOUT_ROWS = 4000
GOLDEN_ROWS = 32
LATENCY_CALLS = 200
REPORT = "report.json"
TABLE = "table.md"
# Self-test tolerance per format: float artifacts must reproduce their golden scores exactly
# (1e-5); quantised ones may differ by a quantisation step on another CPU (int8 output step 1/256).
SELF_TEST_TOLERANCE = {"onnx_float": 1e-5, "tflite_float32": 1e-5, "onnx_int8": 1e-3, "tflite_float16": 1e-3,
                       "tflite_int8": 1e-2}
TRAIN_PARAMS = ("model_name", "window_start", "window_end", "labels_as_of", "holdout_fraction", "seed")


def columns_of(frame: pd.DataFrame) -> dict[str, list]:
    """Plain column lists (what a device receives), in feature order."""
    return {name: frame[name].tolist() for name in FEATURES}


def split_of_version(registry: Registry, run_id: str, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, holdout rows) of a version's training run, re-created from its params."""
    from flightdeck.training.params import TrainParams
    from flightdeck.training.train import labelled_rows, split_holdout

    logged = registry.client.get_run(run_id).data.params
    missing = [k for k in TRAIN_PARAMS[1:3] if k not in logged]
    if missing:
        raise EdgeError(f"MLflow run {run_id} has no {missing} params, so its holdout cannot be re-created. "
                        "Fix: export a version registered by train_register.")
    values = {k: logged[k] for k in TRAIN_PARAMS if logged.get(k) not in (None, "", "None")}
    params = TrainParams.parse(values)
    frame = read_window(settings.raw_dir, params.window_start, params.window_end)
    train, holdout = split_holdout(labelled_rows(frame, params.label_cutoff), params.holdout_fraction, params.seed)
    train, holdout = train.dropna(subset=list(FEATURES)), holdout.dropna(subset=list(FEATURES))
    if len(holdout) < 50 or holdout[LABEL].nunique() < 2 or len(train) < 200:
        raise EdgeError(f"the window {params.window_start}..{params.window_end} gives {len(train)} training and "
                        f"{len(holdout)} holdout rows; the gates need ≥ 200 and ≥ 50 with both classes. "
                        "Fix: export a version trained on a wider window.")
    pick = np.random.default_rng(params.seed)
    train = train.iloc[np.sort(pick.permutation(len(train))[:DISTIL_ROWS])].reset_index(drop=True)
    holdout = holdout.iloc[np.sort(pick.permutation(len(holdout))[:HOLDOUT_ROWS])].reset_index(drop=True)
    return train, holdout


def single_row_latency_us(model, columns: dict[str, list], calls: int = LATENCY_CALLS) -> float:
    """Median wall time of scoring one row, in microseconds (after a warm-up)."""
    row = {name: values[:1] for name, values in columns.items()}
    for _ in range(20):
        model.score(row)
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        model.score(row)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def _write_artifact(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _golden(holdout: pd.DataFrame, scores: np.ndarray) -> bytes:
    return json.dumps(golden_scores_document(holdout[list(FEATURES)].head(GOLDEN_ROWS),
                                             scores[:GOLDEN_ROWS])).encode()


def _measure(name: str, fmt: str, folder: Path, files: dict[str, bytes], holdout_columns, labels,
             row: ArtifactRow) -> np.ndarray:
    """Write the artifact, score the holdout through the device loader, fill size/latency/AUC."""
    model_file = "model.onnx" if fmt.startswith("onnx") else "model.tflite"
    model = load_model(fmt, files[model_file], files.get(PREPROCESS))
    scores = model.score(holdout_columns)
    row.size_bytes, row.auc = len(files[model_file]), _auc(labels, scores)
    row.latency_us = single_row_latency_us(model, holdout_columns)
    return scores


def export_version(registry: Registry, model_name: str, ref: str, out_dir: Path, settings: Settings | None = None,
                   epochs: int | None = None, float_tolerance: float = FLOAT_TOLERANCE,
                   auc_loss_max: float = AUC_LOSS_MAX) -> dict:
    """Build, measure and judge every edge artifact of a version; returns the report (JSON-able).

    Gates are judged (each row's verdict, `misses`) but not enforced here: the caller logs
    the table first, then `gates.check_gates`-style enforcement fails the run (see
    `enforce`)."""
    from flightdeck.edge import distill
    from flightdeck.edge.quantize import quantise_dynamic_int8

    settings = settings or get_settings()
    version = registry.get_version(model_name, ref)
    _, onnx_bytes = registry.download_onnx(model_name, str(version.version))
    train, holdout = split_of_version(registry, version.run_id, settings)
    labels = holdout[LABEL].to_numpy().astype(int)
    holdout_columns = columns_of(holdout)
    seed = int(registry.client.get_run(version.run_id).data.params.get("seed", settings.seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[ArtifactRow] = []

    # ONNX float: the registered bytes. Parity against scikit-learn is re-checked on the rows
    # whose scikit-learn scores train_register logged (the pipeline itself is not registered).
    champion = load_model("onnx_float", onnx_bytes)
    champion_scores = champion.score(holdout_columns)
    champion_auc = _auc(labels, champion_scores)
    onnx_row = ArtifactRow("onnx_float", "onnxruntime", "float", float_source="scikit-learn")
    try:
        golden = registry.load_json(version.run_id, GOLDEN_SCORES_FILE)
        onnx_row.max_abs_diff = float(np.max(np.abs(champion.score(golden["columns"]) - np.asarray(golden["scores"]))))
        onnx_row.note = f"parity on the {len(golden['scores'])} rows scikit-learn scored at registration"
    except EdgeError:
        raise
    except Exception:  # an older run without golden rows: the parity measured at export
        onnx_row.max_abs_diff = registry.client.get_run(version.run_id).data.metrics.get(PARITY_METRIC)
        onnx_row.note = "parity as measured at registration (no golden rows logged)"
        if onnx_row.max_abs_diff is None:
            raise EdgeError(f"version {version.version} has neither golden rows nor a parity metric. "
                            "Fix: re-register it with train_register.") from None
    files = {"model.onnx": onnx_bytes, GOLDEN: _golden(holdout, champion_scores)}
    _measure("onnx_float", "onnx_float", out_dir / "onnx_float", files, holdout_columns, labels, onnx_row)
    _write_artifact(out_dir / "onnx_float", files)
    rows.append(onnx_row)

    # ONNX int8 by dynamic quantisation, only if it quantises something.
    quantised = quantise_dynamic_int8(onnx_bytes)
    int8_row = ArtifactRow("onnx_int8", "onnxruntime", "quantised" if quantised.model else "not_applicable",
                           note=quantised.note)
    if quantised.model:
        probe = load_model("onnx_int8", quantised.model).score(holdout_columns)
        files = {"model.onnx": quantised.model, GOLDEN: _golden(holdout, probe)}
        scores = _measure("onnx_int8", "onnx_int8", out_dir / "onnx_int8", files, holdout_columns, labels, int8_row)
        int8_row.float_source, int8_row.max_abs_diff = "onnx_float", float(np.max(np.abs(scores - champion_scores)))
        _write_artifact(out_dir / "onnx_int8", files)
    rows.append(int8_row)

    # The TFLite student, distilled from the champion's probabilities on training rows.
    spec = PreprocessSpec.fit(columns_of(train), NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    x_train = spec.transform(columns_of(train))
    started = time.perf_counter()
    student = distill.distill(x_train, champion.score(columns_of(train)), seed, epochs or distill.EPOCHS)
    train_seconds = time.perf_counter() - started
    keras_scores = student.predict(spec.transform(holdout_columns))
    rows.append(ArtifactRow("keras_student", "keras", "distilled", auc=_auc(labels, keras_scores),
                            note=f"{distill.HIDDEN} dense, {student.epochs} epochs on {len(train)} rows "
                                 f"in {train_seconds:.1f} s; the float source of the TFLite exports; not shipped"))
    for fmt, flatbuffer in student.tflite.items():
        row = ArtifactRow(fmt, "litert", "float" if fmt == "tflite_float32" else "quantised",
                          float_source="keras_student", distilled=True)
        files = {"model.tflite": flatbuffer, PREPROCESS: spec.to_json().encode()}
        probe = load_model(fmt, flatbuffer, files[PREPROCESS]).score(holdout_columns)
        files[GOLDEN] = _golden(holdout, probe)
        scores = _measure(fmt, fmt, out_dir / fmt, files, holdout_columns, labels, row)
        row.max_abs_diff = float(np.max(np.abs(scores - keras_scores)))
        _write_artifact(out_dir / fmt, files)
        rows.append(row)

    misses = apply_gates(rows, champion_auc, float_tolerance, auc_loss_max)
    report = {"model_name": model_name, "model_version": str(version.version), "source_run_id": version.run_id,
              "champion_auc": champion_auc, "holdout_rows": len(holdout), "distil_rows": len(train),
              "float_tolerance": float_tolerance, "auc_loss_max": auc_loss_max,
              "rows": [r.as_dict() for r in rows], "misses": misses,
              "formats": sorted(p.name for p in out_dir.iterdir() if p.is_dir()),
              "onnx_int8": {"quantised_nodes": quantised.quantised_nodes, "note": quantised.note}}
    (out_dir / REPORT).write_text(json.dumps(report, indent=1))
    (out_dir / TABLE).write_text(markdown_table(rows, champion_auc) + "\n")
    log.info("edge export of %s v%s:\n%s", model_name, version.version, markdown_table(rows, champion_auc))
    return report


def load_report(out_dir: Path) -> dict:
    return json.loads((out_dir / REPORT).read_text())


def enforce(report: dict) -> None:
    """Raise GateError naming every artifact that missed a gate, and by how much."""
    from flightdeck.edge.errors import GateError

    if report["misses"]:
        raise GateError(report["misses"])


def log_export(registry: Registry, report: dict, out_dir: Path, run_key: str, settings: Settings | None = None) -> str:
    """Log the table (metrics per artifact), the report and every artifact to MLflow; returns the run id.

    Idempotent on `run_key` (a cleared task re-uses its run)."""
    settings = settings or get_settings()
    metrics = {"champion_auc": report["champion_auc"]}
    for row in report["rows"]:
        for field in ("size_bytes", "latency_us", "auc", "max_abs_diff"):
            if row[field] is not None:
                metrics[f"{row['name']}_{field}"] = float(row[field])
    params = {"model_name": report["model_name"], "model_version": report["model_version"],
              "source_run_id": report["source_run_id"], "holdout_rows": report["holdout_rows"],
              "distil_rows": report["distil_rows"], "float_tolerance": report["float_tolerance"],
              "auc_loss_max": report["auc_loss_max"]}
    tags = {"flightdeck.edge.gates": "fail" if report["misses"] else "pass",
            "flightdeck.edge.onnx_int8": report["onnx_int8"]["note"][:250]}
    return registry.log_run(run_key, params, metrics, tags, run_name=f"edge-{report['model_name']}-v"
                            f"{report['model_version']}", experiment_name=f"{settings.experiment_name}-edge",
                            artifact_dir=out_dir)
