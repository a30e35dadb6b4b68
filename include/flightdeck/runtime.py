"""The one scoring function: load an ONNX artifact and score a DataFrame with ONNX Runtime.

Batch scoring, the gateway, the stream scorer, the Lambda handler and the edge agent all
call `score` on the same artifact, so one input row gets one score on every surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

from flightdeck.errors import FlightdeckError

# Output name of the positive-class probability tensor, fixed by `training.export.to_onnx`.
PROBABILITIES = "probabilities"


class InvalidInputError(FlightdeckError):
    """Rows handed to the model do not carry the columns or types the artifact expects."""


def load_session(model: bytes | str | Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    """Open an ONNX Runtime session on CPU.

    One intra-op thread by default: scoring runs inside many workers or partitions at once,
    and oversubscribing the cores costs more than it gains.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def input_columns(session: ort.InferenceSession) -> list[str]:
    """The feature columns the artifact expects, in its input order."""
    return [i.name for i in session.get_inputs()]


def to_feeds(session: ort.InferenceSession, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Turn a DataFrame into ONNX feeds: one [n, 1] tensor per input column."""
    missing = [c for c in input_columns(session) if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"input is missing column(s) {missing}. Fix: send every feature the model was trained on.")
    feeds: dict[str, np.ndarray] = {}
    for spec in session.get_inputs():
        column = frame[spec.name]
        if spec.type == "tensor(string)":
            values = column.astype(str).to_numpy(dtype=object)
        else:
            try:
                values = pd.to_numeric(column, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
            except (ValueError, TypeError) as exc:
                raise InvalidInputError(
                    f"column {spec.name!r} must be numeric: {exc}. Fix: send numbers (or null) only.") from exc
            if np.isnan(values).any():
                raise InvalidInputError(
                    f"column {spec.name!r} has {int(np.isnan(values).sum())} missing value(s). "
                    "Fix: send a value for every feature (rows with gaps are quarantined upstream).")
        feeds[spec.name] = values.reshape(-1, 1)
    return feeds


def score(session: ort.InferenceSession, frame: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class for each row of `frame`, as float64."""
    if frame.empty:
        return np.empty(0, dtype=np.float64)
    outputs = session.run([PROBABILITIES], to_feeds(session, frame))
    return np.asarray(outputs[0], dtype=np.float64)[:, 1]


@dataclass(frozen=True)
class OnnxModel:
    """A loaded artifact plus the registry coordinates it came from."""

    name: str
    version: str
    session: ort.InferenceSession

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return score(self.session, frame)
