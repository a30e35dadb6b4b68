import numpy as np
import pytest

from flightdeck.training.evaluate import classification_metrics, decide_registration


def test_metrics_of_a_perfect_and_a_random_ranker():
    labels = np.array([0, 0, 1, 1] * 50)
    perfect = classification_metrics(labels, labels * 0.8 + 0.1)
    assert perfect["roc_auc"] == 1.0 and perfect["accuracy"] == 1.0
    noise = classification_metrics(labels, np.random.default_rng(0).uniform(size=labels.size))
    assert 0.35 < noise["roc_auc"] < 0.65
    assert noise["n_rows"] == 200 and noise["positive_rate"] == 0.5


def test_first_model_registers_without_a_champion():
    decision = decide_registration({"roc_auc": 0.7}, None, None, margin=0.01)
    assert decision.register and "no champion" in decision.reason


@pytest.mark.parametrize("ours, theirs, margin, expected", [
    (0.80, 0.78, 0.01, True),
    (0.80, 0.795, 0.01, False),
    (0.80, 0.80, 0.0, False),   # equal is not better: re-training on the same data registers nothing
    (0.70, 0.80, 0.0, False),
])
def test_challenger_must_beat_champion_by_more_than_the_margin(ours, theirs, margin, expected):
    decision = decide_registration({"roc_auc": ours}, {"roc_auc": theirs}, "3", margin)
    assert decision.register is expected
    assert "champion v3" in decision.reason and f"margin {margin:g}" in decision.reason
