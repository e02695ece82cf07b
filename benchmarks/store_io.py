"""Feature store at scale: codecs on real activations, files, reader memory, resume time.

    python benchmarks/store_io.py [--videos 48] [--big-mib 400]

1. Extracts a demo dataset (random-weight r3d_18: Kinetics-400 weights are not available
   offline here) and, for every stored array, rewrites its activations with several
   codecs: compression ratio, write and read MB/s (uncompressed MB per second).
2. Files per 10 000 rows for the real-data layout (K=10 variants, 32 videos a shard).
3. Peak RSS of a head (the gbm feature table over layer4 maps) reading a synthetic store
   4x larger than the reader's cache, against the store's size.
4. Time to resume a store that is 90 % done, against the full extraction.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from configs import load_config  # noqa: E402
from extract.demo_data import make_demo_dataset  # noqa: E402
from extract.job import run_extract  # noqa: E402
from extract.sources import build_index, write_index  # noqa: E402
from store import ArraySpec, FeatureStore, ShardLayout, ShardWriter  # noqa: E402

CODECS = [
    {"codec": "zstd", "level": 1, "shuffle": "shuffle"},
    {"codec": "zstd", "level": 3, "shuffle": "shuffle"},
    {"codec": "zstd", "level": 5, "shuffle": "shuffle"},
    {"codec": "zstd", "level": 3, "shuffle": "bitshuffle"},
    {"codec": "lz4", "level": 5, "shuffle": "shuffle"},
    {"codec": "none", "level": 0, "shuffle": "noshuffle"},
]


def write_store(path: Path, values: np.ndarray, rows_per_video: int, shard_videos: int, compression: dict) -> tuple[float, FeatureStore]:
    n_videos = len(values) // rows_per_video
    rows = pl.DataFrame({"video_id": np.repeat([f"v{i}" for i in range(n_videos)], rows_per_video),
                         "group": np.repeat([f"g{i}" for i in range(n_videos)], rows_per_video),
                         "label": np.zeros(len(values), dtype=int), "variant": np.tile(np.arange(rows_per_video), n_videos)})
    spec = ArraySpec("x", tuple(values.shape[1:]), str(values.dtype))
    store = FeatureStore.create(str(path), rows, {1: [spec]}, {}, rows_per_video=rows_per_video,
                                shard_videos=shard_videos, compression=compression)
    started = time.perf_counter()
    for shard in range(store.layout.n_shards):
        start, stop = store.layout.shard_rows(shard)
        store.write_shard(shard, {(1, "x"): values[start:stop]})
    return time.perf_counter() - started, store


def codec_table(store: FeatureStore, tmp: Path) -> None:
    layout = store.layout
    print(f"\n1. codecs on stored activations ({store.n_rows} rows, random-weight r3d_18 on demo videos)")
    print(f"   {'array':<18} {'codec':<26} {'ratio':>6} {'write MB/s':>11} {'read MB/s':>10}")
    for scale in store.scales:
        for name in store.array_names(scale):
            values = store.read(scale, name)
            mb = values.nbytes / 1e6
            for codec in CODECS:
                target = tmp / f"codec-{scale}-{name}-{codec['codec']}-{codec['level']}-{codec['shuffle']}.zarr"
                seconds, written = write_store(target, values, layout.rows_per_video, layout.shard_videos, codec)
                stored = written.array(1, "x").nbytes_stored()
                started = time.perf_counter()
                back = written.read(1, "x")
                read_s = time.perf_counter() - started
                assert np.array_equal(back, values, equal_nan=True)
                label = f"{codec['codec']}-{codec['level']} {codec['shuffle']}" if codec["codec"] != "none" else "none (crc32c only)"
                print(f"   s{scale}/{name:<14} {label:<26} {values.nbytes / stored:6.2f} {mb / seconds:11.0f} {mb / read_s:10.0f}")
                shutil.rmtree(target)


def files_per_10k_rows(tmp: Path) -> None:
    layout = ShardLayout(rows_per_video=11, shard_videos=32, n_videos=10_000 // 11 + 1)
    rows = pl.DataFrame({"video_id": np.repeat([f"v{i}" for i in range(layout.n_videos)], 11),
                         "group": np.repeat([f"g{i}" for i in range(layout.n_videos)], 11),
                         "label": np.zeros(layout.n_rows, dtype=int), "variant": np.tile(np.arange(11), layout.n_videos)})
    # the real-data arrays (T=16, 224 and 112 px); tiny stand-in shapes: files do not depend on them
    specs = {224: [ArraySpec("embedding", (4,)), ArraySpec("layer4", (4, 1, 1, 1)), ArraySpec("handcrafted", (4,), "float32")],
             112: [ArraySpec("embedding", (4,)), ArraySpec("layer4", (4, 1, 1, 1)), ArraySpec("handcrafted", (4,), "float32")]}
    store = FeatureStore.create(str(tmp / "files.zarr"), rows, specs, {}, rows_per_video=11, shard_videos=32)
    writer = ShardWriter(store, [(s, a.name) for s, arrays in specs.items() for a in arrays])
    for shard in range(layout.n_shards):
        writer.begin(shard)
        first, last = layout.shard_video_range(shard)
        for v in range(first, last):
            writer.add(v * 11, 11, {(s, a.name): np.ones((11, *a.row_shape)) for s, arrays in specs.items() for a in arrays})
        writer.finish()
    files = len([p for p in (tmp / "files.zarr").rglob("*") if p.is_file()])
    print(f"\n2. files for {layout.n_rows} rows (K=10, 32 videos a shard, 2 scales x 3 arrays): {files} in all "
          f"({files * 10_000 / layout.n_rows:.0f} per 10k rows; {layout.n_shards} shards)")


READER = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from benchmarks.rss import peak_rss_mib as peak_mib
from heads.features_table import load_feature_table
from store import FeatureStore
store = FeatureStore.open({path!r})
start = time.perf_counter()
table, _ = load_feature_table(store, 32, ["layer4"])
print(json.dumps({{"peak_mib": peak_mib(),
                  "seconds": time.perf_counter() - start, "shape": list(table.X.shape)}}))
"""


def reader_memory(tmp: Path, big_mib: float) -> None:
    """The head's peak RSS for a store of big_mib / 4 and one of big_mib: bounded means equal."""
    row_shape = (512, 2, 7, 7)
    row_bytes = int(np.prod(row_shape)) * 2
    rng = np.random.default_rng(0)
    print("\n3. gbm feature table over layer4 maps (per-channel mean and max), read through the bounded reader:")
    for mib in (big_mib / 4, big_mib):
        n = int(mib * 2**20 / row_bytes)
        rows = pl.DataFrame({"video_id": [f"v{i}" for i in range(n)], "group": [f"g{i}" for i in range(n)],
                             "label": np.arange(n) % 2, "variant": np.zeros(n, dtype=int)})
        path = tmp / f"big-{int(mib)}.zarr"
        store = FeatureStore.create(str(path), rows, {32: [ArraySpec("layer4", row_shape)]}, {}, shard_videos=64)
        for shard in range(store.layout.n_shards):
            start, stop = store.layout.shard_rows(shard)
            maps = np.maximum(rng.standard_normal((stop - start, *row_shape)), 0).astype(np.float16)  # post-ReLU-like
            store.write_shard(shard, {(32, "layer4"): maps})
            store.mark_done(shard, np.ones(stop - start), [""] * (stop - start),
                            {"frames_decoded": np.zeros(stop - start), "frames_unique": np.zeros(stop - start)})
        out = subprocess.run([sys.executable, "-c", READER.format(root=str(ROOT), path=str(path))],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        base = subprocess.run([sys.executable, "-c", READER.split("store = FeatureStore")[0].format(root=str(ROOT))
                               + "print(json.dumps(peak_mib()))"], capture_output=True, text=True, check=True)
        baseline = json.loads(base.stdout.strip())
        print(f"   store {n * row_bytes / 2**20:5.0f} MiB ({n} rows, shards of 64): peak RSS {r['peak_mib']:.0f} MiB, "
              f"{r['peak_mib'] - baseline:.0f} over the {baseline:.0f} MiB of imports; {r['seconds']:.1f} s; table {r['shape']}")
        shutil.rmtree(path)


def resume_time(tmp: Path, samples: Path, cfg) -> None:
    store_path = tmp / "resume.zarr"
    full = run_extract(samples, store_path, cfg, progress=False)
    store = FeatureStore.open(str(store_path))
    n_shards = store.layout.n_shards
    lost = max(1, round(n_shards * 0.1))
    for shard in range(n_shards - lost, n_shards):
        store.fs.rm(store._marker_path(shard))  # as if killed with the last 10 % not marked
    started = time.perf_counter()
    again = run_extract(samples, store_path, cfg, progress=False)
    total = time.perf_counter() - started
    print(f"\n4. resume: full extraction {full.seconds:.1f} s for {n_shards} shards; with {n_shards - lost} of {n_shards} "
          f"done ({100 * (n_shards - lost) / n_shards:.0f} %), the restart took {total:.1f} s in all "
          f"({again.seconds:.1f} s computing {again.n_done} videos, {total - again.seconds:.1f} s opening, "
          f"checking and planning, backbone load included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--big-mib", type=float, default=400)
    args = parser.parse_args()
    cfg = load_config(ROOT / "configs" / "demo.yaml", ["augment.variants=2", "augment.explicit=[]", "extract.shard_videos=4"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_demo_dataset(tmp / "data", args.videos, seed=0, width=cfg.demo.width, height=cfg.demo.height, n_frames=cfg.demo.n_frames)
        table, _ = build_index([tmp / "data"])
        samples = write_index(table, tmp / "samples.parquet")
        run_extract(samples, tmp / "acts.zarr", cfg, progress=False)
        codec_table(FeatureStore.open(str(tmp / "acts.zarr")), tmp)
        files_per_10k_rows(tmp)
        reader_memory(tmp, args.big_mib)
        resume_time(tmp, samples, cfg)


if __name__ == "__main__":
    main()
