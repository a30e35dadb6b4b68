"""Registered ONNX models loaded for serving, one ONNX Runtime session per version per worker."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import onnxruntime as ort

from flightdeck import runtime
from flightdeck.errors import FlightdeckError
from flightdeck.serving.errors import InvalidInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # OIP v2 datatype: FP64 or BYTES
    shape: list[int] = field(default_factory=lambda: [-1, 1])


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One registered version with its session; `key` ("name/version") labels its predictions."""

    name: str
    version: str
    session: ort.InferenceSession
    plan: runtime.InputPlan = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", runtime.InputPlan.of(self.session))

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec(i.name, "BYTES" if i.type == "tensor(string)" else "FP64")
                for i in self.session.get_inputs()]

    def feeds(self, columns: dict[str, list]) -> dict[str, np.ndarray]:
        """Columns → feeds; InvalidInputError (422) naming the field when they don't fit."""
        try:
            return self.plan.feeds(columns)
        except runtime.InvalidInputError as exc:
            raise InvalidInputError(str(exc)) from None

    def score(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return runtime.score_feeds(self.session, feeds)


class ModelSource(Protocol):
    """Where models come from: the MLflow registry (`flightdeck.registry.Registry`)."""

    def get_version(self, name: str, ref: str): ...

    def download_onnx(self, name: str, ref: str) -> tuple[str, bytes]: ...


class ModelPool:
    """Loads each (model, version) once per process and resolves aliases to versions.

    Blocking (registry calls, session creation): call from a thread, never the event loop.
    """

    def __init__(self, source: ModelSource) -> None:
        self._source = source
        self._models: dict[tuple[str, str], ServedModel] = {}
        self._lock = threading.Lock()

    def resolve(self, name: str, ref: str) -> str:
        """The version number an alias points at now (a number resolves to itself)."""
        return str(self._source.get_version(name, ref).version)

    def load(self, name: str, ref: str) -> ServedModel:
        """The served model for an alias or version; ModelNotFoundError when it does not exist."""
        version = ref if ref.isdigit() else self.resolve(name, ref)
        with self._lock:
            cached = self._models.get((name, version))
        if cached is not None:
            return cached
        version, onnx_bytes = self._source.download_onnx(name, version)
        try:
            model = ServedModel(name, version, runtime.load_session(onnx_bytes))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise FlightdeckError(f"model {name!r} version {version} is not a loadable ONNX artifact: {exc}. "
                                  "Fix: re-register it through train_register.") from exc
        log.info("loaded model %s version %s", name, version)
        with self._lock:
            return self._models.setdefault((name, version), model)

    def retain(self, keep: set[tuple[str, str]]) -> None:
        """Drop sessions no route table uses any more (they hold memory per worker)."""
        with self._lock:
            for key in [k for k in self._models if k not in keep]:
                del self._models[key]
