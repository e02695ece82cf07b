"""The decode pool (extract/workers.py) against torch's DataLoader on the same videos.

    python benchmarks/decode_pool.py VIDEO_FOLDER [--workers 2] [--rounds 3] [--frames 16] [--size 224]

Both run extraction's own decode function (``extract.job.DecodeVideo``) over every video
of the folder with the same number of worker processes, in alternating rounds (so a busy
neighbour slows both alike), and the ratio of their wall times is printed per round and
as the median. The frames each returns are compared: they must be identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from torch.utils.data import DataLoader, Dataset  # noqa: E402

from vidstore.extract.job import DecodeVideo  # noqa: E402
from vidstore.extract.sources import find_video_entries  # noqa: E402
from vidstore.extract.workers import decode_in_workers  # noqa: E402


class _Paths(Dataset):
    def __init__(self, paths, fn):
        self.paths, self.fn = paths, fn

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.fn(self.paths[i])


def _first(batch):
    return batch[0]


def run_dataloader(paths, fn, workers):
    loader = DataLoader(_Paths(paths, fn), batch_size=1, collate_fn=_first, num_workers=workers, prefetch_factor=4)
    return [item["frames"].numpy() for item in loader]


def run_pool(paths, fn, workers):
    return [item["frames"].numpy() for _, item in decode_in_workers(fn, paths, workers, timeout=120, prefetch=4)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    paths = [str(p) for p in find_video_entries(args.folder)]
    fn = DecodeVideo(args.frames, args.size)
    ratios = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        a = run_dataloader(paths, fn, args.workers)
        t1 = time.perf_counter()
        b = run_pool(paths, fn, args.workers)
        t2 = time.perf_counter()
        same = len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
        ratios.append((t2 - t1) / (t1 - t0))
        print(f"round {r}: DataLoader {t1 - t0:.2f} s, pool {t2 - t1:.2f} s, pool/DataLoader {ratios[-1]:.3f}, identical frames: {same}")
    print(f"{len(paths)} videos, {args.workers} workers, T={args.frames}, S={args.size}: median pool/DataLoader {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
