"""Load and score an edge artifact the way a device does: ONNX Runtime or the LiteRT interpreter.

Both take plain column lists (decoded JSON, as the gateway's `runtime.InputPlan` does) and
return the positive-class probability as float64. The export side measures latency and
AUC through this same code, so the table describes what a device runs.

ONNX artifacts go through `flightdeck.runtime` (numpy and ONNX Runtime only on that path;
pandas is imported by its DataFrame functions alone), so a device scores a row exactly as the
gateway does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from flightdeck.edge.errors import EdgeInputError
from flightdeck.edge.preprocess import PreprocessSpec


class OnnxEdgeModel:
    """An ONNX artifact (float or dynamically quantised) with raw-column inputs, scored by
    `flightdeck.runtime`: the same feeds and output as batch scoring and the gateway."""

    def __init__(self, model: bytes | str | Path) -> None:
        from flightdeck import runtime  # onnxruntime only where a bundle is ONNX

        self._runtime = runtime
        self.session = runtime.load_session(model)
        self.plan = runtime.InputPlan.of(self.session)

    def score(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        try:
            feeds = self.plan.feeds(columns)
        except self._runtime.InvalidInputError as exc:
            raise EdgeInputError(str(exc)) from exc
        return self._runtime.score_feeds(self.session, feeds)


class TfliteEdgeModel:
    """A TFLite student (float32, float16 or full-integer int8) behind its preprocessing spec,
    run by the LiteRT interpreter (`ai-edge-litert`), the runtime a device installs."""

    def __init__(self, model: bytes | str | Path, spec: PreprocessSpec) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if isinstance(model, bytes):
            self.interpreter = Interpreter(model_content=model, num_threads=1)
        else:
            self.interpreter = Interpreter(model_path=str(model), num_threads=1)
        self.spec = spec
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._rows = -1

    def score(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        x = self.spec.transform(columns)
        if x.shape[0] != self._rows:  # re-plan only when the batch size changes
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self._rows = x.shape[0]
        self.interpreter.set_tensor(self.input["index"], _quantize(x, self.input))
        self.interpreter.invoke()
        y = _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)
        return y.reshape(-1).astype(np.float64)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        return y.astype(np.float64)
    scale, zero = detail["quantization"]
    return (y.astype(np.float64) - zero) * scale


def load_model(fmt: str, model: bytes | str | Path, spec_json: bytes | str | None = None):
    """The scorer of a bundle format: ONNX formats need only the model, TFLite ones the spec too."""
    if fmt.startswith("onnx"):
        return OnnxEdgeModel(model)
    if spec_json is None:
        raise EdgeInputError(f"a {fmt} model needs its preprocessing spec. Fix: ship preprocess.json in the bundle.")
    return TfliteEdgeModel(model, PreprocessSpec.from_json(spec_json))
