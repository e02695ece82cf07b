"""Writing one shard at a time: buffer its videos, write every array whole, then the marker.

A writer owns whole shards. It fills a shard's buffer video by video (in row order),
writes each array's shard in one piece when the shard's last video arrives, and writes
the shard's done marker last. A shard is never written in part and never marked before
its data is there, so a writer killed at any moment leaves shards that are either done
or recomputed from nothing on restart.
"""

from __future__ import annotations

import numpy as np

from store.feature_store import RESULT_COLUMNS, STATUS_CODES, FeatureStore


class ShardWriter:
    """Buffers the rows of one shard at a time; see the module docstring."""

    def __init__(self, store: FeatureStore, arrays: list[tuple[int, str]], rank: int = 0):
        self.store = store
        self.arrays = arrays
        self.rank = rank
        self.shard: int | None = None

    def begin(self, shard: int) -> int:
        """Start ``shard``; returns how many of its videos are already done (a shard that
        grew: its earlier videos are kept, not recomputed)."""
        if self.shard is not None:
            raise RuntimeError(f"shard {self.shard} is not finished")
        layout = self.store.layout
        self.shard = shard
        self.start, self.stop = layout.shard_rows(shard)
        n = self.stop - self.start
        self.buffers = {}
        for scale, name in self.arrays:
            array = self.store.array(scale, name)
            self.buffers[(scale, name)] = np.full((n, *array.shape[1:]), np.nan, dtype=array.dtype)
        self.status = np.zeros(n, dtype=np.int8)
        self.reasons = [""] * n
        self.results = {name: np.zeros(n, dtype=dtype) for name, dtype in RESULT_COLUMNS.items()}
        self.filled = 0
        kept = self._keep_earlier_rows()
        self.store.clear_shard(shard)
        return kept // layout.rows_per_video

    def _keep_earlier_rows(self) -> int:
        """Rows of this shard that an earlier marker holds (the shard was the short last one)."""
        marker = self.store.markers().get(self.shard)
        if marker is None or int(marker["start"]) != self.start or int(marker["stop"]) >= self.stop:
            return 0
        kept = int(marker["stop"]) - self.start
        for (scale, name), buffer in self.buffers.items():
            buffer[:kept] = self.store.read_block(scale, name, self.start, self.start + kept)
        self.status[:kept] = marker["status"]
        self.reasons[:kept] = marker["reason"]
        for name in RESULT_COLUMNS:
            self.results[name][:kept] = marker[name]
        self.filled = kept
        return kept

    def add(
        self,
        row: int,
        count: int,
        values: dict[tuple[int, str], np.ndarray] | None,
        reason: str = "",
        results: dict[str, int] | None = None,
    ) -> None:
        """Rows [row, row + count) of one video, in order; ``values`` None records a
        failure with ``reason``. ``results`` fills RESULT_COLUMNS for all the rows."""
        if self.shard is None:
            raise RuntimeError("begin(shard) first")
        offset = row - self.start
        if offset != self.filled or row + count > self.stop:
            raise ValueError(f"rows must arrive in order within shard {self.shard}: expected row {self.start + self.filled}, got {row}")
        if values is not None:
            for key, buffer in self.buffers.items():
                buffer[offset : offset + count] = values[key]
        self.status[offset : offset + count] = STATUS_CODES["done" if values is not None else "failed"]
        self.reasons[offset : offset + count] = [reason] * count
        for name in RESULT_COLUMNS:
            self.results[name][offset : offset + count] = (results or {}).get(name, 0)
        self.filled += count

    @property
    def complete(self) -> bool:
        return self.shard is not None and self.start + self.filled == self.stop

    def finish(self) -> None:
        """Write the full shard of every array, then its marker."""
        if not self.complete:
            raise RuntimeError(f"shard {self.shard} has {self.filled} of {self.stop - self.start} rows")
        self.store.write_shard(self.shard, self.buffers)
        self.store.mark_done(self.shard, self.status, self.reasons, self.results, rank=self.rank)
        self.shard = None
        self.buffers = {}
