"""Handcrafted forensic statistics of a clip, vectorised over its frames (torch, no loops
over pixels).

Input: a clip (T, 3, H, W) in [0, 1] and the box holding the video's own pixels; the
letterbox bars are cropped away before anything is measured, and filters only use pixels
whose whole neighbourhood lies inside the box. Output: one float32 vector, its entries
named by ``HANDCRAFTED_NAMES``. Each statistic, what it measures:

- noise_energy, noise_abs_mean, noise_std: mean square, mean |.|, std of the high-pass
  residual (frame minus its 3x3 mean): sensor noise and fine detail; recompression and
  blur lower it.
- noise_block_cv: spread (std / mean) of the residual energy over 8x8 blocks: a pasted
  region with other noise than its surroundings raises it.
- laplacian_var: variance of the 3x3 Laplacian: sharpness; low for blurred content.
- grad_mean, grad_std: mean and std of the Sobel gradient magnitude: edge strength.
- edge_density: share of pixels whose Sobel magnitude exceeds 0.25: how busy the edges are.
- color_std_r, color_std_g, color_std_b: per-channel std over the clip: colour spread.
- tdiff_mean, tdiff_std: mean and std over time of the mean |frame(t+1) - frame(t)|: motion.
- tdiff_spike: largest frame difference over the median one: a cut or splice, a jump
  from dropped frames.
- dup_ratio: share of consecutive frame pairs that are (nearly) identical: held or
  duplicated frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HANDCRAFTED_VERSION = 1
HANDCRAFTED_NAMES = (
    "noise_energy",
    "noise_abs_mean",
    "noise_std",
    "noise_block_cv",
    "laplacian_var",
    "grad_mean",
    "grad_std",
    "edge_density",
    "color_std_r",
    "color_std_g",
    "color_std_b",
    "tdiff_mean",
    "tdiff_std",
    "tdiff_spike",
    "dup_ratio",
)

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
_MEAN3 = torch.full((1, 1, 3, 3), 1.0 / 9.0)
_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3) / 4.0
_SOBEL_Y = _SOBEL_X.transpose(2, 3)
EDGE_THRESHOLD = 0.25
DUPLICATE_THRESHOLD = 0.5 / 255.0  # mean |difference| below half a grey level: a repeated frame
MIN_CONTENT = 10  # pixels per side; smaller content has no interior for the 3x3 filters and 8x8 blocks
_EPS = 1e-8


def content_crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The video's own pixels of a letterboxed clip (T, C, S, S)."""
    return clip[:, :, top : top + height, left : left + width]


def _filter(gray: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """'valid' 3x3 filtering: the output only uses pixels inside the content."""
    return F.conv2d(gray, kernel.to(gray.dtype))


def handcrafted_features(content: torch.Tensor) -> torch.Tensor:
    """(T, 3, h, w) content pixels in [0, 1] -> (len(HANDCRAFTED_NAMES),) float32.

    Content smaller than MIN_CONTENT pixels on a side gives NaN (missing) for every entry.
    """
    if content.ndim != 4 or content.shape[1] != 3:
        raise ValueError(f"expected a clip (T, 3, h, w), got {tuple(content.shape)}")
    if content.shape[2] < MIN_CONTENT or content.shape[3] < MIN_CONTENT:
        return torch.full((len(HANDCRAFTED_NAMES),), float("nan"))  # not measurable: missing, not zero
    x = content.float()
    gray = (x * _LUMA).sum(dim=1, keepdim=True)  # (T, 1, h, w)

    residual = gray[:, :, 1:-1, 1:-1] - _filter(gray, _MEAN3)
    energy = residual.square()
    blocks = _block_means(energy, 8)
    laplace = _filter(gray, _LAPLACE)
    gradient = torch.hypot(_filter(gray, _SOBEL_X), _filter(gray, _SOBEL_Y))
    colour_std = x.permute(1, 0, 2, 3).reshape(3, -1).std(dim=1)

    if gray.shape[0] > 1:
        diffs = (gray[1:] - gray[:-1]).abs().mean(dim=(1, 2, 3))  # (T-1,)
        tdiff_mean, tdiff_std = diffs.mean(), diffs.std(unbiased=False)
        spike = diffs.max() / (diffs.median() + 1e-3)
        dup = (diffs < DUPLICATE_THRESHOLD).float().mean()
    else:
        tdiff_mean = tdiff_std = dup = torch.zeros(())
        spike = torch.ones(())

    values = [
        energy.mean(),
        residual.abs().mean(),
        residual.std(unbiased=False),
        blocks.std(unbiased=False) / (blocks.mean() + _EPS),
        laplace.var(unbiased=False),
        gradient.mean(),
        gradient.std(unbiased=False),
        (gradient > EDGE_THRESHOLD).float().mean(),
        *colour_std,
        tdiff_mean,
        tdiff_std,
        spike,
        dup,
    ]
    return torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in values])


def _block_means(values: torch.Tensor, block: int) -> torch.Tensor:
    """Means over non-overlapping block×block tiles (a partial edge tile is dropped)."""
    h, w = values.shape[-2] // block * block, values.shape[-1] // block * block
    if h == 0 or w == 0:
        return values.mean(dim=(-2, -1)).flatten()
    return F.avg_pool2d(values[..., :h, :w], block).flatten()
