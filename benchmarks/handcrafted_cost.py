"""Cost of the handcrafted statistics against the r3d_18 forward on the same clip.

    python benchmarks/handcrafted_cost.py [--video PATH]

For each clip size, a clip is decoded from a real video (the first of ../shared/data/videos,
else a demo video made here) and letterboxed; the handcrafted statistics are timed on its
content with one thread (as in the extraction workers), the backbone forward with torch's
default threads (as in the extraction's main process), per clip in a batch of 8.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from vidstore.extract.augment import one_thread  # noqa: E402
from vidstore.extract.clips import normalise  # noqa: E402
from vidstore.extract.demo_data import make_demo_dataset  # noqa: E402
from vidstore.extract.video import decode_clip  # noqa: E402
from vidstore.features.backbone import BackboneTaps, build_backbone  # noqa: E402
from vidstore.features.handcrafted import content_crop, handcrafted_features  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", default=None)
    args = parser.parse_args()
    video = args.video
    if video is None:
        shared = sorted((ROOT.parent / "shared" / "data" / "videos").glob("*.mp4"))
        if shared:
            video = str(shared[0])
        else:
            tmp = Path(tempfile.mkdtemp())
            make_demo_dataset(tmp, 4, seed=0)
            video = str(next((tmp / "videos").glob("*.mp4")))
    model, _ = build_backbone("r3d_18", "random", seed=0)
    taps = BackboneTaps(model, ["pool", "layer4"])
    meta = {"bitrate": 1e6, "fps": 30, "width": 640, "height": 360, "duration": 10.0, "codec": "h264"}
    print(f"video {video}; torch threads {torch.get_num_threads()}")
    print(f"{'clip':<12} {'handcrafted ms':>15} {'r3d_18 forward ms':>18} {'ratio':>7}")
    for frames, size in [(8, 56), (8, 112), (16, 112), (16, 224)]:
        clip = decode_clip(video, frames, size)
        pixels = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255
        b = clip.box
        content = content_crop(pixels, b.top, b.left, b.height, b.width)

        def stats() -> None:
            with one_thread():
                handcrafted_features(content, meta)

        batch = normalise(pixels, (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)).unsqueeze(0).repeat(8, 1, 1, 1, 1)

        def forward() -> None:
            with torch.inference_mode():
                taps(batch)

        t_stats = timed(stats, 20)
        t_forward = timed(forward, 2 if size >= 112 else 5) / 8
        print(f"{frames}x{size}x{size:<6} {1000 * t_stats:15.1f} {1000 * t_forward:18.1f} {100 * t_stats / t_forward:6.1f}%")


if __name__ == "__main__":
    main()
