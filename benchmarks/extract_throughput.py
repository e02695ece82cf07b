"""Extraction throughput against a bare backbone forward, in the same process.

    python benchmarks/extract_throughput.py [--videos 60] [--config configs/demo.yaml] [--set k=v ...]

Makes a demo dataset, indexes it, extracts it into a fresh store, then times a bare
r3d_18 forward (same clip sizes, same batch size, every configured scale) on random
clips. A "clip" is one video variant at every scale, so the two rates compare directly.
Also prints the share of the job's wall time spent inside the backbone (the rest is
decoding, augmenting, statistics and writing that the workers did not hide), and the
store's size and compression ratio per array.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import load_config  # noqa: E402
from extract.demo_data import make_demo_dataset  # noqa: E402
from extract.job import run_extract  # noqa: E402
from extract.sources import build_index, write_index  # noqa: E402
from features.backbone import BackboneTaps, build_backbone  # noqa: E402
from store import FeatureStore  # noqa: E402


def bare_forward_rate(cfg, n_clips: int) -> float:
    model, _ = build_backbone(cfg.backbone.name, "random", seed=0)
    taps = BackboneTaps(model, cfg.backbone.taps)
    batch = cfg.extract.batch_size
    inputs = {s: torch.randn(batch, 3, cfg.clip.frames, s, s) for s in cfg.clip.scales}
    with torch.inference_mode():
        for s in cfg.clip.scales:  # warm-up
            taps(inputs[s])
        started = time.perf_counter()
        done = 0
        while done < n_clips:
            for s in cfg.clip.scales:
                taps(inputs[s])
            done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=60)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"))
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        d = cfg.demo
        make_demo_dataset(tmp / "data", n_videos=args.videos, seed=d.seed, width=d.width, height=d.height, n_frames=d.n_frames)
        table, _ = build_index([tmp / "data"])
        write_index(table, tmp / "samples.parquet")
        report = run_extract(tmp / "samples.parquet", tmp / "store.zarr", cfg, progress=False)
        bare = bare_forward_rate(cfg, report.clips)
        info = FeatureStore.open(tmp / "store.zarr").info()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {cfg.extract.device}, "
          f"T={cfg.clip.frames}, scales {cfg.clip.scales}, batch {cfg.extract.batch_size}, workers {cfg.extract.num_workers}")
    print(f"extract: {report.clips} clips in {report.seconds:.1f} s = {report.clips_per_second:.2f} clips/s")
    print(f"bare {cfg.backbone.name} forward (all scales, same batch): {bare:.2f} clips/s")
    print(f"extraction runs at {100 * report.clips_per_second / bare:.0f} % of the bare forward rate")
    share = report.backbone_seconds / report.seconds
    print(f"inside the job, the backbone forward took {report.backbone_seconds:.1f} s of {report.seconds:.1f} s "
          f"({100 * share:.0f} %): pipeline overhead {100 * (1 - share):.0f} % of wall time")
    total_stored = sum(a["stored_bytes"] for a in info["arrays"])
    total_raw = sum(a["uncompressed_bytes"] for a in info["arrays"])
    print(f"store: {total_stored / 2**20:.2f} MiB on disk, {total_raw / 2**20:.2f} MiB uncompressed, ratio {total_raw / total_stored:.2f}")
    for a in info["arrays"]:
        print(f"  {a['path']:<18} {a['stored_bytes'] / 2**20:7.2f} MiB  ratio {a['compression_ratio']}")


if __name__ == "__main__":
    main()
