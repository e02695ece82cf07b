"""The feature store: one Zarr v3 group per extraction.

Layout::

    STORE/                      group; attributes hold the provenance (schema version,
                                backbone, weights hash, preprocessing config and hash, ...)
      rows/                     the row table, one 1-D array per column:
        video_id, group, augment, reason (string), label, variant, status,
        frames_decoded, frames_unique (integers); see ROW_COLUMNS
      s112/                     one subgroup per clip scale, same row axis:
        embedding  (N, 512)             float16
        layer4     (N, 512, t, h, w)    float16
      s56/ ...

A row is one clip variant of one video; the rows of a video are contiguous. Arrays are
created at their final row count, chunked along rows only, and start as NaN: a row's data
counts only once its status is ``done``, which the writer sets after the data is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import polars as pl
import zarr
from zarr.codecs import BloscCodec

SCHEMA_VERSION = 1
STATUS_CODES = {"pending": 0, "done": 1, "failed": 2}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
# The row table. Given at creation: video_id, group, label, variant, augment (the variant's
# ops and parameters as JSON; "[]" for the original). Written with the done mark: status,
# reason, frames_decoded (frames the decoder produced for the whole video, all variants
# and scales together) and frames_unique (distinct source frames among the T samples).
ROW_COLUMNS = {
    "video_id": str,
    "group": str,
    "label": np.int8,
    "variant": np.int16,
    "augment": str,
    "status": np.int8,
    "reason": str,
    "frames_decoded": np.int32,
    "frames_unique": np.int16,
}
GIVEN_COLUMNS = ("video_id", "group", "label", "variant", "augment")
RESULT_COLUMNS = ("frames_decoded", "frames_unique")


class StoreError(Exception):
    """A store that does not exist, has an unknown schema, or lacks what was asked for."""


def scale_key(scale: int) -> str:
    return f"s{scale}"


@dataclass(frozen=True)
class ArraySpec:
    """One array of a scale subgroup: its per-row shape and stored dtype."""

    name: str
    row_shape: tuple[int, ...]
    dtype: str = "float16"
    attrs: dict[str, Any] = field(default_factory=dict)  # e.g. feature_names of a vector array

    @property
    def row_nbytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def rows_per_chunk(row_nbytes: int, chunk_mb: float, n_rows: int) -> int:
    """Rows in one chunk so that it holds about ``chunk_mb`` MiB uncompressed."""
    return int(max(1, min(n_rows, math.floor(chunk_mb * 2**20 / max(row_nbytes, 1)))))


def blosc_codec(codec: str, level: int, shuffle: str) -> BloscCodec | None:
    if codec == "none":
        return None
    return BloscCodec(cname=codec, clevel=level, shuffle=shuffle)


class FeatureStore:
    """Open with :meth:`open` or make with :meth:`create`; read rows and arrays, write blocks."""

    def __init__(self, group: zarr.Group, path: str):
        self.group = group
        self.path = path

    # -- creating and opening -------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | Path,
        rows: pl.DataFrame,
        arrays: dict[int, list[ArraySpec]],
        provenance: dict[str, Any],
        *,
        chunk_mb: float = 1.0,
        compression: dict[str, Any] | None = None,
    ) -> "FeatureStore":
        """A new store with every array at its final row count (``rows`` gives the row table)."""
        missing = [c for c in ("video_id", "group", "label", "variant") if c not in rows.columns]
        if missing:
            raise StoreError(f"row table lacks columns {missing}")
        n_rows = rows.height
        if n_rows == 0:
            raise StoreError("no rows to store (no video was indexed with status ok)")
        compression = compression or {"codec": "zstd", "level": 3, "shuffle": "shuffle"}
        codec = blosc_codec(**compression)
        group = zarr.open_group(str(path), mode="w-")
        table = group.create_group("rows")
        table_chunk = max(1, min(n_rows, 65536))
        for name, dtype in ROW_COLUMNS.items():
            if name in GIVEN_COLUMNS and name in rows.columns:
                values = rows[name].to_numpy().astype(dtype)
            elif name == "augment":
                values = np.array(["[]"] * n_rows, dtype=str)
            elif dtype is str:
                values = np.array([""] * n_rows, dtype=str)
            else:
                values = np.zeros(n_rows, dtype=dtype)
            fill: Any = "" if dtype is str else 0
            column = table.create_array(name, shape=(n_rows,), chunks=(table_chunk,), dtype=dtype, fill_value=fill)
            column[:] = values
        for scale, specs in arrays.items():
            sub = group.create_group(scale_key(scale))
            sub.attrs["scale"] = int(scale)
            for spec in specs:
                chunk_rows = rows_per_chunk(spec.row_nbytes, chunk_mb, n_rows)
                array = sub.create_array(
                    spec.name,
                    shape=(n_rows, *spec.row_shape),
                    chunks=(chunk_rows, *spec.row_shape),
                    dtype=spec.dtype,
                    compressors=codec,
                    fill_value=np.nan,
                )
                if spec.attrs:
                    array.attrs.update(spec.attrs)
        group.attrs.update({"schema_version": SCHEMA_VERSION, "n_rows": n_rows, "scales": sorted(arrays, reverse=True), **provenance})
        return cls(group, str(path))

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> "FeatureStore":
        if not Path(path).exists():
            raise StoreError(f"store not found: {path}")
        try:
            group = zarr.open_group(str(path), mode=mode)
        except Exception as err:
            raise StoreError(f"{path} is not a Zarr store ({type(err).__name__})") from None
        version = group.attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"store {path} has schema version {version!r}; this code reads version {SCHEMA_VERSION} "
                "(re-extract into a new store)"
            )
        return cls(group, str(path))

    # -- reading ------------------------------------------------------------------------------

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def n_rows(self) -> int:
        return int(self.group.attrs["n_rows"])

    @property
    def scales(self) -> list[int]:
        return [int(s) for s in self.group.attrs["scales"]]

    def array_names(self, scale: int) -> list[str]:
        return sorted(name for name, _ in self._scale_group(scale).arrays())

    def _scale_group(self, scale: int) -> zarr.Group:
        key = scale_key(scale)
        if key not in self.group:
            raise StoreError(f"store {self.path} has no scale {scale}; it has {self.scales}")
        return self.group[key]

    def array(self, scale: int, name: str) -> zarr.Array:
        sub = self._scale_group(scale)
        if name not in sub:
            raise StoreError(f"store {self.path} has no array {name!r} at scale {scale}; it has {self.array_names(scale)}")
        return sub[name]

    def rows(self) -> pl.DataFrame:
        """The row table with a ``row`` index and status names."""
        table = self.group["rows"]
        data = {name: table[name][:] for name in ROW_COLUMNS}
        frame = pl.DataFrame({"row": np.arange(self.n_rows, dtype=np.int64), **{k: np.asarray(v) for k, v in data.items()}})
        return frame.with_columns(
            *(pl.col(name).cast(pl.String) for name, dtype in ROW_COLUMNS.items() if dtype is str),
            pl.col("status").replace_strict(STATUS_NAMES, return_dtype=pl.String),
        )

    def read(self, scale: int, name: str, rows: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """Rows of one array (all rows when ``rows`` is None), in the order given."""
        array = self.array(scale, name)
        if rows is None:
            return array[:]
        index = np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows, dtype=np.int64)
        if index.size == 0:
            return np.empty((0, *array.shape[1:]), dtype=array.dtype)
        order = np.argsort(index, kind="stable")
        out = np.empty((index.size, *array.shape[1:]), dtype=array.dtype)
        out[order] = array.get_orthogonal_selection((index[order],))
        return out

    # -- writing ------------------------------------------------------------------------------

    def write_block(self, scale: int, name: str, start: int, data: np.ndarray) -> None:
        array = self.array(scale, name)
        array[start : start + len(data)] = data.astype(array.dtype, copy=False)

    def set_status(
        self, start: int, stop: int, status: np.ndarray, reasons: list[str], results: dict[str, np.ndarray] | None = None
    ) -> None:
        """Mark rows [start, stop) pending/done/failed, with their RESULT_COLUMNS; called
        after their data is written."""
        table = self.group["rows"]
        for name, values in (results or {}).items():
            table[name][start:stop] = values.astype(ROW_COLUMNS[name])
        table["reason"][start:stop] = np.array(reasons, dtype=str)
        table["status"][start:stop] = status.astype(np.int8)  # last: the mark that makes the rest count

    # -- describing ---------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Rows by status, every array's layout and size on disk, and the provenance."""
        rows = self.rows()
        counts = {name: int((rows["status"] == name).sum()) for name in STATUS_CODES}
        arrays = []
        for scale in self.scales:
            for name in self.array_names(scale):
                array = self.array(scale, name)
                stored = int(array.nbytes_stored())
                initialised = int(array.nchunks_initialized)
                row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
                # the last chunk may be partly past the end; count only real rows
                written = min(initialised * array.chunks[0], array.shape[0]) * row_bytes
                arrays.append(
                    {
                        "path": f"{scale_key(scale)}/{name}",
                        "shape": list(array.shape),
                        "dtype": str(array.dtype),
                        "chunks": list(array.chunks),
                        "compressor": _describe_codecs(array),
                        "chunks_written": initialised,
                        "stored_bytes": stored,
                        "uncompressed_bytes": written,
                        "compression_ratio": round(written / stored, 2) if stored and written else None,
                    }
                )
        attrs = self.attrs
        return {"path": self.path, "n_rows": self.n_rows, "rows_by_status": counts, "arrays": arrays, "provenance": attrs}


def _describe_codecs(array: zarr.Array) -> str:
    parts = []
    for codec in array.compressors:
        if isinstance(codec, BloscCodec):
            parts.append(f"blosc({codec.cname.value}, level {codec.clevel}, {codec.shuffle.value})")
        else:
            parts.append(type(codec).__name__)
    return " + ".join(parts) or "none"
