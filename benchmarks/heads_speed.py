"""Wall time and peak memory of each head's 5-fold run on stores of FVC's size and 10x.

    python benchmarks/heads_speed.py [--videos 300] [--scales 1 10] [--heads gbm logreg inception] [--set KEY=VALUE ...]

FVC's usable subset is about 300 videos; with K=10 variants that is 3 300 rows. The store
is synthetic (the real one needs Kinetics features from a GPU): for every row a 512-d
embedding, a layer4 map (512, 2, 7, 7) as extracted at 16x112x112, and a 32-d
handcrafted vector, float16/float32 as extraction stores them, with a weak label signal
so the heads have something to learn. Each head runs `train HEAD` in a fresh process;
peak RSS is that process's VmHWM.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from vidstore.store import ArraySpec, FeatureStore  # noqa: E402

RUN = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)
from benchmarks.rss import peak_rss_mib as peak_mib
from vidstore.configs import load_config
from vidstore.heads.train import train_head
cfg = load_config(None, {sets!r})
start = time.perf_counter()
run_dir, summary = train_head({head!r}, {store!r}, cfg)
print(json.dumps({{"seconds": time.perf_counter() - start, "peak_mib": peak_mib(), "auc": summary.pooled["roc_auc"],
                   "info": summary.head_info}}))
"""


def make_store(path: Path, n_videos: int, variants: int = 11, shard_videos: int = 32) -> float:
    rng = np.random.default_rng(0)
    n_groups = max(2, n_videos * 2 // 3)
    group = rng.integers(0, n_groups, n_videos)
    labels = (group % 2).astype(np.int8)
    rows = pl.DataFrame({
        "video_id": np.repeat([f"v{i}" for i in range(n_videos)], variants),
        "group": np.repeat([f"g{g}" for g in group], variants),
        "label": np.repeat(labels, variants),
        "variant": np.tile(np.arange(variants), n_videos),
    })
    specs = {112: [ArraySpec("embedding", (512,)), ArraySpec("layer4", (512, 2, 7, 7)),
                   ArraySpec("handcrafted", (32,), "float32", allow_nan=True)]}
    store = FeatureStore.create(str(path), rows, specs, rows_per_video=variants, shard_videos=shard_videos)
    started = time.perf_counter()
    y_rows = np.repeat(labels, variants).astype(np.float32)
    for shard in range(store.layout.n_shards):
        start, stop = store.layout.shard_rows(shard)
        y = y_rows[start:stop]
        n = stop - start
        emb = np.maximum(rng.standard_normal((n, 512)) + 0.3 * y[:, None] * (np.arange(512) < 16), 0)
        maps = np.maximum(rng.standard_normal((n, 512, 2, 7, 7)) + 0.5 * y[:, None, None, None, None] * (np.arange(512) < 16)[None, :, None, None, None], 0)
        hand = rng.standard_normal((n, 32)) + 0.5 * y[:, None] * (np.arange(32) < 4)
        store.write_shard(shard, {(112, "embedding"): emb.astype(np.float16), (112, "layer4"): maps.astype(np.float16),
                                  (112, "handcrafted"): hand.astype(np.float32)})
        store.mark_done(shard, np.ones(n), [""] * n, {"frames_decoded": np.zeros(n), "frames_unique": np.zeros(n)})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--heads", nargs="+", default=["gbm", "logreg", "inception"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override for every head, e.g. train.inception.threads=1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for factor in args.scales:
            n = args.videos * factor
            path = Path(tmp) / f"store-{n}.zarr"
            seconds = make_store(path, n)
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
            print(f"\nstore: {n} videos x 11 variants = {n * 11} rows, 112 px, {size:.0f} MiB on disk (written in {seconds:.0f} s)")
            for head in args.heads:
                sets = [f"train.out={tmp}/runs", "train.features=[embedding,handcrafted]", "train.scale=112", *args.overrides]
                out = subprocess.run([sys.executable, "-c", RUN.format(root=str(ROOT), sets=sets, head=head, store=str(path))],
                                     capture_output=True, text=True)
                if out.returncode:
                    print(f"  {head}: failed: {out.stderr.strip().splitlines()[-1]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                extra = f", {r['info'].get('parameters')} parameters, maps in RAM: {r['info'].get('maps_in_ram')}" if head == "inception" else ""
                print(f"  {head:<9} 5-fold: {r['seconds']:7.1f} s, peak RSS {r['peak_mib']:6.0f} MiB, pooled AUC {r['auc']:.3f}{extra}")


if __name__ == "__main__":
    main()
