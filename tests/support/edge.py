"""Bundles for agent tests: real ONNX models (no TensorFlow), a real key pair, a folder store."""

from __future__ import annotations

import json
from functools import cache

from flightdeck.edge.bundle import GOLDEN, build_manifest, publish
from flightdeck.edge.models import OnnxEdgeModel
from tests.support.models import MODEL, _rows, onnx_model

GOLDEN_ROWS = 8


@cache
def golden_columns() -> dict:
    frame = _rows(GOLDEN_ROWS, 11)
    return {name: frame[name].tolist() for name in frame.columns}


def bundle_files(seed: int, wrong_golden: bool = False) -> dict[str, bytes]:
    model = onnx_model(seed)
    scores = OnnxEdgeModel(model).score(golden_columns())
    if wrong_golden:
        scores = 1 - scores
    return {"model.onnx": model, GOLDEN: json.dumps({"columns": golden_columns(), "scores": scores.tolist()}).encode()}


def publish_version(store, key, version: str, seed: int, percent: float = 100.0, wrong_golden: bool = False,
                    min_agent_version: str = "1.0.0", channel: str = "stable") -> dict:
    """Sign and publish model `seed` as `version` (onnx_float); returns the manifest."""
    files = bundle_files(seed, wrong_golden)
    manifest = build_manifest(model_name=MODEL, model_version=version, fmt="onnx_float", files=files,
                              rollout_percent=percent, min_agent_version=min_agent_version,
                              self_test_tolerance=1e-5)
    publish(store, manifest, files, key, channel)
    return manifest
