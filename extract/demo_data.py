"""The built-in demo dataset: small procedural videos, half of them manipulated.

Real FVC videos cannot be shipped, so the demo makes its own stand-ins that carry the
same kinds of signal the real task depends on. A "real" scene looks like a handheld
camera: a textured world seen through a crop window that pans and shakes, a few
textured, shaded objects moving on smooth paths, slow lighting drift, and fresh sensor
noise in every frame. A "fake" scene is the same kind of scene with exactly one edit of
the kinds that debunked user videos show: a splice to other footage, a pasted region
whose blur and missing noise do not match its surroundings, a downscale plus low-quality
re-encode before publishing, or held and dropped frames. Each scene is then published
1-4 times like a re-upload cascade (the original encode, then re-encodes at a lower
bitrate, another size, a crop or a mirror), and all copies share a group id so that
grouped splits can be tested for leakage. Everything is drawn from
``numpy.random.default_rng`` seeded by (seed, scene index, purpose), so scene k is the
same whatever the number of videos asked for, and one seed always gives the same files.

Usage::

    from vidstore.extract.demo_data import make_demo_dataset
    labels_csv = make_demo_dataset("demo_out/data", n_videos=120, seed=0)
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GENERATOR_VERSION = 1

MANIPULATIONS = ("splice", "paste", "recompress", "frames")
EDITS = ("bitrate", "resize", "crop", "mirror")

# Purposes of the seeded random streams; each is combined with (seed, index) so that
# changing how one thing is drawn never shifts the draws of another.
_STREAM_LABEL, _STREAM_KIND, _STREAM_COPIES, _STREAM_SCENE = 1, 2, 3, 4
_STREAM_MANIPULATION, _STREAM_PUBLISH = 5, 6

_VIDEO_NAME = re.compile(r"^(seed\d+-)?s\d{4,}_c\d+\.mp4(\.part)?$")


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


# --------------------------------------------------------------------------- textures


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Random values on a grid of `cell`-pixel spacing, smoothly interpolated to `shape`."""
    h, w = shape
    grid = rng.standard_normal((int(h / cell) + 3, int(w / cell) + 3)).astype(np.float32)
    offset_y, offset_x = rng.uniform(0.0, 1.0, size=2)
    ys = np.arange(h, dtype=np.float32) / cell + offset_y
    xs = np.arange(w, dtype=np.float32) / cell + offset_x
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    # Smoothstep weights hide the grid, which linear weights would leave visible as a lattice.
    fy = _smoothstep(0.0, 1.0, ys - y0)[:, None]
    fx = _smoothstep(0.0, 1.0, xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float,
                  octaves: int, persistence: float = 0.55) -> np.ndarray:
    """Sum of value-noise octaves (each half the cell size), scaled to unit variance."""
    total = np.zeros(shape, dtype=np.float32)
    for octave in range(octaves):
        total += persistence**octave * value_noise(rng, shape, max(cell / 2**octave, 1.0))
    return total / max(float(total.std()), 1e-6)


def sinusoid_pattern(rng: np.random.Generator, shape: tuple[int, int], n_waves: int,
                     min_period: float, max_period: float) -> np.ndarray:
    """Sum of plane waves with random orientation, period and phase, scaled to about [-1, 1]."""
    h, w = shape
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    total = np.zeros(shape, dtype=np.float32)
    for _ in range(n_waves):
        angle = rng.uniform(0.0, np.pi)
        period = rng.uniform(min_period, max_period)
        phase = rng.uniform(0.0, 2 * np.pi)
        total += np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    return total / max(n_waves, 1) ** 0.5


def colour_texture(rng: np.random.Generator, shape: tuple[int, int], cell: float,
                   px: float) -> np.ndarray:
    """A coloured surface in [0, 1]: soft-edged colour regions, fine detail and a weave."""
    regions = _smoothstep(-0.35, 0.35, fractal_noise(rng, shape, 3 * cell, octaves=2))
    colour_a, colour_b = rng.uniform(0.12, 0.88, size=(2, 3)).astype(np.float32)
    texture = colour_a + (colour_b - colour_a) * regions[..., None]
    # Detail is nearly grey with a tint, as surface grain is on real materials.
    tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    detail = fractal_noise(rng, shape, cell, octaves=4, persistence=0.6)
    texture = texture + rng.uniform(0.04, 0.12) * detail[..., None] * tint
    waves = sinusoid_pattern(rng, shape, int(rng.integers(1, 4)), 4 * px, 24 * px)
    texture = texture + rng.uniform(0.0, 0.06) * waves[..., None] * tint[::-1]
    return np.clip(texture, 0.0, 1.0).astype(np.float32)


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable gaussian blur over the two axes before the last (…, H, W, C), edges clamped."""
    if sigma <= 0:
        return images.astype(np.float32)
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    out = images.astype(np.float32)
    for axis in (out.ndim - 3, out.ndim - 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        size = out.shape[axis]
        window = [slice(None)] * out.ndim
        blurred = np.zeros_like(out)
        for k, tap in enumerate(taps):
            window[axis] = slice(k, k + size)
            blurred += tap * padded[tuple(window)]
        out = blurred
    return out.astype(np.float32)


def sample_bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear lookup of an (h, w, C) image at float coordinates, clamped to the border."""
    h, w = image.shape[:2]
    ys = np.clip(ys, 0.0, h - 1.001)
    xs = np.clip(xs, 0.0, w - 1.001)
    y0, x0 = ys.astype(np.intp), xs.astype(np.intp)
    fy = (ys - y0).astype(np.float32)[..., None]
    fx = (xs - x0).astype(np.float32)[..., None]
    # Gathering from the flattened image is about twice as fast as 2-D fancy indexing.
    flat = image.reshape(h * w, -1)
    i = y0 * w + x0
    top_left, top_right = flat[i], flat[i + 1]
    bottom_left, bottom_right = flat[i + w], flat[i + w + 1]
    top = top_left + (top_right - top_left) * fx
    bottom = bottom_left + (bottom_right - bottom_left) * fx
    return top + (bottom - top) * fy


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (n, H, W, 3) frames, blurred first when shrinking to avoid aliasing."""
    n, in_h, in_w = frames.shape[:3]
    out = frames.astype(np.float32)
    shrink = max(in_h / height, in_w / width)
    if shrink > 1:
        out = gaussian_blur(out, 0.5 * (shrink - 1) + 0.25)
    ys = np.clip((np.arange(height) + 0.5) * in_h / height - 0.5, 0, in_h - 1.001)
    xs = np.clip((np.arange(width) + 0.5) * in_w / width - 0.5, 0, in_w - 1.001)
    y0, x0 = ys.astype(np.int64), xs.astype(np.int64)
    fy = (ys - y0).astype(np.float32)[None, :, None, None]
    fx = (xs - x0).astype(np.float32)[None, None, :, None]
    out = out[:, y0] * (1 - fy) + out[:, y0 + 1] * fy
    out = out[:, :, x0] * (1 - fx) + out[:, :, x0 + 1] * fx
    return _to_uint8(out)


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True, eq=False)
class Sprite:
    """A textured shape moving on a bounded smooth (Lissajous) path in frame coordinates."""

    texture: np.ndarray           # (h, w, 3) float in [0, 1], centred on the shape
    shape: str                    # "ellipse" or "roundrect"
    half_size: tuple[float, float]  # (ry, rx) in pixels
    corner: float                 # corner radius of a roundrect, pixels
    anchor: tuple[float, float]   # path centre (y, x) in the frame at t = 0
    amplitude: tuple[float, float]
    omega: tuple[float, float]    # radians per frame
    phase: tuple[float, float]
    angle0: float
    spin: float                   # radians per frame
    parallax: float               # 0: the camera tracks it; 1: fixed in the world
    shading: float                # strength of the directional light across the shape
    rim: float                    # darkening toward the edge, a hint of curvature
    light_angle: float
    edge: float                   # width of the soft edge in pixels (1: anti-aliasing)


@dataclass(frozen=True, eq=False)
class SceneParams:
    """Everything `render_scene` needs; independent of the number of frames rendered."""

    height: int
    width: int
    background: np.ndarray        # (H + 2 my, W + 2 mx, 3) float in [0, 1]
    camera_centre: tuple[float, float]
    camera_amplitude: tuple[float, float]
    camera_omega: tuple[float, float]
    camera_phase: tuple[float, float]
    shake_amplitude: tuple[float, float]
    shake_omega: tuple[float, float]
    shake_phase: tuple[float, float]
    objects: tuple[Sprite, ...]
    gain_amplitude: float
    gain_omega: float
    gain_phase: float
    offset_amplitude: float
    offset_omega: float
    offset_phase: float
    white_balance_amplitude: float
    vignette: float
    noise_sigma: float            # in units of 1/255
    noise_seed: int


def _pixel_scale(height: int, width: int) -> float:
    """Lengths are tuned at 160x120; this scales them to other frame sizes."""
    return min(height, width) / 120.0


def draw_sprite(rng: np.random.Generator, height: int, width: int, *, radius: tuple[float, float],
                speed: tuple[float, float], edge: float, blur: float = 0.0,
                parallax: tuple[float, float] = (0.0, 1.0),
                shading: tuple[float, float] = (0.08, 0.2)) -> Sprite:
    """A random textured shape; `radius` is a fraction of the short side, `speed` px/frame."""
    px = _pixel_scale(height, width)
    short = min(height, width)
    ry, rx = rng.uniform(*radius, size=2) * short
    reach = math.ceil(math.hypot(ry, rx)) + 3
    texture = colour_texture(rng, (2 * reach, 2 * reach), rng.uniform(3, 8) * px, px)
    if blur > 0:
        texture = gaussian_blur(texture, blur)
    amplitude = (rng.uniform(0.05, 0.2) * height, rng.uniform(0.08, 0.25) * width)
    speeds = rng.uniform(*speed, size=2) * px
    # A small amplitude with a high speed would make the shape vibrate; cap the frequency.
    omega = tuple(float(min(v / a, 2 * np.pi / 30)) for v, a in zip(speeds, amplitude))
    return Sprite(
        texture=texture,
        shape=str(rng.choice(["ellipse", "roundrect"])),
        half_size=(float(ry), float(rx)),
        corner=float(rng.uniform(0.2, 0.5) * min(ry, rx)),
        anchor=(float(rng.uniform(0.3, 0.7) * height), float(rng.uniform(0.25, 0.75) * width)),
        amplitude=(float(amplitude[0]), float(amplitude[1])),
        omega=omega,
        phase=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, size=2)),
        angle0=float(rng.uniform(0, 2 * np.pi)),
        spin=float(rng.uniform(-0.02, 0.02)),
        parallax=float(rng.uniform(*parallax)),
        shading=float(rng.uniform(*shading)),
        rim=float(rng.uniform(0.05, 0.15)) if shading[1] > 0 else 0.0,
        light_angle=float(rng.uniform(0, 2 * np.pi)),
        edge=edge,
    )


def draw_scene_params(rng: np.random.Generator, height: int, width: int) -> SceneParams:
    """A random camera-like scene: background, camera path, 1-3 objects, lighting, noise."""
    px = _pixel_scale(height, width)
    camera_amplitude = (rng.uniform(0.03, 0.1) * height, rng.uniform(0.08, 0.2) * width)
    camera_speed = rng.uniform(0.3, 1.2, size=2) * px
    camera_omega = tuple(float(min(v / a, 2 * np.pi / 40))
                         for v, a in zip(camera_speed, camera_amplitude))
    shake_amplitude = tuple(float(a) for a in rng.uniform(0.3, 1.2, size=2) * px)
    shake_omega = tuple(float(2 * np.pi / p) for p in rng.uniform(6, 16, size=2))
    # The background is just big enough that the bounded camera path never leaves it.
    margin = [math.ceil(a + s + 2) for a, s in zip(camera_amplitude, shake_amplitude)]
    background = colour_texture(rng, (height + 2 * margin[0], width + 2 * margin[1]),
                                rng.uniform(8, 20) * px, px)
    objects = tuple(
        draw_sprite(rng, height, width, radius=(0.1, 0.22), speed=(0.3, 1.8), edge=max(px, 0.7))
        for _ in range(int(rng.integers(1, 4)))
    )
    return SceneParams(
        height=height,
        width=width,
        background=background,
        camera_centre=(float(margin[0]), float(margin[1])),
        camera_amplitude=(float(camera_amplitude[0]), float(camera_amplitude[1])),
        camera_omega=camera_omega,
        camera_phase=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, size=2)),
        shake_amplitude=shake_amplitude,
        shake_omega=shake_omega,
        shake_phase=tuple(float(p) for p in rng.uniform(0, 2 * np.pi, size=2)),
        objects=objects,
        gain_amplitude=float(rng.uniform(0.03, 0.08)),
        gain_omega=float(2 * np.pi / rng.uniform(60, 200)),
        gain_phase=float(rng.uniform(0, 2 * np.pi)),
        offset_amplitude=float(rng.uniform(0.005, 0.02)),
        offset_omega=float(2 * np.pi / rng.uniform(60, 200)),
        offset_phase=float(rng.uniform(0, 2 * np.pi)),
        white_balance_amplitude=float(rng.uniform(0.0, 0.03)),
        vignette=float(rng.uniform(0.1, 0.35)),
        noise_sigma=float(rng.uniform(2.0, 4.0)),
        noise_seed=int(rng.integers(0, 2**63)),
    )


def camera_offsets(params: SceneParams, times: np.ndarray) -> np.ndarray:
    """(n, 2) top-left corner (y, x) of the crop window in background pixels."""
    t = times[:, None].astype(np.float64)
    pan = np.array(params.camera_amplitude) * np.sin(np.array(params.camera_omega) * t
                                                     + np.array(params.camera_phase))
    shake = np.array(params.shake_amplitude) * np.sin(np.array(params.shake_omega) * t
                                                      + np.array(params.shake_phase))
    return np.array(params.camera_centre) + pan + shake


def sprite_centre(sprite: Sprite, t: int, camera_shift: np.ndarray) -> tuple[float, float]:
    """Centre (y, x) in the frame; `camera_shift` is how far the camera moved since t = 0."""
    cy, cx = (a + amp * math.sin(w * t + p) - sprite.parallax * s
              for a, amp, w, p, s in zip(sprite.anchor, sprite.amplitude, sprite.omega,
                                         sprite.phase, camera_shift))
    return cy, cx


def render_sprite(sprite: Sprite, t: int, centre: tuple[float, float], height: int, width: int
                  ) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray] | None:
    """The sprite's pixels inside the frame: (bounding box, rgb (h, w, 3), alpha (h, w, 1))."""
    cy, cx = centre
    ry, rx = sprite.half_size
    reach = math.hypot(ry, rx) + 2 * sprite.edge + 1
    top, bottom = max(0, int(cy - reach)), min(height, int(cy + reach) + 1)
    left, right = max(0, int(cx - reach)), min(width, int(cx + reach) + 1)
    if top >= bottom or left >= right:
        return None
    v = np.arange(top, bottom, dtype=np.float32)[:, None] - np.float32(cy)
    u = np.arange(left, right, dtype=np.float32)[None, :] - np.float32(cx)
    angle = sprite.angle0 + sprite.spin * t
    cos_a, sin_a = np.float32(math.cos(angle)), np.float32(math.sin(angle))
    ur = u * cos_a + v * sin_a
    vr = -u * sin_a + v * cos_a
    if sprite.shape == "ellipse":
        # Radial distance scaled by the short radius: close to a true signed distance
        # near the edge, which is all the soft edge needs.
        signed = (np.sqrt((ur / rx) ** 2 + (vr / ry) ** 2) - 1) * min(rx, ry)
    else:
        c = sprite.corner
        qx, qy = np.abs(ur) - (rx - c), np.abs(vr) - (ry - c)
        signed = (np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
                  + np.minimum(np.maximum(qx, qy), 0) - c)
    alpha = _smoothstep(0.0, 1.0, 0.5 - signed / sprite.edge)
    if not alpha.any():
        return None
    half = sprite.texture.shape[0] / 2
    rgb = sample_bilinear(sprite.texture, vr + half, ur + half)
    if sprite.shading or sprite.rim:
        # The light is fixed in the frame, so it does not turn with the spinning texture.
        radius = max(rx, ry)
        light = (1 + sprite.shading * (u * math.cos(sprite.light_angle)
                                       + v * math.sin(sprite.light_angle)) / radius
                 - sprite.rim * ((ur / rx) ** 2 + (vr / ry) ** 2))
        rgb = rgb * light[..., None]
    return (slice(top, bottom), slice(left, right)), rgb, alpha[..., None]


def _composite(frame: np.ndarray, placed) -> None:
    if placed is None:
        return
    box, rgb, alpha = placed
    frame[box] = frame[box] * (1 - alpha) + rgb * alpha


def render_scene(params: SceneParams, n_frames: int) -> np.ndarray:
    """Render (n_frames, H, W, 3) uint8 frames; frame t is the same whatever n_frames is."""
    h, w = params.height, params.width
    noise_rng = np.random.default_rng(params.noise_seed)
    yy = (np.arange(h, dtype=np.float32)[:, None] / h - 0.5) ** 2
    xx = (np.arange(w, dtype=np.float32)[None, :] / w - 0.5) ** 2
    vignette = (1 - params.vignette * 2 * (yy + xx))[..., None]
    # Warm/cool white-balance drift moves red and blue in opposite directions.
    warm = np.array([1.0, 0.0, -1.0], dtype=np.float32)
    offsets = camera_offsets(params, np.arange(n_frames))
    frames = np.empty((n_frames, h, w, 3), dtype=np.uint8)
    for t in range(n_frames):
        top, left = offsets[t]
        iy, ix = int(top), int(left)
        fy, fx = np.float32(top - iy), np.float32(left - ix)
        bg = params.background
        frame = ((bg[iy:iy + h, ix:ix + w] * (1 - fx) + bg[iy:iy + h, ix + 1:ix + w + 1] * fx)
                 * (1 - fy)
                 + (bg[iy + 1:iy + h + 1, ix:ix + w] * (1 - fx)
                    + bg[iy + 1:iy + h + 1, ix + 1:ix + w + 1] * fx) * fy)
        shift = offsets[t] - offsets[0]
        for sprite in params.objects:
            _composite(frame, render_sprite(sprite, t, sprite_centre(sprite, t, shift), h, w))
        gain = 1 + params.gain_amplitude * math.sin(params.gain_omega * t + params.gain_phase)
        balance = 1 + params.white_balance_amplitude * math.sin(params.gain_omega * 0.7 * t) * warm
        offset = params.offset_amplitude * math.sin(params.offset_omega * t + params.offset_phase)
        frame = (frame * vignette * (gain * balance) + offset) * 255
        # Fresh noise every frame, drawn in frame order so frame t never depends on n_frames.
        frame += noise_rng.standard_normal((h, w, 3), dtype=np.float32) * params.noise_sigma
        frames[t] = _to_uint8(frame)
    return frames


# --------------------------------------------------------------------------- manipulations


def splice_scenes(frames: np.ndarray, other: np.ndarray, cut: int) -> np.ndarray:
    """Frames before `cut` from one scene, from `cut` on from another."""
    return np.concatenate([frames[:cut], other[cut:len(frames)]])


def draw_paste_sprite(rng: np.random.Generator, height: int, width: int) -> Sprite:
    """A blurred foreign region with a feathered edge that ignores the camera's motion."""
    px = _pixel_scale(height, width)
    return draw_sprite(rng, height, width, radius=(0.14, 0.24), speed=(0.4, 1.5),
                       edge=float(rng.uniform(3, 6) * px),
                       # Below about 1.5 px the blur would hide in the texture's own softness.
                       blur=float(rng.uniform(1.5, 2.5) * max(px, 1.0)),
                       parallax=(0.0, 0.0), shading=(0.0, 0.0))


def paste_region(frames: np.ndarray, sprite: Sprite) -> np.ndarray:
    """Composite the sprite over finished frames: it gets no sensor noise and no lighting drift."""
    n, h, w = frames.shape[:3]
    out = frames.copy()
    no_shift = np.zeros(2)
    for t in range(n):
        placed = render_sprite(sprite, t, sprite_centre(sprite, t, no_shift), h, w)
        if placed is None:
            continue
        box, rgb, alpha = placed
        region = out[t][box].astype(np.float32)
        out[t][box] = _to_uint8(region * (1 - alpha) + rgb * 255 * alpha)
    return out


def downscale_upscale(frames: np.ndarray, scale: float) -> np.ndarray:
    """Shrink by `scale` and enlarge back: the softness of a low-resolution source."""
    n, h, w = frames.shape[:3]
    small = resize_frames(frames, max(2, round(h * scale)), max(2, round(w * scale)))
    return resize_frames(small, h, w)


def temporal_edit_indices(n_out: int, rng: np.random.Generator) -> np.ndarray:
    """Source frame indices for `n_out` output frames with held frames and dropped chunks.

    At least one frame is held (shown 2-4 times); up to two chunks of 3-7 frames are
    skipped, which reads as a jump in motion. Events are spread over the clip, away from
    its ends, and fewer fit in short clips.
    """
    kinds = ["hold"] + list(rng.permutation(
        ["hold"] * int(rng.integers(1, 3)) + ["drop"] * int(rng.integers(1, 3))))
    low, high = 2, n_out - 5
    kinds = [str(k) for k in rng.permutation(kinds[:max(1, (high - low) // 3)])]
    slot = (high - low) / len(kinds)
    events = []
    for k, kind in enumerate(kinds):
        position = low + int(k * slot + rng.uniform(0, max(slot - 2, 1)))
        length = int(rng.integers(2, 5)) if kind == "hold" else int(rng.integers(3, 8))
        events.append((position, kind, length))
    indices: list[int] = []
    source = 0
    while len(indices) < n_out:
        # An event whose position a long hold stepped over still happens, just later.
        if events and len(indices) >= events[0][0]:
            _, kind, length = events.pop(0)
        else:
            kind, length = "play", 1
        if kind == "hold":
            indices.extend([source] * length)
        else:
            if kind == "drop":
                source += length
            indices.append(source)
        source += 1
    return np.array(indices[:n_out], dtype=np.int64)


# --------------------------------------------------------------------------- publishing


def edit_resize(frames: np.ndarray, factor: float) -> np.ndarray:
    n, h, w = frames.shape[:3]
    return resize_frames(frames, _even(h * factor), _even(w * factor))


def edit_crop(frames: np.ndarray, fraction: float, anchor_y: float, anchor_x: float) -> np.ndarray:
    """Keep a `fraction`-sized window; anchors in [0, 1] place it (0.5, 0.5 is the centre)."""
    n, h, w = frames.shape[:3]
    ch, cw = _even(h * fraction), _even(w * fraction)
    top, left = round((h - ch) * anchor_y), round((w - cw) * anchor_x)
    return frames[:, top:top + ch, left:left + cw]


def edit_mirror(frames: np.ndarray) -> np.ndarray:
    return frames[:, :, ::-1]


def _even(value: float) -> int:
    return max(2, int(round(value / 2)) * 2)


def publish_copy(frames: np.ndarray, edit: str, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Apply one re-upload edit to decoded frames; return the frames and the CRF to encode at."""
    if edit == "original":
        return frames, int(rng.integers(20, 24))
    if edit == "bitrate":
        return frames, int(rng.integers(30, 35))
    crf = int(rng.integers(22, 27))
    if edit == "resize":
        return edit_resize(frames, float(rng.choice([0.75, 1.25]))), crf
    if edit == "crop":
        anchors = rng.uniform(0.0, 1.0, size=2) if rng.random() < 0.5 else (0.5, 0.5)
        return edit_crop(frames, float(rng.uniform(0.8, 0.9)), *anchors), crf
    if edit == "mirror":
        return edit_mirror(frames), crf
    raise ValueError(f"unknown publish edit {edit!r}; expected one of original, {', '.join(EDITS)}")


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ScenePlan:
    index: int
    label: str          # "real" or "fake"
    manipulation: str   # "none" or one of MANIPULATIONS
    edits: tuple[str, ...]  # one per published copy; edits[0] == "original"
    seed: int = 0

    @property
    def group(self) -> str:
        # Another seed makes other scenes: their names (video ids and groups) must differ
        # from seed 0's, or a dataset made to test a model on would look like its training set.
        return f"s{self.index:04d}" if self.seed == 0 else f"seed{self.seed}-s{self.index:04d}"

    def video_path(self, copy: int) -> str:
        return f"videos/{self.group}_c{copy}.mp4"


def plan_scene(seed: int, index: int) -> ScenePlan:
    """Label, manipulation and published copies of scene `index`, whatever the dataset size."""
    # Scenes come in pairs with one fake each, so any prefix of scenes is balanced within one.
    pair = index // 2
    fake = index % 2 == int(_rng(seed, pair, _STREAM_LABEL).integers(0, 2))
    manipulation = "none"
    if fake:
        # Every four consecutive fakes use each manipulation once, in a seeded order.
        order = _rng(seed, pair // 4, _STREAM_KIND).permutation(len(MANIPULATIONS))
        manipulation = MANIPULATIONS[order[pair % 4]]
    copies_rng = _rng(seed, index, _STREAM_COPIES)
    n_copies = int(copies_rng.integers(1, 5))
    edits = ("original",) + tuple(str(e) for e in copies_rng.permutation(EDITS)[:n_copies - 1])
    return ScenePlan(index, "fake" if fake else "real", manipulation, edits, int(seed))


def plan_dataset(seed: int, n_videos: int) -> list[ScenePlan]:
    """Scenes in order until `n_videos` copies exist; the last scene's copies are truncated."""
    plans: list[ScenePlan] = []
    total = 0
    while total < n_videos:
        plan = plan_scene(seed, len(plans))
        keep = min(len(plan.edits), n_videos - total)
        plans.append(ScenePlan(plan.index, plan.label, plan.manipulation, plan.edits[:keep], plan.seed))
        total += keep
    return plans


def scene_frames(plan: ScenePlan, seed: int, height: int, width: int, n_frames: int,
                 fps: int) -> np.ndarray:
    """The scene as it was before publishing: rendered, then manipulated if fake."""
    params = draw_scene_params(_rng(seed, plan.index, _STREAM_SCENE), height, width)
    rng = _rng(seed, plan.index, _STREAM_MANIPULATION)
    if plan.manipulation == "none":
        return render_scene(params, n_frames)
    if plan.manipulation == "splice":
        other = draw_scene_params(rng, height, width)
        cut = int(rng.integers(n_frames // 3, 2 * n_frames // 3 + 1))
        return splice_scenes(render_scene(params, n_frames), render_scene(other, n_frames), cut)
    if plan.manipulation == "paste":
        return paste_region(render_scene(params, n_frames), draw_paste_sprite(rng, height, width))
    if plan.manipulation == "recompress":
        softened = downscale_upscale(render_scene(params, n_frames), float(rng.uniform(0.4, 0.6)))
        return decode_h264(encode_h264(softened, fps, int(rng.integers(35, 41))))
    if plan.manipulation == "frames":
        indices = temporal_edit_indices(n_frames, rng)
        return render_scene(params, int(indices.max()) + 1)[indices]
    raise ValueError(f"unknown manipulation {plan.manipulation!r}")


# --------------------------------------------------------------------------- encoding (I/O)


def encode_h264(frames: np.ndarray, fps: int, crf: int, preset: str = "medium") -> bytes:
    """H.264 (libx264, yuv420p) in an mp4 container, as bytes; single-threaded so the
    output is byte-for-byte reproducible."""
    n, h, w = frames.shape[:3]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": str(crf), "preset": preset}
        for t in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[t]), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def decode_h264(data: bytes) -> np.ndarray:
    """Decode every frame of an in-memory video to (n, H, W, 3) uint8 RGB."""
    with av.open(io.BytesIO(data), "r") as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _write_atomic(path: Path, data: bytes) -> None:
    # A killed run leaves a .part file, never a truncated .mp4 that looks finished.
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


# --------------------------------------------------------------------------- entry point


def _check_arguments(n_videos: int, seed: int, width: int, height: int, n_frames: int,
                     fps: int) -> None:
    if n_videos < 4:
        raise ValueError(f"demo n_videos must be at least 4 (got {n_videos})")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"demo seed must be a non-negative integer (got {seed!r})")
    if width < 32 or height < 32:
        raise ValueError(f"demo width and height must be at least 32 (got {width}x{height})")
    if width % 2 or height % 2:
        raise ValueError(f"demo width and height must be even for yuv420p (got {width}x{height})")
    if n_frames < 8:
        raise ValueError(f"demo n_frames must be at least 8 (got {n_frames})")
    if fps < 1:
        raise ValueError(f"demo fps must be at least 1 (got {fps})")


def make_demo_dataset(out_dir: str | Path, n_videos: int = 120, seed: int = 0, *,
                      width: int = 128, height: int = 96, n_frames: int = 32, fps: int = 24,
                      progress: bool = False) -> Path:
    """Write the demo videos under out_dir/videos/ and out_dir/labels.csv; return the labels.csv path."""
    _check_arguments(n_videos, seed, width, height, n_frames, fps)
    out_dir = Path(out_dir)
    videos_dir = out_dir / "videos"
    videos_dir.mkdir(parents=True, exist_ok=True)
    # Until this run finishes, the folder must not look like a complete demo dataset.
    (out_dir / "demo.json").unlink(missing_ok=True)
    plans = plan_dataset(int(seed), n_videos)

    from vidstore.extract.progress import Progress

    rows = []
    with Progress("demo videos", n_videos, "video", show=progress) as bar:
        for plan in plans:
            frames = scene_frames(plan, int(seed), height, width, n_frames, fps)
            publish_rng = _rng(int(seed), plan.index, _STREAM_PUBLISH)
            decoded = None
            for copy, edit in enumerate(plan.edits):
                # Re-uploads are made from the published original, as on real platforms,
                # so every copy after the first carries two generations of compression.
                source = frames if copy == 0 else decoded
                edited, crf = publish_copy(source, edit, publish_rng)
                data = encode_h264(edited, fps, crf)
                if copy == 0 and len(plan.edits) > 1:
                    decoded = decode_h264(data)
                _write_atomic(out_dir / plan.video_path(copy), data)
                rows.append((plan.video_path(copy), plan.label, plan.group, plan.manipulation,
                             edit))
                bar.update(1)

    # Videos left from an earlier, larger run would not be in labels.csv; remove them so the
    # folder and the table agree.
    expected = {Path(row[0]).name for row in rows}
    for stale in videos_dir.iterdir():
        if _VIDEO_NAME.match(stale.name) and stale.name not in expected:
            stale.unlink()

    labels_csv = out_dir / "labels.csv"
    with open(labels_csv, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "label", "group", "manipulation", "edit"])
        writer.writerows(rows)
    # demo.json is written last: the indexer takes it as the sign of a complete dataset.
    meta = {"generator_version": GENERATOR_VERSION, "seed": int(seed), "n_videos": n_videos,
            "width": width, "height": height, "n_frames": n_frames, "fps": fps}
    (out_dir / "demo.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return labels_csv


def write_long_video(path: str | Path, seconds: float, fps: int, width: int, height: int) -> int:
    """A long test video, cheap to make: a checkerboard with a moving bright block, built
    straight in YUV and encoded with x264's fastest preset. Returns the frame count.

    For measuring memory and decoding work on long, high-resolution input (what a demo
    scene is too small to show), not for training.
    """
    n = int(round(seconds * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    luma = ((xx // 40 + yy // 40) % 2 * 120 + 60).astype(np.uint8)
    chroma = np.full((height // 2, width), 128, np.uint8)
    cycle = []
    for i in range(50):
        y = luma.copy()
        x0 = (i * width // 50) % (width - width // 10)
        y[height // 3 : height // 2, x0 : x0 + width // 10] = 255
        cycle.append(np.concatenate([y, chroma]))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28", "g": str(10 * fps)}
        for i in range(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(cycle[i % 50], format="yuv420p")))
        container.mux(stream.encode(None))
    return n
