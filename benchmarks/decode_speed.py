"""Seconds per decode_clip by codec threading, seek policy and frame skipping, on one core and unpinned.

    python benchmarks/decode_speed.py VIDEO_OR_FOLDER... [--frames 16] [--size 224] [--repeat 3]
                                      [--old OLD_VIDEO_PY] [--nvdec] [--variants NAME...] [--json OUT]

    # compare with the committed decoder too:
    git show HEAD:extract/video.py > /tmp/old_video.py
    python benchmarks/decode_speed.py /work/bench/videos --old /tmp/old_video.py --json decode.json

Every variant (one set of decode_clip options, see VARIANTS) decodes every video
``--repeat`` times, the variants interleaved so that a busy neighbour slows them alike;
a video's figure is the best of its repeats, a height's the mean over its videos. It runs
twice, each time in a child process: pinned to one core (``os.sched_setaffinity``, as a
DataLoader worker on a GPU node has about one core; FFmpeg's automatic thread count then
sees one CPU) and unpinned (all cores of this machine). Wall seconds and the child's CPU
seconds (all its threads) are recorded.

Correctness: each variant's frames and source times must equal, bit for bit, a reference
made without decode_clip's seeking and skipping: every frame decoded in order, the frame
on screen at each sample time kept, resized by PyAV's own ``frame.reformat``. Any variant
that differs on any video is reported. ``--old`` adds an older extract/video.py's
decode_clip (called with its defaults) as the variant ``old``. ``--nvdec`` adds the default
options decoded on NVIDIA's decoder engine (``decoder="nvdec"``) as the variant ``nvdec``,
checked against the same CPU reference; each video also records whether NVDEC took it.
``--variants`` keeps only the named variants (``default`` is always kept).

Cost split (pinned, default options): opening and indexing the packets (_index_packets),
resizing the sampled frames (timed apart on the same frames), decoding (the rest).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)

from vidstore.extract.video import VIDEO_SUFFIXES  # noqa: E402

# name -> decode_clip keyword arguments; "default" is decode_clip as called everywhere, "today (auto)"
# the options it had before they were options
VARIANTS = {
    "default": {},
    "none": dict(threads="none", seek="gaps", skip="none"),
    "slice": dict(threads="slice", seek="gaps", skip="none"),
    "frame": dict(threads="frame", seek="gaps", skip="none"),
    "today (auto)": dict(threads="auto", seek="gaps", skip="none"),
    "auto x1": dict(threads="auto", thread_count=1, seek="gaps", skip="none"),
    "none never-seek": dict(threads="none", seek="never", skip="none"),
    "none skip-nonref": dict(threads="none", seek="gaps", skip="nonref"),
    "none never-seek skip-nonref": dict(threads="none", seek="never", skip="nonref"),
    "frame skip-nonref": dict(threads="frame", seek="gaps", skip="nonref"),
    "auto skip-nonref": dict(threads="auto", seek="gaps", skip="nonref"),
}


def find_videos(items: list[str]) -> list[Path]:
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"decode_speed: no such video or folder: {item}")
    return found


def _pin_to_one_core() -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _load_old(path: str | None):
    if not path:
        return None
    if "old_video" not in sys.modules:
        spec = importlib.util.spec_from_file_location("old_video", path)
        sys.modules["old_video"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["old_video"])
    return sys.modules["old_video"].decode_clip


def reference_clip(path: Path, n_samples: int, size: int):
    """Frames and source times by the sampling rule alone: decode every frame in order (no
    seeking, no skipping, no codec threads), keep the frame on screen at each sample time."""
    import av

    from vidstore.extract.video import _index_packets, letterbox_geometry, place_in_canvas, sample_times

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        origin = stream.start_time or 0
        duration = _index_packets(container, stream, origin).end
        targets = sample_times(duration, n_samples)
        container.seek(origin, stream=stream, backward=True, any_frame=False)
        held: list = [None] * n_samples
        k, previous = 0, None
        for frame in container.decode(stream):
            t = float((frame.pts - origin) * stream.time_base)
            while k < n_samples and targets[k] < t:
                held[k] = previous if previous is not None else (frame, t)
                k += 1
            previous = (frame, t)
            if k == n_samples:
                break
        while k < n_samples:
            held[k] = previous
            k += 1
    turns = int(round((held[0][0].rotation or 0) / 90)) % 4
    h, w = (held[0][0].width, held[0][0].height) if turns % 2 else (held[0][0].height, held[0][0].width)
    box = letterbox_geometry(h, w, size)
    stored_w, stored_h = (box.height, box.width) if turns % 2 else (box.width, box.height)
    frames = np.stack([
        place_in_canvas(np.rot90(f.reformat(width=stored_w, height=stored_h, format="rgb24", interpolation="AREA").to_ndarray(), k=turns), size, box)
        for f, _ in held
    ])
    return frames, np.array([t for _, t in held]), [f for f, _ in held], box, turns


def chosen_variants(names: list[str] | None, nvdec: bool) -> dict[str, dict]:
    """VARIANTS (with ``nvdec`` when asked for), only ``names`` and ``default`` when given."""
    variants = {**VARIANTS, **({"nvdec": dict(decoder="nvdec")} if nvdec else {})}
    if names:
        unknown = sorted(set(names) - set(variants) - {"old"})
        if unknown:
            raise SystemExit(f"decode_speed: unknown variant(s) {unknown}; choose from {sorted(variants)} or old")
        variants = {n: kw for n, kw in variants.items() if n == "default" or n in names}
    return variants


def measure_video(path: str, n_samples: int, size: int, repeat: int, old_path: str | None, with_split: bool,
                  chosen: dict[str, dict] = VARIANTS) -> dict:
    """One video, every variant: best and median wall seconds, CPU seconds, exactness."""
    import av
    from av.video.reformatter import VideoReformatter

    from vidstore.extract.video import NvdecError, _index_packets, _upright, decode_clip

    old = _load_old(old_path)
    variants = {name: (decode_clip, kwargs) for name, kwargs in chosen.items()}
    if old is not None:
        variants["old"] = (old, {})
    ref_frames, ref_times, held, box, turns = reference_clip(Path(path), n_samples, size)
    walls: dict[str, list[float]] = {name: [] for name in variants}
    cpus: dict[str, list[float]] = {name: [] for name in variants}
    exact: dict[str, bool] = {}
    decoded: dict[str, int] = {}
    decoder: dict[str, str] = {}
    for _ in range(repeat):
        for name, (fn, kwargs) in variants.items():
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                clip = fn(path, n_samples, size, **kwargs)
            except NvdecError:  # NVDEC refused this stream: the CPU decodes it, as extraction does
                clip = fn(path, n_samples, size, **{**kwargs, "decoder": "cpu"})
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            same = np.array_equal(clip.frames, ref_frames) and np.array_equal(clip.source_times, ref_times)
            exact[name] = exact.get(name, True) and bool(same)
            decoded[name] = int(clip.n_decoded)
            decoder[name] = getattr(clip, "decoder", "cpu")
    with av.open(path) as container:
        stream = container.streams.video[0]
        info = {"height": int(stream.codec_context.height), "width": int(stream.codec_context.width),
                "frames": int(stream.frames), "fps": float(stream.average_rate or 0)}
    out = {"path": path, **info,
           "seconds": {n: min(v) for n, v in walls.items()},
           "median_seconds": {n: statistics.median(v) for n, v in walls.items()},
           "cpu_seconds": {n: min(v) for n, v in cpus.items()},
           "exact": exact, "n_decoded": decoded, "decoder": decoder}
    if with_split:
        index_s, resize_s = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            with av.open(path) as container:
                stream = container.streams.video[0]
                index = _index_packets(container, stream, stream.start_time or 0)
            index_s.append(time.perf_counter() - started)
            unique = {id(f): f for f in held}.values()
            resizer, started = VideoReformatter(), time.perf_counter()
            for frame in unique:
                _upright(frame, box, turns, resizer)
            resize_s.append(time.perf_counter() - started)
        out["keyframes"] = int(index.keyframes.size)
        out["split"] = {"index": min(index_s), "resize": min(resize_s)}
    return out


def run_all(videos: list[Path], args: argparse.Namespace, chosen: dict[str, dict], pinned: bool) -> list[dict]:
    context = get_context("spawn")
    results = []
    with ProcessPoolExecutor(1, mp_context=context, initializer=_pin_to_one_core if pinned else None) as pool:
        for video in videos:
            r = pool.submit(measure_video, str(video), args.frames, args.size, args.repeat, args.old, pinned, chosen).result()
            print(f"  {'pinned' if pinned else 'unpinned'} {Path(r['path']).name} {r['height']}p: "
                  + ", ".join(f"{n} {s:.3f}" for n, s in r["seconds"].items())
                  + ("" if all(r["exact"].values()) else f"  NOT EXACT: {[n for n, ok in r['exact'].items() if not ok]}")
                  + ("" if r["decoder"].get("nvdec", "nvdec") == "nvdec" else "  (NVDEC did not take it: decoded on the CPU)"),
                  flush=True)
            results.append(r)
    return results


def by_height(results: list[dict], key: str) -> dict[int, dict[str, float]]:
    table: dict[int, dict[str, float]] = {}
    for height in sorted({r["height"] for r in results}):
        rows = [r for r in results if r["height"] == height]
        table[height] = {name: float(np.mean([r[key][name] for r in rows])) for name in rows[0][key]}
    return table


def print_table(title: str, results: list[dict], key: str) -> None:
    table = by_height(results, key)
    names = list(next(iter(table.values())))
    print(f"\n{title}")
    counts = {h: sum(r["height"] == h for r in results) for h in table}
    print(f"  {'variant':<30}" + "".join(f"{f'{h}p (n={counts[h]})':>14}" for h in table) + f"{'480-1080p':>12}")
    wide = [r for r in results if 480 <= r["height"] <= 1080]
    for name in names:
        mean_wide = np.mean([r[key][name] for r in wide]) if wide else math.nan
        bad = [Path(r["path"]).name for r in results if not r["exact"][name]]
        print(f"  {name:<30}" + "".join(f"{table[h][name]:14.3f}" for h in table) + f"{mean_wide:12.3f}"
              + (f"   NOT EXACT on {bad}" if bad else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("videos", nargs="+", help="video files or folders (searched recursively)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old", help="an older extract/video.py whose decode_clip joins as variant 'old'")
    parser.add_argument("--nvdec", action="store_true", help="add the variant 'nvdec': decoding on NVIDIA's decoder engine")
    parser.add_argument("--variants", nargs="+", help="only these variants (and default)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if args.nvdec:  # here first: one line, not a traceback from the measuring process
        from vidstore.extract.video import NvdecError, check_nvdec

        try:
            check_nvdec()
        except NvdecError as err:
            raise SystemExit(f"decode_speed: --nvdec: {err}") from None
    videos = find_videos(args.videos)
    print(f"{len(videos)} videos, T={args.frames}, S={args.size}, best of {args.repeat}; {os.cpu_count()} CPUs")
    chosen = chosen_variants(args.variants, args.nvdec)
    pinned = run_all(videos, args, chosen, pinned=True)
    unpinned = run_all(videos, args, chosen, pinned=False)
    print_table("seconds per decode_clip, pinned to one core (mean over videos of the best of repeats)", pinned, "seconds")
    print_table("seconds per decode_clip, unpinned", unpinned, "seconds")
    print_table("CPU seconds per decode_clip (all threads), unpinned", unpinned, "cpu_seconds")
    print("\ncost split, pinned, default options (index and resize timed apart; decode = total - both):")
    for height in sorted({r["height"] for r in pinned}):
        rows = [r for r in pinned if r["height"] == height]
        total = np.mean([r["seconds"]["default"] for r in rows])
        index = np.mean([r["split"]["index"] for r in rows])
        resize = np.mean([r["split"]["resize"] for r in rows])
        print(f"  {height}p: total {total:.3f} s = index {index:.3f} ({100 * index / total:.0f} %) + resize {resize:.3f} "
              f"({100 * resize / total:.0f} %) + decode {total - index - resize:.3f} ({100 * (total - index - resize) / total:.0f} %); "
              f"frames decoded: default {np.mean([r['n_decoded']['default'] for r in rows]):.0f}, "
              + (f"skip none {np.mean([r['n_decoded']['none'] for r in rows]):.0f} " if "none" in rows[0]["n_decoded"] else "")
              + f"of {np.mean([r['frames'] for r in rows]):.0f}")
    if args.json:
        args.json.write_text(json.dumps({"frames": args.frames, "size": args.size, "repeat": args.repeat,
                                         "variants": chosen,
                                         "pinned": pinned, "unpinned": unpinned}, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
