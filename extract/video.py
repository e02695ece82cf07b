"""Reading videos with PyAV: probing, uniform frame sampling by timestamp, letterboxing.

A clip is T frames sampled uniformly over the whole duration, each letterboxed into an
S×S canvas (aspect ratio kept, black bars). Decoding stops at the last sampled frame and
frames are resized as soon as they are picked, so memory holds T×S×S pixels, never the
video.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class VideoError(Exception):
    """A video that cannot be probed or decoded; the message is the recorded reason."""


def _reason(err: BaseException) -> str:
    """A short one-line reason: PyAV's message without its errno prefix and file name."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    text = re.sub(r":\s*'[^']*'$", "", text)
    return text[:300] or type(err).__name__


def probe_video(path: str | Path) -> dict:
    """Container and stream facts of a video, read from its headers (no full decode).

    Returns width, height, fps, n_frames, duration (s), codec, bitrate (bit/s), has_audio.
    Raises VideoError when the file has no readable video stream.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if not width or not height:
                raise VideoError("video stream has no frame size")
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else float("nan")
            duration = _stream_duration(container, stream)
            n_frames = int(stream.frames or 0)
            if n_frames <= 0 and math.isfinite(duration) and math.isfinite(fps):
                n_frames = int(round(duration * fps))
            bitrate = stream.bit_rate or container.bit_rate or 0
            return {
                "width": int(width),
                "height": int(height),
                "fps": fps,
                "n_frames": n_frames,
                "duration": duration,
                "codec": stream.codec_context.name,
                "bitrate": int(bitrate),
                "has_audio": bool(container.streams.audio),
            }
    except VideoError:
        raise
    except Exception as err:  # PyAV raises many error types for broken files
        raise VideoError(_reason(err)) from None


def _stream_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return float("nan")


def sample_frame_indices(n_frames: int, n_samples: int) -> np.ndarray:
    """Indices of ``n_samples`` frames spread uniformly over ``n_frames`` (centre of each bin).

    Shorter videos repeat frames (the rule used everywhere): 3 frames, 6 samples ->
    [0, 0, 1, 1, 2, 2].
    """
    if n_frames < 1 or n_samples < 1:
        raise ValueError(f"need at least one frame and one sample, got {n_frames}, {n_samples}")
    return np.floor((np.arange(n_samples) + 0.5) * n_frames / n_samples).astype(np.int64)


def sample_times(duration: float, n_samples: int) -> np.ndarray:
    """Timestamps (s) of ``n_samples`` uniform samples: the centres of equal bins of the duration.

    For a constant-rate video of n frames this picks the same frames as
    ``sample_frame_indices(n, n_samples)``; by time it is also right for variable frame rates.
    """
    return (np.arange(n_samples) + 0.5) * duration / n_samples


@dataclass(frozen=True)
class LetterboxBox:
    """Where the video's own pixels sit inside the S×S canvas."""

    top: int
    left: int
    height: int
    width: int


def scale_box(box: LetterboxBox, from_size: int, to_size: int) -> LetterboxBox:
    """The box in a canvas downscaled from ``from_size`` to ``to_size``, shrunk to the pixels
    that average only content (no bar pixel leaks in at the edges)."""
    r = to_size / from_size
    top, left = math.ceil(box.top * r), math.ceil(box.left * r)
    bottom, right = math.floor((box.top + box.height) * r), math.floor((box.left + box.width) * r)
    return LetterboxBox(top=top, left=left, height=max(0, bottom - top), width=max(0, right - left))


def letterbox_geometry(height: int, width: int, size: int) -> LetterboxBox:
    """Fit an H×W frame into size×size keeping its aspect ratio, centred."""
    if height < 1 or width < 1:
        raise ValueError(f"bad frame size {width}x{height}")
    scale = size / max(height, width)
    h = max(1, min(size, round(height * scale)))
    w = max(1, min(size, round(width * scale)))
    return LetterboxBox(top=(size - h) // 2, left=(size - w) // 2, height=h, width=w)


def place_in_canvas(content: np.ndarray, size: int, box: LetterboxBox) -> np.ndarray:
    """Put an h×w×3 image into a black size×size×3 canvas at ``box``."""
    canvas = np.zeros((size, size, content.shape[2]), dtype=content.dtype)
    canvas[box.top : box.top + box.height, box.left : box.left + box.width] = content
    return canvas


@dataclass
class DecodedClip:
    """T letterboxed frames of one video and what the sampling found."""

    frames: np.ndarray  # (T, S, S, 3) uint8
    box: LetterboxBox
    source_indices: np.ndarray  # decode-order index of the frame used for each sample
    n_decoded: int  # frames decoded to get there

    @property
    def n_unique(self) -> int:
        return int(len(np.unique(self.source_indices)))


def decode_clip(path: str | Path, n_samples: int, size: int) -> DecodedClip:
    """Decode ``n_samples`` frames sampled uniformly by timestamp, letterboxed to size×size.

    Each sample takes the frame on screen at its timestamp (the last frame whose
    presentation time is <= the sample time). Decoding stops after the frame that covers
    the last sample. A video with fewer frames than samples repeats frames (recorded in
    ``source_indices``). Raises VideoError with the reason when decoding fails.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            duration = _stream_duration(container, stream)
            if not math.isfinite(duration) or duration <= 0:
                duration = _duration_by_demux(path)
            targets = sample_times(duration, n_samples)
            return _decode_at(container, stream, targets, size)
    except VideoError:
        raise
    except Exception as err:
        raise VideoError(_reason(err)) from None


def _duration_by_demux(path: str | Path) -> float:
    """Duration from packet timestamps, for containers that do not state one."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start, end = None, None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t0 = packet.pts
            t1 = packet.pts + (packet.duration or 0)
            start = t0 if start is None else min(start, t0)
            end = t1 if end is None else max(end, t1)
        if start is None or end is None or end <= start:
            raise VideoError("cannot determine the video's duration")
        return float((end - start) * stream.time_base)


def _frame_time(frame: av.VideoFrame, origin: Fraction, time_base: Fraction | None, index: int, fps: float) -> float:
    if frame.pts is not None and time_base is not None:
        return float((frame.pts - origin) * time_base)
    return index / fps


def _decode_at(container, stream, targets: np.ndarray, size: int) -> DecodedClip:
    n_samples = len(targets)
    time_base = stream.time_base
    origin = stream.start_time or 0
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 25.0
    frames = np.zeros((n_samples, size, size, 3), dtype=np.uint8)
    source = np.full(n_samples, -1, dtype=np.int64)
    box: LetterboxBox | None = None

    def take(frame: av.VideoFrame, frame_index: int, sample: int) -> None:
        nonlocal box
        if box is None:
            box = letterbox_geometry(frame.height, frame.width, size)
        if sample > 0 and source[sample - 1] == frame_index:
            frames[sample] = frames[sample - 1]
        else:
            # swscale's area filter resizes straight from YUV: anti-aliased, no full-size RGB copy
            rgb = frame.reformat(width=box.width, height=box.height, format="rgb24", interpolation="AREA")
            frames[sample] = place_in_canvas(rgb.to_ndarray(), size, box)
        source[sample] = frame_index

    nxt = 0
    previous: tuple[av.VideoFrame, int] | None = None
    index = -1
    for index, frame in enumerate(container.decode(stream)):
        t = _frame_time(frame, origin, time_base, index, fps)
        while nxt < n_samples and targets[nxt] < t:
            # the sample time falls before this frame: the previous frame was on screen
            held, held_index = previous if previous is not None else (frame, index)
            take(held, held_index, nxt)
            nxt += 1
        if nxt == n_samples:
            break
        previous = (frame, index)
    if previous is None:
        raise VideoError("no decodable video frames")
    held, held_index = previous
    while nxt < n_samples:  # samples after the last decoded frame's start: it stays on screen
        take(held, held_index, nxt)
        nxt += 1
    assert box is not None
    return DecodedClip(frames=frames, box=box, source_indices=source, n_decoded=index + 1)
