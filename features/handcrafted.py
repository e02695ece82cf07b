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
    """The video's own pixels of letterboxed clips (..., C, S, S)."""
    return clip[..., top : top + height, left : left + width]


def _filters(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """'valid' 3x3 filters of (..., h, w) planes (outputs use pixels inside the content only):
    the 3x3 mean, the Laplacian, and the Sobel x and y derivatives (each /4), (..., h-2, w-2).

    Written as sums of shifted slices, not conv2d: a 1-channel 3x3 convolution over many
    planes is memory-bound anyway, and oneDNN's kernel for it slows down more than tenfold
    when the batch grows.
    """
    rows = planes[..., :-2, :], planes[..., 1:-1, :], planes[..., 2:, :]
    column_sum = rows[0] + rows[1] + rows[2]
    mean3 = (column_sum[..., :-2] + column_sum[..., 1:-1] + column_sum[..., 2:]) / 9.0
    centre = rows[1][..., 1:-1]
    laplace = rows[1][..., :-2] + rows[1][..., 2:] + rows[0][..., 1:-1] + rows[2][..., 1:-1] - 4.0 * centre
    smooth_v = rows[0] + 2.0 * rows[1] + rows[2]  # [1, 2, 1] down the columns
    sobel_x = (smooth_v[..., 2:] - smooth_v[..., :-2]) / 4.0
    cols = planes[..., :, :-2], planes[..., :, 1:-1], planes[..., :, 2:]
    smooth_h = cols[0] + 2.0 * cols[1] + cols[2]  # [1, 2, 1] along the rows
    sobel_y = (smooth_h[..., 2:, :] - smooth_h[..., :-2, :]) / 4.0
    return mean3, laplace, sobel_x, sobel_y


def pixel_statistics(content: torch.Tensor) -> torch.Tensor:
    """(T, 3, h, w) content pixels in [0, 1] -> (len(PIXEL_NAMES),) float32 (one clip)."""
    if content.ndim != 4 or content.shape[1] != 3:
        raise ValueError(f"expected a clip (T, 3, h, w), got {tuple(content.shape)}")
    return pixel_statistics_batch(content[None])[0]


def pixel_statistics_batch(content: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, h, w) content pixels in [0, 1], clips of one size -> (B, len(PIXEL_NAMES))
    float32, on the clips' device. Every statistic is computed per clip: a clip's row does
    not depend on the other clips of the batch.

    Content smaller than MIN_CONTENT pixels on a side gives NaN (missing) for every entry.
    """
    if content.ndim != 5 or content.shape[2] != 3:
        raise ValueError(f"expected clips (B, T, 3, h, w), got {tuple(content.shape)}")
    b, t, _, h, w = content.shape
    if h < MIN_CONTENT or w < MIN_CONTENT:
        return torch.full((b, len(PIXEL_NAMES)), float("nan"), device=content.device)  # not measurable: missing, not zero
    if not content.is_cuda and b > 1:
        # on a CPU, clip by clip keeps the intermediates in cache (2x faster than all at once)
        return torch.cat([_pixel_statistics(content[i : i + 1]) for i in range(b)])
    return _pixel_statistics(content)


def _pixel_statistics(content: torch.Tensor) -> torch.Tensor:
    b, t, _, h, w = content.shape
    x = content.float()
    gray = (x * _LUMA.to(x.device).view(1, 1, 3, 1, 1)).sum(dim=2)  # (B, T, h, w)
    mean3, laplace, sobel_x, sobel_y = _filters(gray)

    residual = gray[..., 1:-1, 1:-1] - mean3
    blocks = _block_means(residual.square().reshape(b * t, 1, h - 2, w - 2), 8)
    gradient = torch.hypot(sobel_x, sobel_y)
    if t > 1:
        diffs = (gray[:, 1:] - gray[:, :-1]).abs().mean(dim=(2, 3))  # (B, T-1)
    rows = []
    for i in range(b):  # reductions clip by clip: a clip's values do not depend on the batch
        r, g = residual[i].flatten(), gradient[i].flatten()
        k = blocks[i * t : (i + 1) * t].flatten()
        if t > 1:
            d = diffs[i]
            temporal = [d.mean(), d.std(unbiased=False), d.max() / (d.median() + 1e-3), (d < DUPLICATE_THRESHOLD).float().mean()]
        else:
            temporal = [torch.zeros((), device=x.device)] * 2 + [torch.ones((), device=x.device), torch.zeros((), device=x.device)]
        rows.append(torch.stack([
            r.square().mean(),
            r.abs().mean(),
            r.std(unbiased=False),
            k.std(unbiased=False) / (k.mean() + _EPS),
            laplace[i].flatten().var(unbiased=False),
            g.mean(),
            g.std(unbiased=False),
            (g > EDGE_THRESHOLD).float().mean(),
            *x[i].transpose(0, 1).reshape(3, -1).std(dim=1),
            *temporal,
            *_dct_statistics(gray[i]),
            _blockiness(gray[i]),
        ]))
    return torch.stack(rows).float()


def _dct_statistics(gray: torch.Tensor) -> list[torch.Tensor]:
    """DC mean, DC std, AC mean |.|, AC std, AC energy, high/low AC energy of one clip's
    (T, h, w) gray frames, over the 8x8 blocks that fit inside the content (anchored at its
    top-left)."""
    t, h, w = gray.shape
    h8, w8 = h // 8 * 8, w // 8 * 8
    blocks = gray[:, :h8, :w8].reshape(t, h8 // 8, 8, w8 // 8, 8).permute(0, 1, 3, 2, 4)
    dct = _DCT8.to(gray.device)
    coef = dct @ blocks @ dct.T  # (t, bh, bw, 8, 8)
    dc = coef[..., 0, 0]
    ac = coef.flatten(-2)[..., 1:]
    power = coef.square()
    low = power[..., _LOW.to(gray.device)].sum(-1).mean()
    high = power[..., _HIGH.to(gray.device)].sum(-1).mean()
    return [dc.mean(), dc.std(unbiased=False), ac.abs().mean(), ac.std(unbiased=False), ac.square().mean(), high / (low + _EPS)]


def _blockiness(gray: torch.Tensor) -> torch.Tensor:
    """Mean |step| across the 8-pixel grid over the mean |step| inside blocks of one clip's
    (T, h, w) gray frames, rows and columns averaged. A flat or grid-free image gives 1 (or
    0/0 -> 1)."""
    ratios = []
    for steps in ((gray[:, :, 1:] - gray[:, :, :-1]).abs(), (gray[:, 1:, :] - gray[:, :-1, :]).abs().transpose(1, 2)):
        at = torch.arange(steps.shape[-1], device=gray.device)
        boundary = (at + 1) % 8 == 0  # the step from column 8k-1 to 8k
        across, inside = steps[..., boundary].mean(), steps[..., ~boundary].mean()
        ratios.append((across + _EPS) / (inside + _EPS) if boundary.any() else torch.ones((), device=gray.device))
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
    return handcrafted_batch(content[None], meta)[0]


def handcrafted_batch(content: torch.Tensor, meta: dict | None = None) -> torch.Tensor:
    """Clips (B, T, 3, h, w) of one video -> (B, len(HANDCRAFTED_NAMES)) float32 on the CPU:
    each clip's pixel statistics, then the video's container metadata."""
    pixels = pixel_statistics_batch(content).cpu()
    return torch.cat([pixels, container_features(meta).expand(len(pixels), -1)], dim=1)


def _block_means(values: torch.Tensor, block: int) -> torch.Tensor:
    """(N, 1, h, w) -> the means over non-overlapping block×block tiles (a partial edge tile
    is dropped), (N, 1, h // block, w // block)."""
    h, w = values.shape[-2] // block * block, values.shape[-1] // block * block
    if h == 0 or w == 0:
        return values.mean(dim=(-2, -1), keepdim=True)
    return F.avg_pool2d(values[..., :h, :w], block)
