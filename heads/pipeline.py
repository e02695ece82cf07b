"""The extraction's clip pipeline and backbone, rebuilt from a store's provenance.

Fine-tuning and prediction must see clips exactly as extraction made them (sampling,
letterbox, scales, normalisation, augmentation policy) and run the same backbone with
the same weights. The store records all of it; these functions turn the record back
into configs and a network, and refuse weights whose hash differs from the record.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vidstore.configs import AugmentConfig, BackboneConfig, ClipConfig
from vidstore.extract.clips import downscale, normalise
from vidstore.features.backbone import WeightsError, build_backbone
from vidstore.store import StoreProvenance


class PipelineError(ValueError):
    """A provenance record that cannot be rebuilt (missing, or other weights than recorded)."""


def clip_config_of(provenance: StoreProvenance) -> ClipConfig:
    try:
        return ClipConfig.model_validate(provenance.preprocessing["clip"])
    except KeyError:
        raise PipelineError("the store's provenance has no clip config (preprocessing.clip)") from None


def augment_config_of(provenance: StoreProvenance) -> AugmentConfig:
    recorded = dict(provenance.preprocessing.get("augment", {}))
    recorded.pop("version", None)
    return AugmentConfig.model_validate(recorded) if recorded else AugmentConfig(variants=0)


def backbone_of(provenance: StoreProvenance, backbone_cfg: BackboneConfig | None = None) -> nn.Module:
    """The recorded backbone with the recorded weights (checked by their hash).

    Random weights are rebuilt from their seed; Kinetics-400 weights are loaded the usual
    way (``backbone_cfg`` says where to look) and must hash as the store recorded.
    """
    try:
        recorded = provenance.backbone["weights"]
        name = provenance.backbone["name"]
    except KeyError:
        raise PipelineError("the store's provenance has no backbone record") from None
    cfg = backbone_cfg or BackboneConfig()
    seed = int(recorded["origin"].removeprefix("seed=")) if recorded["source"] == "random" else cfg.seed
    try:
        model, info = build_backbone(
            name, recorded["source"], weights_path=cfg.weights_path, weights_url=cfg.weights_url,
            allow_download=cfg.allow_download, seed=seed,
        )
    except WeightsError as err:
        raise PipelineError(str(err)) from None
    if info.sha256 != recorded["sha256"]:
        raise PipelineError(
            f"the {name} weights found ({info.origin}, sha256 {info.sha256[:12]}) are not the ones the store was "
            f"extracted with (sha256 {recorded['sha256'][:12]})"
        )
    return model


def clip_at_scale(frames: np.ndarray, clip: ClipConfig, scale: int) -> torch.Tensor:
    """Letterboxed uint8 frames (T, S, S, 3) -> the normalised clip (3, T, s, s) at ``scale``,
    the same arithmetic as extraction's make_scaled_clips."""
    base = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
    return normalise(downscale(base, scale, clip.downscale), clip.mean, clip.std)
