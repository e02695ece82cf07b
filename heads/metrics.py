"""Classification metrics at video level: pure functions of labels and scores."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

METRIC_NAMES = ("roc_auc", "pr_auc", "accuracy", "f1", "precision", "recall")


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """ROC-AUC, PR-AUC (average precision), and accuracy/F1/precision/recall at ``threshold``.

    Ranking metrics are NaN when only one class is present; a ratio with an empty
    denominator is 0 (sklearn's zero_division=0 convention).
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=float)
    predicted = scores >= threshold
    positive = labels == 1
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    both_classes = len(np.unique(labels)) == 2
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "roc_auc": float(roc_auc_score(labels, scores)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(labels, scores)) if both_classes else math.nan,
        "accuracy": float(np.mean(predicted == positive)) if len(labels) else math.nan,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
    }


def summarise_folds(per_fold: list[dict[str, float]]) -> dict[str, dict]:
    """{metric: {mean, std, per_fold}} over folds (NaN folds left out of mean and std)."""
    out = {}
    for name in METRIC_NAMES:
        values = [f[name] for f in per_fold]
        finite = [v for v in values if not math.isnan(v)]
        out[name] = {
            "mean": float(np.mean(finite)) if finite else math.nan,
            "std": float(np.std(finite)) if finite else math.nan,
            "per_fold": values,
        }
    return out
