"""k-fold cross-validation at video level, the same for every head.

A head supplies ``fit_predict(train_rows, val_rows, labels) -> scores``. This module makes
the folds (grouped and stratified, or the naive row-level split that exists only to show
leakage), audits them, trains on every row of the training folds (augmented variants
included) and scores the validation fold on original clips only, averaged per video.
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
    oof: pl.DataFrame  # one row per video: video_id, group, fold, label, score
    per_fold: list[dict[str, float]]
    metrics: dict[str, dict]
    pooled: dict[str, float]
    audit: dict
    fold_sizes: list[dict[str, int]]


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
    on_fold: Callable[[int, dict[str, float]], None] | None = None,
) -> CrossValResult:
    rows = table.rows
    labels = table.labels
    groups = rows["group"].to_numpy()
    if shuffle_labels:
        labels = shuffle_labels_by_group(labels, groups, seed + 1)
    folds = assign_folds(rows, labels, n_folds, seed, split)
    audit = audit_folds(folds, rows["video_id"].to_numpy(), groups)
    is_original = rows["variant"].to_numpy() == 0

    oof_parts, per_fold, sizes = [], [], []
    for fold in range(n_folds):
        train = np.flatnonzero(folds != fold)
        val = np.flatnonzero((folds == fold) & is_original)
        if val.size == 0:
            continue
        scores = fit_predict(train, val, labels)
        clip_scores = pl.DataFrame(
            {"video_id": rows["video_id"].to_numpy()[val], "group": groups[val], "label": labels[val], "score": scores}
        )
        videos = clip_scores.group_by("video_id", maintain_order=True).agg(
            pl.col("group").first(), pl.col("label").first(), pl.col("score").mean()
        ).with_columns(pl.lit(fold).alias("fold"))
        fold_metrics = binary_metrics(videos["label"].to_numpy(), videos["score"].to_numpy(), threshold)
        per_fold.append(fold_metrics)
        sizes.append({"fold": fold, "train_rows": int(train.size), "val_videos": videos.height, "val_fake": int(videos["label"].sum())})
        oof_parts.append(videos)
        if on_fold is not None:
            on_fold(fold, fold_metrics)
    oof = pl.concat(oof_parts).select("video_id", "group", "fold", "label", "score")
    pooled = binary_metrics(oof["label"].to_numpy(), oof["score"].to_numpy(), threshold)
    return CrossValResult(oof=oof, per_fold=per_fold, metrics=summarise_folds(per_fold), pooled=pooled, audit=audit, fold_sizes=sizes)
