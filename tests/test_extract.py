"""The extraction job: workers that only decode, one decode per video for all its variants
and scales, a device stage equal to the per-clip reference, stored variant parameters that
reproduce the variant, and the same store whatever the workers, threads and batch size."""

from __future__ import annotations

import functools
import json
from dataclasses import astuple

import av
import numpy as np
import polars as pl
import pytest
import torch

from conftest import ROOT, TINY, indexed_demo
from vidstore.configs import load_config
from vidstore.extract.augment import ALL_OPS, draw_params, draw_variant, one_thread
from vidstore.extract.clips import make_scaled_clips, make_variant, normalise, variant_ops, variants_at_scales
from vidstore.extract import job
from vidstore.extract.job import META_COLUMNS, DecodeVideo, item_bytes, run_extract
from vidstore.extract.workers import decode_in_workers
from vidstore.extract.video import decode_clip
from vidstore.store import FeatureStore

K = 2


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("extract")
    return indexed_demo(root, 6, seed=2)[0]


def config(**extra):
    sets = TINY + [f"augment.variants={K}", "augment.explicit=[]"] + [f"{k}={v}" for k, v in extra.items()]
    return load_config(ROOT / "configs/demo.yaml", sets)


def test_each_video_is_opened_and_decoded_once_for_all_variants_and_scales(samples, tmp_path, monkeypatch):
    opened: list[str] = []
    real_open = av.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counting_open)
    cfg = config(**{"extract.num_workers": 0})
    report = run_extract(samples, tmp_path / "s.zarr", cfg, progress=False)
    monkeypatch.setattr(av, "open", real_open)

    paths = pl.read_parquet(samples)["path"].to_list()
    assert sorted(opened) == sorted(paths)  # one open per video
    assert report.clips == len(paths) * (K + 1)
    rows = FeatureStore.open(tmp_path / "s.zarr").rows()
    assert rows.height == len(paths) * (K + 1) and (rows["status"] == "done").all()
    # the decoder's frame count is that of a single decode of the clip, not K+1 or 2x that
    first = rows.filter(pl.col("video_id") == rows["video_id"][0])
    alone = decode_clip(paths[0], cfg.clip.frames, cfg.clip.size)
    assert first["frames_decoded"].unique().to_list() == [alone.n_decoded]
    assert first["frames_unique"].unique().to_list() == [alone.n_unique]


# the same videos extracted with different decode workers, device-stage threads, backbone
# batch sizes and writer threads
SETUPS = {
    0: {"extract.num_workers": 0, "extract.stage_threads": 1, "extract.batch_size": 8, "extract.writer_threads": 0},
    2: {"extract.num_workers": 2, "extract.stage_threads": 2, "extract.batch_size": 8, "extract.writer_threads": 2},
    "b1": {"extract.num_workers": 1, "extract.stage_threads": 3, "extract.batch_size": 1, "extract.writer_threads": 1},
}


@pytest.fixture(scope="module")
def stores(samples, tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    for key, setup in SETUPS.items():
        run_extract(samples, root / f"w{key}.zarr", config(**setup), progress=False)
    # workers spawned, as NVDEC's are (a CPU has no NVDEC to ask for them with), else as setup 2
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(job, "decode_in_workers", functools.partial(decode_in_workers, start="spawn"))
        run_extract(samples, root / "wspawn.zarr", config(**SETUPS[2]), progress=False)
    return {key: FeatureStore.open(root / f"w{key}.zarr") for key in [*SETUPS, "spawn"]}


def test_same_store_whatever_the_workers_threads_and_batch_size(stores):
    """Byte for byte whatever the workers, stage threads and writer threads. The backbone
    batch size changes oneDNN's float rounding of the forward on a CPU, so there the maps
    and embeddings agree to float16 rounding and everything before the backbone (the
    statistics) to the byte."""
    a = stores[0]
    for key in (2, "b1", "spawn"):
        b = stores[key]
        assert a.rows().drop("row").equals(b.rows().drop("row"))
        for scale in a.scales:
            for name in a.array_names(scale):
                x, y = a.read(scale, name), b.read(scale, name)
                if key == "b1" and name != "handcrafted":
                    np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), rtol=4e-3, atol=2e-3, err_msg=f"{scale}/{name}")
                else:
                    assert np.array_equal(x, y, equal_nan=True), (key, scale, name)


def test_workers_ship_only_the_decoded_frames(samples):
    cfg = config()
    path = pl.read_parquet(samples)["path"][0]
    item = DecodeVideo(cfg.clip.frames, cfg.clip.size)(path)
    t, s = cfg.clip.frames, cfg.clip.size
    assert set(item) == {"frames", "box", "results", "reason", "decode_seconds", "decoder"} and item["decoder"] == "cpu"
    assert item["frames"].dtype == torch.uint8 and tuple(item["frames"].shape) == (t, s, s, 3)
    alone = decode_clip(path, t, s)
    assert np.array_equal(item["frames"].numpy(), alone.frames) and item["box"] == astuple(alone.box)
    assert item_bytes(item) <= 1.1 * t * s * s * 3
    broken = DecodeVideo(t, s)(str(ROOT / "README.md"))
    assert broken["frames"] is None and broken["reason"]


def test_device_stage_equals_the_per_clip_reference_for_every_op(samples):
    """variants_at_scales (all variants at once, as the job runs it on a CPU thread) gives
    the bytes of make_variant + make_scaled_clips, clip by clip, for every augmentation."""
    cfg = load_config(ROOT / "configs/demo.yaml", ["clip.frames=6", "clip.scales=[48,24]"])
    table = pl.read_parquet(samples)
    path = table["path"][1]
    meta = {k: table[k][1] for k in META_COLUMNS}
    decoded = decode_clip(path, cfg.clip.frames, cfg.clip.size)
    plans = [[]] + [[{"op": op, **draw_params(op, np.random.default_rng(i), cfg.clip.frames)}] for i, op in enumerate(ALL_OPS)]
    plans.append(draw_variant(np.random.default_rng(7), cfg.clip.frames, spatial=(2, 2), temporal=(1, 1)))
    with one_thread():
        clips, stats = variants_at_scales(torch.from_numpy(decoded.frames), decoded.box, plans, cfg.clip, True, meta)
    for k, ops in enumerate(plans):
        reference = make_scaled_clips(make_variant(decoded.frames, decoded.box, ops), decoded.box, cfg.clip, meta=meta)
        for scale, scaled in reference.items():
            assert torch.equal(clips[scale][k], scaled.clip), (ops, scale)
            assert np.array_equal(stats[scale][k], scaled.handcrafted.numpy(), equal_nan=True), (ops, scale)
    assert len({clips[48][k].sum().item() for k in range(len(plans))}) > len(plans) // 2  # the ops did change the clips


def test_stored_parameters_reproduce_the_variant(stores, samples):
    store = stores[2]
    cfg = config()
    rows = store.rows()
    table = pl.read_parquet(samples)
    video_id = rows["video_id"][3 * (K + 1)]
    indexed = table.filter(pl.col("video_id") == video_id).row(0, named=True)
    meta = {k: indexed[k] for k in META_COLUMNS}
    mine = rows.filter(pl.col("video_id") == video_id)
    assert mine["variant"].to_list() == list(range(K + 1))
    plans = [json.loads(text) for text in mine["augment"].to_list()]
    assert plans == variant_ops(cfg.augment, video_id, cfg.clip.frames)
    assert plans[0] == [] and all(plans[1:])
    decoded = decode_clip(indexed["path"], cfg.clip.frames, cfg.clip.size)
    for row, ops in zip(mine["row"].to_list(), plans):
        again = make_scaled_clips(make_variant(decoded.frames, decoded.box, ops), decoded.box, cfg.clip, meta=meta)
        for scale, scaled in again.items():
            stored = store.read(scale, "handcrafted", [row])[0]
            assert np.array_equal(stored, scaled.handcrafted.numpy(), equal_nan=True), (row, scale)
    # variants differ from the original
    embeddings = store.read(cfg.clip.size, "embedding", mine["row"].to_list())
    assert not np.array_equal(embeddings[0], embeddings[1])


def test_a_device_stage_error_fails_that_video_only(samples, tmp_path, monkeypatch):
    import vidstore.extract.job as job

    real_run = job.DeviceStage._run

    def broken_for_the_second_video(self, item, plans, meta):
        if item["index"] == 1:
            raise RuntimeError("stage broke on this clip")
        return real_run(self, item, plans, meta)

    monkeypatch.setattr(job.DeviceStage, "_run", broken_for_the_second_video)
    report = run_extract(samples, tmp_path / "s.zarr", config(), progress=False)
    rows = FeatureStore.open(tmp_path / "s.zarr").rows().filter(pl.col("variant") == 0)
    n = pl.read_parquet(samples).height
    assert report.n_failed == 1 and report.n_done == n - 1
    assert rows["status"].to_list() == ["done"] + ["failed"] + ["done"] * (n - 2)
    assert rows["reason"][1] == "RuntimeError: stage broke on this clip"


def test_normalise_is_the_kinetics_formula_in_the_video_layout():
    clip = torch.rand(2, 5, 3, 8, 8)  # (V, T, C, S, S)
    mean, std = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
    expected = ((clip - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)).permute(0, 2, 1, 3, 4)
    got = normalise(clip, mean, std)
    assert got.shape == (2, 3, 5, 8, 8) and got.is_contiguous()
    assert torch.equal(got, expected)
    assert torch.equal(normalise(clip[0], mean, std), expected[0])  # one clip (T, C, S, S) too
