"""``train HEAD``: read the store once, cross-validate a registered head, write the run folder.

Any head of heads/registry.py: what it reads (``vectors``: ``train.features``; ``map``:
``train.tap``) is the head's declaration; its knobs are ``train.<head>``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from vidstore.configs import Config
from vidstore.heads.base import RowsHead
from vidstore.heads.crossval import SPLITS, CrossValResult, calibrator_params, cross_validate
from vidstore.heads.data import HeadTable, load_head_table
from vidstore.heads.metrics import slice_metrics
from vidstore.heads.registry import HeadError, head_class, head_config
from vidstore.heads.report import write_report
from vidstore.heads.runs import RunSummary, new_run_dir, write_run
from vidstore.heads.tensorboard_events import require_tensorboard, write_run_events
from vidstore.store import FeatureStore

__all__ = ["HeadError", "load_head_data", "make_head", "run_head", "train_head"]

log = logging.getLogger(__name__)


def load_head_data(head: str, store: FeatureStore, cfg: Config) -> HeadTable:
    """What ``head`` reads of the store, loaded once (a sweep reuses it for every point)."""
    return load_head_table(head_class(head).inputs, store, cfg)


def make_head(head: str, data: HeadTable, cfg: Config) -> RowsHead:
    return RowsHead(head_class(head), head_config(head, cfg), data)


def run_head(head_name: str, data: HeadTable, cfg: Config, split: str = "grouped") -> tuple[RowsHead, CrossValResult]:
    if split not in SPLITS:
        raise HeadError(f"unknown split {split!r}; choose from {list(SPLITS)}")
    head = make_head(head_name, data, cfg)
    labels = data.rows["label"].to_numpy().astype(np.int64)
    t = cfg.train
    result = cross_validate(
        head, data.rows, labels, n_folds=t.folds, seed=t.seed, split=split, shuffle_labels=t.shuffle_labels,
        holdout=t.inner_holdout, inner_folds=t.inner_folds, calibration=t.calibration, bootstrap=t.bootstrap,
        threshold_rule=t.threshold,
    )
    return head, result


def summarise(head: RowsHead, data: HeadTable, result: CrossValResult, cfg: Config, split: str, seconds: float) -> RunSummary:
    t = cfg.train
    labels = result.oof["label"].to_numpy()
    provenance = data.store.provenance
    inputs = head.head_class.inputs
    return RunSummary(
        head=head.name,
        inputs=inputs,
        features=list(t.features) if inputs == "vectors" else [],
        tap=t.tap if inputs == "map" else None,
        store=data.store.path,
        scale=data.scale,
        n_folds=t.folds,
        seed=t.seed,
        split=split,
        shuffle_labels=t.shuffle_labels,
        calibration=t.calibration,
        inner_holdout=t.inner_holdout,
        inner_folds=t.inner_folds,
        thresholds=result.thresholds,
        level="video (original clips; clip probabilities averaged per video)",
        n_rows=int(data.rows.height),
        n_videos=int(result.oof.height),
        n_variants=int(data.rows["variant"].max()) + 1,
        class_counts={"real": int(np.sum(labels == 0)), "fake": int(np.sum(labels == 1))},
        metrics=result.metrics,
        pooled=result.pooled,
        intervals=result.intervals,
        tta=result.tta,
        slices=slice_metrics(result.oof),
        split_audit=result.audit,
        folds=result.fold_sizes,
        head_info=head.describe(),
        store_provenance={"backbone": provenance.backbone or None, "preprocessing_hash": provenance.preprocessing_hash},
        seconds=round(seconds, 2),
        top_features=head.importance(),
        threshold_rule=result.threshold_rule,
        degenerate=result.degenerate,
        warnings=result.warnings,
    )


def train_head(head: str, store_path: str | Path, cfg: Config, *, split: str = "grouped", data: HeadTable | None = None) -> tuple[Path, RunSummary]:
    """Cross-validate ``head`` on the store; returns the run folder and its summary.

    ``data`` reuses what an earlier call loaded (sweeps read the store once)."""
    head_class(head)  # an unknown head fails before the store is read
    if cfg.train.tensorboard:
        require_tensorboard("train.tensorboard")
    started = time.perf_counter()
    data = data or load_head_data(head, FeatureStore.open(str(store_path)), cfg)
    log.info(f"train {head}: {data.rows.height} rows of {data.rows['video_id'].n_unique()} videos, {cfg.train.folds}-fold {split} split")
    fitted_head, result = run_head(head, data, cfg, split)
    summary = summarise(fitted_head, data, result, cfg, split, time.perf_counter() - started)
    run_dir = new_run_dir(cfg.train.out, head)
    summary = dataclasses.replace(summary, run_id=run_dir.name)
    write_run(run_dir, cfg.to_dict(), summary, result.oof, result.curves)
    save_fold_models(run_dir, result)
    data.store.provenance.write(run_dir / "provenance.json")
    write_report(run_dir, summary, result.oof, result.curves, paths=sample_paths(data.store.provenance.samples.get("path")),
                 sheet_config=sheet_config_of(data.store.provenance))
    if cfg.train.tensorboard:
        events = write_run_events(run_dir, result.curves, [(f.fold, m) for f, m in zip(result.folds, result.per_fold)], result.pooled)
        log.info(f"TensorBoard events in {events} (tensorboard --logdir {run_dir.parent})")
    return run_dir, summary


def sample_paths(samples: str | Path | None) -> dict[str, str]:
    """video_id -> path from a samples table, when it can still be read (else none)."""
    import polars as pl

    if not samples or not Path(samples).is_file():
        return {}
    try:
        table = pl.read_parquet(samples, columns=["video_id", "path"])
    except Exception:  # a moved or rewritten table only costs the report its paths
        return {}
    return dict(zip(table["video_id"].to_list(), table["path"].to_list()))


def sheet_config_of(provenance) -> Config | None:
    """The store's clip pipeline, original clips only: what a contact sheet of a video shows."""
    from vidstore.configs import AugmentConfig
    from vidstore.heads.pipeline import PipelineError, clip_config_of

    try:
        return Config(clip=clip_config_of(provenance), augment=AugmentConfig(variants=0))
    except PipelineError:
        return None


def save_fold_models(run_dir: Path, result: CrossValResult) -> None:
    """Each fold's final head (its own ``save``: weights and constructor arguments) and its
    threshold and calibrator, in ``checkpoints/fold<k>/``, so that ``predict`` can apply the
    run to new videos and ``finetune`` can start from it."""
    for fold in result.folds:
        folder = run_dir / "checkpoints" / f"fold{fold.fold}"
        fold.fitted.model.save(folder)
        (folder / "calibration.json").write_text(
            json.dumps({"threshold": fold.threshold, "calibrator": calibrator_params(fold.calibrator)})
        )
