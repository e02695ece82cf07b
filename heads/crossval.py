"""k-fold cross-validation at video level, the same for every head.

A head supplies ``fit_predict(train_rows, val_rows, labels) -> scores``. This module makes
the folds (grouped and stratified, or the naive row-level split that exists only to show
leakage), audits them, trains on every row of the training folds (augmented variants
included) and scores the validation fold on original clips only, averaged per video.
When the store has augmented variants, scores averaged over all of a validation video's
variants (test-time augmentation) are reported beside, never instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl

from heads.features_table import FeatureTable
from heads.metrics import binary_metrics, summarise_folds
from heads.splits import audit_folds, grouped_stratified_folds, naive_row_folds, shuffle_labels_by_group

FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
SPLITS = ("grouped", "naive")


@dataclass
class CrossValResult:
    oof: pl.DataFrame  # one row per video: video_id, group, fold, label, score (and score_tta)
    per_fold: list[dict[str, float]]
    metrics: dict[str, dict]
    pooled: dict[str, float]
    audit: dict
    fold_sizes: list[dict[str, int]]
    tta: dict | None = None  # the same metrics with scores averaged over every variant


def _per_video(rows: pl.DataFrame, index: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
    """Clip scores -> one score per video (the mean over its clips)."""
    clips = pl.DataFrame(
        {"video_id": rows["video_id"].to_numpy()[index], "group": rows["group"].to_numpy()[index], "label": labels[index], "score": scores}
    )
    return clips.group_by("video_id", maintain_order=True).agg(pl.col("group").first(), pl.col("label").first(), pl.col("score").mean())


def assign_folds(rows: pl.DataFrame, labels: np.ndarray, n_folds: int, seed: int, split: str) -> np.ndarray:
    """Fold per row. ``grouped``: by near-duplicate group, stratified on video labels."""
    if split == "naive":
        return naive_row_folds(rows.height, n_folds, seed)
    if split != "grouped":
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    videos = rows.with_columns(pl.Series("y", labels)).group_by("video_id", maintain_order=True).agg(
        pl.col("group").first(), pl.col("y").first()
    )
    video_folds = grouped_stratified_folds(videos["y"].to_numpy(), videos["group"].to_numpy(), n_folds, seed)
    lookup = dict(zip(videos["video_id"].to_list(), video_folds.tolist()))
    return np.array([lookup[v] for v in rows["video_id"].to_list()], dtype=np.int64)


def cross_validate(
    table: FeatureTable,
    fit_predict: FitPredict,
    *,
    n_folds: int,
    seed: int = 0,
    threshold: float = 0.5,
    split: str = "grouped",
    shuffle_labels: bool = False,
) -> CrossValResult:
    rows = table.rows
    labels = table.labels
    groups = rows["group"].to_numpy()
    if shuffle_labels:
        labels = shuffle_labels_by_group(labels, groups, seed + 1)
    folds = assign_folds(rows, labels, n_folds, seed, split)
    audit = audit_folds(folds, rows["video_id"].to_numpy(), groups)
    is_original = rows["variant"].to_numpy() == 0

    has_variants = bool((~is_original).any())

    oof_parts, per_fold, sizes, tta_per_fold = [], [], [], []
    for fold in range(n_folds):
        train = np.flatnonzero(folds != fold)
        val = np.flatnonzero(folds == fold)
        original = is_original[val]
        if not original.any():
            continue
        # the model sees every variant of the validation videos only to report test-time
        # averaging separately; the headline metrics use the original clips alone
        scores = fit_predict(train, val if has_variants else val[original], labels)
        videos = _per_video(rows, val[original], labels, scores[original] if has_variants else scores)
        if has_variants:
            averaged = _per_video(rows, val, labels, scores).rename({"score": "score_tta"})
            videos = videos.join(averaged.select("video_id", "score_tta"), on="video_id", how="left")
            tta_per_fold.append(binary_metrics(videos["label"].to_numpy(), videos["score_tta"].to_numpy(), threshold))
        videos = videos.with_columns(pl.lit(fold).alias("fold"))
        fold_metrics = binary_metrics(videos["label"].to_numpy(), videos["score"].to_numpy(), threshold)
        per_fold.append(fold_metrics)
        sizes.append({"fold": fold, "train_rows": int(train.size), "val_videos": videos.height, "val_fake": int(videos["label"].sum())})
        oof_parts.append(videos)
    columns = ["video_id", "group", "fold", "label", "score"] + (["score_tta"] if has_variants else [])
    oof = pl.concat(oof_parts).select(columns)
    pooled = binary_metrics(oof["label"].to_numpy(), oof["score"].to_numpy(), threshold)
    tta = None
    if has_variants:
        tta = {
            "metrics": summarise_folds(tta_per_fold),
            "pooled": binary_metrics(oof["label"].to_numpy(), oof["score_tta"].to_numpy(), threshold),
        }
    return CrossValResult(
        oof=oof, per_fold=per_fold, metrics=summarise_folds(per_fold), pooled=pooled, audit=audit, fold_sizes=sizes, tta=tta
    )
