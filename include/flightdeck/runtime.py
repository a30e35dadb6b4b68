"""The one scoring function: load an ONNX artifact and score a DataFrame with ONNX Runtime.

Batch scoring, the gateway, the stream scorer, the Lambda handler and the edge agent all
call `score` on the same artifact, so one input row gets one score on every surface.

pandas is imported only by the DataFrame path (`to_feeds` / `score`): the column path
(`InputPlan`, `score_feeds`) needs numpy and ONNX Runtime alone, which keeps the Lambda
handler's package small and its cold start short (importing pandas costs ~0.3 s there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from flightdeck.errors import FlightdeckError

if TYPE_CHECKING:
    import pandas as pd

# Output name of the positive-class probability tensor, fixed by `training.export.to_onnx`.
PROBABILITIES = "probabilities"


class InvalidInputError(FlightdeckError):
    """Rows handed to the model do not carry the columns or types the artifact expects.

    `field` names the column at fault when there is one (callers answer with it)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


def load_session(model: bytes | str | Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    """Open an ONNX Runtime session on CPU.

    One intra-op thread by default: scoring runs inside many workers or partitions at once,
    and oversubscribing the cores costs more than it gains.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    # Idle intra-op threads busy-wait by default; many workers sharing a few cores lose
    # more to that spinning than they gain in wake-up latency.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def input_columns(session: ort.InferenceSession) -> list[str]:
    """The feature columns the artifact expects, in its input order."""
    return [i.name for i in session.get_inputs()]


def to_feeds(session: ort.InferenceSession, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Turn a DataFrame into ONNX feeds: one [n, 1] tensor per input column."""
    import pandas as pd

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


_PLAIN_NUMBERS = {int, float}  # bool is a subclass of int: compared by exact type, it stays out
_STRINGS = {str}


@dataclass(frozen=True)
class InputPlan:
    """How decoded JSON columns become feeds for one artifact: its numeric and string inputs.

    Build once per session (`InputPlan.of`); `feeds` is on the gateway's hot path.
    """

    numeric: tuple[str, ...]
    strings: tuple[str, ...]

    @classmethod
    def of(cls, session: ort.InferenceSession) -> InputPlan:
        inputs = session.get_inputs()
        return cls(tuple(i.name for i in inputs if i.type != "tensor(string)"),
                   tuple(i.name for i in inputs if i.type == "tensor(string)"))

    def feeds(self, columns: Mapping[str, Sequence]) -> dict[str, np.ndarray]:
        """Feeds from plain column lists, stricter than `to_feeds` because JSON is untyped:
        numeric inputs take finite numbers only (no booleans, strings or null), string
        inputs take strings only. InvalidInputError names the column."""
        missing = [c for c in (*self.numeric, *self.strings) if c not in columns]
        if missing:
            raise InvalidInputError(
                f"input is missing column(s) {missing}. Fix: send every feature the model was trained on.",
                field=missing[0])
        if len({len(columns[c]) for c in (*self.numeric, *self.strings)}) > 1:
            raise InvalidInputError("input columns have different lengths. Fix: one value per row in every column.")
        lists = [columns[name] for name in self.numeric]
        block = None
        # One conversion for every numeric column when all values are plain numbers (the
        # common case, checked at C speed); otherwise column by column, naming the culprit.
        if set(map(type, chain.from_iterable(lists))) <= _PLAIN_NUMBERS:
            block = np.array(lists, dtype=np.float64)
            if np.isfinite(block).all():
                block = block.reshape(len(lists), -1, 1)
            else:
                block = None
        if block is None:
            block = [_numeric(name, values).reshape(-1, 1) for name, values in zip(self.numeric, lists, strict=True)]
        feeds = dict(zip(self.numeric, block, strict=True))
        for name in self.strings:
            values = columns[name]
            if not set(map(type, values)) <= _STRINGS:
                raise InvalidInputError(
                    f"column {name!r} must hold strings only. Fix: send the category as text.", field=name)
            feeds[name] = np.array(values, dtype=object).reshape(-1, 1)
        return feeds


def feeds_from_columns(session: ort.InferenceSession, columns: Mapping[str, Sequence]) -> dict[str, np.ndarray]:
    """ONNX feeds from plain column lists (decoded JSON), without a DataFrame (see InputPlan)."""
    return InputPlan.of(session).feeds(columns)


def _numeric(name: str, values: Sequence) -> np.ndarray:
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError):  # ragged nested lists
        raw = np.asarray(values, dtype=object)
    if raw.ndim != 1:
        raise InvalidInputError(f"column {name!r} must be a flat list of numbers. Fix: one value per row.",
                                field=name)
    if raw.dtype.kind in "iuf":
        array = raw.astype(np.float64, copy=False)
    elif raw.dtype.kind == "O" and all(v is None or (type(v) is not bool and isinstance(v, int | float))
                                       for v in values):
        array = raw.astype(np.float64)  # numbers mixed with null: null becomes NaN, refused below
    else:
        raise InvalidInputError(f"column {name!r} must be numeric, got strings, booleans, lists or objects. "
                                "Fix: send numbers only.", field=name)
    if not np.isfinite(array).all():
        raise InvalidInputError(
            f"column {name!r} has {int((~np.isfinite(array)).sum())} missing or non-finite value(s). "
            "Fix: send a finite number for every feature.", field=name)
    return array


def score_feeds(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """Probability of the positive class for each row of prepared feeds, as float64."""
    outputs = session.run([PROBABILITIES], dict(feeds))
    return np.ascontiguousarray(np.asarray(outputs[0], dtype=np.float64)[:, 1])


def score(session: ort.InferenceSession, frame: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class for each row of `frame`, as float64."""
    if frame.empty:
        return np.empty(0, dtype=np.float64)
    return score_feeds(session, to_feeds(session, frame))


@dataclass(frozen=True)
class OnnxModel:
    """A loaded artifact plus the registry coordinates it came from."""

    name: str
    version: str
    session: ort.InferenceSession

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return score(self.session, frame)
