"""The logistic-regression head: standardised features, L2, missing values imputed with
the training median (all fitted on the training rows only)."""

from __future__ import annotations

import numpy as np
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from configs import LogregParams
from heads.base import Fitted


class LogregHead:
    name = "logreg"
    refit = True

    def __init__(self, X: np.ndarray, names: list[str], params: LogregParams):
        self.X, self.names, self.params = X, names, params

    def fit(self, train: np.ndarray, watch: np.ndarray | None, labels: np.ndarray, seed: int, epochs: int | None = None) -> Fitted:
        # a column that is missing in every training row has no median: it becomes 0
        model = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.params.C, max_iter=self.params.max_iter, random_state=seed),
        )
        model.fit(self.X[train], labels[train])
        return Fitted(model=model)

    def predict(self, fitted: Fitted, rows: np.ndarray) -> np.ndarray:
        return fitted.model.predict_proba(self.X[rows])[:, 1]

    def describe(self) -> dict:
        return {"features": len(self.names), "params": self.params.model_dump()}
