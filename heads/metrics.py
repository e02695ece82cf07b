"""Classification metrics at video level: pure functions of labels and probabilities.

Scores are probabilities of "fake". Ranking metrics (ROC-AUC, PR-AUC) ignore the
threshold; the others are taken at a threshold chosen on training data (never on the
data being scored). Calibration: log-loss, Brier score, expected calibration error.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, roc_auc_score

METRIC_NAMES = (
    "roc_auc",
    "pr_auc",
    "accuracy",
    "balanced_accuracy",
    "f1",
    "precision",
    "recall",
    "log_loss",
    "brier",
    "ece",
)
_CLIP = 1e-7


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Share-weighted mean |observed fake rate - mean probability| over equal-width bins."""
    labels, probs = np.asarray(labels, dtype=float), np.asarray(probs, dtype=float)
    if len(labels) == 0:
        return math.nan
    which = np.minimum((probs * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(labels[inside].mean() - probs[inside].mean())
    return float(error)


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy of probabilities, clipped away from 0 and 1 (the one log
    loss: metrics, early stopping and fine-tuning's hold-out all use it)."""
    clipped = np.clip(probs, _CLIP, 1 - _CLIP)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every metric of METRIC_NAMES. Ranking metrics are NaN with one class present; a
    ratio with an empty denominator is 0 (scikit-learn's zero_division=0)."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=float)
    predicted = probs >= threshold
    positive = labels == 1
    tp = int(np.sum(predicted & positive))
    fp = int(np.sum(predicted & ~positive))
    fn = int(np.sum(~predicted & positive))
    tn = int(np.sum(~predicted & ~positive))
    both_classes = len(np.unique(labels)) == 2
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    n = len(labels)
    return {
        "roc_auc": float(roc_auc_score(labels, probs)) if both_classes else math.nan,
        "pr_auc": float(average_precision_score(labels, probs)) if both_classes else math.nan,
        "accuracy": (tp + tn) / n if n else math.nan,
        "balanced_accuracy": (recall + specificity) / 2 if both_classes else math.nan,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
        "log_loss": log_loss(labels, probs) if n else math.nan,
        "brier": float(np.mean((probs - labels) ** 2)) if n else math.nan,
        "ece": expected_calibration_error(labels, probs),
    }


def choose_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The threshold that maximises F1 on these (training) predictions: the midpoint
    below the best-scoring cut; 0.5 when only one class is present."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=float)
    if len(np.unique(labels)) < 2:
        return 0.5
    candidates = np.unique(probs)
    cuts = np.concatenate([[candidates[0] - 1e-6], (candidates[:-1] + candidates[1:]) / 2])
    best, best_f1 = 0.5, -1.0
    positives = labels.sum()
    for cut in cuts:
        predicted = probs >= cut
        tp = int(np.sum(predicted & (labels == 1)))
        n_pred = int(predicted.sum())
        f1 = 2 * tp / (n_pred + positives) if n_pred + positives else 0.0
        if f1 > best_f1:
            best, best_f1 = float(cut), f1
    return best


def bootstrap_auc_interval(labels: np.ndarray, probs: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of ROC-AUC over videos resampled with replacement."""
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        pick = rng.integers(0, len(labels), len(labels))
        if len(np.unique(labels[pick])) == 2:
            values.append(roc_auc_score(labels[pick], probs[pick]))
    if not values:
        return math.nan, math.nan
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


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


def reliability_curve(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: mean probability, observed fake rate, count."""
    labels, probs = np.asarray(labels, dtype=float), np.asarray(probs, dtype=float)
    which = np.minimum((probs * bins).astype(int), bins - 1)
    mean_p, rate, count = [], [], []
    for b in range(bins):
        inside = which == b
        if inside.any():
            mean_p.append(probs[inside].mean())
            rate.append(labels[inside].mean())
            count.append(int(inside.sum()))
    return np.array(mean_p), np.array(rate), np.array(count)


def resolution_band(width: float, height: float) -> str:
    short = min(width, height)
    if not short == short:  # NaN
        return "unknown"
    return "<360p" if short < 360 else "360-719p" if short < 720 else ">=720p"


def duration_band(seconds: float) -> str:
    if not seconds == seconds:
        return "unknown"
    return "<10s" if seconds < 10 else "10-60s" if seconds < 60 else ">=60s"


def slice_metrics(oof: pl.DataFrame, threshold_column: str = "threshold") -> dict[str, dict[str, dict]]:
    """Metrics per platform, resolution band and duration band (each fold's own threshold);
    a slicing is left out when it has one value only."""
    bands = oof.with_columns(
        pl.struct("width", "height").map_elements(lambda r: resolution_band(r["width"], r["height"]), return_dtype=pl.String).alias("resolution"),
        pl.col("duration").map_elements(duration_band, return_dtype=pl.String).alias("duration_band"),
    )
    out: dict[str, dict[str, dict]] = {}
    for column in ("platform", "resolution", "duration_band"):
        values = [v for v in bands[column].unique().sort().to_list() if v not in ("", None)]
        if len(values) < 2:
            continue
        out[column] = {}
        for value in values:
            part = bands.filter(pl.col(column) == value)
            labels, probs = part["label"].to_numpy(), part["prob"].to_numpy()
            predicted = probs >= part[threshold_column].to_numpy()
            out[column][value] = {
                "videos": part.height,
                "fake": int(labels.sum()),
                "roc_auc": float(roc_auc_score(labels, probs)) if len(np.unique(labels)) == 2 else math.nan,
                "accuracy": float(np.mean(predicted == (labels == 1))),
            }
    return out
