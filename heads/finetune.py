"""``finetune``: backbone + Inception3D head trained end to end; the final model artifact.

    vidstore finetune --samples samples.parquet --init runs/<inception run> --out models/NAME
    vidstore finetune ... --out models/NAME-final --final-from models/NAME   # every video, best epochs
    torchrun --nproc_per_node 4 -m vidstore.cli finetune ...        # DistributedDataParallel, rank 0 writes

The head starts from a head trained on the store's maps (the best fold of a map head's
run, such as ``inception``, same tap and scale), the backbone from the weights the store recorded. Clips come
from extraction's pipeline, decoded in worker processes with its time limit; training clips draw fresh
augmentations every epoch. A grouped hold-out (the same rule as the heads) drives early
stopping and the threshold. Checkpoints (model, optimiser, scheduler, scaler, epoch,
step, RNG states, config) are written every epoch and on SIGTERM; ``--resume`` continues
exactly. On CUDA: autocast (bf16, or fp16 with a scaler), and an out-of-memory error
halves the micro-batch (accumulation doubles) and redoes the same step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
from torch import nn

from vidstore.configs import Config
from vidstore.extract.augment import draw_variant, variant_rng
from vidstore.extract.clips import make_variant
from vidstore.extract.job import read_samples
from vidstore.extract.progress import progress
from vidstore.extract.video import VideoError, decode_clip
from vidstore.extract.workers import decode_in_workers
from vidstore.features.device import pick_device
from vidstore.heads.export import export_model, file_sha256, require_exporters
from vidstore.heads.metrics import binary_metrics, choose_threshold, log_loss
from vidstore.heads.model import MODEL_SPEC, ModelSpec, VideoClassifier, keep_frozen_bn_in_eval, set_trainable
from vidstore.heads.pipeline import augment_config_of, backbone_of, clip_at_scale, clip_config_of
from vidstore.heads.registry import head_class
from vidstore.heads.runs import RunSummary, json_safe
from vidstore.heads.tensorboard_events import FOLDER as EVENTS, open_writer, require_tensorboard, write_scalars
from vidstore.heads.training import EarlyStopping, balanced_resample, epoch_line, grouped_holdout, warmup_cosine, weighted_bce
from vidstore.store import StoreProvenance
from vidstore.store.artifacts import load_torch_file

CHECKPOINT = "checkpoint.pt"

log = logging.getLogger(__name__)


class FinetuneError(ValueError):
    """An init that is not a map head's run or a model, or a checkpoint that does not fit."""


class SimulatedOOM(RuntimeError):
    """Raised by the ``inject_oom_steps`` test hook in place of a CUDA OOM."""


@dataclass
class Init:
    """Where fine-tuning starts: a head (and maybe a whole model) and the store's record."""

    provenance: StoreProvenance
    scale: int
    tap: str
    head: str  # the registered head whose network goes on the tap
    head_args: dict  # that network's constructor arguments
    head_state: dict
    model_state: dict | None  # a whole VideoClassifier (continuing from a model artifact)
    source: dict


def load_init(path: str | Path) -> Init:
    """A map head's run (its best fold's head) or a model artifact (all its weights)."""
    path = Path(path)
    if (path / MODEL_SPEC).is_file():
        spec = ModelSpec.read(path)
        state = load_torch_file(path / "weights.pt", what="model weights file")
        head_state = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
        return Init(spec.provenance, spec.scale, spec.tap, spec.head, spec.head_args, head_state, state, {"model": str(path)})
    if not (path / "summary.json").is_file():
        raise FinetuneError(f"--init {path} is neither a run folder nor a model folder")
    summary = RunSummary.read(path)
    if summary.inputs != "map":
        raise FinetuneError(f"--init {path} is a {summary.head} run, whose head reads vectors; fine-tuning starts from a map head's run (inception)")
    aucs = [v if v is not None else -1 for v in summary.metrics["roc_auc"]["per_fold"]]
    best = int(np.argmax(aucs))
    fitted = head_class(summary.head).load(path / "checkpoints" / f"fold{best}")
    provenance = StoreProvenance.read(path / "provenance.json", f"run {path} (provenance.json)")
    return Init(provenance, summary.scale, summary.tap, summary.head, fitted.model_args(), fitted.module().state_dict(), None,
                {"run": str(path), "fold": best, "fold_roc_auc": aucs[best]})


def build_model(init: Init, cfg: Config) -> VideoClassifier:
    head = head_class(init.head).build_module(init.head_args)
    model = VideoClassifier(backbone_of(init.provenance, cfg.backbone), init.tap, head)
    if init.model_state is not None:
        model.load_state_dict(init.model_state)
    else:
        model.head.load_state_dict(init.head_state)
    return model


class Clips:
    """``clips(i)``: (clip (3, T, s, s), label, i), or (None, label, i) for a video that cannot
    be decoded. Training clips draw fresh augmentations per epoch with the store's policy
    (an explicit policy cycles through its lists), seeded by (seed, video_id, epoch),
    whatever worker or rank makes them."""

    def __init__(self, table: pl.DataFrame, init: Init, augment: bool, seed: int):
        self.paths = table["path"].to_list()
        self.video_ids = table["video_id"].to_list()
        self.labels = table["label"].to_numpy().astype(np.float32)
        self.clip = clip_config_of(init.provenance)
        self.policy = augment_config_of(init.provenance)
        self.scale, self.augment, self.seed, self.epoch = init.scale, augment, seed, 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self(i)

    def __call__(self, i: int):
        try:
            decoded = decode_clip(self.paths[i], self.clip.frames, self.clip.size)
        except VideoError:
            return None, self.labels[i], i
        frames = decoded.frames
        if self.augment:
            p = self.policy
            explicit = p.explicit[self.epoch % len(p.explicit)] if p.explicit else None
            ops = draw_variant(variant_rng(self.seed, f"{self.video_ids[i]}#epoch{self.epoch}", 1), self.clip.frames,
                               spatial=p.spatial, temporal=p.temporal, ops=p.ops, explicit=explicit)
            frames = make_variant(frames, decoded.box, ops)
        return clip_at_scale(frames, self.clip, self.scale), self.labels[i], i


def collate(items):
    kept = [it for it in items if it[0] is not None]
    if not kept:
        return None
    return torch.stack([it[0] for it in kept]), torch.tensor([it[1] for it in kept]), [it[2] for it in items if it[0] is None]


def epoch_batches(train: np.ndarray, labels: np.ndarray, epoch: int, seed: int, batch: int, rank: int, world: int,
                  balanced: bool) -> list[list[int]]:
    """This rank's batches of an epoch: the same order on every rank and every run."""
    rng = np.random.default_rng([seed, epoch])
    order = train[rng.permutation(len(train))]
    if balanced:
        order = balanced_resample(order, labels, rng)
        order = order[rng.permutation(len(order))]
    step = batch * world
    return [order[start + rank : start + step : world].tolist() for start in range(0, len(order) - step + 1, step)] or (
        [order[rank::world].tolist()] if len(order) >= world else []
    )


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    def __init__(self, samples: str | Path, init_path: str | Path, out: str | Path, cfg: Config, resume: bool = False,
                 final_from: str | Path | None = None, inject_oom_steps: tuple[int, ...] = ()):
        """``inject_oom_steps``: a test hook, a simulated out-of-memory error at these optimiser steps."""
        if cfg.finetune.tensorboard:
            require_tensorboard("finetune.tensorboard")
        self.final: ModelSpec | None = None
        if final_from is not None:
            # the final model: every video trains, for the epoch count the hold-out run chose,
            # and the hold-out run's threshold is kept (no videos are left to choose one)
            self.final = ModelSpec.read(final_from)
            best = int(self.final.training["best_epoch"]) or int(self.final.training["epochs_run"])
            cfg = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"holdout": 0.0, "epochs": best})})
        self.cfg, self.f = cfg, cfg.finetune
        self.out = Path(out)
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        self.rank = int(os.environ.get("RANK", 0))
        self.device = pick_device(self.f.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        require_exporters(self.f.export)
        self.init = load_init(init_path)
        self.table = read_samples(samples)
        self.samples_path = str(Path(samples).resolve())  # recorded: evaluate leaves these videos out of a test set
        self.labels = self.table["label"].to_numpy().astype(np.int64)
        self.train_rows, self.holdout_rows = grouped_holdout(self.table, self.labels, self.f.holdout, self.f.seed)
        torch.manual_seed(self.f.seed)
        self.model = build_model(self.init, cfg).to(self.device)
        backbone_params = set_trainable(self.model, self.f.trainable, self.f.freeze_bn)
        self.net = self.model
        if self.world > 1:
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimiser = torch.optim.AdamW(
            [{"params": backbone_params, "lr": self.f.lr_backbone}, {"params": list(self.model.head.parameters()), "lr": self.f.lr_head}],
            weight_decay=self.f.weight_decay,
        )
        self.steps_per_epoch = max(1, len(epoch_batches(self.train_rows, self.labels, 0, self.f.seed, self.f.batch_size, 0, self.world,
                                                        self.f.balance == "balanced_batches")))
        total = self.f.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimiser, warmup_cosine(int(self.f.warmup_epochs * self.steps_per_epoch), total))
        self.amp = self.f.amp != "none" and self.device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.f.amp == "bf16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.f.amp == "fp16")
        self.loss_fn = weighted_bce(self.labels[self.train_rows], self.f.balance, self.device)
        self.stopping = EarlyStopping(self.f.patience)
        self.state = {"epoch": 1, "step_in_epoch": 0, "global_step": 0, "micro_batch": self.f.micro_batch,
                      **self.stopping.state(), "history": [], "oom_events": []}
        self.best_state: dict | None = None
        self.inject_oom_steps = set(inject_oom_steps)
        self._injected: set[int] = set()
        self.stop_requested = False
        self.board = None  # the TensorBoard writer while run() runs, when finetune.tensorboard asks for one
        if resume:
            self._resume()

    # -- checkpoints -----------------------------------------------------------------------

    def checkpoint(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimiser.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "state": dict(self.state),
            "best_state": self.best_state,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "config": self.cfg.to_dict(),
        }

    def save_checkpoint(self) -> None:
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            _save_atomic(self.checkpoint(), self.out / CHECKPOINT)

    def _resume(self) -> None:
        path = self.out / CHECKPOINT
        if not path.is_file():
            raise FinetuneError(f"--resume: no checkpoint at {path}")
        ckpt = load_torch_file(path, self.device, what="fine-tuning checkpoint")
        self.model.load_state_dict(ckpt["model"])
        self.optimiser.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = dict(ckpt["state"])
        self.stopping = EarlyStopping(self.f.patience, best_loss=self.state["best_loss"], best_epoch=self.state["best_epoch"],
                                      stale=self.state["stale"])
        self.best_state = ckpt["best_state"]
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in ckpt["rng"]["python"]))
        if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])

    # -- training --------------------------------------------------------------------------

    def _loader(self, rows_batches: list[list[int]], dataset: Clips, epoch: int) -> Iterator:
        """The batches, collated, their clips made in ``finetune.num_workers`` processes by the
        decode pool of extraction (``extract/workers.py``): a video that hangs past
        ``extract.decode_timeout`` or crashes its worker is a failed video of its batch."""
        flat = [row for batch in rows_batches for row in batch]
        made = decode_in_workers(dataset, flat, self.f.num_workers, timeout=self.cfg.extract.decode_timeout or None,
                                 prefetch=2, name="finetune-decode")
        for batch in rows_batches:
            items = []
            for row in batch:
                _, item = next(made)
                items.append(item if isinstance(item, tuple) else (None, dataset.labels[row], row))  # a dict: timed out or died
            yield collate(items)

    def train_step(self, clips: torch.Tensor, targets: torch.Tensor) -> float:
        """One optimiser step over the batch, in micro-batches; on out-of-memory the
        micro-batch halves and the same step starts again."""
        while True:
            try:
                return self._step(clips, targets)
            except (torch.cuda.OutOfMemoryError, SimulatedOOM) as err:
                if self.state["micro_batch"] == 1:
                    raise
                self.optimiser.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.state["micro_batch"] //= 2
                self.state["oom_events"].append({"step": self.state["global_step"], "micro_batch": self.state["micro_batch"],
                                                 "error": type(err).__name__})

    def _step(self, clips: torch.Tensor, targets: torch.Tensor) -> float:
        self.optimiser.zero_grad(set_to_none=True)
        chunks = list(zip(clips.split(self.state["micro_batch"]), targets.split(self.state["micro_batch"])))
        total = 0.0
        for i, (x, y) in enumerate(chunks):
            step = self.state["global_step"]
            if step in self.inject_oom_steps and step not in self._injected:
                self._injected.add(step)
                raise SimulatedOOM(f"simulated out-of-memory at step {step}")
            sync = contextlib.nullcontext() if (self.world == 1 or i == len(chunks) - 1) else self.net.no_sync()
            with sync, torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                x = x.to(self.device, non_blocking=True)
                loss = self.loss_fn(self.net(x).float(), y.to(self.device)) * (len(x) / len(clips))
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.unscale_(self.optimiser)
        nn.utils.clip_grad_norm_([p for g in self.optimiser.param_groups for p in g["params"]], self.f.grad_clip)
        self.scaler.step(self.optimiser)
        self.scaler.update()
        self.scheduler.step()
        return total

    @torch.inference_mode()
    def predict(self, rows: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Probabilities of the original clips of ``rows`` (NaN where a video failed)."""
        self.model.eval()
        dataset = Clips(self.table, self.init, augment=False, seed=self.f.seed)
        probs = np.full(len(rows), np.nan)
        where = {r: i for i, r in enumerate(rows.tolist())}
        failed: list[int] = []
        batches = [rows[i : i + self.f.micro_batch].tolist() for i in range(0, len(rows), self.f.micro_batch)]
        for wanted, batch in zip(batches, self._loader(list(batches), dataset, 0)):
            if batch is None:
                failed += wanted
                continue
            clips, _, bad = batch
            failed += bad
            kept = [r for r in wanted if r not in bad]
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits = self.model(clips.to(self.device)).float()
            probs[[where[r] for r in kept]] = torch.sigmoid(logits).cpu().numpy()
        return probs, failed

    def holdout_predictions(self) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) of the hold-out videos that decoded."""
        probs, _ = self.predict(self.holdout_rows)
        ok = ~np.isnan(probs)
        return self.labels[self.holdout_rows][ok], probs[ok]

    def run(self) -> dict:
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        self.board = open_writer(self.out / EVENTS) if self.f.tensorboard and self.rank == 0 else None
        try:
            return self._run()
        finally:
            signal.signal(signal.SIGTERM, previous)
            if self.board is not None:
                self.board.close()

    def _on_sigterm(self, signum, frame) -> None:
        self.stop_requested = True

    def _run(self) -> dict:
        f = self.f
        dataset = Clips(self.table, self.init, augment=f.augment, seed=f.seed)
        while self.state["epoch"] <= f.epochs:
            epoch = self.state["epoch"]
            dataset.epoch = epoch
            batches = epoch_batches(self.train_rows, self.labels, epoch, f.seed, f.batch_size, self.rank, self.world,
                                    f.balance == "balanced_batches")[self.state["step_in_epoch"]:]
            self.model.train()
            keep_frozen_bn_in_eval(self.model, f.freeze_bn)
            losses = []
            started = time.perf_counter()
            steps = progress(self._loader(batches, dataset, epoch), f"finetune epoch {epoch}/{f.epochs}", "step", total=len(batches),
                             show=self.rank == 0)
            for batch in steps:
                self.state["step_in_epoch"] += 1  # counts batches consumed, so a resume skips exactly these
                if batch is None:
                    continue  # every video of the batch failed to decode
                clips, targets, _ = batch
                losses.append(self.train_step(clips, targets))
                self.state["global_step"] += 1
                if self.stop_requested:
                    self.save_checkpoint()
                    return {"status": "interrupted", "epoch": epoch, "global_step": self.state["global_step"]}
            record = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else math.nan, "seconds": time.perf_counter() - started,
                      "micro_batch": self.state["micro_batch"], "lr_head": self.scheduler.get_last_lr()[1]}
            if len(self.holdout_rows):
                y, probs = self.holdout_predictions()
                record["holdout_loss"] = log_loss(y, probs)
                record["holdout_auc"] = binary_metrics(y, probs)["roc_auc"]
                if self.stopping.update(record["holdout_loss"], epoch):
                    self.best_state = copy.deepcopy(self.model.state_dict())
                self.state.update(self.stopping.state())
            self.state["history"].append(record)
            if self.rank == 0:  # an epoch here is a pass of the backbone over every video: each line is worth reading
                log.info(epoch_line("finetune", record, f.epochs, time.perf_counter() - started))
            if self.board is not None:
                write_scalars(self.board, record, epoch)
            self.state["epoch"] += 1
            self.state["step_in_epoch"] = 0
            self.save_checkpoint()
            if len(self.holdout_rows) and self.stopping.stop:
                break
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        summary = {"status": "done", "epochs_run": len(self.state["history"]), "best_epoch": self.state["best_epoch"],
                   "global_step": self.state["global_step"]}
        if self.rank == 0:
            summary.update(self.write_artifact())
            if self.board is not None and summary.get("holdout"):
                write_scalars(self.board, summary["holdout"], summary["epochs_run"], "holdout/")
        if self.world > 1:
            dist.barrier()
        return summary

    # -- the artifact ----------------------------------------------------------------------

    def write_artifact(self) -> dict:
        """weights.pt, model.yaml (with the hold-out's threshold and metrics), history.jsonl, and the
        exports of ``finetune.export`` (heads/export.py), each checked and listed in model.yaml."""
        self.out.mkdir(parents=True, exist_ok=True)
        threshold, metrics = 0.5, None
        if self.final is not None:
            threshold, metrics = float(self.final.threshold), self.final.metrics["holdout"]
        elif len(self.holdout_rows):
            y, probs = self.holdout_predictions()
            threshold = choose_threshold(y, probs)
            metrics = binary_metrics(y, probs, threshold)
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        _save_atomic(state, self.out / "weights.pt")
        digest = file_sha256(self.out / "weights.pt")
        clip = clip_config_of(self.init.provenance)
        spec = ModelSpec(
            backbone=self.init.provenance.backbone_name,
            tap=self.init.tap,
            head=self.init.head,
            head_args=self.init.head_args,
            clip={**clip.model_dump(mode="json"), "scale": self.init.scale},
            threshold=float(threshold),
            training={
                "samples": len(self.table), "samples_path": self.samples_path, "train_videos": int(len(self.train_rows)), "holdout_videos": int(len(self.holdout_rows)),
                "class_counts": {"real": int((self.labels == 0).sum()), "fake": int((self.labels == 1).sum())},
                "epochs_run": len(self.state["history"]), "best_epoch": self.state["best_epoch"], "init": self.init.source,
                "world_size": self.world, "oom_events": self.state["oom_events"], "finetune": self.f.model_dump(mode="json"),
                "final_from": None if self.final is None else {"best_epoch": self.final.training["best_epoch"],
                                                              "threshold_and_metrics_from_holdout": True},
            },
            metrics={"holdout": metrics},
            weights={"file": "weights.pt", "sha256": digest},
            provenance=self.init.provenance,
        )
        spec.write(self.out)  # first without exports: a failed export leaves a usable eager model
        with open(self.out / "history.jsonl", "w") as handle:
            for record in self.state["history"]:
                handle.write(json.dumps(json_safe(record)) + "\n")
        exports = export_model(self.model.eval(), int(spec.clip["frames"]), spec.scale, self.out, self.f.export, self.f.seed)
        if exports:
            spec = dataclasses.replace(spec, exports=exports)
            spec.write(self.out)
        return {"threshold": threshold, "holdout": metrics, "exports": spec.exports}


def finetune(samples: str | Path, init: str | Path, out: str | Path, cfg: Config, resume: bool = False,
             final_from: str | Path | None = None, inject_oom_steps: tuple[int, ...] = ()) -> dict:
    """Train; ``final_from`` (a model trained with a hold-out) makes the final model: all
    videos, that model's best epoch count, its threshold."""
    return Trainer(samples, init, out, cfg, resume=resume, final_from=final_from, inject_oom_steps=inject_oom_steps).run()
