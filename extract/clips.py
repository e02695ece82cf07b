"""From decoded frames to what is computed: scales, normalisation, handcrafted statistics.

The decoded clip is letterboxed to the first (largest) scale; every other scale is a
downscale of it (area averaging by default, which is anti-aliased), so all scales show the
same pixels. Variants (augmentations) will be made here too, from the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from configs import ClipConfig
from extract.video import LetterboxBox, scale_box
from features.handcrafted import content_crop, handcrafted_features


def downscale(clip: torch.Tensor, size: int, method: str = "area") -> torch.Tensor:
    """(T, C, S, S) float -> (T, C, size, size); area averaging or anti-aliased bilinear."""
    if clip.shape[-1] == size:
        return clip
    if method == "area":
        return F.interpolate(clip, size=(size, size), mode="area")
    return F.interpolate(clip, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def normalise(clip: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(T, C, S, S) in [0, 1] -> Kinetics-normalised (C, T, S, S), the layout video models take."""
    m = torch.tensor(mean, dtype=clip.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=clip.dtype).view(1, -1, 1, 1)
    return ((clip - m) / s).permute(1, 0, 2, 3).contiguous()


@dataclass
class ScaledClip:
    """One scale of a clip: the network input and (optionally) its handcrafted statistics."""

    clip: torch.Tensor  # normalised (3, T, s, s) float32
    handcrafted: torch.Tensor | None  # (F,) float32, measured on content pixels only


def make_scaled_clips(frames: np.ndarray, box: LetterboxBox, clip: ClipConfig, handcrafted: bool = True) -> dict[int, ScaledClip]:
    """Letterboxed uint8 frames (T, S, S, 3) and their content box -> {scale: ScaledClip}."""
    if frames.shape[1] != clip.size or frames.shape[2] != clip.size:
        raise ValueError(f"frames are {frames.shape[1]}x{frames.shape[2]}, expected the letterbox size {clip.size}")
    base = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
    out = {}
    for scale in clip.scales:
        pixels = downscale(base, scale, clip.downscale)
        stats = None
        if handcrafted:
            b = scale_box(box, clip.size, scale)
            stats = handcrafted_features(content_crop(pixels, b.top, b.left, b.height, b.width))
        out[scale] = ScaledClip(clip=normalise(pixels, clip.mean, clip.std), handcrafted=stats)
    return out
