"""What a head reads: the store's done rows as named flat vectors or as one stored map.

``load_head_table`` reads the store once (a sweep reuses the table for every point); a
:class:`HeadData` is a view of some of its rows, with their labels, videos, the fit's seed
and, for early stopping, the rows to watch. ``predict`` builds the same views over
features it computed from new videos (:class:`VectorSource`, :class:`ArrayMaps`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from vidstore.heads.features_table import HeadDataError, load_feature_table
from vidstore.store import FeatureStore, StoreReader


@dataclass
class VectorSource:
    """Flat features: one row per clip, named columns."""

    X: np.ndarray
    names: list[str]
    memo: dict = field(default_factory=dict)  # what a head may reuse across fits (LightGBM's bins)

    def describe(self) -> dict:
        return {"features": len(self.names)}

    def subset(self, index: np.ndarray) -> "VectorSource":
        return VectorSource(self.X[index], self.names)


class MapSource:
    """The map of every done row at one scale and tap: in RAM when it fits, else read per pass."""

    def __init__(self, store: FeatureStore, scale: int, tap: str, rows: pl.DataFrame, cache_mb: float):
        self.store, self.scale, self.tap, self.rows = store, scale, tap, rows
        array = store.array(scale, tap)
        if array.ndim != 5:
            raise HeadDataError(f"{tap} at scale {scale} is not a map (shape {array.shape}); this head needs a map tap")
        self.shape = tuple(array.shape[1:])
        self.nbytes = rows.height * int(np.prod(self.shape)) * array.dtype.itemsize
        self.position = {row: i for i, row in enumerate(rows["row"].to_list())}
        self.cache: np.ndarray | None = None
        if self.nbytes <= cache_mb * 2**20:
            # held channels-last, (rows, t, h, w, C): a batch is then converted to float32 in
            # one pass straight into the layout CPU convolutions run fastest in (benchmarks/heads_speed.py)
            self.cache = np.empty((rows.height, *self.shape[1:], self.shape[0]), dtype=array.dtype)
            for batch in StoreReader(store, scale, [tap], rows, batch_size=512):
                self.cache[self._positions(batch.rows)] = batch.arrays[tap].transpose(0, 2, 3, 4, 1)

    def _positions(self, rows: pl.DataFrame) -> np.ndarray:
        return np.array([self.position[r] for r in rows["row"].to_list()], dtype=np.int64)

    def batches(self, positions: np.ndarray, batch_size: int, rng: np.random.Generator | None = None):
        """(positions, float32 maps) in batches; shuffled when ``rng`` is given."""
        if self.cache is not None:
            yield from _array_batches(self.cache, positions, batch_size, rng, channels_last=True)
            return
        reader = StoreReader(
            self.store, self.scale, [self.tap], self.rows[positions], batch_size=batch_size,
            shuffle=rng is not None, seed=int(rng.integers(2**31)) if rng is not None else 0,
        )
        for batch in reader:
            yield self._positions(batch.rows), torch.from_numpy(batch.arrays[self.tap]).float()

    def describe(self) -> dict:
        return {"map_shape": list(self.shape), "maps_in_ram": self.cache is not None, "maps_mib": round(self.nbytes / 2**20, 1)}


class ArrayMaps:
    """Maps already in memory (new videos' taps in ``predict``)."""

    def __init__(self, maps: np.ndarray):
        self.maps = maps
        self.shape = tuple(maps.shape[1:])

    def batches(self, positions: np.ndarray, batch_size: int, rng: np.random.Generator | None = None):
        yield from _array_batches(self.maps, positions, batch_size, rng)


def _array_batches(maps: np.ndarray, positions: np.ndarray, batch_size: int, rng: np.random.Generator | None,
                   channels_last: bool = False):
    """(positions, float32 maps (B, C, t, h, w)); ``channels_last``: ``maps`` is held (N, t, h, w, C).
    torch converts float16 several times faster than numpy's ``astype``."""
    order = positions[rng.permutation(len(positions))] if rng is not None else positions
    for start in range(0, len(order), batch_size):
        take = order[start : start + batch_size]
        batch = torch.from_numpy(maps[take])
        yield take, (batch.permute(0, 4, 1, 2, 3) if channels_last else batch).float()


@dataclass
class HeadData:
    """Some rows of a source. ``labels`` and ``videos`` are indexed like the source (not
    like ``rows``); ``watch`` holds the rows an early-stopping head watches; ``epochs``
    (when set) replaces the head's own count, as a refit after early stopping asks."""

    source: VectorSource | MapSource | ArrayMaps
    rows: np.ndarray
    labels: np.ndarray | None = None
    videos: np.ndarray | None = None
    seed: int = 0
    epochs: int | None = None
    watch: "HeadData | None" = None

    @classmethod
    def of(cls, source, **kw) -> "HeadData":
        """Every row of ``source``."""
        n = source.X.shape[0] if isinstance(source, VectorSource) else len(source.maps)
        return cls(source, np.arange(n), **kw)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def X(self) -> np.ndarray:
        return self.source.X[self.rows]

    @property
    def names(self) -> list[str]:
        return self.source.names

    @property
    def y(self) -> np.ndarray:
        return self.labels[self.rows]


@dataclass
class HeadTable:
    """The store's done rows and what one head reads of them, loaded once."""

    store: FeatureStore
    scale: int
    rows: pl.DataFrame
    source: VectorSource | MapSource

    def subset(self, index: np.ndarray) -> "HeadTable":
        if not isinstance(self.source, VectorSource):
            raise HeadDataError("nested selection needs a head whose inputs are vectors")
        return HeadTable(self.store, self.scale, self.rows[index], self.source.subset(index))


def load_head_table(inputs: str, store: FeatureStore, cfg) -> HeadTable:
    """Read ``train.features`` (inputs ``vectors``) or ``train.tap`` (inputs ``map``)."""
    train = cfg.train
    if inputs == "vectors":
        table, scale = load_feature_table(store, train.scale, train.features)
        return HeadTable(store, scale, table.rows, VectorSource(table.X, table.names))
    scale = store.scales[0] if train.scale is None else train.scale
    if scale not in store.scales:
        raise HeadDataError(f"store {store.path} has no scale {scale}; it has {store.scales}")
    if train.tap not in store.array_names(scale):
        raise HeadDataError(f"store {store.path} has no map {train.tap!r} at scale {scale}; it has {store.array_names(scale)}")
    rows = store.rows().filter(pl.col("status") == "done")
    if rows.height == 0:
        raise HeadDataError(f"store {store.path} has no done rows; run extract first")
    return HeadTable(store, scale, rows, MapSource(store, scale, train.tap, rows, train.map_cache_mb))
