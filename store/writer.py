"""Writing rows in order, whole chunks at a time, with the done mark last.

Rows arrive in row order (a video's variants together). Each array keeps a buffer of one
chunk; a chunk is written when it is full (or at the end), so no chunk is ever written
twice or in part by this writer. A row's status becomes ``done`` or ``failed`` only after
every array holding it has been written: a killed job leaves rows ``pending``, never
half-written rows marked done.
"""

from __future__ import annotations

import numpy as np

from store.feature_store import RESULT_COLUMNS, STATUS_CODES, FeatureStore


class _ChunkBuffer:
    """One chunk's worth of rows of one array, aligned to the array's chunk grid."""

    def __init__(self, store: FeatureStore, scale: int, name: str, start_row: int):
        self.store, self.scale, self.name = store, scale, name
        array = store.array(scale, name)
        self.chunk_rows = int(array.chunks[0])
        self.n_rows = int(array.shape[0])
        self.window = start_row - start_row % self.chunk_rows
        self.data = np.full((self.chunk_rows, *array.shape[1:]), np.nan, dtype=array.dtype)
        if start_row > self.window:
            # resuming mid-chunk: the chunk's earlier rows are already done; keep them
            self.data[: start_row - self.window] = array[self.window : start_row]
        self.filled_upto = start_row  # rows placed in the buffer (or written)
        self.flushed_upto = start_row  # rows written to the store

    def put(self, row: int, values: np.ndarray | None, count: int) -> None:
        """Rows [row, row + count); ``values`` None leaves them NaN (a failed video)."""
        done = 0
        while done < count:
            offset = row + done - self.window
            take = min(count - done, self.chunk_rows - offset)
            if values is not None:
                self.data[offset : offset + take] = values[done : done + take]
            done += take
            self.filled_upto = row + done
            if offset + take == self.chunk_rows or self.filled_upto == self.n_rows:
                self.flush()

    def flush(self) -> None:
        """Write the buffered rows; a full chunk moves the window on."""
        filled = self.filled_upto - self.window
        if self.filled_upto <= self.flushed_upto:
            return
        self.store.write_block(self.scale, self.name, self.window, self.data[:filled])
        self.flushed_upto = self.filled_upto
        if filled == self.chunk_rows:
            self.window += self.chunk_rows
            self.data.fill(np.nan)


class RowWriter:
    """Takes each video's rows in order; writes whole chunks; marks rows done last."""

    def __init__(self, store: FeatureStore, arrays: list[tuple[int, str]], start_row: int = 0):
        self.store = store
        self.buffers = [_ChunkBuffer(store, scale, name, start_row) for scale, name in arrays]
        self.next_row = start_row
        self.marked_upto = start_row
        self._status: list[int] = []
        self._reasons: list[str] = []
        self._results: dict[str, list[int]] = {name: [] for name in RESULT_COLUMNS}

    def add(
        self,
        row: int,
        count: int,
        values: dict[tuple[int, str], np.ndarray] | None,
        reason: str = "",
        results: dict[str, int] | None = None,
    ) -> None:
        """Rows [row, row + count) of one video; ``values`` None records a failure with
        ``reason``. ``results`` fills RESULT_COLUMNS (the same for all the rows)."""
        if row != self.next_row:
            raise ValueError(f"rows must arrive in order: expected {self.next_row}, got {row}")
        for buffer in self.buffers:
            data = None if values is None else values[(buffer.scale, buffer.name)]
            buffer.put(row, data, count)
        self.next_row = row + count
        code = STATUS_CODES["done"] if values is not None else STATUS_CODES["failed"]
        self._status.extend([code] * count)
        self._reasons.extend([reason] * count)
        for name, column in self._results.items():
            column.extend([(results or {}).get(name, 0)] * count)
        self._mark(min(b.flushed_upto for b in self.buffers))

    def close(self) -> None:
        """Write the partly filled last chunks and mark what they hold."""
        for buffer in self.buffers:
            buffer.flush()
        self._mark(min(b.flushed_upto for b in self.buffers))

    def _mark(self, upto: int) -> None:
        if upto <= self.marked_upto:
            return
        k = upto - self.marked_upto
        results = {name: np.array(column[:k]) for name, column in self._results.items()}
        self.store.set_status(self.marked_upto, upto, np.array(self._status[:k]), self._reasons[:k], results)
        del self._status[:k], self._reasons[:k]
        for column in self._results.values():
            del column[:k]
        self.marked_upto = upto
