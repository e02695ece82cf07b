"""k-fold cross-validation at video level, the same for every head.

Folds are grouped and stratified (or naive, row-level, only to show leakage) and audited.
In each fold:

1. heads that refit (gbm, logreg) get out-of-fold predictions for every training video
   from inner grouped folds of the training rows, each inner fit watching its inner
   validation rows (a head that stops early, gbm, reports its best round there); a head
   that does not refit (inception) holds out a share of the training groups and watches it;
2. the decision threshold (``train.threshold``: f1, youden, eer or fpr:x) and, if asked,
   a Platt or isotonic calibration are fitted on those training-side predictions
   (original clips, per video) and never see the validation fold;
3. heads that refit then train once on all training rows, for the median of the inner
   fits' best rounds when they stopped early (recorded per fold);
4. the validation fold is scored on original clips, averaged per video; scores averaged
   over every variant (test-time augmentation) are reported apart, never instead.

Pooled over folds: the metrics, bootstrap intervals that resample groups (and, beside
them, videos), and warnings a reader must not miss: a degenerate threshold (one class
called one way), an AUC interval wholly below 0.5.

Augmented variants of training videos train; validation never sees a variant's label.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from vidstore.heads.base import Fitted, Head
from vidstore.heads.metrics import binary_metrics, choose_threshold, degenerate_calls, interval_record, summarise_folds
from vidstore.heads.splits import audit_folds, naive_row_folds, shuffle_labels_by_group, video_folds
from vidstore.heads.training import fit_name, grouped_holdout

log = logging.getLogger(__name__)

SPLITS = ("grouped", "naive")


@dataclass
class FoldResult:
    fold: int
    fitted: Fitted
    threshold: float
    calibrator: object | None


@dataclass
class CrossValResult:
    oof: pl.DataFrame  # one row per video: video_id, group, fold, label, prob, threshold (and prob_tta)
    per_fold: list[dict[str, float]]
    metrics: dict[str, dict]
    pooled: dict[str, float]
    intervals: dict  # heads.metrics.interval_record: by_group, by_video, n_groups
    audit: dict
    fold_sizes: list[dict[str, int]]
    thresholds: list[float]
    tta: dict | None = None
    curves: list[dict] = field(default_factory=list)  # every fold's training curve, fold-tagged
    folds: list[FoldResult] = field(default_factory=list)
    threshold_rule: str = "f1"
    degenerate: dict = field(default_factory=dict)  # {"pooled": reason|None, "folds": {fold: reason}}
    warnings: list[str] = field(default_factory=list)


def per_video(rows: pl.DataFrame, index: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> pl.DataFrame:
    """Clip probabilities -> one per video (the mean over its clips)."""
    clips = rows[index].select("video_id", "group", "platform", "width", "height", "duration").with_columns(
        pl.Series("label", labels[index]), pl.Series("prob", probs)
    )
    return clips.group_by("video_id", maintain_order=True).agg(
        pl.col("group", "platform", "width", "height", "duration", "label").first(), pl.col("prob").mean()
    )


def assign_folds(rows: pl.DataFrame, labels: np.ndarray, n_folds: int, seed: int, split: str) -> np.ndarray:
    if split == "naive":
        return naive_row_folds(rows.height, n_folds, seed)
    if split != "grouped":
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    return video_folds(rows, labels, n_folds, seed)


def inner_holdout(rows: pl.DataFrame, train: np.ndarray, labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the training rows by group: (rows to fit, rows held out), about ``share`` of
    the groups held out, stratified by label. Falls back to no hold-out when too small."""
    fit, held = grouped_holdout(rows[train], labels[train], share, seed)
    return train[fit], train[held]


def _logit(probs: np.ndarray) -> np.ndarray:
    """Platt scaling's input: log-odds of the probabilities, clipped away from 0 and 1."""
    return np.log(np.clip(probs, 1e-7, 1 - 1e-7) / np.clip(1 - probs, 1e-7, 1))


def fit_calibrator(kind: str, probs: np.ndarray, labels: np.ndarray):
    """A map from raw to calibrated probabilities fitted on hold-out predictions."""
    if kind == "none" or len(np.unique(labels)) < 2:
        return None
    if kind == "platt":
        model = LogisticRegression(C=1e6).fit(_logit(probs)[:, None], labels)
        return ("platt", model)
    model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(probs, labels)
    return ("isotonic", model)


def calibrator_params(calibrator) -> dict | None:
    """A calibrator as plain JSON (saved with a run; ``calibrator_from_params`` reads it)."""
    if calibrator is None:
        return None
    kind, model = calibrator
    if kind == "platt":
        return {"kind": "platt", "coef": float(model.coef_[0][0]), "intercept": float(model.intercept_[0])}
    return {"kind": "isotonic", "x": model.X_thresholds_.tolist(), "y": model.y_thresholds_.tolist()}


def apply_calibration_params(params: dict | None, probs: np.ndarray) -> np.ndarray:
    """The saved form of ``calibrate``: the same numbers without scikit-learn objects."""
    if params is None:
        return probs
    if params["kind"] == "platt":
        return 1 / (1 + np.exp(-(params["coef"] * _logit(probs) + params["intercept"])))
    return np.interp(probs, params["x"], params["y"])


def calibrate(calibrator, probs: np.ndarray) -> np.ndarray:
    if calibrator is None:
        return probs
    kind, model = calibrator
    if kind == "platt":
        return model.predict_proba(_logit(probs)[:, None])[:, 1]
    return model.predict(probs)


def _fit(head: Head, fold: int, stage: str, train: np.ndarray, watch: np.ndarray | None, labels: np.ndarray, seed: int,
         epochs: int | None = None) -> tuple[Fitted, list[dict]]:
    """One fit, named ``fold <k> <stage>`` in its log and progress lines, and its curves
    tagged with fold and stage as the run's metrics.jsonl holds them."""
    with fit_name(f"fold {fold} {stage}"):
        fitted = head.fit(train, watch, labels, seed, epochs=epochs)
    return fitted, [{"fold": fold, "stage": stage, **c} for c in fitted.curves]


@dataclass
class FoldOutcome:
    videos: pl.DataFrame  # the validation videos: label, prob, threshold (and prob_tta)
    metrics: dict[str, float]
    tta_metrics: dict[str, float] | None
    size: dict[str, int]
    curves: list[dict]
    result: FoldResult


def _inner_predictions(
    head: Head, rows: pl.DataFrame, labels: np.ndarray, train: np.ndarray, k: int, seed: int, fold: int
) -> tuple[pl.DataFrame | None, list[dict], list[int]]:
    """Per-video out-of-fold probabilities over the training videos, from k inner grouped
    folds of the training rows (the outer validation fold is never touched), the inner
    fits' curves and the best rounds of those that stopped early. None when the training
    groups cannot fill k folds."""
    is_original = rows["variant"].to_numpy() == 0
    try:
        inner = video_folds(rows[train], labels[train], k, seed)
    except ValueError:
        return None, [], []
    parts, curves, best = [], [], []
    for j in range(k):
        watch = train[(inner == j) & is_original[train]]
        fitted, tagged = _fit(head, fold, f"inner{j}", train[inner != j], watch, labels, seed + j)
        curves += tagged
        if fitted.best_epoch is not None:
            best.append(int(fitted.best_epoch))
        parts.append(per_video(rows, watch, labels, head.predict(fitted, watch)))
    return pl.concat(parts), curves, best


def evaluate_fold(
    head: Head,
    rows: pl.DataFrame,
    labels: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    fold: int,
    *,
    seed: int,
    holdout: float,
    calibration: str,
    inner_folds: int = 3,
    threshold_rule: str = "f1",
) -> FoldOutcome:
    """Train on ``train``, score ``val``: steps 1-4 above."""
    is_original = rows["variant"].to_numpy() == 0
    has_variants = bool((~is_original).any())
    rounds: dict = {}
    if head.refit and inner_folds > 1:
        # threshold and calibration from out-of-fold predictions over all the training
        # videos (inner grouped folds), then one fit on every training row, as long as
        # the inner fits found best (the median of their best rounds)
        fit_rows = train
        held_videos, curves, best = _inner_predictions(head, rows, labels, train, inner_folds, seed + 100 + fold, fold)
        refit_rounds = int(np.median(best)) if best else None
        fitted, tagged = _fit(head, fold, "refit", train, None, labels, seed + fold, epochs=refit_rounds)
        curves += tagged
        if best:
            rounds = {"inner_best_rounds": best, "refit_rounds": refit_rounds}
        held_originals = held_videos["video_id"] if held_videos is not None else []  # too few groups: threshold 0.5
    else:
        # one inner hold-out of groups: early stopping, threshold and calibration
        fit_rows, held = inner_holdout(rows, train, labels, holdout, seed + 100 + fold)
        held_originals = held[is_original[held]]
        fitted, curves = _fit(head, fold, "fit", fit_rows, held_originals if len(held_originals) else None, labels, seed + fold)
        held_videos = per_video(rows, held_originals, labels, head.predict(fitted, held_originals)) if len(held_originals) else None
        if fitted.best_epoch is not None:
            rounds = {"best_epoch": int(fitted.best_epoch)}
        if held_videos is not None and head.refit:
            chosen = fitted.best_epoch
            fitted, tagged = _fit(head, fold, "refit", train, None, labels, seed + fold, epochs=chosen)
            curves += tagged
            rounds["refit_rounds"] = chosen
    threshold, calibrator = 0.5, None
    if held_videos is not None and held_videos.height:
        calibrator = fit_calibrator(calibration, held_videos["prob"].to_numpy(), held_videos["label"].to_numpy())
        threshold = choose_threshold(held_videos["label"].to_numpy(), calibrate(calibrator, held_videos["prob"].to_numpy()), threshold_rule)
    scored = val if has_variants else val[is_original[val]]
    probs = calibrate(calibrator, head.predict(fitted, scored))
    originals = is_original[scored]
    videos = per_video(rows, scored[originals], labels, probs[originals])
    tta_metrics = None
    if has_variants:
        averaged = per_video(rows, scored, labels, probs).select("video_id", pl.col("prob").alias("prob_tta"))
        videos = videos.join(averaged, on="video_id", how="left")
        tta_metrics = binary_metrics(videos["label"].to_numpy(), videos["prob_tta"].to_numpy(), threshold)
    videos = videos.with_columns(pl.lit(fold).alias("fold"), pl.lit(threshold).alias("threshold"))
    train_originals = train[is_original[train]]
    train_fake = int(labels[train_originals].sum())
    size = {"fold": fold, "train_rows": int(len(fit_rows)), "train_videos": int(len(train_originals)), "train_fake": train_fake,
            "train_real": int(len(train_originals)) - train_fake, "threshold_videos": int(len(held_originals)),
            "val_videos": videos.height, "val_fake": int(videos["label"].sum()), "val_real": videos.height - int(videos["label"].sum()),
            **rounds}
    return FoldOutcome(
        videos=videos,
        metrics=binary_metrics(videos["label"].to_numpy(), videos["prob"].to_numpy(), threshold),
        tta_metrics=tta_metrics,
        size=size,
        curves=curves,
        result=FoldResult(fold, fitted, threshold, calibrator),
    )


def pool(outcomes: list[FoldOutcome], audit: dict, bootstrap: int, seed: int, threshold_rule: str = "f1") -> CrossValResult:
    """Fold outcomes -> out-of-fold table, per-fold and pooled metrics, intervals, warnings."""
    oof = pl.concat([o.videos for o in outcomes], how="diagonal")
    has_variants = "prob_tta" in oof.columns
    lead = ["video_id", "group", "fold", "label", "prob", "threshold"] + (["prob_tta"] if has_variants else [])
    oof = oof.select(lead + [c for c in oof.columns if c not in lead])
    y, p, t = oof["label"].to_numpy(), oof["prob"].to_numpy(), oof["threshold"].to_numpy()
    pooled = binary_metrics(y, p, 0.5)
    pooled.update(_thresholded(y, p, t))  # each video at its own fold's threshold
    tta = None
    if has_variants:
        tta_pooled = binary_metrics(y, oof["prob_tta"].to_numpy(), 0.5)
        tta_pooled.update(_thresholded(y, oof["prob_tta"].to_numpy(), t))
        tta = {"metrics": summarise_folds([o.tta_metrics for o in outcomes]), "pooled": tta_pooled}
    intervals = interval_record(y, p, t, oof["group"].to_numpy(), n=bootstrap, seed=seed)
    degenerate = {
        "pooled": degenerate_calls(y, p, t),
        "folds": {str(o.result.fold): why for o in outcomes  # str: JSON's keys, so a summary reads back equal
                  if (why := degenerate_calls(o.videos["label"].to_numpy(), o.videos["prob"].to_numpy(), o.result.threshold))},
    }
    return CrossValResult(
        oof=oof,
        per_fold=[o.metrics for o in outcomes],
        metrics=summarise_folds([o.metrics for o in outcomes]),
        pooled=pooled,
        intervals=intervals,
        audit=audit,
        fold_sizes=[o.size for o in outcomes],
        thresholds=[o.result.threshold for o in outcomes],
        tta=tta,
        curves=[c for o in outcomes for c in o.curves],
        folds=[o.result for o in outcomes],
        threshold_rule=threshold_rule,
        degenerate=degenerate,
        warnings=evaluation_warnings(intervals, degenerate),
    )


def evaluation_warnings(intervals: dict, degenerate: dict) -> list[str]:
    """What a reader must not miss, one sentence each: an AUC interval (by group) wholly
    below 0.5, a threshold that calls one class one way."""
    out = []
    lo, hi = (intervals.get("by_group") or {}).get("roc_auc", (None, None))
    if hi is not None and hi == hi and hi < 0.5:
        out.append(f"worse than chance: the ROC-AUC interval over groups ({lo:.3f} to {hi:.3f}) lies wholly below 0.5; check labels or leakage")
    if degenerate.get("pooled"):
        out.append(f"degenerate threshold: {degenerate['pooled']} (the head answers one class; its F1, precision and recall mean little)")
    for fold, why in sorted((degenerate.get("folds") or {}).items(), key=lambda item: int(item[0])):
        out.append(f"degenerate threshold in fold {fold}: {why}")
    return out


def cross_validate(
    head: Head,
    rows: pl.DataFrame,
    labels: np.ndarray,
    *,
    n_folds: int,
    seed: int = 0,
    split: str = "grouped",
    shuffle_labels: bool = False,
    holdout: float = 0.2,
    inner_folds: int = 3,
    calibration: str = "none",
    bootstrap: int = 1000,
    threshold_rule: str = "f1",
    log_level: int = logging.INFO,
) -> CrossValResult:
    """``rows``: the head's table of done rows (video_id, group, variant, platform, width,
    height, duration); ``labels``: one per row. Each fold ends with a line at ``log_level``
    (a nested sweep's inner cross-validations log at DEBUG)."""
    groups = rows["group"].to_numpy()
    if shuffle_labels:
        labels = shuffle_labels_by_group(labels, groups, seed + 1)
    folds = assign_folds(rows, labels, n_folds, seed, split)
    hashes = rows["content_hash"].to_numpy() if "content_hash" in rows.columns else None
    audit = audit_folds(folds, rows["video_id"].to_numpy(), groups, hashes)
    is_original = rows["variant"].to_numpy() == 0
    outcomes = []
    for fold in range(n_folds):
        val = np.flatnonzero(folds == fold)
        if not is_original[val].any():
            continue
        started = time.perf_counter()
        outcome = evaluate_fold(
            head, rows, labels, np.flatnonzero(folds != fold), val, fold,
            seed=seed, holdout=holdout, calibration=calibration, inner_folds=inner_folds, threshold_rule=threshold_rule,
        )
        outcomes.append(outcome)
        log.log(log_level, fold_line(outcome, len(outcomes), n_folds, time.perf_counter() - started))
        log.debug(f"fold {fold} sizes: " + ", ".join(f"{k} {v}" for k, v in outcome.size.items() if k != "fold"))
    return pool(outcomes, audit, bootstrap, seed, threshold_rule)


def fold_line(outcome: FoldOutcome, done: int, n_folds: int, seconds: float) -> str:
    """``fold 1 done (2/5): ROC-AUC 0.871 on 24 validation videos, threshold 0.430, best epoch 12, 38.0 s``."""
    size, auc = outcome.size, outcome.metrics["roc_auc"]
    rounds = "".join(f", {key.replace('_', ' ')} {size[key]}" for key in ("best_epoch", "refit_rounds") if size.get(key) is not None)
    return (f"fold {outcome.result.fold} done ({done}/{n_folds}): ROC-AUC {'n/a' if auc != auc else f'{auc:.3f}'} on "
            f"{size['val_videos']} validation videos, threshold {outcome.result.threshold:.3f}{rounds}, {seconds:.1f} s")


def _thresholded(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, F1, precision, recall with per-video thresholds."""
    shifted = binary_metrics(labels, probs - thresholds + 0.5, 0.5)
    return {k: shifted[k] for k in ("accuracy", "balanced_accuracy", "f1", "precision", "recall")}
