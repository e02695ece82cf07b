"""Pooled summaries of feature maps, for models that take flat vectors (trees, logistic)."""

from __future__ import annotations

import numpy as np

POOL_STATS = ("mean", "max", "std")


def summarise_maps(maps: np.ndarray, stats: tuple[str, ...] = ("mean", "max")) -> np.ndarray:
    """(N, C, t, h, w) -> (N, C * len(stats)): per-channel statistics over time and space.

    Columns are grouped by statistic: all channel means, then all maxima, and so on.
    Computed in float32 whatever the stored dtype.
    """
    unknown = [s for s in stats if s not in POOL_STATS]
    if unknown:
        raise ValueError(f"unknown statistic(s) {unknown}; choose from {POOL_STATS}")
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1)  # a view: no float32 copy of the maps
    compute = {
        "mean": lambda: flat.mean(axis=2, dtype=np.float32),
        "max": lambda: flat.max(axis=2).astype(np.float32),
        "std": lambda: flat.std(axis=2, dtype=np.float32),
    }
    return np.concatenate([compute[s]() for s in stats], axis=1)


def summary_names(prefix: str, channels: int, stats: tuple[str, ...] = ("mean", "max")) -> list[str]:
    """Column names matching :func:`summarise_maps`: ``layer4_mean_0`` ..."""
    return [f"{prefix}_{s}_{c}" for s in stats for c in range(channels)]
