"""A head's two faces: the registered class a user writes, and cross-validation's view of it.

``HeadBase`` is what a registered head (heads/zoo/*.py, or a user's module) builds on:
``__init__(cfg)`` keeps its validated config section; ``save(folder)`` writes ``head.yaml``
(the head's name, format version, its config and ``model_args``, the arguments its network
is built with) next to the weights that ``save_weights`` writes; ``load(folder)`` needs
nothing else. A head fills ``curves`` (one dict per epoch or round) and ``best_epoch``
when it watches rows for early stopping.

Cross-validation (heads/crossval.py) fits by row positions: ``fit(train, watch, labels,
seed, epochs) -> Fitted`` and ``predict(fitted, rows)``. ``RowsHead`` adapts any
registered head to it; every fitted head stays in ``Fitted.model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import yaml

HEAD_FILE = "head.yaml"
HEAD_FORMAT_VERSION = 1


@dataclass
class Fitted:
    model: Any
    best_epoch: int | None = None  # epochs (or boosting rounds) that were best on the hold-out
    curves: list[dict] = field(default_factory=list)  # one dict per epoch or round


class Head(Protocol):
    """Cross-validation's view: fit and predict by row positions."""

    name: str
    refit: bool  # retrain on all training rows after the inner hold-out chose what it chooses

    def fit(self, train: np.ndarray, watch: np.ndarray | None, labels: np.ndarray, seed: int, epochs: int | None = None) -> Fitted: ...

    def predict(self, fitted: Fitted, rows: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict: ...


class HeadBase:
    name: ClassVar[str]
    inputs: ClassVar[str]  # "vectors" or "map"
    refit: ClassVar[bool] = True  # cross-validation refits on all training rows (a config key `refit` overrides)

    def __init__(self, cfg):
        self.cfg = cfg
        self.curves: list[dict] = []
        self.best_epoch: int | None = None

    # what a head overrides besides fit and predict_proba
    def model_args(self) -> dict:
        return {}

    def save_weights(self, folder: Path) -> None:
        raise NotImplementedError

    def load_weights(self, folder: Path, model_args: dict) -> None:
        raise NotImplementedError

    @classmethod
    def build_module(cls, model_args: dict):
        """The torch network (map -> logit) of a map head, for fine-tuning on the backbone."""
        from vidstore.heads.registry import HeadError

        raise HeadError(f"head {cls.name!r} has no torch network to put on a backbone; fine-tuning needs a map head that has one")

    def module(self):
        """This fitted head's torch network (see ``build_module``)."""
        return self.build_module(self.model_args())

    def importance(self) -> np.ndarray | None:
        """Per-feature importance of a fitted vectors head (None: the head has none)."""
        return None

    @classmethod
    def describe(cls, cfg, source) -> dict:
        return {**source.describe(), "params": cfg.model_dump(mode="json")}

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"head": self.name, "version": HEAD_FORMAT_VERSION, "cfg": self.cfg.model_dump(mode="json"), "model_args": self.model_args()}
        (folder / HEAD_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
        self.save_weights(folder)

    @classmethod
    def load(cls, folder: str | Path) -> "HeadBase":
        from vidstore.store.provenance import check_version

        folder = Path(folder)
        path = folder / HEAD_FILE
        if not path.is_file():
            from vidstore.heads.registry import HeadError

            raise HeadError(f"{folder} holds no saved head ({HEAD_FILE}); train the run again with this version")
        from vidstore.store.artifacts import ArtifactError, read_yaml_file

        spec = read_yaml_file(path, "saved head")
        if not isinstance(spec, dict):
            raise ArtifactError(f"saved head {path} is not a mapping of fields")
        check_version(spec.get("version"), HEAD_FORMAT_VERSION, f"saved head {path}")
        head = cls(cls.Params.model_validate(spec["cfg"]))
        head.load_weights(folder, spec.get("model_args") or {})
        return head


class RowsHead:
    """A registered head class seen by cross-validation: each fit makes a fresh head."""

    def __init__(self, head_class: type, cfg, table):
        self.head_class, self.cfg, self.table = head_class, cfg, table
        self.name = head_class.name
        self.refit = getattr(cfg, "refit", head_class.refit)
        self.videos = table.rows["video_id"].to_numpy()
        self.fitted: list = []

    def fit(self, train: np.ndarray, watch: np.ndarray | None, labels: np.ndarray, seed: int, epochs: int | None = None) -> Fitted:
        from vidstore.heads.data import HeadData

        source = self.table.source
        watching = HeadData(source, watch, labels, self.videos) if watch is not None and len(watch) else None
        head = self.head_class(self.cfg).fit(HeadData(source, train, labels, self.videos, seed, epochs, watching))
        self.fitted.append(head)
        return Fitted(model=head, best_epoch=head.best_epoch, curves=list(head.curves))

    def predict(self, fitted: Fitted, rows: np.ndarray) -> np.ndarray:
        from vidstore.heads.data import HeadData

        return fitted.model.predict_proba(HeadData(self.table.source, rows, videos=self.videos))

    def importance(self, top: int = 20) -> list[tuple[str, float]] | None:
        """Mean importance per feature over every head fitted, largest first."""
        values = [h.importance() for h in self.fitted]
        if not values or values[0] is None:
            return None
        mean = np.mean(values, axis=0)
        order = np.argsort(mean)[::-1][:top]
        return [(self.table.source.names[i], float(mean[i])) for i in order]

    def describe(self) -> dict:
        return self.head_class.describe(self.cfg, self.table.source)
