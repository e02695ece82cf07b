"""``train HEAD``: read the store once, cross-validate a head, write the run folder.

Heads (the registry): ``gbm`` and ``logreg`` on flat features chosen by name
(``train.features``: embedding, handcrafted, map summaries); ``inception`` on a stored map
(``train.tap``, layer4 by default).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from configs import Config
from heads.base import Head
from heads.crossval import SPLITS, CrossValResult, calibrator_params, cross_validate
from heads.features_table import HeadDataError, load_feature_table
from heads.gbm import GbmHead
from heads.inception import InceptionHead3D, MapSource
from heads.logreg import LogregHead
from heads.metrics import slice_metrics
from heads.report import write_report
from heads.runs import json_safe, new_run_dir, write_run
from store import FeatureStore

HEADS = ("gbm", "logreg", "inception")


class HeadError(ValueError):
    """An unknown head or split."""


@dataclass
class HeadData:
    """What a head reads from the store, loaded once (a sweep reuses it for every point)."""

    store: FeatureStore
    scale: int
    rows: pl.DataFrame  # done rows
    X: np.ndarray | None = None  # flat features, for gbm and logreg
    names: list[str] | None = None
    source: MapSource | None = None  # maps, for inception


def load_head_data(head: str, store: FeatureStore, cfg: Config) -> HeadData:
    if head not in HEADS:
        raise HeadError(f"unknown head {head!r}; choose from {list(HEADS)}")
    train = cfg.train
    if head == "inception":
        scale = store.scales[0] if train.scale is None else train.scale
        if scale not in store.scales:
            raise HeadDataError(f"store {store.path} has no scale {scale}; it has {store.scales}")
        if train.tap not in store.array_names(scale):
            raise HeadDataError(f"store {store.path} has no map {train.tap!r} at scale {scale}; it has {store.array_names(scale)}")
        rows = store.rows().filter(pl.col("status") == "done")
        if rows.height == 0:
            raise HeadDataError(f"store {store.path} has no done rows; run extract first")
        try:
            source = MapSource(store, scale, train.tap, rows, train.inception.cache_mb)
        except ValueError as err:
            raise HeadDataError(str(err)) from None
        return HeadData(store, scale, rows, source=source)
    table, scale = load_feature_table(store, train.scale, train.features)
    return HeadData(store, scale, table.rows, X=table.X, names=table.names)


def make_head(head: str, data: HeadData, cfg: Config) -> Head:
    if head == "gbm":
        return GbmHead(data.X, data.names, cfg.train.gbm)
    if head == "logreg":
        return LogregHead(data.X, data.names, cfg.train.logreg)
    return InceptionHead3D(data.source, data.rows, cfg.train.inception)


def run_head(head_name: str, data: HeadData, cfg: Config, split: str = "grouped") -> tuple[Head, CrossValResult]:
    if split not in SPLITS:
        raise HeadError(f"unknown split {split!r}; choose from {list(SPLITS)}")
    head = make_head(head_name, data, cfg)
    labels = data.rows["label"].to_numpy().astype(np.int64)
    t = cfg.train
    result = cross_validate(
        head, data.rows, labels, n_folds=t.folds, seed=t.seed, split=split, shuffle_labels=t.shuffle_labels,
        holdout=t.inner_holdout, inner_folds=t.inner_folds, calibration=t.calibration, bootstrap=t.bootstrap,
    )
    return head, result


def summarise(head_name: str, head: Head, data: HeadData, result: CrossValResult, cfg: Config, split: str, seconds: float) -> dict:
    t = cfg.train
    labels = result.oof["label"].to_numpy()
    provenance = data.store.attrs
    summary = {
        "head": head_name,
        "store": data.store.path,
        "scale": data.scale,
        "features": [t.tap] if head_name == "inception" else list(t.features),
        "n_folds": t.folds,
        "seed": t.seed,
        "split": split,
        "shuffle_labels": t.shuffle_labels,
        "calibration": t.calibration,
        "inner_holdout": t.inner_holdout,
        "inner_folds": t.inner_folds,
        "thresholds": result.thresholds,
        "level": "video (original clips; clip probabilities averaged per video)",
        "n_rows": int(data.rows.height),
        "n_videos": int(result.oof.height),
        "n_variants": int(data.rows["variant"].max()) + 1,
        "class_counts": {"real": int(np.sum(labels == 0)), "fake": int(np.sum(labels == 1))},
        "metrics": result.metrics,
        "pooled": result.pooled,
        "roc_auc_95ci": list(result.auc_interval),
        "tta": result.tta,
        "slices": slice_metrics(result.oof),
        "split_audit": result.audit,
        "folds": result.fold_sizes,
        "head_info": head.describe(),
        "store_provenance": {"backbone": provenance.get("backbone"), "preprocessing_hash": provenance.get("preprocessing_hash")},
        "seconds": round(seconds, 2),
    }
    if isinstance(head, GbmHead):
        summary["top_features"] = head.importance()
    return summary


def train_head(head: str, store_path: str | Path, cfg: Config, *, split: str = "grouped", data: HeadData | None = None) -> tuple[Path, dict]:
    """Cross-validate ``head`` on the store; returns the run folder and its summary.

    ``data`` reuses what an earlier call loaded (sweeps read the store once)."""
    if head not in HEADS:
        raise HeadError(f"unknown head {head!r}; choose from {list(HEADS)}")
    started = time.perf_counter()
    data = data or load_head_data(head, FeatureStore.open(str(store_path)), cfg)
    fitted_head, result = run_head(head, data, cfg, split)
    summary = summarise(head, fitted_head, data, result, cfg, split, time.perf_counter() - started)
    run_dir = new_run_dir(cfg.train.out, head)
    summary["run_id"] = run_dir.name
    write_run(run_dir, cfg.to_dict(), summary, result.oof, result.curves)
    save_fold_models(run_dir, fitted_head, result)
    (run_dir / "provenance.json").write_text(json.dumps(json_safe(data.store.attrs), indent=2) + "\n")
    write_report(run_dir, summary, result)
    return run_dir, summary


def save_fold_models(run_dir: Path, head: Head, result: CrossValResult) -> None:
    """Each fold's final model and calibrator in ``checkpoints/``, so that ``predict`` can
    apply the run to new videos: Inception3D weights (a weights-only state dict), LightGBM
    boosters (LightGBM's text format), logistic regressions and calibrators (JSON)."""
    folder = run_dir / "checkpoints"
    folder.mkdir()
    for fold in result.folds:
        model = fold.fitted.model
        if isinstance(head, InceptionHead3D):
            torch.save(model.state_dict(), folder / f"fold{fold.fold}.pt")
        elif isinstance(head, GbmHead):
            model.save_model(str(folder / f"fold{fold.fold}.txt"))
        else:
            imputer, scaler, logistic = model.steps[0][1], model.steps[1][1], model.steps[2][1]
            params = {"median": imputer.statistics_.tolist(), "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
                      "coef": logistic.coef_[0].tolist(), "intercept": float(logistic.intercept_[0])}
            (folder / f"fold{fold.fold}.json").write_text(json.dumps(json_safe(params)))
        (folder / f"fold{fold.fold}.calibration.json").write_text(
            json.dumps({"threshold": fold.threshold, "calibrator": calibrator_params(fold.calibrator)})
        )
