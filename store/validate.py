"""``store validate``: is the store what its attributes say, and is every done row sound?

Checks: the schema version; that the row table and every array have the store's row
count and the expected per-row shapes and dtypes; that every done marker is consistent
with the layout; and, reading each done shard of each array, that it decodes (the crc32c
checksum catches damaged chunks), that it equals the checksum its marker recorded when it
was written (every array, those where NaN is a value too: a marker over missing or other
data is caught), and that done rows are finite (where NaN is not a value).
Pending and failed rows are reported, not problems.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidstore.store.feature_store import GIVEN_COLUMNS, OPTIONAL_COLUMNS, STATUS_CODES, FeatureStore, block_checksum, scale_key


@dataclass
class ValidationReport:
    problems: list[str] = field(default_factory=list)
    rows_by_status: dict[str, int] = field(default_factory=dict)
    shards_checked: int = 0
    unchecked_shards: int = 0  # markers written before markers had checksums

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_store(store: FeatureStore, max_problems: int = 50) -> ValidationReport:
    report = ValidationReport()

    def problem(text: str) -> None:
        if len(report.problems) < max_problems:
            report.problems.append(text)

    n = store.n_rows
    layout = store.layout
    table = store.group["rows"]
    for name in GIVEN_COLUMNS:
        if name not in table:
            if name not in OPTIONAL_COLUMNS:
                problem(f"row table lacks column {name!r}")
        elif table[name].shape[0] != n:
            problem(f"row table column {name!r} has {table[name].shape[0]} rows, the store {n}")
    expected = store.attrs.get("arrays", {})
    present = {f"{scale_key(s)}/{name}" for s in store.scales for name in store.array_names(s)}
    for path in sorted(set(expected) - present):
        problem(f"array {path} is missing")
    for path in sorted(present - set(expected)):
        problem(f"array {path} is not in the store's description")
    arrays = []
    for scale in store.scales:
        for name in store.array_names(scale):
            array = store.array(scale, name)
            path = f"{scale_key(scale)}/{name}"
            spec = expected.get(path)
            if array.shape[0] != n:
                problem(f"{path} has {array.shape[0]} rows, the store {n}")
            if spec and (list(array.shape[1:]) != spec["row_shape"] or str(array.dtype) != spec["dtype"]):
                problem(f"{path} is {tuple(array.shape[1:])} {array.dtype}, expected {tuple(spec['row_shape'])} {spec['dtype']}")
            arrays.append((scale, name, path, bool(array.attrs.get("allow_nan", False))))

    markers = store.markers()
    for shard, marker in sorted(markers.items()):
        start, stop = layout.shard_rows(shard)
        if shard >= layout.n_shards:
            problem(f"marker of shard {shard} is beyond the store's {layout.n_shards} shards")
            continue
        m_start, m_stop = int(marker["start"]), int(marker["stop"])
        if m_start != start or m_stop > stop or len(marker["status"]) != m_stop - m_start:
            problem(f"marker of shard {shard} covers rows {m_start}..{m_stop}, the shard is {start}..{stop}")
            continue
        status = np.asarray(marker["status"])
        done = status == STATUS_CODES["done"]
        report.shards_checked += 1
        sums = marker.get("checksums") or {}
        if not sums:
            report.unchecked_shards += 1
        missing = store.verify_shard(shard, marker, full=False)
        if missing:
            problem(f"marker of shard {shard} is over missing data: {missing}")
        for scale, name, path, allow_nan in arrays:
            try:
                block = store.read_block(scale, name, m_start, m_stop)
            except Exception as err:  # a damaged chunk: checksum, decompression or index errors
                problem(f"{path} shard {shard} (rows {m_start}..{m_stop}) cannot be read: {str(err).splitlines()[0][:120]}")
                continue
            if path in sums and block_checksum(block) != sums[path]:
                problem(f"{path} shard {shard} (rows {m_start}..{m_stop}) differs from the checksum its marker recorded")
            flat = block[done].reshape(int(done.sum()), -1).astype(np.float32)
            bad = np.isinf(flat).any(axis=1) if allow_nan else ~np.isfinite(flat).all(axis=1)
            if bad.any():
                problem(f"{path}: {int(bad.sum())} done rows of shard {shard} are not finite (first row {m_start + int(np.flatnonzero(done)[np.argmax(bad)])})")

    rows = store.rows()
    report.rows_by_status = {name: int((rows["status"] == name).sum()) for name in STATUS_CODES}
    return report
