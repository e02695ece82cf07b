"""The LightGBM head: gradient-boosted trees on flat features (embeddings, map summaries)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from configs import GbmParams


def lightgbm_params(params: GbmParams, seed: int) -> tuple[dict, int]:
    """LightGBM's parameter dict (binary objective, deterministic) and the number of rounds."""
    p = params.model_dump()
    rounds = p.pop("n_estimators")
    p.update(objective="binary", verbosity=-1, seed=seed, deterministic=True, force_row_wise=True)
    if p["num_threads"] == 0:
        p.pop("num_threads")
    return p, rounds


class GbmFolds:
    """fit_predict for cross-validation; the binned dataset is built once for all folds.

    LightGBM bins every feature before training; ``Dataset.subset`` reuses those bins, so
    a fold only trains. Bin edges come from all rows' feature values, never from labels,
    so the validation labels stay unseen.
    """

    def __init__(self, X: np.ndarray, params: GbmParams, seed: int):
        self.X = X
        self.params, self.rounds = lightgbm_params(params, seed)
        self._full: lgb.Dataset | None = None
        self._labels: np.ndarray | None = None
        self.boosters: list[lgb.Booster] = []

    def _binned(self, labels: np.ndarray) -> lgb.Dataset:
        if self._full is None or self._labels is None or not np.array_equal(self._labels, labels):
            self._full = lgb.Dataset(self.X, label=labels, params=self.params, free_raw_data=False).construct()
            self._labels = labels.copy()
        return self._full

    def __call__(self, train: np.ndarray, val: np.ndarray, labels: np.ndarray) -> np.ndarray:
        data = self._binned(labels).subset(train.tolist())
        booster = lgb.train(self.params, data, num_boost_round=self.rounds)
        self.boosters.append(booster)
        return booster.predict(self.X[val])

    def importance(self, names: list[str], top: int = 20) -> list[tuple[str, float]]:
        """Mean gain per feature over the fold models, largest first."""
        gains = np.mean([b.feature_importance(importance_type="gain") for b in self.boosters], axis=0)
        order = np.argsort(gains)[::-1][:top]
        return [(names[i], float(gains[i])) for i in order]
