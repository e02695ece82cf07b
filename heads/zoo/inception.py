"""``inception``: the Inception3D head on a stored feature map (``train.tap``, layer4 by
default), trained on a CPU; fine-tuning warm-starts its network (heads/finetune.py).

Architecture (as the original design): four parallel branches on the map, a 1x1x1 conv,
a 3x3x3 conv, a 5x5x5 conv and a 3x3x3 max-pool followed by a 1x1x1 conv, concatenated,
BatchNorm3d, ReLU, global average pool, dropout, and a linear layer to one logit. Preset
``seed`` is the original (512 -> 4 x 128, no bottleneck, about 10 M parameters); the
default puts a 1x1x1 bottleneck before the two large convs and narrows the branches, so
a 5-fold experiment fits on two CPU cores.

Training (heads/training.py): AdamW, a cosine schedule after a linear warm-up, class
weights or balanced batches, gradient clipping, and early stopping on the watched rows
(the fold's inner hold-out) keeping the best epoch's weights. Each epoch draws fresh
variants of every training video.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from vidstore.configs import ConfigSection
from vidstore.extract.progress import Progress
from vidstore.heads.base import HeadBase
from vidstore.heads.data import HeadData
from vidstore.heads.metrics import log_loss
from vidstore.heads.registry import register_head
from vidstore.heads.training import EarlyStopping, balanced_resample, current_fit_name, epoch_line, epoch_values, warmup_cosine, weighted_bce

log = logging.getLogger(__name__)

PRESETS = {"seed": {"branch_channels": 128, "bottleneck": None}}
# Stored maps train in channels-last layout (weights and batches): on a CPU, oneDNN's 3D
# max-pool and convolutions run 2-5x faster on it than on the default layout for these
# small (t, h, w) maps, with the same arithmetic (benchmarks/heads_speed.py).
CHANNELS_LAST = torch.channels_last_3d


class InceptionParams(ConfigSection):
    """The Inception3D head on a stored map, and how it trains on a CPU."""

    preset: Literal["default", "seed"] = Field(
        "default", description="seed: the original head (512 -> 4x128, no bottleneck, ~10 M parameters); sets branch_channels and bottleneck"
    )
    branch_channels: int = Field(32, ge=1, description="output channels of each of the four branches")
    bottleneck: int | None = Field(32, ge=1, description="1x1x1 reduction before the 3x3x3 and 5x5x5 convs (null: none)")
    dropout: float = Field(0.5, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(30, ge=1)
    warmup_epochs: float = Field(2, ge=0)
    patience: int = Field(5, ge=1, description="epochs without a better inner-validation loss before stopping")
    batch_size: int = Field(32, ge=1)
    balance: Literal["class_weights", "balanced_batches"] = "class_weights"
    grad_clip: float = Field(1.0, gt=0)
    variants_per_epoch: int | None = Field(
        1, ge=1, description="variants of each training video seen per epoch (a fresh draw each epoch; null: all rows)"
    )
    refit: bool = Field(False, description="after the inner hold-out, retrain on all training rows for the best epoch count")
    threads: int = Field(0, ge=0, description="torch threads (0: all cores)")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data):
        """A preset sets its keys; setting one of them to another value as well is an error."""
        if not isinstance(data, dict) or data.get("preset") not in PRESETS:
            return data
        preset = PRESETS[data["preset"]]
        clash = [k for k, v in preset.items() if k in data and data[k] != v]
        if clash:
            raise ValueError(f"preset {data['preset']} sets {', '.join(f'{k}={preset[k]}' for k in clash)}; "
                             f"you also set {', '.join(f'{k}={data[k]}' for k in clash)}: drop one")
        return {**data, **preset}


class SameConv3d(nn.Conv3d):
    """A stride-1 convolution padded to keep (t, h, w) that leaves out the kernel taps which,
    on a map this small, only ever meet the zero padding (on layer4's t=2, the outer two of
    a 5-tap kernel): the same output for less arithmetic. The weights keep their full size;
    the taps left out had a gradient of exactly 0 anyway.

    ``torch.export`` and the dynamo ONNX exporter see (t, h, w) as fixed numbers and record
    the narrowed kernel. The TorchScript tracer records sizes as tensors, so the choice
    would be baked in with a TracerWarning: there the full kernel runs (the same result,
    the left-out taps multiply only zeros)."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing():
            return super().forward(maps)
        reach = [min(pad, size - 1) for pad, size in zip(self.padding, maps.shape[2:])]
        if reach == list(self.padding):
            return super().forward(maps)
        taps = tuple(slice(pad - r, pad + r + 1) for pad, r in zip(self.padding, reach))
        return F.conv3d(maps, self.weight[(slice(None), slice(None), *taps)], self.bias, padding=reach)


class Inception3DBlock(nn.Module):
    def __init__(self, in_channels: int, branch_channels: int, bottleneck: int | None):
        super().__init__()

        def reduce_then(kernel: int) -> nn.Module:
            if bottleneck is None:
                return SameConv3d(in_channels, branch_channels, kernel, padding=kernel // 2)
            return nn.Sequential(
                nn.Conv3d(in_channels, bottleneck, 1),
                nn.ReLU(inplace=True),
                SameConv3d(bottleneck, branch_channels, kernel, padding=kernel // 2),
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

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(self.pool(self.block(maps)), 1))).squeeze(1)


def network_args(in_channels: int, cfg: InceptionParams) -> dict:
    """The InceptionHead constructor arguments (what a saved head records)."""
    return {"in_channels": in_channels, "branch_channels": cfg.branch_channels, "bottleneck": cfg.bottleneck, "dropout": cfg.dropout}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@register_head("inception")
class InceptionHead3D(HeadBase):
    inputs = "map"
    Params = InceptionParams
    refit = False  # the config's `refit` decides

    def __init__(self, cfg: InceptionParams):
        super().__init__(cfg)
        torch.set_num_threads(cfg.threads or os.cpu_count() or 1)

    def _epoch_rows(self, data: HeadData, rng: np.random.Generator) -> np.ndarray:
        """This epoch's rows: ``variants_per_epoch`` variants of each training video (all
        rows when null), then, with balanced batches, resampled to equal classes."""
        p, train = self.cfg, data.rows
        if p.variants_per_epoch is None:
            chosen = train
        else:
            shuffled = train[rng.permutation(len(train))]
            videos = data.videos[shuffled]
            order = np.argsort(videos, kind="stable")  # each video's rows together, in shuffled order
            ordered = videos[order]
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            chosen = shuffled[order[rank < p.variants_per_epoch]]
        if p.balance == "balanced_batches":
            chosen = balanced_resample(chosen, data.labels, rng)
        return chosen

    def fit(self, data: HeadData) -> "InceptionHead3D":
        p, labels, watch = self.cfg, data.labels, data.watch
        torch.manual_seed(data.seed)
        rng = np.random.default_rng(data.seed)
        self.args = network_args(data.source.shape[0], p)
        model = self.net = InceptionHead(**self.args).to(memory_format=CHANNELS_LAST)
        optimiser = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        n_epochs = data.epochs or p.epochs
        steps = math.ceil(len(self._epoch_rows(data, np.random.default_rng(data.seed))) / p.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, warmup_cosine(int(p.warmup_epochs * steps), n_epochs * steps))
        loss_fn = weighted_bce(labels[data.rows], p.balance)
        targets = torch.from_numpy(labels.astype(np.float32))
        stopping, best_state = EarlyStopping(p.patience), None
        fit = current_fit_name("inception")  # "fold 2 fit" under cross-validation
        with Progress(fit, n_epochs, "epoch") as shown:
            for epoch in range(1, n_epochs + 1):
                started = time.perf_counter()
                model.train()
                total, count = 0.0, 0
                for positions, maps in data.source.batches(self._epoch_rows(data, rng), p.batch_size, rng):
                    if len(positions) < 2:
                        continue  # BatchNorm needs two samples
                    optimiser.zero_grad()
                    loss = loss_fn(model(maps.contiguous(memory_format=CHANNELS_LAST)), targets[positions])
                    loss.backward()
                    nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
                    optimiser.step()
                    scheduler.step()
                    total += loss.item() * len(positions)
                    count += len(positions)
                record = {"epoch": epoch, "train_loss": total / max(count, 1), "lr": scheduler.get_last_lr()[0]}
                if watch is not None:
                    probs, y = self.predict_proba(watch), labels[watch.rows]
                    record.update(watch_loss=log_loss(y, probs), watch_auc=float(roc_auc_score(y, probs)) if len(np.unique(y)) == 2 else math.nan)
                    if stopping.update(record["watch_loss"], epoch):
                        best_state = copy.deepcopy(model.state_dict())
                self.curves.append(record)
                # every epoch at DEBUG: a 5-fold run has 150 of them; the progress line carries the latest at INFO
                log.debug(epoch_line(fit, record, n_epochs, time.perf_counter() - started))
                shown.set_note(epoch_values(record))
                shown.update()
                if watch is not None and stopping.stop:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)  # the best epoch's weights, not the last
        model.eval()
        self.best_epoch = (stopping.best_epoch or n_epochs) if watch is not None else n_epochs
        return self

    @torch.inference_mode()
    def predict_proba(self, data: HeadData) -> np.ndarray:
        self.net.eval()
        out = np.empty(len(data.rows), dtype=np.float64)
        where = {pos: i for i, pos in enumerate(data.rows.tolist())}
        for positions, maps in data.source.batches(data.rows, 256):
            logits = self.net(maps.contiguous(memory_format=CHANNELS_LAST))
            out[[where[p] for p in positions.tolist()]] = torch.sigmoid(logits).double().numpy()
        return out

    def model_args(self) -> dict:
        return self.args

    def save_weights(self, folder: Path) -> None:
        torch.save(self.net.state_dict(), folder / "weights.pt")

    def load_weights(self, folder: Path, model_args: dict) -> None:
        self.args = model_args
        self.net = self.build_module(model_args).to(memory_format=CHANNELS_LAST)
        from vidstore.store.artifacts import load_torch_file

        self.net.load_state_dict(load_torch_file(folder / "weights.pt", what="head weights file"))
        self.net.eval()

    @classmethod
    def build_module(cls, model_args: dict) -> InceptionHead:
        return InceptionHead(**model_args)

    def module(self) -> InceptionHead:
        return self.net

    @classmethod
    def describe(cls, cfg: InceptionParams, source) -> dict:
        return {**super().describe(cfg, source), "parameters": count_parameters(InceptionHead(**network_args(source.shape[0], cfg)))}
