"""``gbm``: LightGBM gradient-boosted trees on flat features (embeddings, handcrafted
statistics, map summaries), selected by name (``train.features``).

A fit that watches rows (cross-validation's inner folds) stops early on their log-loss
and reports its best round; cross-validation refits on every training row for the
median of those rounds. Without early stopping, 300 rounds overfit the demo's 100
training videos until the pooled log-loss was worse than answering 0.5 everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
from pydantic import Field

from vidstore.configs import ConfigSection
from vidstore.heads.base import HeadBase
from vidstore.heads.data import HeadData
from vidstore.heads.registry import register_head


class GbmParams(ConfigSection):
    """LightGBM parameters (names as in LightGBM's documentation)."""

    n_estimators: int = Field(300, ge=1, description="boosting rounds at most (fewer when early stopping finds its best earlier)")
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    max_depth: int = -1
    min_child_samples: int = Field(10, ge=1)
    feature_fraction: float = Field(0.5, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    max_bin: int = Field(63, ge=3, description="histogram bins per feature; 255 is LightGBM's default, 2.5x slower here")
    num_threads: int = Field(0, ge=0, description="0 = LightGBM's default (all cores)")
    early_stopping_rounds: int = Field(
        30, ge=0, description="stop when the inner validation's log-loss has not improved for this many rounds; 0: never"
    )


def lightgbm_params(params: GbmParams, seed: int) -> tuple[dict, int]:
    """LightGBM's parameter dict (binary objective, deterministic) and the number of rounds."""
    p = params.model_dump()
    rounds = p.pop("n_estimators")
    p.pop("early_stopping_rounds")
    # column-wise histograms: faster for a few thousand rows of hundreds of features
    p.update(objective="binary", verbosity=-1, seed=seed, deterministic=True, force_col_wise=True)
    if p["num_threads"] == 0:
        p.pop("num_threads")
    return p, rounds


@register_head("gbm")
class GbmHead(HeadBase):
    """LightGBM bins every feature once for the whole table (``Dataset.subset`` reuses the
    bins in every fold); bin edges come from feature values only, never from labels."""

    inputs = "vectors"
    Params = GbmParams

    def _binned(self, data: HeadData) -> lgb.Dataset:
        params, _ = lightgbm_params(self.cfg, 0)
        key = ("lightgbm", json.dumps(params, sort_keys=True), data.labels.tobytes())
        if key not in data.source.memo:
            data.source.memo.clear()  # one binned table at a time
            data.source.memo[key] = lgb.Dataset(data.source.X, label=data.labels, params=params, free_raw_data=False).construct()
        return data.source.memo[key]

    def fit(self, data: HeadData) -> "GbmHead":
        params, rounds = lightgbm_params(self.cfg, data.seed)
        full = self._binned(data)
        record: dict = {}
        watch = data.watch
        valid = [full.subset(watch.rows.tolist())] if watch is not None else []
        callbacks = [lgb.record_evaluation(record)] if valid else []
        if valid and self.cfg.early_stopping_rounds:
            # the first metric (log-loss) decides; the booster keeps its best round
            callbacks.append(lgb.early_stopping(self.cfg.early_stopping_rounds, first_metric_only=True, verbose=False))
        self.booster = lgb.train(
            {**params, "metric": ["binary_logloss", "auc"]},
            full.subset(data.rows.tolist()),
            num_boost_round=data.epochs or rounds,
            valid_sets=valid,
            valid_names=["watch"] if valid else None,
            callbacks=callbacks or None,
        )
        if record:
            losses, aucs = record["watch"]["binary_logloss"], record["watch"]["auc"]
            self.curves = [{"round": i + 1, "watch_loss": float(l), "watch_auc": float(a)} for i, (l, a) in enumerate(zip(losses, aucs))]
            if self.cfg.early_stopping_rounds:
                self.best_epoch = int(self.booster.best_iteration) or len(losses)
        return self

    def predict_proba(self, data: HeadData) -> np.ndarray:
        # an early-stopped booster predicts with its best round, not the rounds after it
        return self.booster.predict(data.X, num_iteration=self.best_epoch)

    def importance(self) -> np.ndarray:
        return self.booster.feature_importance(importance_type="gain")

    def save_weights(self, folder: Path) -> None:
        self.booster.save_model(str(folder / "model.txt"))

    def load_weights(self, folder: Path, model_args: dict) -> None:
        from vidstore.store.artifacts import load_lightgbm_model

        self.booster = load_lightgbm_model(folder / "model.txt")
