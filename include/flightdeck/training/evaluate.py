"""Holdout metrics and the registration decision against the champion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics

PRIMARY_METRIC = "roc_auc"


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Ranking, calibration and thresholded metrics of positive-class scores."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(scores) >= threshold).astype(int)
    return {
        "roc_auc": float(metrics.roc_auc_score(labels, scores)),
        "pr_auc": float(metrics.average_precision_score(labels, scores)),
        "log_loss": float(metrics.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(metrics.brier_score_loss(labels, scores)),
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "precision": float(metrics.precision_score(labels, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(labels, predicted, zero_division=0)),
        "positive_rate": float(labels.mean()),
        "n_rows": float(len(labels)),
    }


@dataclass(frozen=True)
class RegistrationDecision:
    """Whether the challenger may be registered, and the sentence that says why."""

    register: bool
    reason: str


def decide_registration(challenger: dict[str, float], champion: dict[str, float] | None,
                        champion_version: str | None, margin: float) -> RegistrationDecision:
    """Register when there is no champion, or the challenger's AUC beats it by more than `margin`."""
    ours = challenger[PRIMARY_METRIC]
    if champion is None:
        return RegistrationDecision(True, f"no champion yet: registering with {PRIMARY_METRIC} {ours:.4f}")
    theirs = champion[PRIMARY_METRIC]
    gain = ours - theirs
    verdict = "beats" if gain > margin else "does not beat"
    return RegistrationDecision(
        gain > margin,
        f"challenger {PRIMARY_METRIC} {ours:.4f} {verdict} champion v{champion_version} "
        f"{PRIMARY_METRIC} {theirs:.4f} by more than margin {margin:g} (gain {gain:+.4f})")
