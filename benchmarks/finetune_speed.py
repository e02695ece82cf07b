"""Fine-tuning throughput: optimiser steps per second of r3d_18 + Inception3D head.

    python benchmarks/finetune_speed.py [--frames 16] [--size 112] [--batches 8 16 32 64] [--amp bf16] [--steps 20]

Synthetic clips (the data path is not measured), the fine-tune's real model, optimiser
and autocast. On CUDA it reports steps/s and clips/s per batch size and the peak GPU
memory; a batch that runs out of memory is reported as such. On a CPU it runs too (small
sizes make sense there).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from vidstore.features.backbone import build_backbone  # noqa: E402
from vidstore.features.device import pick_device  # noqa: E402
from vidstore.heads.zoo.inception import InceptionHead  # noqa: E402
from vidstore.heads.model import VideoClassifier, set_trainable  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--amp", choices=["bf16", "fp16", "none"], default="bf16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trainable", nargs="+", default=["layer3", "layer4"])
    args = parser.parse_args()
    device = pick_device("auto")  # the rule extract, finetune and predict use
    backbone, _ = build_backbone("r3d_18", "random")
    model = VideoClassifier(backbone, "layer4", InceptionHead()).to(device)
    params = set_trainable(model, args.trainable, freeze_bn=True)
    optimiser = torch.optim.AdamW([{"params": params, "lr": 5e-6}, {"params": list(model.head.parameters()), "lr": 5e-4}])
    use_amp = args.amp != "none" and device.type == "cuda"
    dtype = torch.bfloat16 if args.amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and args.amp == "fp16")
    loss_fn = nn.BCEWithLogitsLoss()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {args.frames}x{args.size}x{args.size}, amp {args.amp if use_amp else 'off'}, "
          f"trainable {args.trainable}")
    for batch in args.batches:
        clips = torch.randn(batch, 3, args.frames, args.size, args.size, device=device)
        targets = torch.randint(0, 2, (batch,), device=device).float()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            for step in range(args.steps + 3):
                if step == 3:  # after warm-up
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    started = time.perf_counter()
                optimiser.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
                    loss = loss_fn(model(clips).float(), targets)
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            memory = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else ""
            print(f"batch {batch:3d}: {args.steps / seconds:6.2f} steps/s, {batch * args.steps / seconds:7.1f} clips/s{memory}")
        except torch.cuda.OutOfMemoryError:
            print(f"batch {batch:3d}: out of memory")
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
