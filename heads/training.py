"""The training toolkit both torch trainers use (the inception head on stored maps, and
end-to-end fine-tuning): the learning-rate schedule, class weighting and balanced
sampling, early stopping, the grouped inner hold-out, and how an epoch reads in the log.
Written once, here.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn

from vidstore.heads.splits import video_folds


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LambdaLR factor: linear warm-up over ``warmup_steps``, then a cosine down to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def weighted_bce(labels: np.ndarray, balance: str, device: torch.device | str = "cpu") -> nn.BCEWithLogitsLoss:
    """Binary cross-entropy on logits; with ``class_weights`` a fake weighs real/fake of ``labels``
    (the training rows' labels), else 1 (``balanced_batches`` balances by sampling instead)."""
    n_fake = max(1, int(labels.sum()))
    n_real = max(1, len(labels) - int(labels.sum()))
    weight = n_real / n_fake if balance == "class_weights" else 1.0
    return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(weight, device=device))


def balanced_resample(rows: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rows`` resampled with replacement to as many fakes as reals (the larger class's
    count), fakes first; unchanged when a class is missing."""
    fake, real = rows[labels[rows] == 1], rows[labels[rows] == 0]
    if not len(fake) or not len(real):
        return rows
    n = max(len(fake), len(real))
    return np.concatenate([rng.choice(fake, n), rng.choice(real, n)])


@dataclass
class EarlyStopping:
    """The best watched loss so far and how many epochs since it improved by ``min_delta``."""

    patience: int
    min_delta: float = 1e-4
    best_loss: float = math.inf
    best_epoch: int = 0
    stale: int = 0

    def update(self, loss: float, epoch: int) -> bool:
        """Record an epoch's watched loss; True when it is the new best (keep its weights)."""
        if loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.stale = loss, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def stop(self) -> bool:
        return self.stale >= self.patience

    def state(self) -> dict:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "stale": self.stale}


def grouped_holdout(rows: pl.DataFrame, labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions to fit, positions held out) of ``rows`` (video_id, group; ``labels`` one
    per row): about ``share`` of the groups held out, stratified by label, every row of a
    video on one side. No hold-out when ``share`` is 0 or the groups are too few."""
    everything, nothing = np.arange(rows.height), np.empty(0, dtype=np.int64)
    if share <= 0:
        return everything, nothing
    try:
        parts = video_folds(rows, labels, max(2, round(1 / share)), seed)
    except ValueError:
        return everything, nothing
    return np.flatnonzero(parts != 0), np.flatnonzero(parts == 0)


# -- epochs in the log ------------------------------------------------------------------------

# The fit a head's epochs belong to ("fold 2 fit"), named by cross-validation, which knows
# the fold and stage, for the head, which logs the epochs; a head's fit() stays (data) -> self.
_FIT_NAME: contextvars.ContextVar[str] = contextvars.ContextVar("vidstore_fit_name", default="")

# record key -> (name in the line, format); the inception head watches rows, fine-tuning holds out videos
EPOCH_FIELDS = {
    "train_loss": ("loss", ".4f"),
    "watch_loss": ("hold-out loss", ".4f"),
    "holdout_loss": ("hold-out loss", ".4f"),
    "watch_auc": ("AUC", ".3f"),
    "holdout_auc": ("AUC", ".3f"),
    "lr": ("lr", ".2e"),
    "lr_head": ("lr", ".2e"),
}


@contextlib.contextmanager
def fit_name(name: str) -> Iterator[None]:
    """Names the fit whose epochs run inside (``fold 2 fit``) in their log and progress lines."""
    token = _FIT_NAME.set(name)
    try:
        yield
    finally:
        _FIT_NAME.reset(token)


def current_fit_name(default: str = "") -> str:
    return _FIT_NAME.get() or default


def epoch_values(record: dict) -> str:
    """``loss 0.6931, hold-out loss 0.6820, AUC 0.712, lr 9.80e-04``: an epoch's record, the
    numbers as its curves file holds them, rounded; n/a for a missing AUC (one class)."""
    parts = []
    for key, (name, spec) in EPOCH_FIELDS.items():
        if key in record:
            value = record[key]
            parts.append(f"{name} {'n/a' if value is None or value != value else format(value, spec)}")
    return ", ".join(parts)


def epoch_line(fit: str, record: dict, n_epochs: int, seconds: float) -> str:
    """``fold 2 fit epoch 3/30: loss 0.6931, hold-out loss 0.6820, AUC 0.712, lr 9.80e-04, 4.2 s``."""
    return f"{fit} epoch {record['epoch']}/{n_epochs}: {epoch_values(record)}, {seconds:.1f} s"
