"""Shared test data: small videos made on the fly, and the real ones in ../shared if present."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_VIDEOS = ROOT.parent / "shared" / "data" / "videos"
SHARED_FVC = ROOT.parent / "shared" / "data" / "fvc"

sys.path.insert(0, str(ROOT))
import cli  # noqa: E402,F401  (the tests run this checkout as the vidstore package)

# Small clips keep the backbone fast on a CPU: T=4 frames at 32 px, a 16 px downscale, one
# augmented variant per video.
TINY = ["clip.frames=4", "clip.scales=[32,16]", "augment.variants=1", "extract.batch_size=8", "extract.num_workers=0"]


def write_video(
    path: Path,
    frames: np.ndarray,
    fps: int = 24,
    crf: int = 18,
    *,
    pts_ms: list[int] | None = None,
    gop: int | None = None,
    rotation: int = 0,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode uint8 RGB frames (n, H, W, 3) as H.264 with PyAV (container from the suffix).

    ``pts_ms`` gives each frame's presentation time in milliseconds (variable frame
    rate); ``gop`` the keyframe interval; ``rotation`` the display rotation metadata
    (degrees counter-clockwise).
    """
    from fractions import Fraction

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        options = {"crf": str(crf), "preset": "ultrafast"}
        if gop:
            options.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
        stream.options = options
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if pts_ms is not None:
                picture.pts, picture.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return path


def index_coded_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frame i is a flat grey of level 10 + 5*i (n <= 46): its index survives H.264."""
    assert n <= 46, "levels must stay distinct below 255"
    levels = 10 + 5 * np.arange(n)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).astype(np.uint8).copy()


def decode_level_to_index(level: float, n: int) -> int:
    levels = 10 + 5 * np.arange(n)
    return int(np.argmin(np.abs(levels - level)))


def indexed_demo(root: Path, n_videos: int, seed: int):
    """A small demo dataset (64x48, 16 frames) under root/data, indexed to root/samples.parquet.
    Returns (samples path, samples table)."""
    from vidstore.extract.demo_data import make_demo_dataset
    from vidstore.extract.sources import build_index, write_index

    make_demo_dataset(root / "data", n_videos, seed=seed, width=64, height=48, n_frames=16)
    table, _ = build_index([root / "data"])
    return write_index(table, root / "samples.parquet"), table


def write_rows(store, values: dict) -> None:
    """Every shard of ``store`` from whole arrays (``{(scale, name): array over all rows}``),
    video by video through the ShardWriter, as extraction writes them."""
    from vidstore.store import ShardWriter

    rpv = store.layout.rows_per_video
    writer = ShardWriter(store, list(values))
    for shard in range(store.layout.n_shards):
        writer.begin(shard)
        first, last = store.layout.shard_video_range(shard)
        for v in range(first, last):
            writer.add(v * rpv, rpv, {key: array[v * rpv : (v + 1) * rpv] for key, array in values.items()})
        writer.finish()


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python cli.py ...`` in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=cwd or ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"cli {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def shared_videos() -> list[Path]:
    if not SHARED_VIDEOS.is_dir():
        pytest.skip("../shared/data/videos is not present (only in the development checkout)")
    return sorted(SHARED_VIDEOS.glob("*.mp4"))


@pytest.fixture()
def corrupt_files(tmp_path: Path) -> dict[str, Path]:
    """A zero-byte file, a text file named .mp4, and a truncated mp4."""
    good = write_video(tmp_path / "good.mp4", index_coded_frames(30))
    data = good.read_bytes()
    files = {"empty": tmp_path / "empty.mp4", "text": tmp_path / "text.mp4", "truncated": tmp_path / "truncated.mp4"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a video\n" * 50)
    files["truncated"].write_bytes(data[: len(data) // 3])
    return files


README = ROOT / "README.md"


def readme_head_module(folder: Path) -> Path:
    """The README's head example, written out exactly as printed there."""
    text = README.read_text()
    block = text.split("<!-- head-module-example -->", 1)[1].split("<!-- /head-module-example -->", 1)[0]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "knn_head.py"
    path.write_text(code)
    return path


# the store's variants draw their augmentations (seeded by the video id), unlike the demo's
# explicit policy, so a wrong id gives other variants
DRAWN = ["augment.explicit=[]", "augment.ops=[rotate,color,noise,hflip,reverse]"]


@pytest.fixture(scope="session")
def video_store(tmp_path_factory):
    """20 small demo videos extracted (T=4, 32 px, one drawn variant each) into a store."""
    from vidstore.configs import load_config
    from vidstore.extract.job import run_extract

    root = tmp_path_factory.mktemp("video_store")
    samples, table = indexed_demo(root, 20, seed=7)
    cfg = load_config(ROOT / "configs/demo.yaml", TINY + DRAWN)
    run_extract(samples, root / "store.zarr", cfg, progress=False)
    return {"root": root, "samples": samples, "table": table, "store": root / "store.zarr"}
