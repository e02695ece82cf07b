"""Memory stays bounded by T and S, not by the video's length or resolution."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT
from vidstore.extract.demo_data import write_long_video

CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)
from benchmarks.rss import peak_rss_mib as peak_mib
from vidstore.extract.video import decode_clip
if {decode!r}:
    clip = decode_clip({path!r}, 8, 64)
    assert clip.n_unique == 8
print(json.dumps(peak_mib()))
"""


def peak_rss_mib(path, decode: bool) -> float:
    code = CHILD.format(root=str(ROOT), path=str(path), decode=decode)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_decoding_a_long_hd_video_holds_only_the_clip(tmp_path):
    path = tmp_path / "long.mp4"
    n = write_long_video(path, seconds=16, fps=25, width=1280, height=720)
    whole_video_mib = n * 1280 * 720 * 3 / 2**20  # about 1.1 GiB if it were held
    extra = peak_rss_mib(path, decode=True) - peak_rss_mib(path, decode=False)
    assert whole_video_mib > 1000
    assert extra < 100, f"decoding took {extra:.0f} MiB over the baseline"


READER_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
import cli  # noqa: E402,F401  (makes this checkout the vidstore package)
from benchmarks.rss import peak_rss_mib as peak_mib
import polars as pl
from vidstore.store import FeatureStore, StoreReader
store = FeatureStore.open({path!r})
rows = store.rows()
total = 0
if {read!r}:
    reader = StoreReader(store, 32, ["layer4"], rows, batch_size=64, shuffle=True, cache_mb={cache_mb!r})
    for batch in reader:
        total += int(batch.arrays["layer4"].shape[0])
    assert not reader.cached and total == rows.height
print(json.dumps(peak_mib()))
"""


def test_reader_memory_is_bounded_by_a_shard_not_the_store(tmp_path):
    import numpy as np
    import polars as pl

    from vidstore.store import ArraySpec, FeatureStore, ShardWriter

    n_videos, shard_videos, row_shape = 1200, 16, (512, 1, 7, 7)  # 49 KiB a row
    rows = pl.DataFrame({"video_id": [f"v{i}" for i in range(n_videos)], "group": [f"g{i}" for i in range(n_videos)],
                         "label": np.arange(n_videos) % 2, "variant": np.zeros(n_videos, dtype=int)})
    store = FeatureStore.create(str(tmp_path / "big.zarr"), rows, {32: [ArraySpec("layer4", row_shape)]},
                                shard_videos=shard_videos, compression={"codec": "none"})
    writer = ShardWriter(store, [(32, "layer4")])
    rng = np.random.default_rng(0)
    for shard in range(store.layout.n_shards):
        writer.begin(shard)
        first, last = store.layout.shard_video_range(shard)
        block = rng.standard_normal((last - first, *row_shape)).astype(np.float16)
        for v in range(first, last):
            writer.add(v, 1, {(32, "layer4"): block[v - first : v - first + 1]})
        writer.finish()
    store_mib = float(n_videos * np.prod(row_shape) * 2 / 2**20)  # about 57 MiB of maps
    cache_mib = store_mib / 4  # the store is 4x larger than the cache
    code = READER_CHILD.format(root=str(ROOT), path=str(tmp_path / "big.zarr"), cache_mb=cache_mib, read=True)
    baseline = READER_CHILD.format(root=str(ROOT), path=str(tmp_path / "big.zarr"), cache_mb=cache_mib, read=False)
    run = lambda c: json.loads(subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])  # noqa: E731
    extra = run(code) - run(baseline)
    assert store_mib > 50
    assert extra < 20, f"reading took {extra:.0f} MiB over the baseline for a {store_mib:.0f} MiB store"
