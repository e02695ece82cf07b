"""``train HEAD``: read the store, cross-validate the head, write the run folder."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from configs import Config
from heads.crossval import SPLITS, cross_validate
from heads.features_table import load_feature_table
from heads.gbm import GbmFolds
from heads.runs import new_run_dir, write_run
from store import FeatureStore

HEADS = ("gbm",)


class HeadError(ValueError):
    """An unknown head or split."""


def train_head(head: str, store_path: str | Path, cfg: Config, *, split: str = "grouped") -> tuple[Path, dict]:
    """Cross-validate ``head`` on the store; returns the run folder and its summary."""
    if head not in HEADS:
        raise HeadError(f"unknown head {head!r}; choose from {list(HEADS)}")
    if split not in SPLITS:
        raise HeadError(f"unknown split {split!r}; choose from {list(SPLITS)}")
    started = time.perf_counter()
    store = FeatureStore.open(store_path)
    train = cfg.train
    table, scale = load_feature_table(store, train.scale, train.features)
    model = GbmFolds(table.X, train.gbm, train.seed)
    result = cross_validate(
        table, model, n_folds=train.folds, seed=train.seed, threshold=train.threshold, split=split, shuffle_labels=train.shuffle_labels
    )
    labels = result.oof["label"].to_numpy()
    provenance = store.attrs
    summary = {
        "head": head,
        "store": str(store_path),
        "scale": scale,
        "features": list(train.features),
        "n_features": int(table.X.shape[1]),
        "n_folds": train.folds,
        "seed": train.seed,
        "split": split,
        "shuffle_labels": train.shuffle_labels,
        "threshold": train.threshold,
        "level": "video (original clips; clip scores averaged per video)",
        "n_rows": int(table.X.shape[0]),
        "n_videos": int(result.oof.height),
        "class_counts": {"real": int(np.sum(labels == 0)), "fake": int(np.sum(labels == 1))},
        "n_variants": int(table.rows["variant"].max()) + 1,
        "metrics": result.metrics,
        "pooled": result.pooled,
        "tta": result.tta,
        "split_audit": result.audit,
        "folds": result.fold_sizes,
        "top_features": model.importance(table.names),
        "store_provenance": {
            "backbone": provenance.get("backbone"),
            "preprocessing_hash": provenance.get("preprocessing_hash"),
        },
    }
    run_dir = new_run_dir(train.out, head)
    summary["run_id"] = run_dir.name
    summary["seconds"] = round(time.perf_counter() - started, 2)
    write_run(run_dir, cfg.to_dict(), summary, result.oof)
    return run_dir, summary
