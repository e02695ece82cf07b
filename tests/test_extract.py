"""The extraction job: one decode per video for all its variants and scales, stored
variant parameters that reproduce the variant, and the same store whatever the workers."""

from __future__ import annotations

import json

import av
import numpy as np
import polars as pl
import pytest

from conftest import ROOT, TINY, indexed_demo
from configs import load_config
from extract.clips import make_scaled_clips, make_variant, variant_ops
from extract.job import META_COLUMNS, run_extract
from extract.video import decode_clip
from store import FeatureStore

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


@pytest.fixture(scope="module")
def stores(samples, tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    for workers in (0, 2):
        run_extract(samples, root / f"w{workers}.zarr", config(**{"extract.num_workers": workers}), progress=False)
    return {w: FeatureStore.open(root / f"w{w}.zarr") for w in (0, 2)}


def test_same_store_whatever_the_number_of_workers(stores):
    a, b = stores[0], stores[2]
    assert a.rows().drop("row").equals(b.rows().drop("row"))
    for scale in a.scales:
        for name in a.array_names(scale):
            assert np.array_equal(a.read(scale, name), b.read(scale, name), equal_nan=True), (scale, name)


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
