from datetime import date

import numpy as np
import pytest

from flightdeck.data.schema import ENTITY_ID, FEATURES, LABEL, LABEL_TIME
from flightdeck.training.evaluate import classification_metrics
from flightdeck.training.train import (
    MODEL_TYPES,
    NotEnoughLabelsError,
    fit_pipeline,
    labelled_rows,
    split_holdout,
)


def test_only_rows_whose_label_arrived_are_used(raw_frame):
    early = labelled_rows(raw_frame, date(2026, 1, 15))
    late = labelled_rows(raw_frame, date(2026, 4, 1))
    assert 0 < len(early) < len(late) == len(raw_frame)
    assert (early[LABEL_TIME].dt.date <= date(2026, 1, 15)).all()


def test_holdout_split_is_stable_and_disjoint(raw_frame):
    train_a, holdout_a = split_holdout(raw_frame, 0.2, seed=1)
    train_b, holdout_b = split_holdout(raw_frame.sample(frac=1, random_state=3), 0.2, seed=1)
    assert set(holdout_a[ENTITY_ID]) == set(holdout_b[ENTITY_ID])
    assert not set(train_a[ENTITY_ID]) & set(holdout_a[ENTITY_ID])
    assert len(holdout_a) / len(raw_frame) == pytest.approx(0.2, abs=0.03)
    _, other_seed = split_holdout(raw_frame, 0.2, seed=2)
    assert set(other_seed[ENTITY_ID]) != set(holdout_a[ENTITY_ID])


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_pipeline_learns_the_signal(raw_frame, model_type):
    train, holdout = split_holdout(raw_frame, 0.25, seed=0)
    pipeline = fit_pipeline(train, model_type, seed=0)
    auc = classification_metrics(holdout[LABEL], pipeline.predict_proba(holdout[list(FEATURES)])[:, 1])["roc_auc"]
    assert auc > 0.7, f"{model_type} holdout AUC {auc:.3f}"


def test_pipeline_is_deterministic_for_a_seed(raw_frame):
    a = fit_pipeline(raw_frame, "mlp", seed=5).predict_proba(raw_frame[list(FEATURES)].head(50))
    b = fit_pipeline(raw_frame, "mlp", seed=5).predict_proba(raw_frame[list(FEATURES)].head(50))
    np.testing.assert_array_equal(a, b)


def test_too_few_labels_is_a_clear_error(raw_frame):
    with pytest.raises(NotEnoughLabelsError, match="widen the window"):
        fit_pipeline(raw_frame.head(50), "logistic_regression", seed=0)
