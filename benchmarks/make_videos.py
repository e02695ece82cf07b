"""Camera-like H.264 test videos of real upload sizes (480p to 1080p), for figures that
depend on decoding (the demo's 128x96 sources decode almost for free).

    python benchmarks/make_videos.py OUT_DIR [--per-size 4] [--sizes 854x480 1280x720 1920x1080]
                                     [--seconds 10 30] [--seed 0] [--jobs N]

Each video is a textured scene (smooth colour fields plus fine grain) under a slow camera
pan, with a moving object and fresh sensor noise in every frame, encoded by x264 at
crf 23 ("veryfast") with a keyframe every 2-10 s, so its bitrate (a few Mbit/s at 1080p)
and decoding work are those of an ordinary upload, not of a flat synthetic pattern.
Writes OUT_DIR/real/*.mp4 and OUT_DIR/fake/*.mp4 (labels alternate, so the folder can be
indexed as it is: `cli.py index OUT_DIR --out samples.parquet`).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np
from PIL import Image


def _smooth_field(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """A smooth random field in [0, 1]: coarse noise upsampled bicubically."""
    coarse = rng.random((max(2, height // cell), max(2, width // cell))).astype(np.float32)
    image = Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def scene_planes(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Luma and chroma planes of a scene larger than the frame (the camera pans over it)."""
    luma = 0.55 * _smooth_field(rng, height, width, 96) + 0.3 * _smooth_field(rng, height, width, 24)
    luma += 0.15 * rng.random((height, width), dtype=np.float32)  # fine grain that survives crf 23
    u = _smooth_field(rng, height // 2, width // 2, 64)
    v = _smooth_field(rng, height // 2, width // 2, 64)
    return (luma * 200 + 20).astype(np.uint8), (u * 80 + 88).astype(np.uint8), (v * 80 + 88).astype(np.uint8)


def write_camera_video(path: Path, width: int, height: int, seconds: float, fps: int, gop_seconds: float, seed: int) -> int:
    """Writes one video; returns its frame count."""
    rng = np.random.default_rng(seed)
    margin = max(64, width // 8) // 2 * 2
    luma, u, v = scene_planes(rng, height + margin, width + margin)
    noise_bank = [rng.normal(0, 3, (height, width)).astype(np.int16) for _ in range(7)]
    n = int(round(seconds * fps))
    box_h, box_w = height // 6 // 2 * 2, width // 8 // 2 * 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(int(gop_seconds * fps))}
        for i in range(n):
            phase = i / max(1, n - 1)
            dy = int(margin * 0.5 * (1 + np.sin(2 * np.pi * phase))) // 2 * 2
            dx = int(margin * phase) // 2 * 2
            y = luma[dy : dy + height, dx : dx + width].astype(np.int16) + noise_bank[i % len(noise_bank)]
            by = int((height - box_h) * (0.5 + 0.4 * np.sin(4 * np.pi * phase))) // 2 * 2
            bx = int((width - box_w) * phase) // 2 * 2
            y[by : by + box_h, bx : bx + box_w] = 230 - (i % 40)
            cu = u[dy // 2 : (dy + height) // 2, dx // 2 : (dx + width) // 2]
            cv = v[dy // 2 : (dy + height) // 2, dx // 2 : (dx + width) // 2]
            # PyAV's yuv420p array: the Y plane, then U and V flattened, as (3H/2, W)
            planes = np.concatenate([np.clip(y, 0, 255).astype(np.uint8).ravel(), cu.ravel(), cv.ravel()])
            frame = av.VideoFrame.from_ndarray(planes.reshape(height * 3 // 2, width), format="yuv420p")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-size", type=int, default=4)
    parser.add_argument("--sizes", nargs="+", default=["854x480", "1280x720", "1920x1080"])
    parser.add_argument("--seconds", nargs=2, type=float, default=[10.0, 30.0])
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="videos made at once (processes)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    plan = []
    for size in args.sizes:
        width, height = (int(x) for x in size.split("x"))
        for _ in range(args.per_size):
            k = len(plan)
            seconds, gop = float(rng.uniform(*args.seconds)), float(rng.choice([2.0, 5.0, 10.0]))
            path = args.out / ("real" if k % 2 == 0 else "fake") / f"cam_{height}p_{k:03d}.mp4"
            if not path.exists():
                plan.append((path, width, height, seconds, args.fps, gop, args.seed * 1000 + k))
            else:
                plan.append(None)
    todo = [p for p in plan if p is not None]
    for path, *_ in todo:
        path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, args.jobs)) as pool:
        for (path, width, height, seconds, _, gop, _), (n, took) in zip(todo, pool.map(_make, todo)):
            print(f"{path}: {width}x{height}, {n} frames, gop {gop:.0f} s, "
                  f"{path.stat().st_size * 8 / seconds / 1e6:.1f} Mbit/s, {took:.1f} s to make")


def _make(args: tuple) -> tuple[int, float]:
    started = time.perf_counter()
    return write_camera_video(*args), time.perf_counter() - started


if __name__ == "__main__":
    main()
