"""Handcrafted forensic statistics of a clip, vectorised over its frames (torch, no loops
over pixels).

Input: the video's own pixels of a clip (T, 3, h, w) in [0, 1] (``content_crop`` removes
the letterbox bars first; filters only use pixels whose whole neighbourhood lies inside
the content), and the video's container metadata. Output: one float32 vector, its entries
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
- dct_dc_mean, dct_dc_std: mean and std of the 8x8 block DCT's DC coefficient (block
  brightness); blocks are laid from the content's top-left corner, never over the bars.
- dct_ac_abs_mean, dct_ac_std, dct_ac_energy: mean |.|, std and mean square of the AC
  coefficients: texture and detail left after compression.
- dct_hf_lf_ratio: energy of high-frequency AC coefficients (u + v >= 8) over that of
  low-frequency ones (1 <= u + v <= 4): what quantisation and down-and-up scaling remove.
- blockiness: mean |step| across the 8-pixel grid over the mean |step| inside blocks
  (rows and columns averaged); 1 for none, above 1 when block edges show. At a stored
  scale that resized the video, the codec's grid is only partly aligned with this one.

Container metadata from the index, the same for every variant and scale of a video (NaN
when the index lacks it):

- meta_log_bitrate: log(1 + bit/s); meta_fps; meta_width, meta_height (pixels);
  meta_duration (s); meta_codec_h264, _hevc, _vp9, _av1, _other: the codec, one-hot.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HANDCRAFTED_VERSION = 2
PIXEL_NAMES = (
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
    "dct_dc_mean",
    "dct_dc_std",
    "dct_ac_abs_mean",
    "dct_ac_std",
    "dct_ac_energy",
    "dct_hf_lf_ratio",
    "blockiness",
)
CODECS = ("h264", "hevc", "vp9", "av1")
META_NAMES = (
    "meta_log_bitrate",
    "meta_fps",
    "meta_width",
    "meta_height",
    "meta_duration",
    *(f"meta_codec_{c}" for c in CODECS),
    "meta_codec_other",
)
HANDCRAFTED_NAMES = PIXEL_NAMES + META_NAMES

_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
_MEAN3 = torch.full((1, 1, 3, 3), 1.0 / 9.0)
_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3) / 4.0
_SOBEL_Y = _SOBEL_X.transpose(2, 3)
EDGE_THRESHOLD = 0.25
DUPLICATE_THRESHOLD = 0.5 / 255.0  # mean |difference| below half a grey level: a repeated frame
MIN_CONTENT = 10  # pixels per side; smaller content has no interior for the 3x3 filters and 8x8 blocks
_EPS = 1e-8


def _dct_matrix(n: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix: coefficients = D @ block @ D.T."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(torch.pi * (2 * i + 1) * k / (2 * n)) * (2.0 / n) ** 0.5
    d[0] /= 2**0.5
    return d.float()


_DCT8 = _dct_matrix(8)
_FREQ = torch.arange(8)[:, None] + torch.arange(8)[None, :]  # u + v of each coefficient
_LOW = (_FREQ >= 1) & (_FREQ <= 4)
_HIGH = _FREQ >= 8


def content_crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The video's own pixels of a letterboxed clip (T, C, S, S)."""
    return clip[:, :, top : top + height, left : left + width]


def _filter(gray: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """'valid' 3x3 filtering: the output only uses pixels inside the content."""
    return F.conv2d(gray, kernel.to(gray.dtype))


def pixel_statistics(content: torch.Tensor) -> torch.Tensor:
    """(T, 3, h, w) content pixels in [0, 1] -> (len(PIXEL_NAMES),) float32.

    Content smaller than MIN_CONTENT pixels on a side gives NaN (missing) for every entry.
    """
    if content.ndim != 4 or content.shape[1] != 3:
        raise ValueError(f"expected a clip (T, 3, h, w), got {tuple(content.shape)}")
    if content.shape[2] < MIN_CONTENT or content.shape[3] < MIN_CONTENT:
        return torch.full((len(PIXEL_NAMES),), float("nan"))  # not measurable: missing, not zero
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
        *_dct_statistics(gray[:, 0]),
        _blockiness(gray[:, 0]),
    ]
    return torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in values])


def _dct_statistics(gray: torch.Tensor) -> list[torch.Tensor]:
    """DC mean, DC std, AC mean |.|, AC std, AC energy, high/low AC energy, over the 8x8
    blocks that fit inside the content (anchored at its top-left)."""
    t, h, w = gray.shape
    h8, w8 = h // 8 * 8, w // 8 * 8
    blocks = gray[:, :h8, :w8].reshape(t, h8 // 8, 8, w8 // 8, 8).permute(0, 1, 3, 2, 4)
    coef = _DCT8 @ blocks @ _DCT8.T  # (t, bh, bw, 8, 8)
    dc = coef[..., 0, 0]
    ac = coef.flatten(-2)[..., 1:]
    power = coef.square()
    low = power[..., _LOW].sum(-1).mean()
    high = power[..., _HIGH].sum(-1).mean()
    return [dc.mean(), dc.std(unbiased=False), ac.abs().mean(), ac.std(unbiased=False), ac.square().mean(), high / (low + _EPS)]


def _blockiness(gray: torch.Tensor) -> torch.Tensor:
    """Mean |step| across the 8-pixel grid over the mean |step| inside blocks, rows and
    columns averaged. A flat or grid-free image gives 1 (or 0/0 -> 1)."""
    ratios = []
    for steps in ((gray[:, :, 1:] - gray[:, :, :-1]).abs(), (gray[:, 1:, :] - gray[:, :-1, :]).abs().transpose(1, 2)):
        at = torch.arange(steps.shape[-1])
        boundary = (at + 1) % 8 == 0  # the step from column 8k-1 to 8k
        across, inside = steps[..., boundary].mean(), steps[..., ~boundary].mean()
        ratios.append((across + _EPS) / (inside + _EPS) if boundary.any() else torch.ones(()))
    return torch.stack(ratios).mean()


def container_features(meta: dict | None) -> torch.Tensor:
    """The index's container metadata of a video -> (len(META_NAMES),) float32; NaN where missing."""
    meta = meta or {}

    def number(key: str) -> float:
        value = meta.get(key)
        return float(value) if value is not None and value == value else float("nan")

    codec = meta.get("codec")
    bitrate = number("bitrate")
    one_hot = [float(codec == c) for c in CODECS] + [float(codec is not None and codec not in CODECS)]
    if codec is None:
        one_hot = [float("nan")] * (len(CODECS) + 1)
    values = [math.log1p(bitrate) if bitrate == bitrate else bitrate, number("fps"), number("width"), number("height"), number("duration")]
    return torch.tensor(values + one_hot, dtype=torch.float32)


def handcrafted_features(content: torch.Tensor, meta: dict | None = None) -> torch.Tensor:
    """Pixel statistics of the content, then the video's container metadata: (len(HANDCRAFTED_NAMES),)."""
    return torch.cat([pixel_statistics(content), container_features(meta)])


def _block_means(values: torch.Tensor, block: int) -> torch.Tensor:
    """Means over non-overlapping block×block tiles (a partial edge tile is dropped)."""
    h, w = values.shape[-2] // block * block, values.shape[-1] // block * block
    if h == 0 or w == 0:
        return values.mean(dim=(-2, -1)).flatten()
    return F.avg_pool2d(values[..., :h, :w], block).flatten()
