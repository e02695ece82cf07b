"""The Zarr store: what is written is what is read; rows are marked done only after writes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import zarr

from store import ArraySpec, FeatureStore, RowWriter, StoreError, rows_per_chunk

SPECS = {32: [ArraySpec("embedding", (512,)), ArraySpec("layer4", (512, 1, 2, 2))], 16: [ArraySpec("embedding", (512,))]}


def make_rows(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"video_id": [f"v{i:03d}" for i in range(n)], "group": [f"g{i // 3}" for i in range(n)], "label": [i % 2 for i in range(n)], "variant": [0] * n}
    )


def make_store(path, n=23, chunk_mb=0.02):
    return FeatureStore.create(path, make_rows(n), SPECS, {"note": "test"}, chunk_mb=chunk_mb)


def fake_values(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        (scale, spec.name): (rng.standard_normal((n, *spec.row_shape)) * 3).astype(np.float16)
        for scale, specs in SPECS.items()
        for spec in specs
    }


def write_rows(writer: RowWriter, truth: dict, rows: range) -> None:
    for row in rows:
        writer.add(row, 1, {k: v[row : row + 1] for k, v in truth.items()})


def test_round_trip_with_a_failed_row(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    # chunks of about 20 KiB: 20 embedding rows, 5 layer4 rows
    assert store.array(32, "embedding").chunks[0] == 20 and store.array(32, "layer4").chunks[0] == 5
    truth = fake_values(23)
    writer = RowWriter(store, list(truth))
    for row in range(23):
        if row == 7:
            writer.add(row, 1, None, "broken file")
        else:
            writer.add(row, 1, {k: v[row : row + 1] for k, v in truth.items()})
    writer.close()

    again = FeatureStore.open(tmp_path / "s.zarr")
    rows = again.rows()
    assert rows["status"].to_list() == ["done"] * 7 + ["failed"] + ["done"] * 15
    assert rows["reason"][7] == "broken file"
    assert rows["video_id"].to_list() == make_rows(23)["video_id"].to_list()
    ok = np.arange(23) != 7
    for (scale, name), values in truth.items():
        got = again.read(scale, name)
        assert got.dtype == np.float16 and got.shape == values.shape
        assert np.array_equal(got[ok], values[ok])
        assert np.isnan(got[7]).all()
    picked = again.read(32, "embedding", [9, 2, 9, 15])
    assert np.array_equal(picked, truth[(32, "embedding")][[9, 2, 9, 15]])


def test_rows_are_marked_done_only_after_all_their_chunks_are_written(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    truth = fake_values(23)
    writer = RowWriter(store, list(truth))
    write_rows(writer, truth, range(12))
    # layer4 chunks (5 rows) are written up to row 10, but the embedding chunk (20 rows) is not
    assert (store.rows()["status"] == "done").sum() == 0
    assert store.array(32, "layer4").nchunks_initialized == 2
    write_rows(writer, truth, range(12, 21))
    assert (store.rows()["status"] == "done").sum() == 20
    writer.close()
    assert (store.rows()["status"] == "done").sum() == 21


def test_resume_keeps_rows_already_written(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    truth = fake_values(23)
    first = RowWriter(store, list(truth))
    write_rows(first, truth, range(12))
    first.close()  # as a finished partial run: rows 0..11 done
    second = RowWriter(FeatureStore.open(tmp_path / "s.zarr", mode="r+"), list(truth), start_row=12)
    write_rows(second, truth, range(12, 23))
    second.close()
    again = FeatureStore.open(tmp_path / "s.zarr")
    assert (again.rows()["status"] == "done").all()
    for key, values in truth.items():
        assert np.array_equal(again.read(*key), values)


def test_rows_out_of_order_are_refused(tmp_path):
    writer = RowWriter(make_store(tmp_path / "s.zarr"), [(32, "embedding")])
    with pytest.raises(ValueError, match="in order"):
        writer.add(3, 1, None, "x")


def test_info_reports_sizes_and_provenance(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    truth = {k: np.zeros_like(v) for k, v in fake_values(23).items()}  # zeros compress well
    writer = RowWriter(store, list(truth))
    write_rows(writer, truth, range(23))
    writer.close()
    info = store.info()
    assert info["rows_by_status"] == {"pending": 0, "done": 23, "failed": 0}
    emb = next(a for a in info["arrays"] if a["path"] == "s32/embedding")
    assert emb["shape"] == [23, 512] and emb["dtype"] == "float16" and "zstd" in emb["compressor"]
    assert emb["uncompressed_bytes"] == 23 * 512 * 2
    assert emb["compression_ratio"] > 10
    assert info["provenance"]["note"] == "test" and info["provenance"]["schema_version"] == 1


def test_rows_per_chunk():
    assert rows_per_chunk(1024, 1.0, 10_000) == 1024
    assert rows_per_chunk(1024, 1.0, 100) == 100
    assert rows_per_chunk(4 * 2**20, 1.0, 100) == 1


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        FeatureStore.open(tmp_path / "nothing.zarr")
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="w")
    group.attrs["schema_version"] = 99
    with pytest.raises(StoreError, match="schema version 99"):
        FeatureStore.open(tmp_path / "old.zarr")
    with pytest.raises(StoreError, match="no rows"):
        FeatureStore.create(tmp_path / "empty.zarr", make_rows(0), SPECS, {})
    store = make_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="no scale 64"):
        store.array(64, "embedding")
    with pytest.raises(StoreError, match="no array 'layer3'"):
        store.array(32, "layer3")
