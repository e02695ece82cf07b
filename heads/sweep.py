"""``sweep HEAD --grid FILE``: a grid of configs, the store read once, a run per point.

The grid file maps dotted config keys to lists of values; every combination is a point::

    train.gbm.num_leaves: [7, 15, 31]
    train.gbm.learning_rate: [0.03, 0.1]

Each point is cross-validated like ``train`` and written as a run; a comparison of all
points ends the sweep. Picking the best point by these scores and quoting its score is
optimistic (the validation folds chose it), so ``nested`` also reports the honest
estimate: in every outer fold the point is chosen by an inner cross-validation on the
training folds only, then scored once on the outer fold.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path

import numpy as np
import yaml

from vidstore.configs import Config, ConfigError, find_config, load_config
from vidstore.heads.crossval import assign_folds, cross_validate, evaluate_fold, pool
from vidstore.heads.splits import audit_folds
from vidstore.heads.data import HeadTable
from vidstore.heads.runs import RunSummary
from vidstore.heads.tensorboard_events import require_tensorboard
from vidstore.heads.train import load_head_data, make_head, train_head
from vidstore.store import FeatureStore

log = logging.getLogger(__name__)


def read_grid(path: str | Path) -> list[dict]:
    """Every combination of the grid file's values, as {dotted key: value}."""
    path = find_config(path, "grid file", "sweeps")
    grid = yaml.safe_load(path.read_text()) or {}
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"grid file {path} must map config keys to lists of values")
    keys = list(grid)
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def point_config(base_path: str | Path | None, overrides: list[str], point: dict) -> Config:
    return load_config(base_path, list(overrides) + [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}" for k, v in point.items()])


def nested_estimate(head: str, data: HeadTable, configs: list[Config], inner_folds: int = 3) -> tuple[dict, list[int]]:
    """Outer folds of the first config's split; in each, the point with the best inner
    cross-validated ROC-AUC on the training folds is trained there and scored on the fold
    (heads whose inputs are vectors)."""
    base = configs[0].train
    labels = data.rows["label"].to_numpy().astype(np.int64)
    folds = assign_folds(data.rows, labels, base.folds, base.seed, "grouped")
    hashes = data.rows["content_hash"].to_numpy() if "content_hash" in data.rows.columns else None
    audit = audit_folds(folds, data.rows["video_id"].to_numpy(), data.rows["group"].to_numpy(), hashes)
    outcomes, chosen = [], []
    for fold in range(base.folds):
        train = np.flatnonzero(folds != fold)
        inner = data.subset(train)
        scores = []
        for cfg in configs:
            result = cross_validate(
                make_head(head, inner, cfg), inner.rows, labels[train], n_folds=inner_folds, seed=cfg.train.seed,
                holdout=cfg.train.inner_holdout, inner_folds=cfg.train.inner_folds, calibration=cfg.train.calibration, bootstrap=0,
                threshold_rule=cfg.train.threshold, log_level=logging.DEBUG,
            )
            scores.append(result.pooled["roc_auc"])
        best = int(np.nanargmax(scores))
        chosen.append(best)
        cfg = configs[best]
        outcomes.append(
            evaluate_fold(make_head(head, data, cfg), data.rows, labels, train, np.flatnonzero(folds == fold), fold,
                          seed=cfg.train.seed, holdout=cfg.train.inner_holdout, calibration=cfg.train.calibration,
                          inner_folds=cfg.train.inner_folds, threshold_rule=cfg.train.threshold)
        )
        log.info(f"nested estimate, outer fold {fold}: point {best + 1}/{len(configs)} chosen (inner ROC-AUC {scores[best]:.3f}), "
                 f"ROC-AUC {outcomes[-1].metrics['roc_auc']:.3f} on the fold")
    result = pool(outcomes, audit, base.bootstrap, base.seed, base.threshold)
    return {"metrics": result.metrics, "pooled": result.pooled, "intervals": result.intervals, "warnings": result.warnings,
            "chosen_point_per_fold": chosen}, chosen


def run_sweep(
    head: str,
    store_path: str | Path,
    grid_path: str | Path,
    *,
    config: str | Path | None = None,
    overrides: list[str] = (),
    nested: bool = False,
) -> tuple[list[Path], list[RunSummary], dict | None]:
    points = read_grid(grid_path)
    configs = [point_config(config, list(overrides), point) for point in points]
    reads = {(c.train.scale, tuple(c.train.features), c.train.tap) for c in configs}
    if len(reads) > 1:
        raise ConfigError("a sweep reads the store once: its points must share train.scale, train.features and train.tap")
    if any(c.train.tensorboard for c in configs):
        require_tensorboard("train.tensorboard")  # before the store is read
    store = FeatureStore.open(str(store_path))
    data = load_head_data(head, store, configs[0])
    runs, summaries = [], []
    for i, (point, cfg) in enumerate(zip(points, configs), 1):
        log.info(f"sweep point {i}/{len(points)}: " + ", ".join(f"{k}={v}" for k, v in point.items()))
        run_dir, summary = train_head(head, store_path, cfg, data=data)
        summary = dataclasses.replace(summary, sweep_point=point)
        runs.append(run_dir)
        summaries.append(summary)
    estimate = None
    if nested:
        estimate, chosen = nested_estimate(head, data, configs)
        estimate["points"] = points
    return runs, summaries, estimate
