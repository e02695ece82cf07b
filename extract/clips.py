"""From one decoded clip to everything computed from it: variants, scales, statistics.

The decoded clip is letterboxed to the first (largest) scale. Variant 0 is that clip;
variants 1..K are augmentations of its content (the letterbox bars stay black), drawn
from (seed, video_id, variant). Every variant then exists at every scale: the other scales
are downscales of the letterboxed variant (area averaging by default, anti-aliased), so
all scales show the same pixels. Nothing is decoded twice and nothing is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from configs import AugmentConfig, ClipConfig
from extract.augment import Params, apply_variant, draw_variant, variant_rng
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


def make_scaled_clips(
    frames: np.ndarray, box: LetterboxBox, clip: ClipConfig, handcrafted: bool = True, meta: dict | None = None
) -> dict[int, ScaledClip]:
    """Letterboxed uint8 frames (T, S, S, 3) and their content box -> {scale: ScaledClip};
    ``meta`` is the video's container metadata for the handcrafted vector."""
    if frames.shape[1] != clip.size or frames.shape[2] != clip.size:
        raise ValueError(f"frames are {frames.shape[1]}x{frames.shape[2]}, expected the letterbox size {clip.size}")
    base = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
    out = {}
    for scale in clip.scales:
        pixels = downscale(base, scale, clip.downscale)
        stats = None
        if handcrafted:
            b = scale_box(box, clip.size, scale)
            stats = handcrafted_features(content_crop(pixels, b.top, b.left, b.height, b.width), meta)
        out[scale] = ScaledClip(clip=normalise(pixels, clip.mean, clip.std), handcrafted=stats)
    return out


def variant_ops(augment: AugmentConfig, video_id: str, n_frames: int) -> list[list[Params]]:
    """The ops and parameters of variants 0..K of one video (variant 0: none)."""
    plans: list[list[Params]] = [[]]
    for k in range(1, augment.variants + 1):
        explicit = augment.explicit[(k - 1) % len(augment.explicit)] if augment.explicit else None
        plans.append(
            draw_variant(
                variant_rng(augment.seed, video_id, k), n_frames,
                spatial=augment.spatial, temporal=augment.temporal, ops=augment.ops, explicit=explicit,
            )
        )
    return plans


def make_variant(frames: np.ndarray, box: LetterboxBox, ops: list[Params]) -> np.ndarray:
    """A letterboxed clip (T, S, S, 3) with ``ops`` applied to its content only."""
    if not ops:
        return frames
    out = frames.copy()
    rows, cols = slice(box.top, box.top + box.height), slice(box.left, box.left + box.width)
    out[:, rows, cols] = apply_variant(frames[:, rows, cols], ops)
    return out
