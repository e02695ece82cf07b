"""The end-to-end model: a video backbone up to one tap, then a map head's network; and
its artifact's spec (``model.yaml``).

``VideoClassifier`` takes normalised clips (B, 3, T, S, S) and returns one logit of "fake"
per clip. Its head is the same module a map head (``inception``) trains on stored maps, so
a head from a run warm-starts it exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn

from vidstore.features.backbone import TAP_ORDER, BackboneTaps
from vidstore.store import StoreProvenance
from vidstore.store.provenance import versioned_fields

MODEL_SPEC = "model.yaml"
MODEL_SPEC_VERSION = 2  # 2: typed spec; the head named (registry) with its network's arguments


@dataclass(frozen=True)
class ModelSpec:
    """``models/NAME/model.yaml``: everything needed to rebuild and apply the model."""

    backbone: str
    tap: str
    head: str  # the registered head whose network sits on the tap
    head_args: dict  # that network's constructor arguments
    clip: dict  # the clip config, and "scale": the clip size the model reads
    threshold: float
    training: dict
    metrics: dict
    weights: dict  # file, sha256
    provenance: StoreProvenance
    calibration: dict | None = None
    exports: dict = field(default_factory=dict)
    version: int = MODEL_SPEC_VERSION

    @property
    def scale(self) -> int:
        return int(self.clip["scale"])

    def to_dict(self) -> dict:
        out = asdict(self)
        out["provenance"] = self.provenance.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str = "model spec") -> "ModelSpec":
        values = versioned_fields(cls, data, MODEL_SPEC_VERSION, where)
        values["provenance"] = StoreProvenance.from_dict(data["provenance"], f"{where}: provenance")
        return cls(**values)

    @classmethod
    def read(cls, folder: str | Path) -> "ModelSpec":
        path = Path(folder) / MODEL_SPEC
        from vidstore.store.artifacts import ArtifactError, read_yaml_file

        data = read_yaml_file(path, "model spec")
        if data is not None and not isinstance(data, dict):
            raise ArtifactError(f"model spec {path} is not a mapping of fields")
        return cls.from_dict(data or {}, f"model {folder} ({MODEL_SPEC})")

    def write(self, folder: str | Path) -> None:
        from vidstore.heads.runs import json_safe

        (Path(folder) / MODEL_SPEC).write_text(yaml.safe_dump(json_safe(self.to_dict()), sort_keys=False))

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")


class VideoClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, tap: str, head: nn.Module):
        super().__init__()
        if tap not in STAGES:
            raise ValueError(f"the head reads a map tap, one of {STAGES}; got {tap!r}")
        self.taps = BackboneTaps(backbone, [tap])
        self.tap = tap
        self.head = head

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.taps(clips)[self.tap])

    def stages(self) -> dict[str, nn.Module]:
        """The backbone's stages up to the tap (the rest never runs)."""
        backbone = self.taps.backbone
        last = TAP_ORDER.index(self.tap)
        return {name: getattr(backbone, name) for name in STAGES[: last + 1]}


def set_trainable(model: VideoClassifier, trainable: list[str], freeze_bn: bool) -> list[nn.Parameter]:
    """Freeze every backbone stage not in ``trainable`` (``all`` = every stage); with
    ``freeze_bn`` the batch-norm layers keep their statistics and affine weights. Returns
    the backbone parameters left trainable."""
    names = list(model.stages()) if trainable == ["all"] else trainable
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise ValueError(f"unknown backbone stage(s) {unknown}; choose from {list(STAGES)} or [all]")
    for p in model.taps.backbone.parameters():
        p.requires_grad = False
    params = []
    for name, stage in model.stages().items():
        if name not in names:
            continue
        for module in stage.modules():
            if freeze_bn and isinstance(module, nn.modules.batchnorm._BatchNorm):
                continue
            for p in module.parameters(recurse=False):
                p.requires_grad = True
                params.append(p)
    return params


def keep_frozen_bn_in_eval(model: VideoClassifier, freeze_bn: bool) -> None:
    """After ``model.train()``: frozen stages and frozen batch norms stay in eval mode, so
    their running statistics never move."""
    for name, stage in model.stages().items():
        trainable = any(p.requires_grad for p in stage.parameters())
        for module in stage.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and (freeze_bn or not trainable):
                module.eval()
