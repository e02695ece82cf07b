"""The LightGBM head: gradient-boosted trees on flat features (embeddings, handcrafted
statistics, map summaries), selected by name."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from configs import GbmParams
from heads.base import Fitted


def lightgbm_params(params: GbmParams, seed: int) -> tuple[dict, int]:
    """LightGBM's parameter dict (binary objective, deterministic) and the number of rounds."""
    p = params.model_dump()
    rounds = p.pop("n_estimators")
    # column-wise histograms: faster for a few thousand rows of hundreds of features
    p.update(objective="binary", verbosity=-1, seed=seed, deterministic=True, force_col_wise=True)
    if p["num_threads"] == 0:
        p.pop("num_threads")
    return p, rounds


class GbmHead:
    """LightGBM bins every feature once for the whole table (``Dataset.subset`` reuses the
    bins in every fold); bin edges come from feature values only, never from labels."""

    name = "gbm"
    refit = True

    def __init__(self, X: np.ndarray, names: list[str], params: GbmParams):
        self.X, self.names, self.params = X, names, params
        self._full: lgb.Dataset | None = None
        self._labels: np.ndarray | None = None
        self.gains: list[np.ndarray] = []

    def _binned(self, labels: np.ndarray) -> lgb.Dataset:
        if self._full is None or self._labels is None or not np.array_equal(self._labels, labels):
            params, _ = lightgbm_params(self.params, 0)
            self._full = lgb.Dataset(self.X, label=labels, params=params, free_raw_data=False).construct()
            self._labels = labels.copy()
        return self._full

    def fit(self, train: np.ndarray, watch: np.ndarray | None, labels: np.ndarray, seed: int, epochs: int | None = None) -> Fitted:
        params, rounds = lightgbm_params(self.params, seed)
        full = self._binned(labels)
        data = full.subset(train.tolist())
        record: dict = {}
        valid = [full.subset(watch.tolist())] if watch is not None and len(watch) else []
        booster = lgb.train(
            {**params, "metric": ["binary_logloss", "auc"]},
            data,
            num_boost_round=epochs or rounds,
            valid_sets=valid,
            valid_names=["watch"] if valid else None,
            callbacks=[lgb.record_evaluation(record)] if valid else None,
        )
        curves = []
        if record:
            losses, aucs = record["watch"]["binary_logloss"], record["watch"]["auc"]
            curves = [{"round": i + 1, "watch_loss": float(l), "watch_auc": float(a)} for i, (l, a) in enumerate(zip(losses, aucs))]
        self.gains.append(booster.feature_importance(importance_type="gain"))
        return Fitted(model=booster, curves=curves)

    def predict(self, fitted: Fitted, rows: np.ndarray) -> np.ndarray:
        return fitted.model.predict(self.X[rows])

    def importance(self, top: int = 20) -> list[tuple[str, float]]:
        """Mean gain per feature over every model fitted, largest first."""
        gains = np.mean(self.gains, axis=0)
        order = np.argsort(gains)[::-1][:top]
        return [(self.names[i], float(gains[i])) for i in order]

    def describe(self) -> dict:
        return {"features": len(self.names), "params": self.params.model_dump()}
