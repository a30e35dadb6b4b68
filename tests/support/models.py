"""Models and rows for gateway tests: two real ONNX logistic regressions, no MLflow needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd

from flightdeck.data.generator import generate_partition
from flightdeck.data.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from flightdeck.errors import ModelNotFoundError
from flightdeck.training.export import to_onnx
from flightdeck.training.train import fit_pipeline

FEATURES = list(NUMERIC_FEATURES) + list(CATEGORICAL_FEATURES)
MODEL = "flightdeck-classifier"
REPO = Path(__file__).resolve().parents[2]


@cache
def onnx_model(seed: int) -> bytes:
    """A logistic regression trained on generated data; different seeds give different scores."""
    train = generate_partition("2026-01-15", rows=2000, seed=seed)
    return to_onnx(fit_pipeline(train, "logistic_regression", seed=seed), MODEL).SerializeToString()


@cache
def _rows(n: int, seed: int) -> pd.DataFrame:
    frame = generate_partition("2026-02-01", rows=n * 2, seed=seed)[FEATURES].dropna()
    return frame.head(n).reset_index(drop=True)


def records(n: int = 5, seed: int = 11) -> list[dict]:
    """`n` complete input rows as JSON-ready records."""
    return _rows(n, seed).to_dict(orient="records")


def split(n: int = 5, seed: int = 11) -> dict:
    """An MLflow `dataframe_split` body of `n` rows."""
    frame = _rows(n, seed)
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}


@dataclass
class _Version:
    version: str


@dataclass
class FakeRegistry:
    """The two calls the gateway makes of the MLflow registry, over in-memory artifacts."""

    versions: dict[str, bytes] = field(default_factory=lambda: {"1": onnx_model(1), "2": onnx_model(2)})
    aliases: dict[str, str] = field(default_factory=lambda: {"champion": "1", "challenger": "2"})
    downloads: int = 0

    def get_version(self, name: str, ref: str) -> _Version:
        version = ref if ref.isdigit() else self.aliases.get(ref)
        if name != MODEL or version not in self.versions:
            raise ModelNotFoundError(name, f"version or alias {ref!r}")
        return _Version(version)

    def download_onnx(self, name: str, ref: str) -> tuple[str, bytes]:
        version = self.get_version(name, ref).version
        self.downloads += 1
        return version, self.versions[version]
