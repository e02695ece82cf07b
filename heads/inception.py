"""The Inception3D head on a stored feature map (layer4 by default), trained on a CPU.

Architecture (as the original design): four parallel branches on the map, a 1x1x1 conv,
a 3x3x3 conv, a 5x5x5 conv and a 3x3x3 max-pool followed by a 1x1x1 conv, concatenated,
BatchNorm3d, ReLU, global average pool, dropout, and a linear layer to one logit. Preset
``seed`` is the original (512 -> 4 x 128, no bottleneck, about 10 M parameters); the
default puts a 1x1x1 bottleneck before the two large convs and narrows the branches, so
a 5-fold experiment fits on two CPU cores.

Training: AdamW, a cosine schedule after a linear warm-up, class weights or balanced
batches, gradient clipping, and early stopping on the fold's inner hold-out (groups taken
from the training folds) keeping the best epoch's weights. Each epoch draws fresh
variants of every training video. Maps stay in RAM when they fit ``cache_mb``; otherwise
every pass streams them shard by shard through the store's reader.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import polars as pl
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from configs import InceptionParams
from heads.base import Fitted
from store import FeatureStore, StoreReader


class Inception3DBlock(nn.Module):
    def __init__(self, in_channels: int, branch_channels: int, bottleneck: int | None):
        super().__init__()

        def reduce_then(kernel: int) -> nn.Module:
            if bottleneck is None:
                return nn.Conv3d(in_channels, branch_channels, kernel, padding=kernel // 2)
            return nn.Sequential(
                nn.Conv3d(in_channels, bottleneck, 1),
                nn.ReLU(inplace=True),
                nn.Conv3d(bottleneck, branch_channels, kernel, padding=kernel // 2),
            )

        self.branch1 = nn.Conv3d(in_channels, branch_channels, 1)
        self.branch3 = reduce_then(3)
        self.branch5 = reduce_then(5)
        self.branch_pool = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), nn.Conv3d(in_channels, branch_channels, 1))
        self.norm = nn.BatchNorm3d(4 * branch_channels)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.branch1(maps), self.branch3(maps), self.branch5(maps), self.branch_pool(maps)], dim=1)
        return torch.relu(self.norm(out))


class InceptionHead(nn.Module):
    """(B, C, t, h, w) map -> (B,) logit of "fake"."""

    def __init__(self, in_channels: int = 512, branch_channels: int = 32, bottleneck: int | None = 32, dropout: float = 0.5):
        super().__init__()
        self.block = Inception3DBlock(in_channels, branch_channels, bottleneck)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(4 * branch_channels, 1)

    @classmethod
    def from_params(cls, in_channels: int, params: InceptionParams) -> "InceptionHead":
        return cls(in_channels, params.branch_channels, params.bottleneck, params.dropout)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(self.pool(self.block(maps)), 1))).squeeze(1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class MapSource:
    """The map of every done row at one scale and tap: in RAM when it fits, else read per pass."""

    def __init__(self, store: FeatureStore, scale: int, tap: str, rows: pl.DataFrame, cache_mb: float):
        self.store, self.scale, self.tap, self.rows = store, scale, tap, rows
        array = store.array(scale, tap)
        if array.ndim != 5:
            raise ValueError(f"{tap} at scale {scale} is not a map (shape {array.shape}); the inception head needs a map tap")
        self.shape = tuple(array.shape[1:])
        self.nbytes = rows.height * int(np.prod(self.shape)) * array.dtype.itemsize
        self.position = {row: i for i, row in enumerate(rows["row"].to_list())}
        self.cache: np.ndarray | None = None
        if self.nbytes <= cache_mb * 2**20:
            self.cache = np.empty((rows.height, *self.shape), dtype=array.dtype)
            for batch in StoreReader(store, scale, [tap], rows, batch_size=512):
                self.cache[self._positions(batch.rows)] = batch.arrays[tap]

    def _positions(self, rows: pl.DataFrame) -> np.ndarray:
        return np.array([self.position[r] for r in rows["row"].to_list()], dtype=np.int64)

    def batches(self, positions: np.ndarray, batch_size: int, rng: np.random.Generator | None = None):
        """(positions, float32 maps) in batches; shuffled when ``rng`` is given."""
        if self.cache is not None:
            order = positions[rng.permutation(len(positions))] if rng is not None else positions
            for start in range(0, len(order), batch_size):
                take = order[start : start + batch_size]
                yield take, torch.from_numpy(self.cache[take].astype(np.float32))
            return
        reader = StoreReader(
            self.store, self.scale, [self.tap], self.rows[positions], batch_size=batch_size,
            shuffle=rng is not None, seed=int(rng.integers(2**31)) if rng is not None else 0,
        )
        for batch in reader:
            yield self._positions(batch.rows), torch.from_numpy(batch.arrays[self.tap].astype(np.float32))


def _schedule(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class InceptionHead3D:
    """The head for cross-validation (see heads/base.py)."""

    name = "inception"

    def __init__(self, source: MapSource, rows: pl.DataFrame, params: InceptionParams):
        self.source, self.rows, self.params = source, rows, params
        self.refit = params.refit
        self.video_of_row = rows["video_id"].to_numpy()
        torch.set_num_threads(params.threads or os.cpu_count() or 1)

    def _epoch_rows(self, train: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """This epoch's rows: ``variants_per_epoch`` variants of each training video (all
        rows when null), then, with balanced batches, resampled to equal classes."""
        p = self.params
        if p.variants_per_epoch is None:
            chosen = train
        else:
            shuffled = train[rng.permutation(len(train))]
            videos = self.video_of_row[shuffled]
            order = np.argsort(videos, kind="stable")  # each video's rows together, in shuffled order
            ordered = videos[order]
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            chosen = shuffled[order[rank < p.variants_per_epoch]]
        if p.balance == "balanced_batches":
            fake, real = chosen[labels[chosen] == 1], chosen[labels[chosen] == 0]
            if len(fake) and len(real):
                n = max(len(fake), len(real))
                chosen = np.concatenate([rng.choice(fake, n), rng.choice(real, n)])
        return chosen

    def fit(self, train: np.ndarray, watch: np.ndarray | None, labels: np.ndarray, seed: int, epochs: int | None = None) -> Fitted:
        p = self.params
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = InceptionHead.from_params(self.source.shape[0], p)
        optimiser = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        n_epochs = epochs or p.epochs
        per_epoch = len(self._epoch_rows(train, labels, np.random.default_rng(seed)))
        steps = math.ceil(per_epoch / p.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _schedule(int(p.warmup_epochs * steps), n_epochs * steps))
        n_fake = max(1, int(labels[train].sum()))
        n_real = max(1, len(train) - int(labels[train].sum()))
        pos_weight = torch.tensor(n_real / n_fake if p.balance == "class_weights" else 1.0)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        targets = torch.from_numpy(labels.astype(np.float32))

        best_loss, best_state, best_epoch, stale = math.inf, None, n_epochs, 0
        curves = []
        for epoch in range(1, n_epochs + 1):
            model.train()
            total, count = 0.0, 0
            for positions, maps in self.source.batches(self._epoch_rows(train, labels, rng), p.batch_size, rng):
                if len(positions) < 2:
                    continue  # BatchNorm needs two samples
                optimiser.zero_grad()
                loss = loss_fn(model(maps), targets[positions])
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
                optimiser.step()
                scheduler.step()
                total += loss.item() * len(positions)
                count += len(positions)
            record = {"epoch": epoch, "train_loss": total / max(count, 1), "lr": scheduler.get_last_lr()[0]}
            if watch is not None and len(watch):
                probs = self._predict(model, watch)
                y = labels[watch]
                clipped = np.clip(probs, 1e-7, 1 - 1e-7)
                watch_loss = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
                record.update(watch_loss=watch_loss, watch_auc=float(roc_auc_score(y, probs)) if len(np.unique(y)) == 2 else math.nan)
                if watch_loss < best_loss - 1e-4:
                    best_loss, best_state, best_epoch, stale = watch_loss, copy.deepcopy(model.state_dict()), epoch, 0
                else:
                    stale += 1
            curves.append(record)
            if watch is not None and stale >= p.patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)  # the best epoch's weights, not the last
        model.eval()
        return Fitted(model=model, best_epoch=best_epoch if watch is not None else n_epochs, curves=curves)

    @torch.inference_mode()
    def _predict(self, model: nn.Module, rows: np.ndarray) -> np.ndarray:
        model.eval()
        out = np.empty(len(rows), dtype=np.float64)
        where = {pos: i for i, pos in enumerate(rows.tolist())}
        for positions, maps in self.source.batches(rows, 256):
            out[[where[p] for p in positions.tolist()]] = torch.sigmoid(model(maps)).double().numpy()
        return out

    def predict(self, fitted: Fitted, rows: np.ndarray) -> np.ndarray:
        return self._predict(fitted.model, rows)

    def describe(self) -> dict:
        model = InceptionHead.from_params(self.source.shape[0], self.params)
        return {
            "map_shape": list(self.source.shape),
            "parameters": count_parameters(model),
            "maps_in_ram": self.source.cache is not None,
            "maps_mib": round(self.source.nbytes / 2**20, 1),
            "params": self.params.model_dump(),
        }
