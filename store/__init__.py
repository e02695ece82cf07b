"""The Zarr v3 feature store: layout, provenance, in-order chunk writer, readers."""

from store.feature_store import (
    SCHEMA_VERSION,
    STATUS_CODES,
    ArraySpec,
    FeatureStore,
    StoreError,
    rows_per_chunk,
    scale_key,
)
from store.writer import RowWriter

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_CODES",
    "ArraySpec",
    "FeatureStore",
    "RowWriter",
    "StoreError",
    "rows_per_chunk",
    "scale_key",
]
