"""The store's provenance as one typed record, and the version rule every artifact follows.

Extraction builds the record and the store writes it into its group attributes
(:meth:`StoreProvenance.to_attrs`); a run copies it to ``provenance.json``
(:meth:`StoreProvenance.write`). Readers (heads, fine-tuning, prediction, ``store info``)
take it through :meth:`StoreProvenance.from_dict` instead of reading keys, so a field that
moves moves here.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


class ArtifactVersionError(ValueError):
    """An artifact written by a newer (or too old) version of this code."""


def check_version(found: Any, supported: int, what: str) -> None:
    """Refuse ``what`` unless its version is known here: a one-line message saying what to do."""
    if found is None:
        raise ArtifactVersionError(f"{what} has no format version (written by an older vidstore); make it again with this version")
    if not isinstance(found, int) or found > supported:
        raise ArtifactVersionError(f"{what} has format version {found}; this vidstore reads up to {supported}: upgrade vidstore")


def versioned_fields(cls, data: dict, supported: int, what: str, version: Any = None) -> dict:
    """The fields of dataclass ``cls`` found in ``data``, once its version is known here
    (``version``: where the artifact keeps it, when not under "version")."""
    found = data.get("version") if version is None else version
    check_version(found, supported, what)
    known = {f.name for f in fields(cls)}
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING and f.name != "version"]
    lacking = [name for name in required if name not in data]
    if lacking:
        raise ArtifactVersionError(
            f"{what} has format version {found} and lacks {', '.join(lacking[:3])}: written by an older vidstore; "
            "make it again with this version"
        )
    return {k: v for k, v in data.items() if k in known}


@dataclass(frozen=True)
class StoreProvenance:
    """What made a store: backbone and weights identity, the preprocessing record and its
    hash, extraction settings, code and package versions. ``version`` is the store's schema."""

    version: int
    backbone: dict = field(default_factory=dict)  # name, taps, weights {source, origin, sha256}
    preprocessing: dict = field(default_factory=dict)  # clip, augment, taps, handcrafted, ...
    preprocessing_hash: str | None = None
    extract: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    created_at: str | None = None
    code_version: str | None = None
    packages: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict, where: str = "store provenance") -> "StoreProvenance":
        from vidstore.store.feature_store import SCHEMA_VERSION

        version = data.get("version", data.get("schema_version"))
        values = versioned_fields(cls, data, SCHEMA_VERSION, where, version)
        return cls(**{k: v for k, v in values.items() if v is not None and k != "version"}, version=version)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_attrs(self) -> dict:
        """The store's group attributes: the fields, the version as ``schema_version``."""
        attrs = self.to_dict()
        attrs["schema_version"] = attrs.pop("version")
        return attrs

    @classmethod
    def read(cls, path: str | Path, where: str) -> "StoreProvenance":
        """A run's ``provenance.json``."""
        return cls.from_dict(json.loads(Path(path).read_text()), where)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @property
    def backbone_name(self) -> str | None:
        return self.backbone.get("name")

    @property
    def weights(self) -> dict:
        return self.backbone.get("weights", {})
