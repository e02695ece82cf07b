"""The feature store: one Zarr v3 group per extraction, on a local disk or any fsspec URL.

Layout::

    STORE/                      group; attributes: schema version, the shard layout, the
                                expected arrays, and the provenance (backbone, weights
                                hash, preprocessing config and hash, package versions, ...)
      rows/                     the row table's given columns, one 1-D array each:
        video_id, group, augment (string), label (int8), variant (int16)
      s112/                     one subgroup per clip scale, the same row axis:
        embedding  (N, 512)               float16
        layer4     (N, 512, t, h, w)      float16
        handcrafted (N, F)                float32, names in the array's feature_names
      s56/ ...
      done/<shard>/             the done marker of a shard, written last by its writer: a
                                group whose attributes are per row status, reason,
                                frames_decoded, frames_unique, and the data's checksums
      leases/<shard>/           the lease of a shard being written (store/lease.py): a
                                group whose attributes name its holder and heartbeat

Markers and leases are Zarr groups too, so zarr and xarray see one clean hierarchy (no
foreign files to warn about). Stores of schema 3 kept them as plain files
(``done/<shard>.json``, ``done/<shard>.lease``); opening one moves them in place.

Arrays are created at their final row count, sharded so that a shard holds whole videos
(see layout.py) and chunked inside shards, compressed (Blosc) and checksummed (crc32c).
Rows start as NaN and count only once their shard's marker exists: a killed writer leaves
no half-written shard counted as done, and a restart recomputes exactly the shards
without a marker. Each writer owns whole shards and their markers, so many writers share
one store without touching the same file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

import fsspec
import numpy as np
import polars as pl
import zarr
from fsspec.implementations.local import LocalFileSystem
from zarr.codecs import BloscCodec, Crc32cCodec

from vidstore.store.layout import ShardLayout

if TYPE_CHECKING:
    from vidstore.store.provenance import StoreProvenance

SCHEMA_VERSION = 4  # 4: done markers and leases are Zarr groups (3 is migrated on open)
MIGRATABLE_VERSIONS = (3,)
STATUS_CODES = {"pending": 0, "done": 1, "failed": 2}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
# Given when rows are created (in rows/); the rest come with each shard's done marker.
# platform, width, height and duration come from the index ("" or NaN when it lacks them)
# so that reports can slice metrics without the samples table.
GIVEN_COLUMNS = {
    "video_id": str,
    "group": str,
    "label": np.int8,
    "variant": np.int16,
    "augment": str,
    "platform": str,
    "width": np.float32,
    "height": np.float32,
    "duration": np.float32,
    "path": str,
    "content_hash": str,
}
GIVEN_DEFAULTS = {"augment": "[]", "platform": "", "path": "", "content_hash": ""}
# path (where the file was when indexed) and content_hash (extract.sources.content_hash)
# came after schema 3's first stores: a store without them reads them as "" and gets them
# when it grows. They let extract refuse a samples table that renamed the store's videos.
OPTIONAL_COLUMNS = ("path", "content_hash")
# frames_decoded: frames the decoder produced for the whole video (all its variants and
# scales together); frames_unique: distinct source frames among the T samples.
RESULT_COLUMNS = {"frames_decoded": np.int32, "frames_unique": np.int16}


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
    allow_nan: bool = False  # NaN is a value here (a statistic that could not be measured)

    @property
    def row_nbytes(self) -> int:
        return int(np.prod(self.row_shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def codecs(codec: str = "zstd", level: int = 3, shuffle: str = "shuffle") -> list:
    """Blosc (unless ``none``) then a crc32c checksum, so a damaged chunk is an error, not data."""
    out: list = [] if codec == "none" else [BloscCodec(cname=codec, clevel=level, shuffle=shuffle)]
    return out + [Crc32cCodec()]


def _creator_alive(creator: Any) -> bool:
    """Whether the process that began creating a store may still be at it: alive on this
    host, or, elsewhere, begun within the last ten minutes."""
    if not isinstance(creator, dict):
        return False
    from vidstore.store.lease import pid_running

    try:
        if creator.get("host") == socket.gethostname():
            return int(creator["pid"]) != os.getpid() and pid_running(int(creator["pid"]))
        return time.time() - float(creator["at"]) < 600
    except (KeyError, TypeError, ValueError):
        return False


def group_document(attributes: dict) -> bytes:
    """The ``zarr.json`` of a Zarr v3 group holding ``attributes``: how a done marker or a
    lease is stored, so that each is one object written in one piece."""
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes}).encode()


def read_group_attributes(fs: fsspec.AbstractFileSystem, folder: str) -> dict | None:
    """The attributes of the group at ``folder``, or None (missing, or cut short by a kill)."""
    try:
        document = json.loads(fs.cat_file(f"{folder}/zarr.json"))
        return document["attributes"] if isinstance(document.get("attributes"), dict) else None
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError, OSError):
        return None


def put_whole(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` at ``path`` so that no reader sees it half-written: on a local disk
    aside then renamed over; an object store's put is whole already."""
    if isinstance(fs, LocalFileSystem):
        fs.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}-{threading.get_ident()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)


def ensure_group(fs: fsspec.AbstractFileSystem, folder: str) -> None:
    """A (sub)group at ``folder`` with no attributes, unless there is one."""
    if not fs.exists(f"{folder}/zarr.json"):
        put_whole(fs, f"{folder}/zarr.json", group_document({}))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class FeatureStore:
    """Make one with :meth:`create`, open one with :meth:`open`; paths or fsspec URLs."""

    def __init__(self, group: zarr.Group, path: str):
        self.group = group
        self.path = path
        self.fs, self.root = fsspec.core.url_to_fs(path)

    # -- creating, growing, opening ---------------------------------------------------------

    @classmethod
    def exists(cls, path: str) -> bool:
        fs, root = fsspec.core.url_to_fs(str(path))
        return fs.exists(f"{root}/zarr.json")

    @classmethod
    def create(
        cls,
        path: str,
        rows: pl.DataFrame,
        arrays: dict[int, list[ArraySpec]],
        provenance: "StoreProvenance | None" = None,
        *,
        rows_per_video: int = 1,
        shard_videos: int = 32,
        chunk_mb: float = 1.0,
        compression: dict[str, Any] | None = None,
    ) -> "FeatureStore":
        """A new store with every array at its final row count; ``rows`` is the row table
        (GIVEN_COLUMNS, ``rows_per_video`` contiguous rows per video); ``provenance`` is what
        made it (None: an empty record, for stores made by tests and benchmarks)."""
        from vidstore.store.provenance import StoreProvenance

        provenance = provenance or StoreProvenance(SCHEMA_VERSION)
        if provenance.version != SCHEMA_VERSION:
            raise StoreError(f"a store of schema version {provenance.version} cannot be written; this code writes {SCHEMA_VERSION}")
        missing = [c for c in ("video_id", "group", "label", "variant") if c not in rows.columns]
        if missing:
            raise StoreError(f"row table lacks columns {missing}")
        if rows.height == 0:
            raise StoreError("no rows to store (no video was indexed with status ok)")
        if rows.height % rows_per_video:
            raise StoreError(f"{rows.height} rows are not whole videos of {rows_per_video} rows")
        path = str(path)
        if cls.exists(path):
            raise StoreError(f"store {path} already exists")
        layout = ShardLayout(rows_per_video, shard_videos, rows.height // rows_per_video)
        try:
            group = zarr.open_group(path, mode="w-")  # never over a store another process just made
        except Exception as err:
            raise StoreError(f"store {path} already exists ({type(err).__name__})") from None
        group.attrs["creator"] = {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
        table = group.create_group("rows")
        for name, dtype in GIVEN_COLUMNS.items():
            fill = "" if dtype is str else (np.nan if np.issubdtype(dtype, np.floating) else 0)
            table.create_array(name, shape=(0,), chunks=(65536,), dtype=dtype, fill_value=fill)
        expected = {}
        for scale, specs in arrays.items():
            sub = group.create_group(scale_key(scale))
            sub.attrs["scale"] = int(scale)
            for spec in specs:
                chunk = layout.chunk_rows(spec.row_nbytes, chunk_mb)
                array = sub.create_array(
                    spec.name,
                    shape=(0, *spec.row_shape),
                    shards=(layout.rows_per_shard, *spec.row_shape),
                    chunks=(chunk, *spec.row_shape),
                    dtype=spec.dtype,
                    compressors=codecs(**(compression or {})),
                    fill_value=np.nan,
                )
                array.attrs.update({**spec.attrs, "allow_nan": spec.allow_nan})
                expected[f"{scale_key(scale)}/{spec.name}"] = {"row_shape": list(spec.row_shape), "dtype": spec.dtype}
        group.attrs.update(
            {
                "schema_version": SCHEMA_VERSION,
                "rows_per_video": rows_per_video,
                "shard_videos": shard_videos,
                "n_rows": 0,
                "scales": sorted(arrays, reverse=True),
                "arrays": expected,
                **provenance.to_attrs(),
            }
        )
        store = cls(group, path)
        store.append_rows(rows)
        return store

    def append_rows(self, rows: pl.DataFrame) -> None:
        """Grow every array by ``rows`` (whole videos) and mark the store ready at the new size.

        Only one process (the coordinator) may call this, before writers start.
        """
        if rows.height % self.layout.rows_per_video:
            raise StoreError(f"{rows.height} new rows are not whole videos of {self.layout.rows_per_video} rows")
        old, new = self.n_rows, self.n_rows + rows.height
        self.group.attrs["ready"] = False
        table = self.group["rows"]
        for name, dtype in GIVEN_COLUMNS.items():
            if name in rows.columns:
                values = rows[name].fill_null(GIVEN_DEFAULTS.get(name, np.nan)).to_numpy()
            elif dtype is str:
                values = np.array([GIVEN_DEFAULTS.get(name, "")] * rows.height)
            else:
                values = np.full(rows.height, np.nan)
            if name not in table:  # an optional column a store made before it lacks
                table.create_array(name, shape=(old,), chunks=(65536,), dtype=dtype, fill_value="")
            column = table[name]
            column.resize((new,))
            column[old:new] = values.astype(dtype)
        for scale in self.scales:
            for name in self.array_names(scale):
                array = self.array(scale, name)
                array.resize((new, *array.shape[1:]))
        self.group.attrs.update({"n_rows": new, "ready": True, "resized_at": _now()})

    @classmethod
    def remove_unfinished(cls, path: str) -> bool:
        """Delete a store whose creation was cut short (never ready, nothing done in it).

        Returns whether it did. A store that holds any done shard is never deleted.
        """
        if not cls.exists(path):
            return False
        fs, root = fsspec.core.url_to_fs(str(path))
        try:
            attrs = zarr.open_group(str(path), mode="r").attrs
        except Exception:
            attrs = {}
        if attrs.get("ready") or fs.exists(f"{root}/done"):  # done/ appears with the first marker
            return False
        if _creator_alive(attrs.get("creator")):
            return False  # another process is creating it right now
        if attrs.get("n_rows", 0) and attrs.get("schema_version") is not None and "ready" in attrs:
            return False  # a growth cut short keeps its rows: growing again repairs it
        fs.rm(root, recursive=True)
        return True

    @classmethod
    def being_created(cls, path: str) -> bool:
        """Whether another live process is creating the store at ``path`` right now."""
        if not cls.exists(path):
            return False
        try:
            attrs = zarr.open_group(str(path), mode="r").attrs
        except Exception:
            return False
        return not attrs.get("ready") and _creator_alive(attrs.get("creator"))

    @classmethod
    def open(cls, path: str, mode: str = "r") -> "FeatureStore":
        path = str(path)
        if not cls.exists(path):
            raise StoreError(f"store not found: {path}")
        try:
            group = zarr.open_group(path, mode=mode)
        except Exception as err:
            raise StoreError(f"{path} is not a Zarr store ({type(err).__name__})") from None
        version = group.attrs.get("schema_version")
        if version in MIGRATABLE_VERSIONS:
            group = cls._migrate(path, version, mode)
            version = group.attrs.get("schema_version")
        if isinstance(version, int) and version > SCHEMA_VERSION:
            raise StoreError(f"store {path} has schema version {version}; this vidstore reads up to {SCHEMA_VERSION}: upgrade vidstore")
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"store {path} has schema version {version!r}; this code reads version {SCHEMA_VERSION} "
                "(re-extract into a new store)"
            )
        return cls(group, path)

    @classmethod
    def _migrate(cls, path: str, version: int, mode: str) -> zarr.Group:
        """Move a schema-3 store's done markers (``done/<shard>.json`` files) into Zarr groups
        and drop its old lease files; then it is schema 4. Each marker is written anew before
        its file goes, so a migration cut short is finished by the next open."""
        import warnings

        fs, root = fsspec.core.url_to_fs(path)
        folder, moved = f"{root}/done", 0
        try:
            for name in (fs.ls(folder, detail=False) if fs.exists(folder) else []):
                base = name.rstrip("/").rsplit("/", 1)[-1]
                if base.endswith(".json") and base[:-5].isdigit():
                    try:
                        marker = json.loads(fs.cat_file(name))
                    except ValueError:
                        marker = None  # cut short by a kill: no marker, as before
                    if isinstance(marker, dict):
                        put_whole(fs, f"{folder}/{base[:-5]}/zarr.json", group_document(marker))
                        moved += 1
                    fs.rm(name)
                elif ".lease" in base:
                    fs.rm(name)
            if fs.exists(folder):
                ensure_group(fs, folder)
            zarr.open_group(path, mode="r+").attrs["schema_version"] = SCHEMA_VERSION
        except OSError as err:
            raise StoreError(
                f"store {path} has schema version {version} (done markers as plain files) and could not be moved to "
                f"version {SCHEMA_VERSION} here ({type(err).__name__}: {err}); open it once where it is writable"
            ) from None
        warnings.warn(f"store {path}: {moved} done markers moved into the Zarr hierarchy (schema {version} -> {SCHEMA_VERSION}); "
                      "vidstore 0.1 no longer reads it", stacklevel=3)
        return zarr.open_group(path, mode=mode)

    # -- reading ------------------------------------------------------------------------------

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def provenance(self) -> "StoreProvenance":
        from vidstore.store.provenance import StoreProvenance

        return StoreProvenance.from_dict(self.attrs, f"store {self.path}")

    @property
    def n_rows(self) -> int:
        return int(self.group.attrs["n_rows"])

    @property
    def layout(self) -> ShardLayout:
        a = self.group.attrs
        return ShardLayout(int(a["rows_per_video"]), int(a["shard_videos"]), int(a["n_rows"]) // int(a["rows_per_video"]))

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

    def _marker_path(self, shard: int) -> str:
        return f"{self.root}/done/{shard:06d}"

    def markers(self) -> dict[int, dict]:
        """The done markers that parse (a marker cut short by a kill is no marker)."""
        found: dict[int, dict] = {}
        folder = f"{self.root}/done"
        if not self.fs.exists(folder):
            return found
        for entry in self.fs.ls(folder, detail=True):
            if entry["type"] != "directory":
                continue
            marker = read_group_attributes(self.fs, entry["name"].rstrip("/"))
            try:
                found[int(marker["shard"])] = marker
            except (KeyError, TypeError, ValueError):
                continue
        return found

    def rows(self) -> pl.DataFrame:
        """The row table: given columns, then status, reason and results from the markers."""
        n = self.n_rows
        table = self.group["rows"]
        data: dict[str, Any] = {"row": np.arange(n, dtype=np.int64)}
        for name in GIVEN_COLUMNS:
            data[name] = np.asarray(table[name][:n]) if name in table else np.array([GIVEN_DEFAULTS[name]] * n, dtype=object)
        status = np.zeros(n, dtype=np.int8)
        reasons = np.array([""] * n, dtype=object)
        results = {name: np.zeros(n, dtype=dtype) for name, dtype in RESULT_COLUMNS.items()}
        for marker in self.markers().values():
            start, stop = int(marker["start"]), int(marker["stop"])
            if stop > n:
                continue
            status[start:stop] = marker["status"]
            reasons[start:stop] = marker["reason"]
            for name in RESULT_COLUMNS:
                results[name][start:stop] = marker[name]
        frame = pl.DataFrame({**data, "status": status, "reason": reasons.astype(str), **results})
        return frame.with_columns(
            *(pl.col(name).cast(pl.String) for name, dtype in GIVEN_COLUMNS.items() if dtype is str),
            pl.col("reason").cast(pl.String),
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

    def read_block(self, scale: int, name: str, start: int, stop: int) -> np.ndarray:
        return self.array(scale, name)[start:stop]

    # -- writing (a writer owns whole shards) -------------------------------------------------

    def clear_shard(self, shard: int) -> None:
        """Remove whatever a killed writer left of ``shard`` (files and marker), so that its
        rewrite starts from nothing: zarr reads an existing shard's index before writing."""
        if self.fs.exists(self._marker_path(shard)):
            self.fs.rm(self._marker_path(shard), recursive=True)
        for scale in self.scales:
            for name in self.array_names(scale):
                array = self.array(scale, name)
                key = array.metadata.encode_chunk_key((shard,) + (0,) * (array.ndim - 1))
                target = f"{self.root}/{array.path}/{key}"
                if self.fs.exists(target):
                    self.fs.rm(target)

    def write_shard(self, shard: int, values: dict[tuple[int, str], np.ndarray]) -> None:
        """Every array's rows of ``shard`` in one piece each (one file per array)."""
        start, stop = self.layout.shard_rows(shard)
        for (scale, name), block in values.items():
            if len(block) != stop - start:
                raise StoreError(f"shard {shard} of {scale_key(scale)}/{name} needs {stop - start} rows, got {len(block)}")
            array = self.array(scale, name)
            array[start:stop] = block.astype(array.dtype, copy=False)

    def array_paths(self) -> list[tuple[int, str, str]]:
        """(scale, name, "s<scale>/<name>") of every array."""
        return [(scale, name, f"{scale_key(scale)}/{name}") for scale in self.scales for name in self.array_names(scale)]

    def shard_checksums(self, shard: int, stop: int | None = None) -> dict[str, str]:
        """The checksum of every array's rows of ``shard`` as stored (read back and decoded)."""
        start, end = self.layout.shard_rows(shard)
        return {path: block_checksum(self.read_block(scale, name, start, stop or end)) for scale, name, path in self.array_paths()}

    def verify_shard(self, shard: int, marker: dict, *, full: bool) -> str:
        """Why ``shard``'s done marker cannot be trusted ("" when it can): an array's shard
        file missing (cheap), or with ``full``, data that differs from the marker's checksums."""
        for scale, name, path in self.array_paths():
            array = self.array(scale, name)
            key = array.metadata.encode_chunk_key((shard,) + (0,) * (array.ndim - 1))
            if not self.fs.exists(f"{self.root}/{array.path}/{key}"):
                return f"{path} has no data for shard {shard}"
        sums = marker.get("checksums")
        if not full or not sums:
            return ""
        try:
            found = self.shard_checksums(shard, int(marker["stop"]))
        except Exception as err:  # a damaged chunk fails its crc32c
            return f"shard {shard} cannot be read: {str(err).splitlines()[0][:120]}"
        bad = [path for path, value in sums.items() if found.get(path) != value]
        return f"{bad[0]} of shard {shard} differs from its marker's checksum" if bad else ""

    def mark_done(
        self, shard: int, status: np.ndarray, reasons: list[str], results: dict[str, np.ndarray], rank: int = 0,
        checksums: dict[str, str] | None = None,
    ) -> None:
        """Write ``shard``'s marker, after its data: from now on its rows count.
        ``checksums``: per array, :func:`block_checksum` of the shard's rows as written."""
        start, stop = self.layout.shard_rows(shard)
        marker = {
            "shard": shard,
            "start": start,
            "stop": stop,
            "status": [int(s) for s in status],
            "reason": list(reasons),
            **{name: [int(v) for v in results[name]] for name in RESULT_COLUMNS},
            "rank": rank,
            "written_at": _now(),
            "checksums": checksums or {},
        }
        ensure_group(self.fs, f"{self.root}/done")
        put_whole(self.fs, f"{self._marker_path(shard)}/zarr.json", group_document(marker))

    # -- describing and checking --------------------------------------------------------------

    def count_files(self, array: zarr.Array) -> int:
        """Shard files (objects) an array has on its filesystem."""
        folder = f"{self.root}/{array.path}/c"
        return len(self.fs.find(folder)) if self.fs.exists(folder) else 0

    def info(self) -> dict[str, Any]:
        """Rows by status, every array's layout and size on disk, and the provenance."""
        rows = self.rows()
        counts = {name: int((rows["status"] == name).sum()) for name in STATUS_CODES}
        done_rows = int((rows["status"] != "pending").sum())
        arrays = []
        for scale in self.scales:
            for name in self.array_names(scale):
                array = self.array(scale, name)
                stored = int(array.nbytes_stored())
                row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
                written = done_rows * row_bytes
                arrays.append(
                    {
                        "path": f"{scale_key(scale)}/{name}",
                        "shape": list(array.shape),
                        "dtype": str(array.dtype),
                        "shards": list(array.shards) if array.shards else None,
                        "chunks": list(array.chunks),
                        "compressor": _describe_codecs(array),
                        "files": self.count_files(array),
                        "stored_bytes": stored,
                        "uncompressed_bytes": written,
                        "compression_ratio": round(written / stored, 2) if stored and written else None,
                    }
                )
        layout = self.layout
        return {
            "path": self.path,
            "n_rows": self.n_rows,
            "rows_by_status": counts,
            "shards": {"n": layout.n_shards, "videos_per_shard": layout.shard_videos, "rows_per_shard": layout.rows_per_shard,
                       "done": len(self.markers())},
            "arrays": arrays,
            "provenance": self.provenance.to_dict(),
        }


def block_checksum(block: np.ndarray) -> str:
    """CRC-32 (zlib) of an array block's bytes in C order, as hex: equal when the stored values are."""
    import zlib

    return f"{zlib.crc32(memoryview(np.ascontiguousarray(block)).cast('B')):08x}"


def _describe_codecs(array: zarr.Array) -> str:
    parts = []
    for codec in array.compressors:
        if isinstance(codec, BloscCodec):
            parts.append(f"blosc({codec.cname.value}, level {codec.clevel}, {codec.shuffle.value})")
        elif isinstance(codec, Crc32cCodec):
            parts.append("crc32c")
        else:
            parts.append(type(codec).__name__)
    return " + ".join(parts) or "none"
