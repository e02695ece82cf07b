"""The Zarr v3 feature store: layout, provenance, shard writer, bounded-memory reader, validation."""

from vidstore.store.feature_store import (
    GIVEN_COLUMNS,
    RESULT_COLUMNS,
    SCHEMA_VERSION,
    STATUS_CODES,
    ArraySpec,
    FeatureStore,
    StoreError,
    block_checksum,
    scale_key,
)
from vidstore.store.layout import ShardLayout, owned_shards
from vidstore.store.lease import Leases
from vidstore.store.provenance import ArtifactVersionError, StoreProvenance, check_version
from vidstore.store.reader import Batch, StoreReader
from vidstore.store.validate import ValidationReport, validate_store
from vidstore.store.writer import ShardWriter

__all__ = [
    "GIVEN_COLUMNS",
    "RESULT_COLUMNS",
    "SCHEMA_VERSION",
    "STATUS_CODES",
    "ArraySpec",
    "ArtifactVersionError",
    "Batch",
    "FeatureStore",
    "Leases",
    "ShardLayout",
    "ShardWriter",
    "StoreError",
    "StoreProvenance",
    "StoreReader",
    "ValidationReport",
    "owned_shards",
    "block_checksum",
    "check_version",
    "scale_key",
    "validate_store",
]
