"""The Zarr store: layout arithmetic, shard writer, markers, growth, validation, reader."""

from __future__ import annotations

import json
import shutil
import threading
import time
import warnings

import numpy as np
import polars as pl
import pytest
import zarr

from conftest import run_cli
from vidstore.store import (
    SCHEMA_VERSION,
    ArraySpec,
    FeatureStore,
    Leases,
    ShardLayout,
    ShardWriter,
    StoreError,
    StoreProvenance,
    StoreReader,
    owned_shards,
    validate_store,
)

SPECS = {
    32: [ArraySpec("embedding", (512,)), ArraySpec("layer4", (512, 1, 2, 2)), ArraySpec("handcrafted", (15,), "float32", allow_nan=True)],
    16: [ArraySpec("embedding", (512,))],
}
KEYS = [(scale, spec.name) for scale, specs in SPECS.items() for spec in specs]
RPV = 3  # rows per video: the original and two variants


def make_rows(n_videos: int, first: int = 0) -> pl.DataFrame:
    ids = [f"v{i:03d}" for i in range(first, first + n_videos)]
    return pl.DataFrame(
        {
            "video_id": np.repeat(ids, RPV),
            "group": np.repeat([f"g{i // 2}" for i in range(first, first + n_videos)], RPV),
            "label": np.repeat(np.arange(first, first + n_videos) % 2, RPV),
            "variant": np.tile(np.arange(RPV), n_videos),
        }
    )


def make_store(path, n_videos=10, shard_videos=4, chunk_mb=0.02):
    return FeatureStore.create(str(path), make_rows(n_videos), SPECS, rows_per_video=RPV, shard_videos=shard_videos, chunk_mb=chunk_mb)


def values_for(n_rows: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {(scale, spec.name): (rng.standard_normal((n_rows, *spec.row_shape)) * 3).astype(spec.dtype) for scale, specs in SPECS.items() for spec in specs}


def fill(store: FeatureStore, truth: dict, shards=None, failed=(), rank=0, writer: ShardWriter | None = None) -> None:
    writer = writer or ShardWriter(store, KEYS, rank=rank)
    layout = store.layout
    for shard in shards if shards is not None else range(layout.n_shards):
        kept = writer.begin(shard)
        first, last = layout.shard_video_range(shard)
        for v in range(first + kept, last):
            rows = slice(v * RPV, (v + 1) * RPV)
            values = None if v in failed else {k: a[rows] for k, a in truth.items()}
            writer.add(v * RPV, RPV, values, "broken" if v in failed else "", {"frames_decoded": 100 + v, "frames_unique": 4})
        writer.finish()
    writer.close()


def test_layout_arithmetic():
    layout = ShardLayout(rows_per_video=11, shard_videos=32, n_videos=100)
    assert (layout.rows_per_shard, layout.n_rows, layout.n_shards) == (352, 1100, 4)
    assert layout.shard_rows(3) == (1056, 1100) and layout.shard_video_range(3) == (96, 100)
    # chunks hold whole videos and divide the shard, about 1 MiB: 32 KiB rows (352 KiB a
    # video) -> 2 videos; 1 KiB rows -> the whole shard (352 KiB, smaller than 1 MiB)
    assert layout.chunk_rows(32 * 1024, 1.0) == 22
    assert layout.chunk_rows(1024, 1.0) == 352
    assert layout.chunk_rows(400_000, 1.0) == 11  # one video when a video alone is larger
    assert owned_shards(10, 1, 3) == [1, 4, 7]
    assert sorted(owned_shards(10, 0, 3) + owned_shards(10, 1, 3) + owned_shards(10, 2, 3)) == list(range(10))


def test_round_trip_with_a_failed_video(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    layer4 = store.array(32, "layer4")
    assert layer4.shards[0] == 12 and 12 % layer4.chunks[0] == 0
    truth = values_for(30)
    fill(store, truth, failed={5})
    again = FeatureStore.open(str(tmp_path / "s.zarr"))
    rows = again.rows()
    assert rows["status"].to_list() == ["done"] * 15 + ["failed"] * 3 + ["done"] * 12
    assert rows["reason"][15] == "broken" and rows["frames_decoded"][3] == 101
    ok = np.ones(30, bool)
    ok[15:18] = False
    for key, values in truth.items():
        got = again.read(*key)
        assert got.dtype == values.dtype and got.shape == values.shape
        assert np.array_equal(got[ok], values[ok])
        assert np.isnan(got[15:18]).all()
    assert np.array_equal(again.read(32, "embedding", [9, 2, 9, 25]), truth[(32, "embedding")][[9, 2, 9, 25]])
    assert validate_store(again).ok


def test_background_writer_gives_the_same_store(tmp_path):
    truth = values_for(30)
    stores = {}
    for threads in (0, 2):
        stores[threads] = make_store(tmp_path / f"t{threads}.zarr")
        fill(stores[threads], truth, failed={5}, writer=ShardWriter(stores[threads], KEYS, threads=threads))
    assert stores[0].rows().equals(stores[2].rows())
    for key in truth:
        assert np.array_equal(stores[0].read(*key), stores[2].read(*key), equal_nan=True)
    assert validate_store(stores[2]).ok


class SlowWrites:
    """Holds every shard write until released, and records the order of data and markers."""

    def __init__(self, store: FeatureStore):
        self.release, self.events = threading.Event(), []
        self.write_shard, self.mark_done = store.write_shard, store.mark_done
        store.write_shard, store.mark_done = self.slow_write, self.record_mark

    def slow_write(self, shard, values):
        self.release.wait(30)
        self.write_shard(shard, values)
        self.events.append(("data", shard))

    def record_mark(self, shard, *args, **kwargs):
        self.mark_done(shard, *args, **kwargs)
        self.events.append(("marker", shard))


def _fill_shard(writer: ShardWriter, truth: dict, shard: int) -> None:
    first, last = writer.store.layout.shard_video_range(shard)
    writer.begin(shard)
    for v in range(first, last):
        writer.add(v * RPV, RPV, {k: a[v * RPV : (v + 1) * RPV] for k, a in truth.items()})


def test_background_writer_returns_at_once_bounds_its_queue_and_marks_after_the_data(tmp_path):
    store = make_store(tmp_path / "s.zarr")  # 3 shards of 4, 4 and 2 videos
    truth = values_for(30)
    slow = SlowWrites(store)
    writer = ShardWriter(store, KEYS, threads=1, queue=1)
    _fill_shard(writer, truth, 0)
    started = time.perf_counter()
    writer.finish()  # the write is held: finish must not wait for it
    _fill_shard(writer, truth, 1)
    writer.finish()  # one shard in flight, one queued: still at once
    assert time.perf_counter() - started < 1.0 and slow.events == []
    _fill_shard(writer, truth, 2)
    third = threading.Thread(target=writer.finish)
    third.start()
    third.join(0.5)
    assert third.is_alive()  # a third finished shard waits: memory stays bounded
    slow.release.set()
    third.join(30)
    writer.close()
    assert slow.events == [("data", 0), ("marker", 0), ("data", 1), ("marker", 1), ("data", 2), ("marker", 2)]
    assert (store.rows()["status"] == "done").all()
    for key, values in truth.items():
        assert np.array_equal(store.read(*key), values)


def test_a_failed_background_write_is_raised_and_finished_shards_are_kept(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    truth = values_for(30)
    real_write = store.write_shard

    def full_disk(shard, values):
        if shard == 1:
            raise OSError(28, "No space left on device")
        real_write(shard, values)

    store.write_shard = full_disk
    writer = ShardWriter(store, KEYS, threads=2)
    for shard in range(3):
        _fill_shard(writer, truth, shard)
        try:
            writer.finish()
        except StoreError:
            pass  # raised by a later finish: the job would stop here
    with pytest.raises(StoreError, match=r"no space left on the device of .*s.zarr while writing shard 1 \(up to .* MiB"):
        writer.close()
    markers = FeatureStore.open(str(tmp_path / "s.zarr")).markers()
    assert 1 not in markers and 0 in markers  # shard 0 reached the disk, shard 1 stays pending
    assert np.array_equal(store.read(32, "layer4", range(12)), truth[(32, "layer4")][:12])


def test_a_shard_counts_only_after_its_marker(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    truth = values_for(30)
    writer = ShardWriter(store, KEYS)
    writer.begin(0)
    for v in range(4):
        writer.add(v * RPV, RPV, {k: a[v * RPV : (v + 1) * RPV] for k, a in truth.items()})
    store.write_shard(0, writer.buffers)  # data written, then "killed" before the marker
    assert (store.rows()["status"] == "pending").all()
    # a truncated marker file is no marker either
    store.fs.makedirs(f"{store.root}/done/000000", exist_ok=True)
    store.fs.pipe_file(f"{store.root}/done/000000/zarr.json", b'{"zarr_format": 3, "node_type": "group", "attributes": {"shard": 0, "sta')
    assert (store.rows()["status"] == "pending").all()
    # the restart clears what was left and writes the shard again from nothing
    layer4 = store.array(32, "layer4")
    shard_file = f"{store.root}/{layer4.path}/c/0/0/0/0/0"
    store.fs.pipe_file(shard_file, b"garbage")  # a shard file cut short by the kill
    fill(store, truth, shards=[0])
    assert (store.rows()["status"][:12] == "done").all()
    assert np.array_equal(store.read(32, "layer4", range(12)), truth[(32, "layer4")][:12])


def test_growth_keeps_the_done_rows_of_the_short_last_shard(tmp_path):
    store = make_store(tmp_path / "s.zarr", n_videos=6)
    truth = values_for(30)
    fill(store, {k: v[:18] for k, v in truth.items()})
    store.append_rows(make_rows(4, first=6))
    assert store.n_rows == 30 and store.layout.n_shards == 3
    assert store.rows()["status"].to_list() == ["done"] * 18 + ["pending"] * 12
    writer = ShardWriter(store, KEYS)
    assert writer.begin(1) == 2  # videos 4 and 5 were done in the short shard 1: kept
    writer.shard = None
    fill(store, truth, shards=[1, 2])
    assert (store.rows()["status"] == "done").all()
    for key, values in truth.items():
        assert np.array_equal(store.read(*key), values)
    assert store.rows()["video_id"].to_list()[-1] == "v009"


def test_validate_catches_a_damaged_chunk_and_a_non_finite_row(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    truth = values_for(30)
    fill(store, truth)
    assert validate_store(store).ok
    layer4 = store.array(32, "layer4")
    path = f"{store.root}/{layer4.path}/c/1/0/0/0/0"
    data = bytearray(store.fs.cat_file(path))
    data[40:60] = bytes(20)
    store.fs.pipe_file(path, bytes(data))
    report = validate_store(store)
    assert not report.ok and any("s32/layer4 shard 1" in p and "cannot be read" in p for p in report.problems)
    bad = make_store(tmp_path / "inf.zarr")
    infinite = values_for(30)
    infinite[(16, "embedding")][4, 7] = np.inf
    fill(bad, infinite)
    report = validate_store(bad)
    assert [p for p in report.problems if "s16/embedding: 1 done rows of shard 0 are not finite (first row 4)" in p]


def test_reader_batches_cover_the_rows_once_and_shuffle_by_shard(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    truth = values_for(30)
    fill(store, truth, failed={5})
    done = store.rows().filter(pl.col("status") == "done")
    plain = StoreReader(store, 32, ["embedding", "layer4"], done, batch_size=7)
    rows = np.concatenate([b.rows["row"].to_numpy() for b in plain])
    assert rows.tolist() == done["row"].to_list()
    got = np.concatenate([b.arrays["layer4"] for b in plain])
    assert np.array_equal(got, truth[(32, "layer4")][done["row"].to_numpy()])
    shuffled = StoreReader(store, 32, ["embedding"], done, batch_size=7, shuffle=True, seed=3)
    first = [b.rows["row"].to_list() for b in shuffled]
    second = [b.rows["row"].to_list() for b in shuffled]
    flat = sum(first, [])
    assert sorted(flat) == done["row"].to_list() and flat != done["row"].to_list()
    assert first != second  # a new order every epoch
    for batch in StoreReader(store, 32, ["embedding"], done, batch_size=7, shuffle=True, seed=3):
        assert np.array_equal(batch.arrays["embedding"], truth[(32, "embedding")][batch.rows["row"].to_numpy()])


def test_reader_cache_serves_later_epochs_from_ram(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    fill(store, values_for(30))
    rows = store.rows()
    reader = StoreReader(store, 32, ["embedding"], rows, batch_size=8, cache_mb=1)
    list(reader)
    assert reader.cached
    store.fs.rm(f"{store.root}/{store.array(32, 'embedding').path}/c", recursive=True)  # gone from disk
    assert sum(len(b.rows) for b in reader) == 30
    too_small = StoreReader(store, 32, ["layer4"], rows, batch_size=8, cache_mb=0.001)
    list(too_small)
    assert not too_small.cached


def test_store_on_an_fsspec_url():
    url = "memory://stores/test.zarr"
    store = FeatureStore.create(url, make_rows(5), SPECS, rows_per_video=RPV, shard_videos=2)
    truth = values_for(15)
    fill(store, truth)
    again = FeatureStore.open(url)
    assert (again.rows()["status"] == "done").all()
    assert np.array_equal(again.read(32, "layer4"), truth[(32, "layer4")])
    assert validate_store(again).ok


def test_the_provenance_written_is_the_provenance_read(tmp_path):
    record = StoreProvenance(
        SCHEMA_VERSION,
        backbone={"name": "r3d_18", "taps": ["pool", "layer4"], "weights": {"source": "random", "sha256": "ab" * 32}},
        preprocessing={"clip": {"frames": 4}},
        preprocessing_hash="f00d",
        extract={"dtype": "float16"},
        samples={"path": "samples.parquet", "n_videos": 10},
        created_at="2026-01-01T00:00:00+00:00",
        code_version="0.1.0+abc",
        packages={"torch": "2.0"},
    )
    store = FeatureStore.create(str(tmp_path / "s.zarr"), make_rows(10), SPECS, record, rows_per_video=RPV)
    assert FeatureStore.open(store.path).provenance == record
    assert store.attrs["schema_version"] == SCHEMA_VERSION and "version" not in store.attrs  # the store's one version key
    record.write(tmp_path / "provenance.json")  # a run's copy
    assert StoreProvenance.read(tmp_path / "provenance.json", "run") == record
    with pytest.raises(StoreError, match=f"cannot be written; this code writes {SCHEMA_VERSION}"):
        FeatureStore.create(str(tmp_path / "t.zarr"), make_rows(10), SPECS, StoreProvenance(SCHEMA_VERSION + 1), rows_per_video=RPV)


def test_a_store_from_a_newer_version_is_refused_in_one_line(tmp_path):
    path = make_store(tmp_path / "s.zarr").path
    zarr.open_group(path, mode="r+").attrs["schema_version"] = SCHEMA_VERSION + 1
    for args in (["store", "info", path], ["train", "gbm", "--store", path, "--out", str(tmp_path / "runs")]):
        proc = run_cli(*args, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == (f"error: store {path} has schema version {SCHEMA_VERSION + 1}; "
                                       f"this vidstore reads up to {SCHEMA_VERSION}: upgrade vidstore")


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        FeatureStore.open(str(tmp_path / "nothing.zarr"))
    group = zarr.open_group(str(tmp_path / "old.zarr"), mode="w")
    group.attrs["schema_version"] = 1
    with pytest.raises(StoreError, match="schema version 1"):
        FeatureStore.open(str(tmp_path / "old.zarr"))
    with pytest.raises(StoreError, match="no rows"):
        FeatureStore.create(str(tmp_path / "empty.zarr"), make_rows(0), SPECS)
    store = make_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="already exists"):
        make_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="no scale 64"):
        store.array(64, "embedding")
    with pytest.raises(StoreError, match="no array 'layer3'"):
        store.array(32, "layer3")
    writer = ShardWriter(store, KEYS)
    writer.begin(0)
    with pytest.raises(ValueError, match="in order"):
        writer.add(RPV, RPV, None, "x")


# -- a clean Zarr hierarchy, and store locations as URLs -------------------------------------


def test_a_finished_store_opens_without_a_warning(tmp_path):
    """Done markers and leases are Zarr groups: zarr (and so xarray) lists the whole store
    without meeting a foreign file."""
    store = make_store(tmp_path / "s.zarr")
    fill(store, values_for(30))
    leases = Leases(store.fs, store.root, timeout=60)
    assert leases.acquire(1)
    leases.close()  # taken and given back, as every extraction does
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        members = dict(zarr.open_group(store.path, mode="r").members(max_depth=None))
        marker = zarr.open_group(store.path, mode="r")["done/000001"].attrs.asdict()
    assert {"done/000000", "done/000001", "done/000002", "leases", "s32/layer4"} <= set(members)
    assert marker == store.markers()[1] and marker["frames_decoded"] == [100 + v for v in range(4, 8) for _ in range(RPV)]


def test_a_schema_3_store_is_migrated_once_and_keeps_every_marker(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    fill(store, values_for(30), failed=(5,))
    before = store.rows()
    done = tmp_path / "s.zarr" / "done"
    for folder in sorted(p for p in done.iterdir() if p.is_dir()):  # back to the layout of schema 3
        attributes = json.loads((folder / "zarr.json").read_text())["attributes"]
        (done / f"{folder.name}.json").write_text(json.dumps(attributes))
        shutil.rmtree(folder)
    (done / "zarr.json").unlink()
    (done / "000002.lease").write_text("{}")
    (done / "000009.json").write_text('{"shard": 9, "sta')  # a marker cut short by a kill: no marker, as before
    zarr.open_group(store.path, mode="r+").attrs["schema_version"] = 3
    with pytest.warns(UserWarning, match=r"3 done markers moved into the Zarr hierarchy \(schema 3 -> 4\)"):
        migrated = FeatureStore.open(store.path)
    assert migrated.rows().equals(before) and migrated.attrs["schema_version"] == SCHEMA_VERSION
    assert sorted(p.name for p in done.iterdir()) == ["000000", "000001", "000002", "zarr.json"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only, and clean
        assert FeatureStore.open(store.path).rows().equals(before)
        dict(zarr.open_group(store.path, mode="r").members(max_depth=None))
    assert validate_store(migrated).ok


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_train_and_validate_take_a_store_url(tmp_path, scheme):
    """The same store at a path and at a URL (file://, or copied into memory://) gives the
    same run: the location is a string end to end, never a Path."""
    import fsspec
    from typer.testing import CliRunner

    from vidstore.cli import app

    local = make_store(tmp_path / "s.zarr", n_videos=24)
    truth = values_for(72)
    truth[(32, "embedding")][:, 0] += np.repeat(np.arange(24) % 2, RPV) * 2  # something to learn
    fill(local, truth)
    if scheme == "file":
        url = f"file://{tmp_path / 's.zarr'}"
    else:
        url = f"memory://{tmp_path.name}/s.zarr"
        fsspec.filesystem("memory").put(str(tmp_path / "s.zarr"), f"/{tmp_path.name}/s.zarr", recursive=True)
    sets = ["--set", "train.scale=32", "--set", "train.features=[embedding]", "--set", "train.bootstrap=0", "--set", "train.folds=3"]
    runner = CliRunner()
    checked = runner.invoke(app, ["store", "validate", url])
    assert checked.exit_code == 0 and checked.output.strip().endswith("ok"), checked.output
    oof = {}
    for where in (local.path, url):
        out = tmp_path / ("runs-url" if where == url else "runs-path")
        result = runner.invoke(app, ["train", "logreg", "--store", where, "--out", str(out), *sets])
        assert result.exit_code == 0, (result.output, result.exception)
        (run,) = out.iterdir()
        oof[where] = pl.read_parquet(run / "oof.parquet").sort("video_id")
    assert oof[url].height == 24 and oof[url]["prob"].to_list() == oof[local.path]["prob"].to_list()
