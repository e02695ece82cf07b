"""Deterministic clip augmentations: each a small pure function of (frames, params).

A variant's parameters are drawn once per clip (never per frame: a flip or a rotation
holds for the whole clip) from a generator seeded by (global seed, video_id, variant
index), so a variant is the same bytes on every run, machine, worker and rank. The drawn
parameters are plain JSON and are stored with the variant's row; ``apply_variant`` on
the same frames and parameters gives the variant back.

Frames are the video's own pixels (the letterbox bars are not augmented): spatial ops
take and return float32 (T, 3, h, w) in [0, 1] on any device (random fields are drawn
with numpy on the CPU, so they are the same numbers wherever the op runs); temporal ops
are index maps that keep T frames. Ranges follow the original pipeline (SEED_NOTES): rotation ±15°, colour ×0.7–1.3,
noise σ 3–10/255, blur σ 0.5–2 px, translate ±10 %, scale 0.9–1.1, cutout 1–3 holes,
frame drop up to 25 %.
"""

from __future__ import annotations

import hashlib
import io
import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torchvision.transforms import InterpolationMode

AUGMENT_VERSION = 1
SPATIAL_OPS = ("rotate", "hflip", "color", "hue", "noise", "blur", "affine", "cutout", "elastic", "jpeg", "rescale")
TEMPORAL_OPS = ("drop", "duplicate", "reverse", "speed")
ALL_OPS = TEMPORAL_OPS + SPATIAL_OPS

Params = dict[str, Any]


def variant_rng(seed: int, video_id: str, variant: int) -> np.random.Generator:
    """The generator of one variant: (seed, video_id, variant), stable across processes.

    video_id enters through sha256, not Python's hash(), which differs between processes.
    """
    digest = int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, digest, variant])


# -- spatial ops: float (T, 3, h, w) in [0, 1] -> same shape ----------------------------------


def rotate(frames: torch.Tensor, degrees: float) -> torch.Tensor:
    return TF.rotate(frames, degrees, interpolation=InterpolationMode.BILINEAR, fill=0.0)


def hflip(frames: torch.Tensor) -> torch.Tensor:
    return TF.horizontal_flip(frames)


def color(frames: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    out = TF.adjust_brightness(frames, brightness)
    out = TF.adjust_contrast(out, contrast)
    return TF.adjust_saturation(out, saturation)


def hue(frames: torch.Tensor, shift: float) -> torch.Tensor:
    return TF.adjust_hue(frames, shift)


def noise(frames: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """Gaussian noise, fresh in every frame but fixed by ``seed`` (numpy's PCG64: same on every machine)."""
    field = np.random.default_rng(seed).standard_normal(tuple(frames.shape), dtype=np.float32)
    return frames + torch.from_numpy(field).to(frames.device, non_blocking=True) * sigma


def _kernel_size(sigma: float) -> int:
    return 2 * math.ceil(3 * sigma) + 1


def blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    k = _kernel_size(sigma)
    if k > min(frames.shape[-2:]):
        k = max(1, (min(frames.shape[-2:]) - 1) // 2 * 2 + 1)
    return TF.gaussian_blur(frames, [k, k], [sigma, sigma])


def affine(frames: torch.Tensor, translate_x: float, translate_y: float, scale: float, shear: float) -> torch.Tensor:
    """Translate by fractions of the size, scale, shear (degrees); no rotation (that is ``rotate``)."""
    h, w = frames.shape[-2:]
    return TF.affine(
        frames, angle=0.0, translate=[translate_x * w, translate_y * h], scale=scale, shear=[shear, 0.0],
        interpolation=InterpolationMode.BILINEAR, fill=0.0,
    )


def cutout(frames: torch.Tensor, holes: list[list[float]]) -> torch.Tensor:
    """Black rectangles; each hole is [top, left, height, width] as fractions of the size."""
    h, w = frames.shape[-2:]
    out = frames.clone()
    for top, left, height, width in holes:
        y0, x0 = int(top * h), int(left * w)
        out[..., y0 : y0 + max(1, int(height * h)), x0 : x0 + max(1, int(width * w))] = 0.0
    return out


def elastic(frames: torch.Tensor, alpha: float, sigma: float, seed: int) -> torch.Tensor:
    """A smooth random displacement field (the same for every frame), at most ``alpha``
    of the smaller side, smoothed over ``sigma`` of it."""
    h, w = frames.shape[-2:]
    raw = torch.from_numpy(np.random.default_rng(seed).standard_normal((2, 1, h, w), dtype=np.float32)).to(frames.device)
    s = max(sigma * min(h, w), 0.5)
    k = min(_kernel_size(s), (min(h, w) - 1) // 2 * 2 + 1)
    field = TF.gaussian_blur(raw, [k, k], [s, s])
    field = field / field.abs().amax().clamp_min(1e-8)  # peak displacement exactly alpha
    pixels = alpha * min(h, w)
    # grid units: [-1, 1] spans the image, so a pixel is 2 / size
    displacement = torch.stack([field[0, 0] * pixels * 2 / w, field[1, 0] * pixels * 2 / h], dim=-1)[None]
    return TF.elastic(frames, displacement, interpolation=InterpolationMode.BILINEAR, fill=0.0)


def jpeg(frames: torch.Tensor, quality: int) -> torch.Tensor:
    """Each frame through a JPEG encode and decode at ``quality``: Pillow's libjpeg on the
    CPU; on CUDA, torchvision's nvJPEG when it works there (its bytes differ from libjpeg's
    by about a grey level), else the CPU for this op alone."""
    pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8)
    if pixels.is_cuda:
        try:
            return _jpeg_cuda(pixels, quality).float() / 255
        except RuntimeError:  # a torchvision built without nvJPEG: the CPU for this op
            pass
    out = []
    for picture in pixels.permute(0, 2, 3, 1).cpu().numpy():
        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(out)).to(frames.device).permute(0, 3, 1, 2).float() / 255


def _jpeg_cuda(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    from torchvision.io import decode_jpeg, encode_jpeg

    encoded = encode_jpeg(list(pixels), quality=quality)
    return torch.stack(decode_jpeg(encoded, device=pixels.device))


def rescale(frames: torch.Tensor, factor: float) -> torch.Tensor:
    """Down by ``factor`` (area average), back up (bilinear): the softness of a small source."""
    h, w = frames.shape[-2:]
    small = F.interpolate(frames, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


# -- temporal ops: index maps of length T --------------------------------------------------


def drop(n: int, dropped: list[int]) -> np.ndarray:
    """Lose the ``dropped`` frames; the rest stretch over T (a jump where frames went missing)."""
    kept = np.array([i for i in range(n) if i not in set(dropped)])
    return kept[np.floor(np.arange(n) * len(kept) / n).astype(int)]


def duplicate(n: int, held: list[int], repeats: int) -> np.ndarray:
    """Show each ``held`` frame ``repeats`` extra times; later frames shift, T is kept."""
    order: list[int] = []
    for i in range(n):
        order.append(i)
        if i in held:
            order.extend([i] * repeats)
    return np.array(order[:n])


def reverse(n: int) -> np.ndarray:
    return np.arange(n)[::-1].copy()


def speed(n: int, factor: float, start: int) -> np.ndarray:
    """Slow motion: a window of round(n * factor) frames from ``start``, stretched over T."""
    length = max(1, round(n * factor))
    return start + np.floor(np.arange(n) * length / n).astype(int)


SPATIAL: dict[str, Callable[..., torch.Tensor]] = {
    "rotate": rotate, "hflip": hflip, "color": color, "hue": hue, "noise": noise, "blur": blur,
    "affine": affine, "cutout": cutout, "elastic": elastic, "jpeg": jpeg, "rescale": rescale,
}
TEMPORAL: dict[str, Callable[..., np.ndarray]] = {"drop": drop, "duplicate": duplicate, "reverse": reverse, "speed": speed}


# -- drawing parameters (once per clip) ------------------------------------------------------


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def draw_params(op: str, rng: np.random.Generator, n_frames: int) -> Params:
    """Parameters of ``op`` for one clip of ``n_frames`` frames, as plain JSON values."""
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if op == "rotate":
        return {"degrees": u(-15, 15)}
    if op == "hflip":
        return {}
    if op == "color":
        return {"brightness": u(0.7, 1.3), "contrast": u(0.7, 1.3), "saturation": u(0.7, 1.3)}
    if op == "hue":
        return {"shift": u(-0.05, 0.05)}
    if op == "noise":
        return {"sigma": u(3 / 255, 10 / 255), "seed": _seed(rng)}
    if op == "blur":
        return {"sigma": u(0.5, 2.0)}
    if op == "affine":
        return {"translate_x": u(-0.1, 0.1), "translate_y": u(-0.1, 0.1), "scale": u(0.9, 1.1), "shear": u(-10, 10)}
    if op == "cutout":
        holes = []
        for _ in range(int(rng.integers(1, 4))):
            height, width = u(0.1, 0.25), u(0.1, 0.25)
            holes.append([u(0, 1 - height), u(0, 1 - width), height, width])
        return {"holes": holes}
    if op == "elastic":
        return {"alpha": u(0.02, 0.05), "sigma": u(0.04, 0.08), "seed": _seed(rng)}
    if op == "jpeg":
        return {"quality": int(rng.integers(30, 91))}
    if op == "rescale":
        return {"factor": u(0.4, 0.8)}
    if op == "drop":
        n_drop = max(1, int(round(u(0.05, 0.25) * n_frames))) if n_frames > 1 else 0
        return {"dropped": sorted(int(i) for i in rng.choice(n_frames, size=min(n_drop, n_frames - 1), replace=False))}
    if op == "duplicate":
        n_held = int(rng.integers(1, max(2, n_frames // 4) + 1))
        return {"held": sorted(int(i) for i in rng.choice(n_frames, size=min(n_held, n_frames), replace=False)),
                "repeats": int(rng.integers(1, 3))}
    if op == "reverse":
        return {}
    if op == "speed":
        factor = u(0.5, 0.9)
        length = max(1, round(n_frames * factor))
        return {"factor": factor, "start": int(rng.integers(0, n_frames - length + 1))}
    raise ValueError(f"unknown augmentation {op!r}; choose from {ALL_OPS}")


def draw_variant(
    rng: np.random.Generator,
    n_frames: int,
    *,
    spatial: tuple[int, int] = (1, 2),
    temporal: tuple[int, int] = (0, 1),
    ops: tuple[str, ...] | list[str] = ALL_OPS,
    explicit: list[str] | None = None,
) -> list[Params]:
    """One variant's ops with their parameters: temporal ops first, then spatial ones, each
    group in its canonical order. ``explicit`` names the ops; otherwise their number is
    drawn from the ranges and the ops from ``ops``."""
    if explicit is not None:
        chosen = list(explicit)
    else:
        spatial_pool = [o for o in SPATIAL_OPS if o in ops]
        temporal_pool = [o for o in TEMPORAL_OPS if o in ops]
        n_s = min(int(rng.integers(spatial[0], spatial[1] + 1)), len(spatial_pool))
        n_t = min(int(rng.integers(temporal[0], temporal[1] + 1)), len(temporal_pool))
        chosen = [str(o) for o in rng.choice(temporal_pool, size=n_t, replace=False)] if n_t else []
        chosen += [str(o) for o in rng.choice(spatial_pool, size=n_s, replace=False)] if n_s else []
    chosen = sorted(chosen, key=ALL_OPS.index)
    return [{"op": op, **draw_params(op, rng, n_frames)} for op in chosen]


# -- applying --------------------------------------------------------------------------------


@contextmanager
def one_thread() -> Iterator[None]:
    """Augment single-threaded: the same bytes whether run in a worker or the main process."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def temporal_order(n: int, ops: list[Params]) -> np.ndarray:
    """The frame order that a variant's temporal ops make of T = ``n`` frames."""
    order = np.arange(n)
    for step in ops:
        if step["op"] in TEMPORAL:
            args = {k: v for k, v in step.items() if k != "op"}
            order = order[TEMPORAL[step["op"]](n, **args)]
    return order


def augment_frames(content: torch.Tensor, ops: list[Params]) -> torch.Tensor:
    """uint8 frames (T, 3, h, w) on any device -> the variant, uint8 (T, 3, h, w) on that
    device: temporal ops reorder frames, spatial ops run in float, the result is rounded
    back to uint8. Pure: same in, same out."""
    if not ops:
        return content
    order = torch.from_numpy(temporal_order(content.shape[0], ops)).to(content.device)
    frames = content.index_select(0, order).float().div_(255)
    for step in ops:
        if step["op"] in SPATIAL:
            args = {k: v for k, v in step.items() if k != "op"}
            frames = SPATIAL[step["op"]](frames, **args)
    return frames.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def apply_variant(content: np.ndarray, ops: list[Params]) -> np.ndarray:
    """uint8 frames (T, h, w, 3) -> the variant, uint8 (T, h, w, 3), one CPU thread. Pure:
    same in, same out (the per-clip reference of the device stage)."""
    if not ops:
        return content
    with one_thread():
        out = augment_frames(torch.from_numpy(np.ascontiguousarray(content)).permute(0, 3, 1, 2), ops)
    return out.permute(0, 2, 3, 1).contiguous().numpy()
