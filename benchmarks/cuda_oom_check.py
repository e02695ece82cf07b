"""A real CUDA out-of-memory during fine-tuning: the micro-batch halves and training goes on.

    python benchmarks/cuda_oom_check.py [--out DIR] [--memory-fraction 0.01] [--micro-batch 128]

Makes a small demo dataset, extracts it on the GPU, trains the Inception3D head on the
store, then fine-tunes backbone + head with every stage trainable and a micro-batch far
too large for the memory this process may use (``torch.cuda.set_per_process_memory_fraction``),
so that real ``torch.OutOfMemoryError``s are raised by the allocator. Passes (exit 0) when
the model folder is written and its ``model.yaml`` records out-of-memory events with the
micro-batch halving; prints them. Exit 1 otherwise, 2 without CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("oom_check"))
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--memory-fraction", type=float, default=0.01, help="share of the GPU's memory this process may use")
    parser.add_argument("--micro-batch", type=int, default=128)
    parser.add_argument("--cpu-dry-run", action="store_true", help="run the pipeline on a CPU with a simulated OOM (checks this script)")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("no CUDA device: nothing to check")
        return 2
    from vidstore.configs import load_config
    from vidstore.extract.demo_data import make_demo_dataset
    from vidstore.extract.job import run_extract
    from vidstore.extract.sources import build_index, write_index
    from vidstore.heads.finetune import finetune
    from vidstore.heads.train import train_head

    started = time.perf_counter()
    out = args.out
    device = "cpu" if args.cpu_dry_run else "cuda"
    cfg = load_config(ROOT / "configs" / "demo.yaml", [
        f"extract.device={device}", "extract.num_workers=2", "train.folds=2", "train.inception.epochs=2",
        f"train.out={out / 'runs'}", f"finetune.device={device}", "finetune.epochs=1", "finetune.trainable=[all]",
        "finetune.freeze_bn=false", f"finetune.batch_size={args.micro_batch}", f"finetune.micro_batch={args.micro_batch}",
        "finetune.holdout=0.5", "finetune.num_workers=4",
    ])
    d = cfg.demo
    make_demo_dataset(out / "data", n_videos=args.videos, seed=3, width=d.width, height=d.height, n_frames=d.n_frames, fps=d.fps)
    table, _ = build_index([out / "data"])
    samples = write_index(table, out / "samples.parquet")
    run_extract(samples, out / "store.zarr", cfg, progress=False)
    run_dir, _ = train_head("inception", out / "store.zarr", cfg)
    if not args.cpu_dry_run:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(args.memory_fraction)
        print(f"this process may use {args.memory_fraction * total / 2**30:.2f} GiB of {total / 2**30:.0f} GiB; "
              f"micro-batch {args.micro_batch} clips, every stage trainable")
    result = finetune(samples, run_dir, out / "model", cfg, inject_oom_steps=(0,) if args.cpu_dry_run else ())
    spec = yaml.safe_load((out / "model" / "model.yaml").read_text())
    events = spec["training"]["oom_events"]
    for event in events:
        print(f"  out of memory at step {event['step']} ({event['error']}): micro-batch now {event['micro_batch']}")
    ok = bool(events) and result["epochs_run"] >= 1 and (out / "model" / "weights.pt").is_file()
    print(f"{'PASS' if ok else 'FAIL'}: {len(events)} out-of-memory events, {result['epochs_run']} epoch(s) trained, "
          f"{time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
