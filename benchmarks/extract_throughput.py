"""Extraction throughput end to end, against a bare backbone forward measured in the same run.

    python benchmarks/extract_throughput.py [--samples SAMPLES.parquet] [--config C] [--set k=v ...]
                                            [--json OUT.json] [--backbone-free] [--videos 60] [--repeat N]
    python benchmarks/extract_throughput.py --samples SAMPLES.parquet --config C --profile N [--json OUT.json]

Extracts the indexed videos of ``--samples`` (``cli.py index`` makes one; without it, a demo
dataset of ``--videos`` videos made here) into a fresh store with the job's own code, then
(unless ``--backbone-free``) times a bare forward of the configured backbone on random
clips of the same sizes and batch. A "clip" is one video variant at every scale, so
``clips_per_s`` and ``bare_forward_clips_per_s`` compare directly.

``--backbone-free`` replaces the forward by zeros of the right shapes: the figure is then
the most that decoding, the device stage (variants, downscales, normalisation, statistics)
and the writer can feed a device.

``--profile N`` measures instead each stage's seconds per video on one core over N videos
(decode in the worker; augment, scale (downscales and normalisation) and statistics in
the device stage): the table in the README's performance section.

The JSON holds: clips_per_s (variant-clips per second end to end), videos_per_s,
bare_forward_clips_per_s (absent with --backbone-free), worker_bytes_per_video (what one
decoded video costs to ship from a worker), decode_seconds_per_video (in the workers),
device_stage_seconds_per_video, write_seconds_per_video (the background writer's busy
time), backbone_seconds_per_video, decode_busy (decode time over workers x wall time),
the stage that bounds the run, workers, device, and the resolved config.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from benchmarks.backbone_forward import forward_rate  # noqa: E402
from vidstore.configs import load_config  # noqa: E402
from vidstore.extract.clips import variant_ops  # noqa: E402
from vidstore.extract.job import run_extract  # noqa: E402
from vidstore.features.backbone import BackboneTaps, tap_shape  # noqa: E402
from vidstore.store import FeatureStore  # noqa: E402


def zero_forward(backbone: str):
    """A stand-in for BackboneTaps.forward with --backbone-free: zeros of the taps' shapes."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        frames, size = x.shape[2], x.shape[-1]
        return {tap: torch.zeros((x.shape[0], *tap_shape(tap, frames, size, backbone)), device=x.device) for tap in self.taps}

    return forward


def demo_samples(cfg, n_videos: int, out: Path) -> Path:
    from vidstore.extract.demo_data import make_demo_dataset
    from vidstore.extract.sources import build_index, write_index

    d = cfg.demo
    make_demo_dataset(out / "data", n_videos=n_videos, seed=d.seed, width=d.width, height=d.height, n_frames=d.n_frames)
    table, _ = build_index([out / "data"])
    write_index(table, out / "samples.parquet")
    return out / "samples.parquet"


def profile_one_core(cfg, samples: Path, n_videos: int) -> dict:
    """Seconds per video of each stage on one core (this process pinned to CPU 0, one torch
    thread): decode (the worker's whole job), then the device stage's parts."""
    import os

    import polars as pl

    from vidstore.extract.clips import variants_at_scales
    from vidstore.extract.job import META_COLUMNS
    from vidstore.extract.video import decode_clip

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    table = pl.read_parquet(samples).filter(pl.col("status") == "ok").head(n_videos)
    timings: dict[str, float] = {"decode": 0.0}
    for row in table.iter_rows(named=True):
        started = time.perf_counter()
        decoded = decode_clip(row["path"], cfg.clip.frames, cfg.clip.size)
        timings["decode"] += time.perf_counter() - started
        plans = variant_ops(cfg.augment, row["video_id"], cfg.clip.frames)
        meta = {k: row.get(k) for k in META_COLUMNS}
        variants_at_scales(torch.from_numpy(decoded.frames), decoded.box, plans, cfg.clip, cfg.features.handcrafted, meta, timings)
    per_video = {k: v / table.height for k, v in timings.items()}
    per_video["all_but_the_forward"] = sum(per_video.values())
    return {"videos": table.height, "seconds_per_video_one_core": per_video,
            "heights": sorted(set(table["height"].to_list())) if "height" in table.columns else None}


def repeated(samples: Path, times: int, out: Path) -> Path:
    """The samples table with every row ``times`` times, each copy its own video and group."""
    import polars as pl

    table = pl.read_parquet(samples)
    copies = [table.with_columns(pl.col("video_id") + f"#copy{i}", pl.col("group").cast(pl.String) + f"#copy{i}") for i in range(times)]
    pl.concat(copies).write_parquet(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=Path, help="an indexed samples table (default: a demo dataset made here)")
    parser.add_argument("--videos", type=int, default=60, help="demo videos to make when --samples is absent")
    parser.add_argument("--config", default=None, help="a config file (default: configs/demo.yaml without --samples)")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--backbone-free", action="store_true", help="replace the forward by zeros of the right shapes")
    parser.add_argument("--repeat", type=int, default=1, help="list every video this many times (under new ids): a longer run from few files")
    parser.add_argument("--profile", type=int, metavar="N", help="instead: each stage's seconds per video on one core, over N videos")
    args = parser.parse_args()
    config = args.config or (None if args.samples else str(ROOT / "configs" / "demo.yaml"))
    cfg = load_config(config, args.overrides)
    if args.profile:
        if not args.samples:
            parser.error("--profile needs --samples")
        out = {**profile_one_core(cfg, args.samples, args.profile), "config": cfg.model_dump(mode="json")}
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(json.dumps({k: v for k, v in out.items() if k != "config"}, indent=2))
        return
    if args.backbone_free:
        BackboneTaps.forward = zero_forward(cfg.backbone.name)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples = args.samples or demo_samples(cfg, args.videos, tmp)
        if args.repeat > 1:
            samples = repeated(samples, args.repeat, tmp / "repeated.parquet")
        report = run_extract(samples, tmp / "store.zarr", cfg, progress=False)
        info = FeatureStore.open(tmp / "store.zarr").info()
    n_videos = max(report.n_done + report.n_failed, 1)
    stages = getattr(report, "stage_seconds", {})  # absent before the device-stage job
    device = getattr(report, "device", cfg.extract.device)
    out = {
        "clips_per_s": report.clips_per_second,
        "videos_per_s": n_videos / report.seconds,
        "videos": n_videos,
        "failed": report.n_failed,
        "clips": report.clips,
        "seconds": report.seconds,
        "workers": cfg.extract.num_workers,
        "device": str(device),
        "decoder": getattr(cfg.extract, "decoder", "cpu"),  # absent before NVDEC
        "decoded_by": getattr(report, "decoded_by", {}),  # videos by what reconstructed their frames
        "backbone_free": args.backbone_free,
        "worker_bytes_per_video": getattr(report, "worker_bytes", 0) / n_videos or None,
        "decode_seconds_per_video": stages["decode"] / n_videos if "decode" in stages else None,
        "device_stage_seconds_per_video": stages["device_stage"] / n_videos if "device_stage" in stages else None,
        "write_seconds_per_video": stages["write"] / n_videos if "write" in stages else None,
        "backbone_seconds_per_video": report.backbone_seconds / n_videos,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "config": cfg.model_dump(mode="json"),
        "store_ratio": sum(a["uncompressed_bytes"] for a in info["arrays"]) / max(1, sum(a["stored_bytes"] for a in info["arrays"])),
    }
    if "decode" in stages:
        workers = max(1, cfg.extract.num_workers)
        out["decode_busy"] = stages["decode"] / (workers * report.seconds)
        main_busy = (stages.get("device_stage", 0) + report.backbone_seconds) / report.seconds
        out["main_busy"] = main_busy
        out["bound_by"] = "decode" if out["decode_busy"] >= main_busy else "device"
    if not args.backbone_free:
        dev = torch.device(str(device)) if str(device).startswith(("cpu", "cuda")) else torch.device("cpu")
        amp = getattr(cfg.extract, "amp_dtype", "fp16") if cfg.extract.amp else None
        out["bare_forward_clips_per_s"] = forward_rate(cfg.backbone.name, cfg.backbone.taps, cfg.clip.frames, cfg.clip.scales,
                                                       cfg.extract.batch_size, dev, amp, max(report.clips, cfg.extract.batch_size))
        out["share_of_bare_forward"] = out["clips_per_s"] / out["bare_forward_clips_per_s"]
    text = json.dumps(out, indent=2, default=str)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    summary = {k: v for k, v in out.items() if k != "config"}
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
