"""Folds that cannot leak: every row of a video and every video of a group in one fold.

Folds are assigned to groups (near-duplicate groups, which contain their videos), stratified
by label so each fold keeps about the overall fake/real ratio; rows inherit their video's
fold. ``audit_folds`` checks the result from the rows themselves, so a split built any
other way is caught too.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold


class SplitError(ValueError):
    """Data that cannot be split as asked (too few groups, one class only)."""


def grouped_stratified_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..n_folds-1) per item, with no group in two folds, stratified by label.

    ``labels`` and ``groups`` are per item (one item per video). A group with mixed labels
    (FVC's real originals inside fake cascades) still goes to one fold whole.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise SplitError(f"{n_groups} groups cannot fill {n_folds} folds; use fewer folds")
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise SplitError(f"only one class ({classes.tolist()}) among the videos; cannot train a classifier")
    if counts.min() < n_folds:
        rare = classes[np.argmin(counts)]
        raise SplitError(f"label {rare} has only {counts.min()} videos; {n_folds} stratified folds need at least {n_folds}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.full(len(labels), -1, dtype=np.int64)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[test] = fold
    return folds


def naive_row_folds(n_rows: int, n_folds: int, seed: int = 0) -> np.ndarray:
    """Row-level folds that ignore videos and groups: only to show what leakage does."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n_rows) % n_folds)


def audit_folds(folds: np.ndarray, video_ids: np.ndarray, groups: np.ndarray, hashes: np.ndarray | None = None) -> dict:
    """How many videos and groups appear in more than one fold (both must be 0), and, from
    the files' content hashes (the index's ``content_hash``: size and first and last MiB),
    how many identical files under different ids sit in different folds (a leak the ids
    and groups cannot show)."""
    folds, video_ids, groups = np.asarray(folds), np.asarray(video_ids), np.asarray(groups)

    def spread(keys: np.ndarray) -> list:
        pairs = np.unique(np.stack([keys.astype(str), folds.astype(str)], axis=1), axis=0)
        names, counts = np.unique(pairs[:, 0], return_counts=True)
        return names[counts > 1].tolist()

    leaking_groups = spread(groups)
    leaking_videos = spread(video_ids)
    identical, leaking_identical = 0, []
    if hashes is not None:
        hashes = np.asarray(hashes).astype(str)
        known = hashes != ""
        per_hash: dict[str, set] = {}
        folds_of: dict[str, set] = {}
        for h, v, f in zip(hashes[known].tolist(), video_ids[known].tolist(), folds[known].tolist()):
            per_hash.setdefault(h, set()).add(v)
            folds_of.setdefault(h, set()).add(f)
        shared = [h for h, vs in per_hash.items() if len(vs) > 1]
        identical = len(shared)
        leaking_identical = [" = ".join(sorted(per_hash[h])) for h in shared if len(folds_of[h]) > 1]
    return {
        "n_folds": int(len(np.unique(folds))),
        "n_groups": int(len(np.unique(groups))),
        "n_videos": int(len(np.unique(video_ids))),
        "leaking_groups": len(leaking_groups),
        "leaking_videos": len(leaking_videos),
        "identical_files": identical,  # sets of identical files under different ids
        "leaking_identical_files": len(leaking_identical),  # of those, split across folds
        "examples": (leaking_groups + leaking_videos + leaking_identical)[:5],
    }


def shuffle_labels_by_group(labels: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Labels permuted across groups (a group keeps one label): the permutation check.

    Features then carry no information about the labels, so honest k-fold metrics must
    fall to chance; anything better points to leakage.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    names, first = np.unique(groups, return_index=True)
    group_labels = labels[first]
    permuted = np.random.default_rng(seed).permutation(group_labels)
    lookup = dict(zip(names.tolist(), permuted.tolist()))
    return np.array([lookup[g] for g in groups.tolist()], dtype=labels.dtype)


def video_folds(rows: pl.DataFrame, labels: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold per row from folds of its video, assigned by group and stratified by label."""
    videos = rows.with_columns(pl.Series("y", labels)).group_by("video_id", maintain_order=True).agg(
        pl.col("group").first(), pl.col("y").first()
    )
    folds = grouped_stratified_folds(videos["y"].to_numpy(), videos["group"].to_numpy(), n_folds, seed)
    lookup = dict(zip(videos["video_id"].to_list(), folds.tolist()))
    return np.array([lookup[v] for v in rows["video_id"].to_list()], dtype=np.int64)
