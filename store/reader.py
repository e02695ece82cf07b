"""Reading rows for heads in bounded memory: shard by shard, batch by batch.

``StoreReader`` yields batches of (arrays by name, row info) for a subset of rows. It
reads one shard's rows of each array at a time (the unit a writer wrote), so memory holds
one shard's worth of the requested arrays plus one batch, whatever the store's size. For
training it shuffles the order of shards and the rows inside each shard (seeded). With
``cache_mb`` large enough for the subset, the first pass keeps the rows in RAM and later
passes read nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import polars as pl

from vidstore.store.feature_store import FeatureStore


@dataclass
class Batch:
    arrays: dict[str, np.ndarray]  # name -> (n, ...) in the stored dtype
    rows: pl.DataFrame  # the row table's rows of this batch, in the same order


class StoreReader:
    def __init__(
        self,
        store: FeatureStore,
        scale: int,
        names: list[str],
        rows: pl.DataFrame,
        *,
        batch_size: int = 256,
        shuffle: bool = False,
        seed: int = 0,
        cache_mb: float = 0.0,
    ):
        """``rows``: a subset of ``store.rows()`` (it must keep the ``row`` column)."""
        self.store, self.scale, self.names = store, scale, list(names)
        self.rows = rows
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        row_bytes = sum(int(np.prod(store.array(scale, n).shape[1:])) * store.array(scale, n).dtype.itemsize for n in names)
        self.nbytes = row_bytes * rows.height
        self.cache_mb = cache_mb
        self._cache: dict[str, np.ndarray] | None = None
        index = rows["row"].to_numpy()
        shard = index // store.layout.rows_per_shard
        self._by_shard = {int(s): np.flatnonzero(shard == s) for s in np.unique(shard)}

    @property
    def cached(self) -> bool:
        return self._cache is not None

    def __len__(self) -> int:
        return -(-self.rows.height // self.batch_size)

    def _shard_blocks(self, order: list[int], rng: np.random.Generator | None) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(positions in ``self.rows``, arrays for those rows) for each shard in ``order``."""
        index = self.rows["row"].to_numpy()
        per_shard = self.store.layout.rows_per_shard
        for shard in order:
            positions = self._by_shard[shard]
            if rng is not None:
                positions = positions[rng.permutation(len(positions))]
            if self._cache is not None:
                yield positions, {n: self._cache[n][positions] for n in self.names}
                continue
            start = shard * per_shard
            local = index[positions] - start
            stop = start + int(local.max()) + 1
            first = start + int(local.min())
            # one contiguous read per array for this shard's requested span
            yield positions, {n: self.store.read_block(self.scale, n, first, stop)[local - (first - start)] for n in self.names}

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, self.epoch]) if self.shuffle else None
        self.epoch += 1
        order = sorted(self._by_shard)
        if rng is not None:
            order = [order[i] for i in rng.permutation(len(order))]
        fill_cache = self._cache is None and self.cache_mb > 0 and self.nbytes <= self.cache_mb * 2**20
        if fill_cache:
            cache = {n: None for n in self.names}
        pending_pos: list[np.ndarray] = []
        pending: dict[str, list[np.ndarray]] = {n: [] for n in self.names}
        held = 0
        for positions, arrays in self._shard_blocks(order, rng):
            if fill_cache:
                for n, values in arrays.items():
                    if cache[n] is None:
                        cache[n] = np.empty((self.rows.height, *values.shape[1:]), dtype=values.dtype)
                    cache[n][positions] = values
            pending_pos.append(positions)
            for n in self.names:
                pending[n].append(arrays[n])
            held += len(positions)
            while held >= self.batch_size:
                yield self._take(pending_pos, pending, self.batch_size)
                held -= self.batch_size
        if held:
            yield self._take(pending_pos, pending, held)
        if fill_cache:
            self._cache = cache

    def _take(self, pending_pos: list[np.ndarray], pending: dict[str, list[np.ndarray]], n: int) -> Batch:
        """The first ``n`` held rows as a batch; the rest stay held."""
        positions = np.concatenate(pending_pos)
        arrays = {name: np.concatenate(parts) for name, parts in pending.items()}
        pending_pos[:] = [positions[n:]] if len(positions) > n else []
        for name in pending:
            pending[name][:] = [arrays[name][n:]] if len(positions) > n else []
        return Batch(arrays={name: a[:n] for name, a in arrays.items()}, rows=self.rows[positions[:n]])
