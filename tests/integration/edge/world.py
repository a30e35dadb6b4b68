"""A registered version to export, built in process: raw partitions, the train_register stages
(minus the expectation suite), and a real MLflow store under the given FLIGHTDECK_HOME."""

from __future__ import annotations

from pathlib import Path

MODEL = "flightdeck-classifier"
WINDOW = {"window_start": "2026-01-01", "window_end": "2026-01-20", "labels_as_of": "2026-03-31"}


def register_version(home: Path, rows_per_day: int = 300, model_type: str = "logistic_regression") -> str:
    """Write the window's partitions and register one version; needs FLIGHTDECK_HOME=home and a
    fresh `get_settings()` (the stages read it). Returns the version."""
    from flightdeck.config import get_settings
    from flightdeck.data.generator import write_partitions
    from flightdeck.registry import Registry
    from flightdeck.training import pipeline
    from flightdeck.training.params import TrainParams

    settings = get_settings()
    assert settings.home == home.resolve(), "set FLIGHTDECK_HOME and clear get_settings first"
    write_partitions(settings.raw_dir, WINDOW["window_start"], WINDOW["window_end"], rows_per_day=rows_per_day, seed=7)
    params = TrainParams.parse({**WINDOW, "model_type": model_type, "model_name": MODEL})
    registry = Registry.from_settings(settings)
    staging = pipeline.staging_dir(f"edge-test-{model_type}")
    pipeline.train(params, staging)
    evaluation = pipeline.evaluate(params, staging, registry)
    validation = {"rows": 0, "data_fingerprint": "0" * 64, "training_key": f"edge-test-{model_type}"}
    run_id = pipeline.log_run(params, validation, evaluation, registry)
    exported = pipeline.export_onnx(params, staging, registry, run_id)
    return pipeline.register(params, registry, run_id, exported["model_uri"], validation["training_key"],
                             "edge test")["version"]
