"""What a head trains on: the store's done rows, their features by name, and their videos."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from features.pooling import summarise_maps, summary_names
from store import FeatureStore, StoreError


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


def load_feature_table(store: FeatureStore, scale: int | None, features: list[str]) -> tuple[FeatureTable, int]:
    """Read the named arrays at ``scale`` (default: the largest) for every done row.

    A 2-D array (embedding, handcrafted) is used as it is; a map (N, C, t, h, w) enters as
    its per-channel mean and max over time and space.
    """
    scale = store.scales[0] if scale is None else scale
    if scale not in store.scales:
        raise HeadDataError(f"store {store.path} has no scale {scale}; it has {store.scales}")
    rows = store.rows().filter(pl.col("status") == "done")
    if rows.height == 0:
        raise HeadDataError(f"store {store.path} has no done rows; run extract first")
    index = rows["row"].to_numpy()
    blocks, names = [], []
    for name in features:
        try:
            values = store.read(scale, name, index)
        except StoreError as err:
            raise HeadDataError(str(err)) from None
        if values.ndim == 2:
            blocks.append(values.astype(np.float32))
            labels = store.array(scale, name).attrs.get("feature_names") or [str(i) for i in range(values.shape[1])]
            names += [f"{name}_{label}" for label in labels]
        else:
            blocks.append(summarise_maps(values))
            names += summary_names(name, values.shape[1])
    X = np.concatenate(blocks, axis=1)
    # handcrafted statistics may be NaN (not measurable: LightGBM takes it as missing);
    # anything else non-finite in a done row means damage or float16 overflow
    measured = np.array([not n.startswith("handcrafted_") for n in names])
    bad = ~np.isfinite(X[:, measured]).all(axis=1) | np.isinf(X).any(axis=1)
    if bad.any():
        raise HeadDataError(
            f"store {store.path}: {int(bad.sum())} done rows hold non-finite values "
            f"(first row {int(index[np.flatnonzero(bad)[0]])}); the store is damaged or overflowed float16"
        )
    return FeatureTable(X=X, names=names, rows=rows), scale
