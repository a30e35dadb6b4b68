"""Build and fit the scikit-learn pipeline. Preprocessing lives inside the pipeline, so the
exported artifact takes raw feature columns and nothing is re-implemented at serving time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from flightdeck.data.schema import (
    CATEGORICAL_FEATURES,
    ENTITY_ID,
    EVENT_TIME,
    FEATURES,
    LABEL,
    LABEL_TIME,
    NUMERIC_FEATURES,
)
from flightdeck.errors import FlightdeckError

# Model types whose ONNX conversion matches scikit-learn within 1e-5 (tests/unit/training).
# Random forests are left out: skl2onnx 1.20 writes float32 split thresholds, and rows that
# sit on a threshold flip branches (max |Δp| 1e-2 on 6,000 rows here).
MODEL_TYPES = ("logistic_regression", "mlp")


class NotEnoughLabelsError(FlightdeckError):
    """The training window holds too few rows whose label has arrived."""


def labelled_rows(frame: pd.DataFrame, labels_as_of: date) -> pd.DataFrame:
    """Rows whose label had arrived by the end of `labels_as_of` (labels arrive days later)."""
    cutoff = pd.Timestamp(datetime.combine(labels_as_of, time.max, tzinfo=UTC))
    return frame[frame[LABEL_TIME] <= cutoff].reset_index(drop=True)


def split_holdout(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by a hash of (seed, entity, event time) so a row lands on the same side in every run."""
    keys = frame[[ENTITY_ID, EVENT_TIME]].astype(str)
    hashed = pd.util.hash_pandas_object(keys, index=False, hash_key=f"{seed % 10**16:016d}")
    in_holdout = (hashed.to_numpy() % np.uint64(10_000)) < np.uint64(round(fraction * 10_000))
    return frame[~in_holdout].reset_index(drop=True), frame[in_holdout].reset_index(drop=True)


def build_pipeline(model_type: str, seed: int) -> Pipeline:
    """Scaling for numbers, one-hot for categories, then the classifier.

    No imputer: rows with missing features are quarantined before training and scoring, and
    ONNX Runtime has no double-precision Imputer, which exact parity needs (float32 inputs put
    random-forest scores 5e-3 away from scikit-learn's).
    """
    classifiers = {
        "logistic_regression": lambda: LogisticRegression(max_iter=2000, C=1.0),
        "mlp": lambda: MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, early_stopping=True,
                                     random_state=seed),
    }
    if model_type not in classifiers:
        raise FlightdeckError(f"unknown model_type {model_type!r}. Fix: use one of {', '.join(MODEL_TYPES)}.")
    preprocess = ColumnTransformer([
        ("numeric", StandardScaler(), list(NUMERIC_FEATURES)),
        ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
    ])
    return Pipeline([("preprocess", preprocess), ("classifier", classifiers[model_type]())])


def fit_pipeline(train: pd.DataFrame, model_type: str, seed: int, min_rows: int = 200) -> Pipeline:
    """Fit on the labelled training rows; both classes and `min_rows` rows are required."""
    if len(train) < min_rows or train[LABEL].nunique() < 2:
        raise NotEnoughLabelsError(
            f"only {len(train)} labelled training rows ({train[LABEL].nunique()} class(es)); "
            f"need at least {min_rows} with both classes. Fix: widen the window or move labels_as_of later.")
    pipeline = build_pipeline(model_type, seed)
    pipeline.fit(train[list(FEATURES)], train[LABEL].astype(int))
    return pipeline
