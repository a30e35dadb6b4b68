"""The TFLite student's input preprocessing, as a small JSON spec applied with numpy.

Why a spec shipped in the bundle and not preprocessing layers inside the Keras model:
string lookup (`StringLookup`) is not a TFLite builtin op. A model holding it needs the
Select-TF-ops delegate, which the LiteRT interpreter a device installs (`ai-edge-litert`)
does not carry, and full-integer int8 conversion cannot quantise a string input at all.
Keeping the graph a plain float tensor → dense network makes every TFLite variant
(float32, float16, full int8) run on the builtin kernels, and the spec (a mean and scale
per numeric column, the known categories per categorical column) is a few hundred bytes
of JSON that numpy applies in microseconds. The spec is hashed and signed with the model.

numpy only: the device agent imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flightdeck.edge.errors import EdgeInputError

SPEC_VERSION = 1


@dataclass(frozen=True)
class PreprocessSpec:
    """Standard scaling for numeric columns, one-hot for categorical ones (unknown → zeros)."""

    numeric: tuple[str, ...]
    means: tuple[float, ...]
    scales: tuple[float, ...]
    categorical: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]

    @property
    def width(self) -> int:
        """Number of model inputs after preprocessing."""
        return len(self.numeric) + sum(len(c) for c in self.categories)

    @classmethod
    def fit(cls, columns: Mapping[str, Sequence], numeric: Sequence[str], categorical: Sequence[str]) -> PreprocessSpec:
        """Means, scales and sorted categories of training columns (as StandardScaler and
        OneHotEncoder(handle_unknown="ignore") would learn them)."""
        means, scales = [], []
        for name in numeric:
            values = np.asarray(columns[name], dtype=np.float64)
            std = float(values.std())
            means.append(float(values.mean()))
            scales.append(std if std > 0 else 1.0)
        cats = tuple(tuple(sorted({str(v) for v in columns[name]})) for name in categorical)
        return cls(tuple(numeric), tuple(means), tuple(scales), tuple(categorical), cats)

    def transform(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """[n, width] float32 model input; EdgeInputError names a missing or non-numeric column."""
        missing = [c for c in (*self.numeric, *self.categorical) if c not in columns]
        if missing:
            raise EdgeInputError(f"input is missing column(s) {missing}. Fix: send every feature of the model.")
        lengths = {len(columns[c]) for c in (*self.numeric, *self.categorical)}
        if len(lengths) > 1:
            raise EdgeInputError("input columns have different lengths. Fix: one value per row in every column.")
        n = lengths.pop() if lengths else 0
        blocks = []
        if self.numeric:
            try:
                raw = np.array([columns[c] for c in self.numeric], dtype=np.float64).T.reshape(n, -1)
            except (TypeError, ValueError) as exc:
                raise EdgeInputError(f"numeric columns {list(self.numeric)} must hold numbers: {exc}. "
                                     "Fix: send numbers only.") from exc
            if not np.isfinite(raw).all():
                bad = [c for i, c in enumerate(self.numeric) if not np.isfinite(raw[:, i]).all()]
                raise EdgeInputError(f"column(s) {bad} hold missing or non-finite values. "
                                     "Fix: send a finite number for every feature.")
            blocks.append((raw - np.asarray(self.means)) / np.asarray(self.scales))
        for name, cats in zip(self.categorical, self.categories, strict=True):
            values = np.asarray([str(v) for v in columns[name]], dtype=object).reshape(-1, 1)
            blocks.append((values == np.asarray(cats, dtype=object).reshape(1, -1)).astype(np.float64))
        return np.hstack(blocks).astype(np.float32) if blocks else np.zeros((n, 0), np.float32)

    def to_json(self) -> str:
        return json.dumps({"version": SPEC_VERSION, "numeric": list(self.numeric), "means": list(self.means),
                           "scales": list(self.scales), "categorical": list(self.categorical),
                           "categories": [list(c) for c in self.categories]}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> PreprocessSpec:
        data = json.loads(text)
        if data.get("version") != SPEC_VERSION:
            raise EdgeInputError(f"preprocessing spec version {data.get('version')!r} is not {SPEC_VERSION}. "
                                 "Fix: publish the bundle with this flightdeck version.")
        return cls(tuple(data["numeric"]), tuple(data["means"]), tuple(data["scales"]),
                   tuple(data["categorical"]), tuple(tuple(c) for c in data["categories"]))
