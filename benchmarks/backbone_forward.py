"""Bare backbone forward rate: clips per second through the stored taps, nothing else.

    python benchmarks/backbone_forward.py [--backbone r3d_18] [--frames 16] [--sizes 112 224]
                                          [--batches 16 32 64 128] [--amp bf16] [--json OUT]

Random clips already on the device through the extraction job's own BackboneRunner (on
CUDA channels-last 3D, cuDNN autotuning and autocast; every tap copied back to the host as
float16). One line per (size, batch): clips/s and, on CUDA, peak memory. A batch that runs out
of memory is reported as such.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from vidstore.extract.job import BackboneRunner  # noqa: E402
from vidstore.features.backbone import BackboneTaps, build_backbone  # noqa: E402
from vidstore.features.device import pick_device  # noqa: E402


def forward_rate(backbone: str, taps: list[str], frames: int, sizes: list[int], batch: int, device: torch.device,
                 amp_dtype: str | None = "bf16", n_clips: int = 256) -> float:
    """Clips per second of the extraction job's own forward (``BackboneRunner``: layout,
    autocast, the copy back as float16) at every size in ``sizes`` (a clip counts once for
    all of them, as in the job), over at least ``n_clips`` clips after a warm-up."""
    model, _ = build_backbone(backbone, "random", seed=0)
    run = BackboneRunner(BackboneTaps(model, taps), device, amp_dtype is not None, amp_dtype or "bf16", "float16", batch)
    inputs = [torch.randn(batch, 3, frames, s, s, device=device) for s in sizes]

    def step() -> None:
        for x in inputs:
            run(x)

    for _ in range(3 if device.type == "cuda" else 1):
        step()  # warm-up (cuDNN autotuning)
    started, done = time.perf_counter(), 0
    while done < n_clips:
        step()  # run() returns host arrays: the device has finished
        done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="r3d_18")
    parser.add_argument("--taps", nargs="+", default=["pool", "layer4"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--amp", choices=["bf16", "fp16", "none"], default="bf16")
    parser.add_argument("--clips", type=int, default=512, help="clips timed per point")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = pick_device("auto")  # the rule extract, finetune and predict use
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {args.backbone} taps {args.taps}, T={args.frames}, amp {args.amp}")
    results = []
    for size in args.sizes:
        for batch in args.batches:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            try:
                rate = forward_rate(args.backbone, args.taps, args.frames, [size], batch, device,
                                    None if args.amp == "none" else args.amp, args.clips)
            except torch.OutOfMemoryError:
                print(f"{args.frames}x{size}x{size} batch {batch:4d}: out of memory")
                torch.cuda.empty_cache()
                continue
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
            results.append({"size": size, "batch": batch, "clips_per_s": rate, "peak_gib": peak})
            memory = f", peak {peak:.1f} GiB" if peak is not None else ""
            print(f"{args.frames}x{size}x{size} batch {batch:4d}: {rate:8.1f} clips/s{memory}")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "amp": args.amp, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
