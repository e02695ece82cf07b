"""Classification metrics at video level: pure functions of labels and probabilities.

Scores are probabilities of "fake". Ranking metrics (ROC-AUC, PR-AUC, the equal error
rate, the true-positive rate at a fixed false-positive rate) ignore the threshold; the
others are taken at a threshold chosen on training data (never on the data being
scored) by one of THRESHOLD_RULES. Calibration: log-loss, Brier score, expected
calibration error.

Intervals are percentile bootstraps that resample *groups* (near-duplicates of one
scene are not independent; a group is drawn whole or not at all), reported beside the
videos-resampled interval and the number of groups, so a reader sees how much evidence
there is.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

METRIC_NAMES = (
    "roc_auc",
    "pr_auc",
    "eer",
    "tpr_at_fpr_0.01",
    "tpr_at_fpr_0.05",
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
LOW_FPRS = (0.01, 0.05)
INTERVAL_METRICS = ("roc_auc", "pr_auc", "eer", "balanced_accuracy")
# A threshold that calls at least this share of one class the same wrong way (every real
# "fake", or every fake "real") is degenerate: the head answers one class whatever it sees.
DEGENERATE_SHARE = 0.95


def roc_points(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds) of calling fake every score
    >= threshold, thresholds from above the highest score down to the lowest (one point
    per distinct score; tied scores move together). Needs both classes."""
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=float)
    order = np.argsort(-probs, kind="mergesort")
    ranked, hits = probs[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp = np.r_[0, np.cumsum(hits)[last_of_tie]]
    fp = np.r_[0, np.cumsum(1 - hits)[last_of_tie]]
    return fp / fp[-1], tp / tp[-1], np.r_[np.inf, ranked[last_of_tie]]


def _area_under(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN with one class."""
    if len(np.unique(labels)) < 2:
        return math.nan
    fpr, tpr, _ = roc_points(labels, probs)
    return _area_under(fpr, tpr)


def equal_error_rate(labels: np.ndarray, probs: np.ndarray) -> float:
    """The error rate where false positives and misses are equally frequent: the ROC
    curve (points joined by straight lines) crosses FPR = 1 - TPR. NaN with one class."""
    if len(np.unique(labels)) < 2:
        return math.nan
    fpr, tpr, _ = roc_points(labels, probs)
    gap = (1 - tpr) - fpr  # starts at 1 (nothing called fake), ends at -1 (everything)
    k = int(np.flatnonzero(gap <= 0)[0])
    if gap[k] == 0:
        return float(fpr[k])
    share = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(fpr[k - 1] + share * (fpr[k] - fpr[k - 1]))


def tpr_at_fpr(labels: np.ndarray, probs: np.ndarray, max_fpr: float) -> float:
    """The highest true-positive rate of a threshold whose false-positive rate is at most
    ``max_fpr`` (a threshold that exists; no interpolation between points, which would
    claim an operating point no threshold gives). NaN with one class."""
    if len(np.unique(labels)) < 2:
        return math.nan
    fpr, tpr, _ = roc_points(labels, probs)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def average_precision(labels: np.ndarray, probs: np.ndarray) -> float:
    """PR-AUC as the step sum of precision over recall gained (scikit-learn's definition)."""
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=float)
    order = np.argsort(-probs, kind="mergesort")
    ranked, hits = probs[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tp = np.cumsum(hits)[last_of_tie]
    called = last_of_tie + 1
    recall_gain = np.diff(np.r_[0, tp]) / tp[-1]
    return float(np.sum(recall_gain * tp / called))


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
        "roc_auc": roc_auc(labels, probs),
        "pr_auc": average_precision(labels, probs) if both_classes else math.nan,
        "eer": equal_error_rate(labels, probs),
        **{f"tpr_at_fpr_{x}": tpr_at_fpr(labels, probs, x) for x in LOW_FPRS},
        "accuracy": (tp + tn) / n if n else math.nan,
        "balanced_accuracy": (recall + specificity) / 2 if both_classes else math.nan,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "precision": precision,
        "recall": recall,
        "log_loss": log_loss(labels, probs) if n else math.nan,
        "brier": float(np.mean((probs - labels) ** 2)) if n else math.nan,
        "ece": expected_calibration_error(labels, probs),
    }


THRESHOLD_RULES = ("f1", "youden", "eer", "fpr:<rate>")


def parse_threshold_rule(rule: str) -> tuple[str, float | None]:
    """``f1`` | ``youden`` | ``eer`` | ``fpr:0.05`` -> (kind, the false-positive rate or None)."""
    kind, _, value = str(rule).partition(":")
    if kind in ("f1", "youden", "eer") and not value:
        return kind, None
    if kind == "fpr":
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if 0 < rate < 1:
            return kind, rate
        raise ValueError(f"threshold rule {rule!r}: the false-positive rate after 'fpr:' must be between 0 and 1, e.g. fpr:0.05")
    raise ValueError(f"unknown threshold rule {rule!r}; choose from {', '.join(THRESHOLD_RULES)}")


def choose_threshold(labels: np.ndarray, probs: np.ndarray, rule: str = "f1") -> float:
    """The threshold (call fake at or above it) that ``rule`` picks on these (training)
    predictions; 0.5 when only one class is present. Candidates are the midpoints between
    neighbouring distinct scores (and one below the lowest); the first best cut from the
    bottom wins a tie.

    - ``f1``: the best F1 of the fake class;
    - ``youden``: the best TPR - FPR (Youden's J, balanced accuracy);
    - ``eer``: the cut where FPR and 1 - TPR are closest;
    - ``fpr:x``: the lowest cut whose FPR is at most x (the most fakes caught at that rate).
    """
    kind, rate = parse_threshold_rule(rule)
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=float)
    if len(np.unique(labels)) < 2:
        return 0.5
    candidates = np.unique(probs)
    cuts = np.concatenate([[candidates[0] - 1e-6], (candidates[:-1] + candidates[1:]) / 2])
    called = probs[None, :] >= cuts[:, None]
    positive = labels == 1
    tp = (called & positive).sum(axis=1)
    fp = (called & ~positive).sum(axis=1)
    tpr, fpr = tp / positive.sum(), fp / (~positive).sum()
    if kind == "f1":
        score = 2 * tp / (called.sum(axis=1) + positive.sum())
    elif kind == "youden":
        score = tpr - fpr
    elif kind == "eer":
        score = -np.abs((1 - tpr) - fpr)
    else:
        score = np.where(fpr <= rate + 1e-12, tpr, -1.0)
    return float(cuts[int(np.argmax(score))])


def degenerate_calls(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float) -> str | None:
    """Why a threshold is degenerate on these videos, or None: it calls at least
    DEGENERATE_SHARE of the real videos fake, or of the fake videos real."""
    labels = np.asarray(labels).astype(int)
    called = np.asarray(probs, dtype=float) >= np.asarray(thresholds, dtype=float)
    reasons = []
    for cls, name, wrong in ((0, "real", "fake"), (1, "fake", "real")):
        mine = labels == cls
        if mine.any():
            share = float(np.mean(called[mine] != bool(cls)))
            if share >= DEGENERATE_SHARE:
                reasons.append(f"{share:.0%} of {int(mine.sum())} {name} videos called {wrong}")
    return "; ".join(reasons) or None


def _ranking_metric(name: str, labels: np.ndarray, probs: np.ndarray) -> float:
    if name == "roc_auc":
        return roc_auc(labels, probs)
    if name == "pr_auc":
        return average_precision(labels, probs)
    return equal_error_rate(labels, probs)


def _resampled_metric(name: str, labels: np.ndarray, probs: np.ndarray, called: np.ndarray) -> float:
    if name == "balanced_accuracy":
        return float((called[labels == 1].mean() + (~called[labels == 0]).mean()) / 2)
    return _ranking_metric(name, labels, probs)


def bootstrap_intervals(
    labels: np.ndarray,
    probs: np.ndarray,
    thresholds: np.ndarray | float,
    units: np.ndarray | None = None,
    *,
    metrics: tuple[str, ...] = INTERVAL_METRICS,
    n: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of ``metrics`` over resamples, with replacement, of
    ``units``: a resample draws as many units as there are and takes every video of each
    drawn unit (``units`` = the videos' groups; None = each video its own unit). Balanced
    accuracy calls each video at its own threshold. A resample with one class only cannot
    be scored and is drawn again in its place (NaN when none has both classes)."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=float)
    called = probs >= np.broadcast_to(np.asarray(thresholds, dtype=float), probs.shape)
    units = np.arange(len(labels)) if units is None else np.asarray(units)
    _, unit_of = np.unique(units, return_inverse=True)
    members = [np.flatnonzero(unit_of == u) for u in range(unit_of.max() + 1)] if len(labels) else []
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {m: [] for m in metrics}
    tries = 0
    while len(values[metrics[0]]) < n and tries < 20 * n and members:
        tries += 1
        pick = np.concatenate([members[u] for u in rng.integers(0, len(members), len(members))])
        y = labels[pick]
        if y.min() == y.max():
            continue
        for name in metrics:
            values[name].append(_resampled_metric(name, y, probs[pick], called[pick]))
    return {
        name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (math.nan, math.nan)
        for name, v in values.items()
    }


def interval_record(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float, groups: np.ndarray,
                    n: int = 1000, seed: int = 0) -> dict:
    """Both bootstraps of INTERVAL_METRICS as a summary keeps them: ``by_group`` (the one to
    read) and ``by_video`` (narrower wherever groups hold near-duplicates), with the
    number of groups and videos they resampled."""
    if not n:
        return {"resamples": 0, "n_groups": int(len(np.unique(groups))), "n_videos": int(len(labels)), "by_group": {}, "by_video": {}}
    return {
        "resamples": n,
        "n_groups": int(len(np.unique(groups))),
        "n_videos": int(len(labels)),
        "by_group": {k: list(v) for k, v in bootstrap_intervals(labels, probs, thresholds, groups, n=n, seed=seed).items()},
        "by_video": {k: list(v) for k, v in bootstrap_intervals(labels, probs, thresholds, None, n=n, seed=seed).items()},
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
                "roc_auc": roc_auc(labels, probs),
                "accuracy": float(np.mean(predicted == (labels == 1))),
            }
    return out
