"""What every head provides to cross-validation: fit on rows, predict probabilities.

Rows are positions in the head's table of done store rows (the same positions for every
head). ``fit`` gets the training rows and, when the fold has an inner hold-out, the rows
to watch for early stopping; it returns a ``Fitted`` with training curves. ``predict``
returns probabilities of "fake" for any rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class Fitted:
    model: Any
    best_epoch: int | None = None  # epochs (or boosting rounds) that were best on the hold-out
    curves: list[dict] = field(default_factory=list)  # one dict per epoch or round


class Head(Protocol):
    name: str
    refit: bool  # retrain on all training rows after the inner hold-out chose what it chooses

    def fit(self, train: np.ndarray, watch: np.ndarray | None, labels: np.ndarray, seed: int, epochs: int | None = None) -> Fitted: ...

    def predict(self, fitted: Fitted, rows: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict: ...
