"""A corpus of bad and unusual inputs, made here, through the whole job as a user runs it.

index (folder form, then CSV form) -> extract -> store validate -> train gbm -> predict,
each as a subprocess. Every bad file must end with a recorded reason, every good file
with its rows, and no command may print a traceback or crash. Some files change between
index and extract (garbage, deleted, a FIFO that hangs the decoder until the time limit).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import polars as pl
import pytest

from conftest import TINY, run_cli, write_video

SETS = [a for item in TINY for a in ("--set", item)]
# decode workers, so that the time limit applies; limits small enough to trip on purpose
LIMITS = ["--set", "extract.num_workers=1", "--set", "extract.decode_timeout=4", "--set", "extract.max_pixels=200000",
          "--set", "extract.max_duration=20"]


def frames(n: int, h: int, w: int, seed: int, gray: bool = False) -> np.ndarray:
    """Textured frames that move: something for the statistics to measure."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h + n, w + n, 3), dtype=np.uint8)
    out = np.stack([base[i : i + h, i : i + w] for i in range(n)])
    return np.repeat(out[..., :1], 3, axis=3) if gray else out


def encode(path: Path, video: np.ndarray, codec: str, pix_fmt: str, fps: int = 12, options: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], pix_fmt
        if options:
            stream.options = options
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def audio_only(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10)[None, :] * 0.2).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def build_corpus(root: Path) -> dict[str, dict]:
    """root/real/... and root/fake/...; per relative path: what must happen to it.

    expect: "ok" (rows in the store, a probability), "index" (failed at index with a
    reason containing ``why``), "extract" (ok at index, failed at extract with ``why``),
    "either" (a damaged file a decoder may or may not read: rows or a reason, never
    nothing).
    """
    cases: dict[str, dict] = {}

    def case(rel: str, expect: str, why: str = "") -> Path:
        cases[rel] = {"expect": expect, "why": why}
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    for i in range(6):  # plain good videos, both classes
        write_video(case(f"real/good_{i}.mp4", "ok"), frames(12, 48, 64, i), fps=12)
        write_video(case(f"fake/good_{i}.mp4", "ok"), frames(12, 48, 64, 100 + i)[:, :, ::-1].copy(), fps=12)
    # unusual but valid: containers, codecs, pixel formats, sizes, durations, names
    encode(case("real/mpeg4.avi", "ok"), frames(12, 48, 64, 20), "mpeg4", "yuv420p")
    encode(case("real/vp9.webm", "ok"), frames(12, 48, 64, 21), "libvpx-vp9", "yuv420p")
    encode(case("fake/mjpeg.mov", "ok"), frames(12, 48, 64, 22), "mjpeg", "yuvj420p")
    encode(case("fake/yuv444.mkv", "ok"), frames(12, 48, 64, 23), "libx264", "yuv444p", options={"preset": "ultrafast"})
    encode(case("real/gray.mp4", "ok"), frames(12, 48, 64, 24, gray=True), "libx264", "gray", options={"preset": "ultrafast"})
    encode(case("fake/ffv1.mkv", "ok"), frames(12, 48, 64, 25), "ffv1", "yuv420p")
    write_video(case("real/tiny_16x16.mp4", "ok"), frames(12, 16, 16, 26), fps=12)
    write_video(case("fake/portrait.mp4", "ok"), frames(12, 64, 36, 27), fps=12)
    write_video(case("real/one_frame.mp4", "ok"), frames(1, 48, 64, 28), fps=12)
    write_video(case("fake/rotated.mp4", "ok"), frames(12, 48, 64, 29), fps=12, rotation=90)
    write_video(case("real/vfr.mp4", "ok"), frames(12, 48, 64, 30), pts_ms=[0, 40, 50, 200, 210, 400, 420, 600, 900, 950, 1000, 1400])
    write_video(case("fake/UPPER.MP4", "ok"), frames(12, 48, 64, 31), fps=12)
    write_video(case("real/space and ünïcode.m4v", "ok"), frames(12, 48, 64, 32), fps=12)
    write_video(case("fake/-leading-dash.mp4", "ok"), frames(12, 48, 64, 33), fps=12)
    write_video(case("real/deep/er/nested.mov", "ok"), frames(12, 48, 64, 34), fps=12)
    os.symlink(root / "real/good_0.mp4", case("fake/link_to_good.mp4", "ok"))
    # broken at index time
    audio_only(case("fake/audio_only.mp4", "index", "no video stream"))
    case("real/empty.mp4", "index", "empty file").write_bytes(b"")
    case("fake/random_bytes.mp4", "index", "").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    case("real/text.mkv", "index", "").write_text("not a video\n" * 100)
    whole = (root / "real/good_1.mp4").read_bytes()
    case("fake/truncated.mp4", "index", "").write_bytes(whole[: len(whole) // 3])
    case("real/folder.mp4", "index", "a directory").mkdir()
    os.symlink(root / "nowhere.mp4", case("fake/dangling.mp4", "index", "broken symlink"))
    os.symlink(root / "real/loop_b.mp4", case("real/loop_a.mp4", "index", "symlink loop"))
    os.symlink(root / "real/loop_a.mp4", case("real/loop_b.mp4", "index", "symlink loop"))
    os.mkfifo(case("fake/pipe.mp4", "index", "not a regular file"))
    # fine at index, refused or broken at extract
    write_video(case("real/too_large.mp4", "extract", "above the limit of 200000 pixels"), frames(4, 480, 640, 40), fps=4)
    write_video(case("fake/too_long.mp4", "extract", "above the limit of 20 s"), frames(25, 32, 32, 41), fps=1)
    write_video(case("real/becomes_garbage.mp4", "extract", ""), frames(12, 48, 64, 42), fps=12)
    write_video(case("fake/deleted.mp4", "extract", "no such file"), frames(12, 48, 64, 43), fps=12)
    write_video(case("real/becomes_fifo.mp4", "extract", "decode timed out after 4 s"), frames(12, 48, 64, 44), fps=12)
    # damaged in the middle: a decoder may conceal it or give up, but must say which
    damaged = bytearray((root / "fake/good_2.mp4").read_bytes())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 400] = bytes(400)
    case("fake/damaged_middle.mp4", "either").write_bytes(bytes(damaged))
    return cases


def change_after_index(root: Path) -> None:
    (root / "real/becomes_garbage.mp4").write_bytes(b"\x00garbage" * 500)
    (root / "fake/deleted.mp4").unlink()
    (root / "real/becomes_fifo.mp4").unlink()
    os.mkfifo(root / "real/becomes_fifo.mp4")


def no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symlinks (POSIX)")
def test_bad_and_unusual_inputs_through_the_whole_job(tmp_path):
    root = tmp_path / "corpus"
    cases = build_corpus(root)
    n_bad = sum(c["expect"] != "ok" for c in cases.values())
    assert len(cases) - 12 >= 25 and n_bad >= 15  # 12 plain good videos beside the corpus

    # 1. index, folder form: every entry is a row; the broken ones say why
    samples = tmp_path / "samples.parquet"
    no_traceback(run_cli("index", str(root), "--out", str(samples)))
    table = pl.read_parquet(samples)
    rows = {r["video_id"]: r for r in table.iter_rows(named=True)}
    assert set(rows) == set(cases), set(rows) ^ set(cases)
    for rel, c in cases.items():
        row = rows[rel]
        if c["expect"] == "index":
            assert row["status"] == "failed" and row["reason"] and c["why"] in row["reason"].lower(), (rel, row["reason"])
        elif c["expect"] in ("ok", "extract"):
            assert row["status"] == "ok", (rel, row["reason"])
        else:
            assert row["status"] == "ok" or row["reason"], rel

    # 2. index, CSV form: the same files (plus an empty path cell and an empty group cell)
    csv = root / "labels.csv"
    lines = ["path,label,group"] + [f"\"{rel}\",{rel.split('/')[0]},{'' if i % 3 else 'g' + str(i % 5)}" for i, rel in enumerate(sorted(cases))]
    csv.write_text("\n".join(lines + [",fake,g9"]) + "\n")
    samples_csv = tmp_path / "samples_csv.parquet"
    no_traceback(run_cli("index", str(csv), "--out", str(samples_csv)))
    from_csv = pl.read_parquet(samples_csv)
    assert from_csv.height == len(cases) + 1
    same = from_csv.filter(pl.col("video_id").is_in(list(cases)))
    assert dict(zip(same["video_id"], same["status"])) == dict(zip(table["video_id"], table["status"]))
    assert from_csv.filter(pl.col("path") == "")["reason"].to_list() == ["empty path"]
    assert "NaN" not in from_csv["group"].to_list() and from_csv["group"].null_count() == 0

    # 3. files change between index and extract; extract records them and goes on
    change_after_index(root)
    store = tmp_path / "store.zarr"
    extract = run_cli("extract", "--samples", str(samples), "--store", str(store), "-c", "configs/demo.yaml", *SETS, *LIMITS)
    no_traceback(extract)
    validate = run_cli("store", "validate", str(store))
    no_traceback(validate)
    assert validate.stdout.strip().endswith("ok")
    info = json.loads(run_cli("store", "info", str(store), "--json").stdout)
    assert info["rows_by_status"]["pending"] == 0
    from vidstore.store import FeatureStore

    stored = FeatureStore.open(str(store)).rows().filter(pl.col("variant") == 0)
    status = dict(zip(stored["video_id"], stored["status"]))
    reasons = dict(zip(stored["video_id"], stored["reason"]))
    for rel, c in cases.items():
        if c["expect"] == "ok":
            assert status[rel] == "done", (rel, reasons[rel])
        elif c["expect"] == "extract":
            assert status[rel] == "failed" and reasons[rel] and c["why"] in reasons[rel].lower(), (rel, reasons[rel])
        elif c["expect"] == "either" and rel in status:
            assert status[rel] == "done" or reasons[rel], rel
        else:
            assert rel not in status  # failed at index: never in the store
    assert "failed" in extract.stdout

    # 4. train gbm on what was extracted
    runs = tmp_path / "runs"
    train = run_cli("train", "gbm", "--store", str(store), "-c", "configs/demo.yaml", "--out", str(runs), *SETS,
                    "--set", "train.folds=2", "--set", "train.bootstrap=0")
    no_traceback(train)
    run_dir = next(runs.iterdir())

    # 5. predict on the whole folder: every entry a row, a probability for the good ones
    out = tmp_path / "preds.csv"
    predict = run_cli("predict", str(run_dir), str(root), "--out", str(out), "--workers", "1", *SETS, *LIMITS)
    no_traceback(predict)
    preds = {r["video_id"]: r for r in pl.read_csv(out, infer_schema_length=0).iter_rows(named=True)}
    gone = {"fake/deleted.mp4"}  # deleted after the index: not in the folder any more
    assert set(preds) == set(cases) - gone
    for rel, c in cases.items():
        if rel in gone:
            continue
        row = preds[rel]
        if c["expect"] == "ok":
            assert row["status"] == "ok" and 0 <= float(row["prob_fake"]) <= 1, (rel, row)
        elif c["expect"] == "either":
            assert row["status"] == "ok" or row["reason"], rel
        else:
            assert row["status"] == "failed" and row["reason"] and not row["prob_fake"], (rel, row)
            if c["expect"] == "index" or c["why"].startswith("above the limit"):
                assert c["why"] in row["reason"].lower(), (rel, row["reason"])
    # predict looks before it opens: the FIFO that hung extraction's decoder is named at once
    assert preds["real/becomes_fifo.mp4"]["reason"].startswith("not a regular file")
