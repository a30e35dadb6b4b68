"""Export the fitted pipeline to ONNX and prove the artifact reproduces it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import pandas as pd
from skl2onnx import to_onnx as skl_to_onnx
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from flightdeck import runtime
from flightdeck.data.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES
from flightdeck.errors import ParityError

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def to_onnx(pipeline: Pipeline, model_name: str) -> onnx.ModelProto:
    """Convert with one [n, 1] input per raw feature column and a plain probability tensor.

    Per-column inputs keep the artifact's contract the same as the raw data's, so every
    surface can feed it a DataFrame slice; `zipmap=False` gives a tensor, not a list of dicts.
    """
    initial_types = [(name, DoubleTensorType([None, 1])) for name in NUMERIC_FEATURES]
    initial_types += [(name, StringTensorType([None, 1])) for name in CATEGORICAL_FEATURES]
    model = skl_to_onnx(
        pipeline,
        initial_types=initial_types,
        target_opset=TARGET_OPSET,
        options={id(pipeline.steps[-1][1]): {"zipmap": False}},
        final_types=[("label", None), (runtime.PROBABILITIES, None)],
        naming=lambda name, _: name,
    )
    model.graph.doc_string = f"{model_name}: positive-class probability from raw features"
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class ParityReport:
    """How far the ONNX artifact's probabilities stray from scikit-learn's."""

    rows: int
    max_abs_diff: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def check_parity(pipeline: Pipeline, model: onnx.ModelProto, frame: pd.DataFrame,
                 tolerance: float, rows: int) -> ParityReport:
    """Compare probabilities on the first `rows` rows; raise ParityError past `tolerance`."""
    sample = frame.head(rows)
    expected = pipeline.predict_proba(sample[list(FEATURES)])[:, 1]
    actual = runtime.score(runtime.load_session(model.SerializeToString()), sample)
    report = ParityReport(len(sample), float(np.max(np.abs(expected - actual))), tolerance)
    if not report.passed:
        raise ParityError("ONNX export", report.max_abs_diff, tolerance)
    return report
