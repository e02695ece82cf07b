"""What a head trains on: the store's done rows, their features by name, and their videos."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from vidstore.features.pooling import summarise_maps, summary_names
from vidstore.store import FeatureStore, StoreError, StoreReader


class HeadDataError(ValueError):
    """The store lacks what the head was asked to train on."""


@dataclass
class FeatureTable:
    """Feature matrix over done rows, with the row table (video_id, group, label, variant)."""

    X: np.ndarray  # (rows, features) float32
    names: list[str]
    rows: pl.DataFrame

    @property
    def labels(self) -> np.ndarray:
        return self.rows["label"].to_numpy().astype(np.int64)


def feature_names(store: FeatureStore, scale: int, features: list[str]) -> list[str]:
    """Column names of the flat table: a vector array's entries (by its feature_names
    attribute when it has one), a map's channel means and maxima."""
    names: list[str] = []
    for name in features:
        try:
            array = store.array(scale, name)
        except StoreError as err:
            raise HeadDataError(str(err)) from None
        if array.ndim == 2:
            labels = array.attrs.get("feature_names") or [str(i) for i in range(array.shape[1])]
            names += [f"{name}_{label}" for label in labels]
        else:
            names += summary_names(name, array.shape[1])
    return names


def load_feature_table(
    store: FeatureStore, scale: int | None, features: list[str], batch_mb: float = 16.0
) -> tuple[FeatureTable, int]:
    """Read the named arrays at ``scale`` (default: the largest) for every done row.

    A 2-D array (embedding, handcrafted) is used as it is; a map (N, C, t, h, w) enters as
    its per-channel mean and max over time and space, summarised batch by batch (about
    ``batch_mb`` of stored values) through the store's reader, so memory holds the flat
    table, one shard and one batch, never a whole map array.
    """
    scale = store.scales[0] if scale is None else scale
    if scale not in store.scales:
        raise HeadDataError(f"store {store.path} has no scale {scale}; it has {store.scales}")
    names = feature_names(store, scale, features)
    rows = store.rows().filter(pl.col("status") == "done")
    if rows.height == 0:
        raise HeadDataError(f"store {store.path} has no done rows; run extract first")
    X = np.empty((rows.height, len(names)), dtype=np.float32)
    position = {row: i for i, row in enumerate(rows["row"].to_list())}
    row_bytes = sum(int(np.prod(store.array(scale, f).shape[1:])) * store.array(scale, f).dtype.itemsize for f in features)
    batch_rows = int(np.clip(batch_mb * 2**20 // max(row_bytes, 1), 16, 4096))
    for batch in StoreReader(store, scale, features, rows, batch_size=batch_rows):
        at = np.array([position[r] for r in batch.rows["row"].to_list()])
        X[at] = np.concatenate(
            [values.astype(np.float32) if values.ndim == 2 else summarise_maps(values) for values in (batch.arrays[f] for f in features)],
            axis=1,
        )
    # handcrafted statistics may be NaN (not measurable: LightGBM takes it as missing);
    # anything else non-finite in a done row means damage or float16 overflow
    measured = np.array([not n.startswith("handcrafted_") for n in names])
    bad = ~np.isfinite(X[:, measured]).all(axis=1) | np.isinf(X).any(axis=1)
    if bad.any():
        first = int(rows["row"][int(np.flatnonzero(bad)[0])])
        raise HeadDataError(
            f"store {store.path}: {int(bad.sum())} done rows hold non-finite values (first row {first}); "
            "the store is damaged or overflowed float16 (`vidstore store validate` tells more)"
        )
    return FeatureTable(X=X, names=names, rows=rows), scale
