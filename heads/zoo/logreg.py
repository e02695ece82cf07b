"""``logreg``: logistic regression on standardised flat features, L2, missing values
imputed with the training median (all fitted on the training rows only).

scikit-learn fits it; the fitted model is then five arrays (medians, means, scales,
coefficients, intercept) and ``predict_proba`` applies them, the same arithmetic in
cross-validation and after ``load`` (a test compares it with scikit-learn's own).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import Field
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from vidstore.configs import ConfigSection
from vidstore.heads.base import HeadBase
from vidstore.heads.data import HeadData
from vidstore.heads.registry import register_head


class LogregParams(ConfigSection):
    """Standardised logistic regression (scikit-learn); missing values take the training median."""

    C: float = Field(0.3, gt=0, description="inverse L2 strength, on standardised features")
    max_iter: int = Field(2000, ge=10)


def fit_logistic_pipeline(X: np.ndarray, y: np.ndarray, C: float, max_iter: int, seed: int):
    # a column that is missing in every training row has no median: it becomes 0
    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=C, max_iter=max_iter, random_state=seed),
    ).fit(X, y)


@register_head("logreg")
class LogregHead(HeadBase):
    inputs = "vectors"
    Params = LogregParams

    def fit(self, data: HeadData) -> "LogregHead":
        model = fit_logistic_pipeline(data.X, data.y, self.cfg.C, self.cfg.max_iter, data.seed)
        imputer, scaler, logistic = (step for _, step in model.steps)
        self.weights = {"median": imputer.statistics_, "mean": scaler.mean_, "scale": scaler.scale_,
                        "coef": logistic.coef_[0], "intercept": np.float64(logistic.intercept_[0])}
        return self

    def predict_proba(self, data: HeadData) -> np.ndarray:
        w = self.weights
        X = data.X.astype(np.float64)
        filled = np.where(np.isnan(X), w["median"], X)
        z = (filled - w["mean"]) / w["scale"]
        return 1 / (1 + np.exp(-(z @ w["coef"] + w["intercept"])))

    def save_weights(self, folder: Path) -> None:
        (folder / "weights.json").write_text(json.dumps({k: np.asarray(v).tolist() for k, v in self.weights.items()}))

    def load_weights(self, folder: Path, model_args: dict) -> None:
        saved = json.loads((folder / "weights.json").read_text())
        self.weights = {k: np.asarray(v, dtype=np.float64) for k, v in saved.items()}
