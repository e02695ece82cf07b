"""Clip pipeline: memory and decoding work on a long high-resolution video.

    python benchmarks/clip_pipeline.py [--minutes 10] [--fps 25] [--width 1920 --height 1080]
                                       [--frames 16] [--scales 224 112] [--variants 10]

Writes a synthetic H.264 video of the given length and size (a checkerboard with a moving
block, encoded fast), then, each in a fresh process, measures peak RSS and time for:
  baseline   importing the pipeline and doing nothing;
  decode     decode_clip: T frames sampled over the whole video, letterboxed;
  variants   everything extraction does per video before the backbone: one decode,
             K augmented variants, every scale, handcrafted statistics.
Also prints frames decoded against frames needed, for this video and for the real test
videos in ../shared/data/videos when they are there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from vidstore.extract.demo_data import write_long_video  # noqa: E402

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)
from benchmarks.rss import peak_rss_mib as peak_mib
from vidstore.configs import load_config
from vidstore.extract.clips import clips_of_video
from vidstore.extract.video import decode_clip
mode, path = {mode!r}, {path!r}
cfg = load_config(None, {sets!r})
start = time.perf_counter()
out = {{}}
if mode == "decode":
    clip = decode_clip(path, cfg.clip.frames, cfg.clip.size)
    out = {{"frames_decoded": clip.n_decoded, "seeks": clip.n_seeks, "unique": clip.n_unique}}
elif mode == "variants":
    result = clips_of_video(path, "bench", cfg)
    out = {{"frames_decoded": result["results"]["frames_decoded"],
           "clips": {{str(s): list(c.shape) for s, c in result["clips"].items()}}}}
out["seconds"] = time.perf_counter() - start
out["peak_rss_mib"] = peak_mib()
print(json.dumps(out))
"""


def measure(mode: str, path: Path, sets: list[str]) -> dict:
    code = CHILD.format(root=str(ROOT), mode=mode, path=str(path), sets=sets)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--scales", type=int, nargs="+", default=[224, 112])
    parser.add_argument("--variants", type=int, default=10)
    args = parser.parse_args()
    sets = [f"clip.frames={args.frames}", f"clip.scales={args.scales}", f"augment.variants={args.variants}"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.mp4"
        started = time.perf_counter()
        n = write_long_video(path, args.minutes * 60, args.fps, args.width, args.height)
        print(f"video: {args.minutes:g} min, {args.width}x{args.height} at {args.fps} fps = {n} frames, "
              f"{path.stat().st_size / 2**20:.1f} MiB (written in {time.perf_counter() - started:.0f} s); "
              f"decoded whole it would be {n * args.width * args.height * 3 / 2**30:.1f} GiB of RGB")
        print(f"clip: T={args.frames}, scales {args.scales}, K={args.variants} augmented variants")
        base = measure("baseline", path, sets)
        print(f"baseline (imports only): peak RSS {base['peak_rss_mib']:.0f} MiB")
        for mode in ("decode", "variants"):
            r = measure(mode, path, sets)
            extra = f", {r['seeks']} seeks" if "seeks" in r else f", clips {r['clips']}"
            print(f"{mode:<9} peak RSS {r['peak_rss_mib']:.0f} MiB (+{r['peak_rss_mib'] - base['peak_rss_mib']:.0f} over baseline), "
                  f"{r['seconds']:.2f} s, frames decoded {r['frames_decoded']} of {n} for {args.frames} needed{extra}")
    shared = ROOT.parent / "shared" / "data" / "videos"
    if shared.is_dir():
        from vidstore.extract.video import decode_clip, probe_video

        for video in sorted(shared.glob("*.mp4")):
            clip = decode_clip(video, args.frames, args.scales[0])
            print(f"{video.name}: frames decoded {clip.n_decoded} of {probe_video(video)['n_frames']} "
                  f"for {args.frames} needed ({clip.n_seeks} seeks)")


if __name__ == "__main__":
    main()
