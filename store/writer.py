"""Writing one shard at a time: buffer its videos, write every array whole, then the marker.

A writer owns whole shards. It fills a shard's buffer video by video (in row order),
writes each array's shard in one piece when the shard's last video arrives, and writes
the shard's done marker last. A shard is never written in part and never marked before
its data is there, so a writer killed at any moment leaves shards that are either done
or recomputed from nothing on restart.

With ``threads`` > 0 the writing (compression included) happens on background threads:
``finish`` hands the full shard over and returns at once, so the next batch's forward
overlaps this shard's write. At most ``threads + queue`` finished shards wait or are
being written at a time (``finish`` blocks beyond that: memory stays bounded). A
background write that failed is raised by the next ``finish`` or by ``close``, which
waits for every write: call it before the job ends (also when it ends in an error, so
that what was computed is not lost).

With ``leases`` (see lease.py) the writer must hold a shard's lease before ``begin``
clears it, and writes the marker only if it still holds the lease after reading the
shard back and finding the checksums of what it wrote; the marker records those
checksums (``store validate`` and ``extract --verify`` check them later). The lease is
given back after the marker. A full disk is a StoreError naming the shard, the store
and the size; the shard has no marker, so the next run recomputes it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from vidstore.store.feature_store import RESULT_COLUMNS, STATUS_CODES, FeatureStore, StoreError, block_checksum, scale_key
from vidstore.store.lease import Leases


# Seconds to wait between a shard's data and its marker: only for the test that kills a
# process at that point (tests/test_integrity.py); never set it otherwise.
_PAUSE_BEFORE_MARKER = float(os.environ.get("VIDSTORE_TEST_PAUSE_BEFORE_MARKER", "0") or 0)


class LostLease(Warning):
    """A shard's lease was taken over while this process wrote it: its marker is not written."""


class ShardWriter:
    """Buffers the rows of one shard at a time; see the module docstring."""

    def __init__(
        self, store: FeatureStore, arrays: list[tuple[int, str]], rank: int = 0, *, threads: int = 0, queue: int = 1,
        leases: Leases | None = None,
    ):
        self.store = store
        self.leases = leases
        self.lost: list[int] = []  # shards whose lease was taken over before their marker
        self.arrays = arrays
        self.rank = rank
        self.shard: int | None = None
        self.write_seconds = 0.0  # time spent writing shards and markers (summed over threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="shard-writer") if threads > 0 else None
        self._slots = threading.BoundedSemaphore(threads + max(0, queue)) if threads > 0 else None
        self._pending: list[Future] = []
        self._lock = threading.Lock()

    def begin(self, shard: int, keep_earlier: bool = True) -> int:
        """Start ``shard``; returns how many of its videos are already done (a shard that
        grew: its earlier videos are kept, not recomputed, unless ``keep_earlier`` is False)."""
        if self.shard is not None:
            raise RuntimeError(f"shard {self.shard} is not finished")
        if self.leases is not None and shard not in self.leases.held:
            raise RuntimeError(f"shard {shard}: take its lease before writing it")
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
        kept = self._keep_earlier_rows() if keep_earlier else 0
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
        """Write the full shard of every array, then its marker (in the background when the
        writer has threads)."""
        if not self.complete:
            raise RuntimeError(f"shard {self.shard} has {self.filled} of {self.stop - self.start} rows")
        shard, buffers, status, reasons, results = self.shard, self.buffers, self.status, self.reasons, self.results
        self.shard, self.buffers = None, {}
        if self._pool is None:
            self._write(shard, buffers, status, reasons, results)
            return
        self._raise_failed()
        self._slots.acquire()  # blocks while too many shards wait: memory stays bounded
        future = self._pool.submit(self._write, shard, buffers, status, reasons, results)
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)

    def _write(self, shard: int, buffers, status, reasons, results) -> None:
        started = time.perf_counter()
        try:
            self.store.write_shard(shard, buffers)
            written = {
                f"{scale_key(scale)}/{name}": block_checksum(block.astype(self.store.array(scale, name).dtype, copy=False))
                for (scale, name), block in buffers.items()
            }
            # re-check the data before the marker: what reads back is what was written
            found = self.store.shard_checksums(shard)
            differ = [path for path, value in written.items() if found.get(path) != value]
            if differ:
                raise StoreError(
                    f"shard {shard} of {self.store.path}: {differ[0]} reads back other values than were written "
                    "(another process wrote it, or the storage is faulty); not marked done, it will be recomputed"
                )
            if _PAUSE_BEFORE_MARKER:  # tests kill a real process here, between data and marker
                time.sleep(_PAUSE_BEFORE_MARKER)
            if self.leases is not None and not self.leases.holds(shard):
                with self._lock:
                    self.lost.append(shard)
                warnings.warn(f"shard {shard}: its lease was taken over while it was written; its marker is left to the new holder", LostLease)
                return
            self.store.mark_done(shard, status, reasons, results, rank=self.rank, checksums=written)  # only after the data
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                size = sum(b.nbytes for b in buffers.values()) / 2**20
                raise StoreError(
                    f"no space left on the device of {self.store.path} while writing shard {shard} "
                    f"(up to {size:.1f} MiB uncompressed): free some space and run extract again; it resumes at this shard"
                ) from None
            raise
        finally:
            if self.leases is not None:
                self.leases.release(shard)
        with self._lock:
            self.write_seconds += time.perf_counter() - started

    def _raise_failed(self) -> None:
        still = []
        for future in self._pending:
            if future.done():
                future.result()  # raises the write's error
            else:
                still.append(future)
        self._pending = still

    def close(self) -> None:
        """Wait for every background write; raise the first that failed."""
        if self._pool is None:
            return
        try:
            errors = [f.exception() for f in self._pending]  # waits for each
        finally:
            self._pending = []
            self._pool.shutdown(wait=True)
            self._pool = None
        for error in errors:
            if error is not None:
                raise error
