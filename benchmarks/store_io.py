"""Feature store at scale: codecs on real activations, files, reader memory, resume time.

    python benchmarks/store_io.py [--videos 48] [--big-mib 400]

1. Extracts a demo dataset (random-weight r3d_18: Kinetics-400 weights are not available
   offline here) and, for every stored array, rewrites its activations with several
   codecs: compression ratio, write and read MB/s (uncompressed MB per second).
2. Files per 10 000 rows for the real-data layout (K=10 variants, 32 videos a shard).
3. Peak RSS of a head (the gbm feature table over layer4 maps) reading a synthetic store
   4x larger than the reader's cache, against the store's size.
4. Time to resume a store that is 90 % done, against the full extraction.

    python benchmarks/store_io.py --threads 1 2 4 [--zarr-workers 2] [--pinned] [--shards 4]
                                  [--source VIDEO_DIR] [--clips 12] [--codecs zstd-1-shuffle ...]
                                  [--dir /dev/shm] [--json OUT]

With --threads, only this runs instead: codecs at the throughput a GPU produces. Whole
shards of the real-data layout (32 videos x 11 variants a shard; s224: layer4 float16
(512, 2, 14, 14) and a 512-d embedding; s112: layer4 (512, 2, 7, 7) and its embedding,
5.5 MB a video) are written concurrently by N writer threads, each thread whole shards of
its own (as the background writer does), once per codec and N. Reported per codec: MB/s
of uncompressed data written and read back (the files are in the page cache, so reading
measures decompression and zarr, not the disk), compression ratio, and CPU seconds per
GB written (all threads of the process), from which the cores a rate needs follow, and
the CPU seconds per GB of zarr's event-loop thread alone (crc32c, shard assembly and the
Python around them run there, one thread per process: the serial part that caps what
more cores can give one process).
Each configuration runs in a fresh child process whose zarr settings are explicit: Blosc
runs single-threaded inside zarr 3 (zarr sets ``numcodecs.blosc.use_threads = False``)
and zarr compresses a shard's chunks concurrently in its own thread pool
(``threading.max_workers``, default os.cpu_count() + 4) up to ``async.concurrency`` at a
time. --pinned adds one pass with the child pinned to one core, one writer thread and one
zarr worker: the rate a single core sustains.
The values are random-weight r3d_18 activations (layer4 and its pooled embedding) of
``--clips`` clips decoded from ``--source`` (T=16 at 224 px; 112 px by area-downscaling the
same clip) and their horizontal flips; the shard's rows cycle through those clips, each
row's channels in a different random order so that no row repeats its neighbour.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from vidstore.configs import load_config  # noqa: E402
from vidstore.extract.demo_data import make_demo_dataset  # noqa: E402
from vidstore.extract.job import run_extract  # noqa: E402
from vidstore.extract.sources import build_index, write_index  # noqa: E402
from vidstore.store import ArraySpec, FeatureStore, ShardLayout, ShardWriter  # noqa: E402

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
    store = FeatureStore.create(str(path), rows, {1: [spec]}, rows_per_video=rows_per_video,
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
    store = FeatureStore.create(str(tmp / "files.zarr"), rows, specs, rows_per_video=11, shard_videos=32)
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
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)
from benchmarks.rss import peak_rss_mib as peak_mib
from vidstore.heads.features_table import load_feature_table
from vidstore.store import FeatureStore
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
        store = FeatureStore.create(str(path), rows, {32: [ArraySpec("layer4", row_shape)]}, shard_videos=64)
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


# codecs at GPU throughput: Blosc compressors, each with byte shuffle and, where the
# compressor is fast enough to be a candidate, bit shuffle
GPU_CODECS = {
    f"{c['codec']}-{c['level']}-{c['shuffle']}": c
    for c in (
        {"codec": "zstd", "level": 1, "shuffle": "shuffle"},
        {"codec": "zstd", "level": 1, "shuffle": "bitshuffle"},
        {"codec": "zstd", "level": 3, "shuffle": "shuffle"},
        {"codec": "zstd", "level": 3, "shuffle": "bitshuffle"},
        {"codec": "lz4", "level": 5, "shuffle": "shuffle"},
        {"codec": "lz4", "level": 5, "shuffle": "bitshuffle"},
        {"codec": "lz4hc", "level": 5, "shuffle": "shuffle"},
        {"codec": "blosclz", "level": 5, "shuffle": "shuffle"},
        {"codec": "none", "level": 0, "shuffle": "noshuffle"},
    )
}
GPU_ARRAYS = {224: [ArraySpec("embedding", (512,)), ArraySpec("layer4", (512, 2, 14, 14))],
              112: [ArraySpec("embedding", (512,)), ArraySpec("layer4", (512, 2, 7, 7))]}
GPU_ROWS_PER_VIDEO, GPU_SHARD_VIDEOS = 11, 32


def r3d18_activations(videos: list[Path], n_clips: int, out: Path) -> dict:
    """layer4 maps and pooled embeddings of random-weight r3d_18 (seed 0) for ``n_clips``
    clips (T=16, 224 px, and the same clip area-downscaled to 112 px) and their flips,
    saved to ``out`` (.npz); returns the zero fraction of each array."""
    import torch
    import torch.nn.functional as F
    from torchvision.models.video import r3d_18

    from vidstore.extract.video import decode_clip

    torch.manual_seed(0)
    net = r3d_18(weights=None).eval()
    mean = torch.tensor([0.43216, 0.394666, 0.37645]).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.22803, 0.22145, 0.216989]).view(1, 3, 1, 1, 1)
    maps: dict[str, list[np.ndarray]] = {f"s{s}/{a.name}": [] for s, arrays in GPU_ARRAYS.items() for a in arrays}
    for video in videos[: max(1, n_clips // 2)]:
        frames = torch.from_numpy(decode_clip(video, 16, 224).frames).permute(3, 0, 1, 2)[None].float() / 255
        for clip in (frames, frames.flip(-1)):
            for scale in GPU_ARRAYS:
                x = clip if scale == 224 else F.interpolate(clip[0].transpose(0, 1), size=(scale, scale), mode="area").transpose(0, 1)[None]
                with torch.no_grad():
                    y = net.layer4(net.layer3(net.layer2(net.layer1(net.stem((x - mean) / std)))))
                maps[f"s{scale}/layer4"].append(y[0].half().numpy())
                maps[f"s{scale}/embedding"].append(y[0].mean(dim=(1, 2, 3)).half().numpy())
    stacked = {k: np.stack(v) for k, v in maps.items()}
    np.savez(out, **stacked)
    return {k: float((v == 0).mean()) for k, v in stacked.items()}


def _shard_values(sources: Path) -> dict[tuple[int, str], np.ndarray]:
    """One shard's rows: the clips in turn, each row's channels in its own random order."""
    loaded = np.load(sources)
    rng = np.random.default_rng(0)
    n = GPU_ROWS_PER_VIDEO * GPU_SHARD_VIDEOS
    orders = [rng.permutation(512) for _ in range(n)]
    values = {}
    for key in loaded.files:
        clips = loaded[key]
        values[(int(key.split("/")[0][1:]), key.split("/")[1])] = np.stack([clips[i % len(clips)][orders[i]] for i in range(n)])
    return values


def _thread_cpu_seconds(native_id: int) -> float:
    """CPU seconds (user + system) one thread of this process has used, from /proc."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_shards_concurrently(sources: str, folder: str, compression: dict, n_shards: int, threads: int,
                              zarr_workers: int, concurrency: int, pinned: bool) -> dict:
    """In a fresh process: write ``n_shards`` whole shards from ``threads`` writer threads,
    then read them back the same way. Uncompressed MB/s, ratio, CPU seconds."""
    if pinned:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    import numcodecs.blosc
    import zarr

    zarr.config.set({"threading.max_workers": zarr_workers, "async.concurrency": concurrency})
    values = _shard_values(Path(sources))
    n_videos = n_shards * GPU_SHARD_VIDEOS
    rows = pl.DataFrame({"video_id": np.repeat([f"v{i}" for i in range(n_videos)], GPU_ROWS_PER_VIDEO),
                         "group": np.repeat([f"g{i}" for i in range(n_videos)], GPU_ROWS_PER_VIDEO),
                         "label": np.zeros(n_videos * GPU_ROWS_PER_VIDEO, dtype=int),
                         "variant": np.tile(np.arange(GPU_ROWS_PER_VIDEO), n_videos)})
    store = FeatureStore.create(folder, rows, GPU_ARRAYS, rows_per_video=GPU_ROWS_PER_VIDEO,
                                shard_videos=GPU_SHARD_VIDEOS, compression=compression)
    mb = n_shards * sum(v.nbytes for v in values.values()) / 1e6
    # zarr runs every call's coroutines on one event-loop thread: its share is the serial part
    loop_thread = zarr.core.sync.iothread[0].native_id
    with ThreadPoolExecutor(threads) as pool:
        wall, cpu, loop = time.perf_counter(), time.process_time(), _thread_cpu_seconds(loop_thread)
        list(pool.map(lambda shard: store.write_shard(shard, values), range(n_shards)))
        write_s, write_cpu = time.perf_counter() - wall, time.process_time() - cpu
        write_loop = _thread_cpu_seconds(loop_thread) - loop
        stored = sum(store.array(s, a.name).nbytes_stored() for s, arrays in GPU_ARRAYS.items() for a in arrays)

        def read(shard: int) -> dict:
            start, stop = store.layout.shard_rows(shard)
            return {key: store.read_block(key[0], key[1], start, stop) for key in values}

        wall, cpu = time.perf_counter(), time.process_time()
        back = list(pool.map(read, range(n_shards)))
        read_s, read_cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert all(np.array_equal(back[-1][key], values[key]) for key in values)
    shutil.rmtree(folder)
    return {"write_mb_s": mb / write_s, "read_mb_s": mb / read_s, "ratio": mb * 1e6 / stored,
            "write_cpu_s_per_gb": write_cpu / mb * 1e3, "write_loop_cpu_s_per_gb": write_loop / mb * 1e3,
            "read_cpu_s_per_gb": read_cpu / mb * 1e3, "mb": mb,
            "blosc_use_threads": bool(numcodecs.blosc.use_threads), "zarr_workers": zarr_workers,
            "concurrency": concurrency}


def gpu_throughput(args: argparse.Namespace, tmp: Path) -> None:
    if args.source:
        videos = sorted(p for p in Path(args.source).rglob("*.mp4"))
    else:
        make_demo_dataset(tmp / "data", max(1, args.clips // 2), seed=0, width=320, height=240, n_frames=64)
        videos = sorted((tmp / "data").rglob("*.mp4"))
    started = time.perf_counter()
    zeros = r3d18_activations(videos, args.clips, tmp / "sources.npz")
    print(f"activations of {2 * max(1, args.clips // 2)} clips (random-weight r3d_18, T=16) in "
          f"{time.perf_counter() - started:.0f} s; zero fraction: " + ", ".join(f"{k} {v:.2f}" for k, v in zeros.items()))
    shard_mb = sum(int(np.prod(a.row_shape)) * 2 for arrays in GPU_ARRAYS.values() for a in arrays) * GPU_ROWS_PER_VIDEO * GPU_SHARD_VIDEOS / 1e6
    print(f"{args.shards} shards of {shard_mb:.0f} MB per configuration; Blosc single-threaded in zarr; "
          f"async.concurrency {args.concurrency}; {os.cpu_count()} CPUs here")
    configs = [(threads, workers, False) for workers in args.zarr_workers for threads in args.threads]
    configs += [(1, 1, True)] if args.pinned else []
    codecs = args.codecs or list(GPU_CODECS)
    results = []
    print(f"\n   {'codec':<22} {'threads':>7} {'zarr wk':>7} {'pinned':>6} {'ratio':>6} {'write MB/s':>10} "
          f"{'read MB/s':>9} {'CPU s/GB w':>10} {'r':>6} {'loop s/GB w':>11}")
    for name in codecs:
        for threads, workers, pinned in configs:
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                r = pool.submit(write_shards_concurrently, str(tmp / "sources.npz"), str(tmp / f"gpu-{name}.zarr"),
                                GPU_CODECS[name], args.shards, threads, workers, args.concurrency, pinned).result()
            results.append({"codec": name, "threads": threads, "pinned": pinned, **r})
            print(f"   {name:<22} {threads:>7} {workers:>7} {'yes' if pinned else 'no':>6} {r['ratio']:6.2f} "
                  f"{r['write_mb_s']:10.0f} {r['read_mb_s']:9.0f} {r['write_cpu_s_per_gb']:10.2f} {r['read_cpu_s_per_gb']:6.2f} {r['write_loop_cpu_s_per_gb']:11.2f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps({"zero_fraction": zeros, "shards": args.shards, "results": results}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--big-mib", type=float, default=400)
    parser.add_argument("--threads", type=int, nargs="+", help="writer threads: run only the GPU-throughput codec table")
    parser.add_argument("--zarr-workers", type=int, nargs="+", default=[os.cpu_count()],
                        help="zarr's thread pool (threading.max_workers), one pass per value")
    parser.add_argument("--concurrency", type=int, default=10, help="zarr's async.concurrency")
    parser.add_argument("--pinned", action="store_true", help="add one pass pinned to one core (1 thread, 1 zarr worker)")
    parser.add_argument("--shards", type=int, default=4, help="shards written per configuration")
    parser.add_argument("--source", help="folder of videos to take the clips from (default: demo videos)")
    parser.add_argument("--clips", type=int, default=12, help="clips (half of them flips) whose activations fill the rows")
    parser.add_argument("--codecs", nargs="+", choices=list(GPU_CODECS), help="default: all")
    parser.add_argument("--dir", help="where the GPU-throughput stores are written (default: the temp dir; "
                        "/dev/shm takes the disk out of the figures)")
    parser.add_argument("--json", type=Path, help="write the GPU-throughput figures here")
    args = parser.parse_args()
    if args.threads:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            gpu_throughput(args, Path(tmp))
        return
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
