"""Reading videos with PyAV: probing, uniform frame sampling by timestamp, letterboxing.

A clip is T frames sampled uniformly over the whole duration, each letterboxed into an
S×S canvas (aspect ratio kept, black bars). Decoding stops at the last sampled frame and
frames are resized as soon as they are picked, so memory holds T×S×S pixels, never the
video.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.codec.hwaccel import HWAccel
from av.video.reformatter import VideoReformatter

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class VideoError(Exception):
    """A video that cannot be probed or decoded; the message is the recorded reason."""


class NvdecError(VideoError):
    """NVDEC cannot be used here, or failed on this video (the CPU decoder may not)."""


def _reason(err: BaseException) -> str:
    """A short one-line reason: PyAV's message without its errno prefix and file name."""
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", text)
    text = re.sub(r":\s*'[^']*'$", "", text)
    return text[:300] or type(err).__name__


def unexpected_reason(err: BaseException) -> str:
    """The recorded reason for an error nobody expected (a bug, an odd file): its type and
    the first line of its message, so one video's failure is a row, not a stopped job."""
    text = str(err)
    return f"{type(err).__name__}: {text.splitlines()[0][:200] if text else ''}"


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

    frames: np.ndarray  # (T, S, S, 3) uint8, upright (rotation metadata applied)
    box: LetterboxBox
    source_times: np.ndarray  # presentation time (s) of the frame used for each sample
    n_decoded: int  # frames decoded to get there (all variants and scales come from these)
    n_seeks: int  # keyframe seeks made
    rotation: int  # degrees counter-clockwise applied for display (0, 90, 180, 270)
    duration: float  # seconds, from the packets (metadata only where packets lack timestamps)
    decoder: str = "cpu"  # what reconstructed the frames: "cpu" or "nvdec" (see DECODERS)

    @property
    def n_unique(self) -> int:
        """Distinct source frames among the samples (< T for videos shorter than T frames)."""
        return int(len(np.unique(self.source_times)))


# Decoder options: FFmpeg's codec threading, when to seek, and which unsampled frames to
# skip; every choice returns the same frames, bit for bit. The defaults (no codec threads,
# seek over gaps, skip non-reference frames) were the fastest measured by
# benchmarks/decode_speed.py in a process pinned to one core, as a DataLoader worker on a
# GPU node has about one (there every threading choice ties: FFmpeg's automatic count is
# one thread), and unpinned they used the least CPU: codec threads decode ahead and waste.
THREAD_TYPES = {"none": "NONE", "slice": "SLICE", "frame": "FRAME", "auto": "AUTO"}
SEEK_POLICIES = ("gaps", "never")  # seek over frames no sample needs / decode straight through
SKIP_POLICIES = ("nonref", "none")  # skip unsampled frames no other frame refers to / decode all
# Codecs whose "non-reference" frames are referred to by no frame at all. Not HEVC: there a
# sub-layer non-reference picture may still be a reference for a higher temporal sub-layer.
SKIPPABLE_CODECS = ("h264",)
# Where frames are reconstructed. "nvdec": FFmpeg's CUDA acceleration of its own decoders
# (the same demuxing, seeking and frame skipping; NVIDIA's decoder engine reconstructs the
# pixels, which come back as NV12 and are resized like any frame). Only for codecs whose
# decoding the standard makes exact, so that NVDEC's frames are the CPU decoder's; others
# (MPEG-4 Part 2, MPEG-2: their IDCT is not exact) are decoded on the CPU, and so is AV1
# (PyAV's wheels open it with libdav1d, which has no CUDA acceleration). With no software
# fallback: a stream NVDEC refuses is an error, which callers answer by decoding it on the
# CPU, so DecodedClip.decoder never calls the CPU's frames NVDEC's.
DECODERS = ("cpu", "nvdec")
NVDEC_CODECS = ("h264", "hevc", "vp9")
_nvdec_held: dict[int, HWAccel] = {}
_in_decode_worker = False  # set by extract.workers in its worker processes (and only there)


def mark_decode_worker() -> None:
    """Called by a decode worker process of vidstore's own as it starts: nothing else in it
    uses CUDA, so NVDEC may share the GPU's primary context there."""
    global _in_decode_worker
    _in_decode_worker = True


def nvdec_accel(device: int = 0) -> HWAccel:
    """The hwaccel setting for one NVDEC open on GPU ``device``.

    In a decode worker process of vidstore's own (mark_decode_worker), where nothing else uses
    CUDA, every open shares the GPU's primary context, and the first call makes one device
    context that the process keeps, so that the primary context is made once, not created
    and destroyed for every video. Anywhere else (the job's own process, a test, a user's
    script) torch may hold that primary context with flags FFmpeg refuses ("incompatible
    flags"), so each open makes a private context: correct, slower. NvdecError when no CUDA
    device or NVIDIA driver can be used."""
    options = {}
    if _in_decode_worker:
        options = {"primary_ctx": "1"}
        if device not in _nvdec_held:
            try:
                _nvdec_held[device] = HWAccel("cuda", device=str(device), options=options).create(av.Codec("h264", "r"))
            except Exception as err:
                raise NvdecError(f"NVDEC is not available here: {_reason(err) or type(err).__name__}") from None
    return HWAccel("cuda", device=str(device), allow_software_fallback=False, options=options)


# run in a fresh interpreter by check_nvdec: encode a tiny H.264 clip, decode it on NVDEC
_NVDEC_PROBE = """
import os, shutil, sys, tempfile
import av, numpy as np
from av.codec.hwaccel import HWAccel
folder = tempfile.mkdtemp()
path = os.path.join(folder, "probe.mp4")
step = "encoding its H.264 test clip"
try:
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width = stream.height = 128
        stream.pix_fmt = "yuv420p"
        for i in range(4):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((128, 128, 3), 50 * i, np.uint8), format="rgb24")))
        out.mux(stream.encode(None))
    step = "decoding it"
    with av.open(path, hwaccel=HWAccel("cuda", device=sys.argv[1], allow_software_fallback=False)) as container:
        n = sum(1 for _ in container.decode(video=0))
        used = container.streams.video[0].codec_context.is_hwaccel
except Exception as err:
    reason = (str(err).splitlines() or [type(err).__name__])[0]
    print(reason if step == "decoding it" else f"the probe failed {step}: {reason}", file=sys.stderr)
    sys.exit(1)
finally:
    shutil.rmtree(folder, ignore_errors=True)
if not (used and n == 4):
    print(f"NVDEC decoded {n} of 4 probe frames", file=sys.stderr)
    sys.exit(1)
"""


def check_nvdec(device: int = 0, timeout: float = 120) -> None:
    """NvdecError unless NVDEC decodes H.264 on GPU ``device`` here: a tiny clip encoded and
    decoded in a fresh interpreter, so that no CUDA state of this process is touched (and
    a driver without the decoder library, libnvcuvid, is caught, which making a CUDA
    device alone would not)."""
    try:
        proc = subprocess.run([sys.executable, "-c", _NVDEC_PROBE, str(device)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NvdecError(f"NVDEC is not available here: its probe did not finish in {timeout:g} s") from None
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise NvdecError(f"NVDEC is not available here: {_reason(RuntimeError(lines[-1])) if lines else f'probe exit code {proc.returncode}'}")


@dataclass(frozen=True)
class _PacketIndex:
    keyframes: np.ndarray  # presentation times (s) of keyframes, ascending
    end: float  # end of the last packet (s): the duration actually in the file
    times: np.ndarray  # presentation times (s) of the packets that make frames, ascending
    complete: bool  # every such packet has its own time: each sample's frame is known before decoding

    def keyframe_before(self, t: float) -> float:
        """The last keyframe at or before ``t`` (the first keyframe if none is)."""
        if self.keyframes.size == 0:
            return 0.0
        i = int(np.searchsorted(self.keyframes, t, side="right")) - 1
        return float(self.keyframes[max(i, 0)])

    def on_screen(self, targets: np.ndarray) -> np.ndarray | None:
        """Time of the frame on screen at each target time (the first frame for a time before
        it), or None when the packets do not say."""
        if not self.complete or self.times.size == 0:
            return None
        return self.times[np.maximum(np.searchsorted(self.times, targets, side="right") - 1, 0)]


def _index_packets(container, stream, origin: int) -> _PacketIndex:
    """Keyframe times, frame times and the end time from the packets alone (no decoding: cheap)."""
    tb = stream.time_base
    keyframes, times, end = [], [], float("nan")
    complete = True
    for packet in container.demux(stream):
        if packet.pts is None:
            complete = complete and not packet.size  # the demuxer's empty end-of-stream packet
            continue
        t = float((packet.pts - origin) * tb)
        if packet.is_keyframe:
            keyframes.append(t)
        if not packet.is_discard:  # edit-list pre-roll: decoded, never shown
            times.append(t)
        tail = t + float((packet.duration or 0) * tb)
        end = tail if not math.isfinite(end) else max(end, tail)
    unique = np.unique(np.array(times))
    return _PacketIndex(
        keyframes=np.array(sorted(keyframes)), end=end, times=unique, complete=complete and unique.size == len(times)
    )


def _check_options(threads: str, thread_count: int, seek: str, skip: str, decoder: str = "cpu") -> None:
    choices = (
        ("threads", threads, tuple(THREAD_TYPES)), ("seek", seek, SEEK_POLICIES), ("skip", skip, SKIP_POLICIES),
        ("decoder", decoder, DECODERS),
    )
    for name, value, allowed in choices:
        if value not in allowed:
            raise ValueError(f"decode_clip: unknown {name}={value!r}; use one of {', '.join(allowed)}")
    if not isinstance(thread_count, int) or thread_count < 0:
        raise ValueError(f"decode_clip: thread_count={thread_count!r} must be an int >= 0 (0: FFmpeg picks)")


def decode_clip(
    path: str | Path,
    n_samples: int,
    size: int,
    *,
    threads: str = "none",
    thread_count: int = 0,
    seek: str = "gaps",
    skip: str = "nonref",
    decoder: str = "cpu",
    device: int = 0,
    max_pixels: int | None = None,
    max_duration: float | None = None,
) -> DecodedClip:
    """Decode ``n_samples`` frames sampled uniformly by timestamp, letterboxed to size×size.

    1. The file is opened once. Its packets are indexed first (keyframe times, frame times
       and the real duration, whatever the header claims).
    2. Each sample takes the frame on screen at its timestamp (the last frame whose
       presentation time is <= the sample time). A video with fewer frames than samples
       repeats frames (the rule everywhere; ``n_unique`` records it).
    3. ``seek="gaps"``: when the keyframe that precedes the next sample lies beyond the last
       decoded frame, the decoder seeks to it instead of decoding the gap; otherwise it
       decodes straight on. ``seek="never"`` decodes from the start without seeking.
       Decoding stops at the last sample.
    4. ``skip="nonref"``: when the packets name every frame's time and the codec is one of
       SKIPPABLE_CODECS, a frame that no sample takes and no other frame refers to is not
       decoded (FFmpeg's non-reference discard), and the decoder is drained, not fed, once
       a run of samples has its frames. Should the decoded frames ever disagree with the
       packets, the clip is decoded again with ``skip="none"``.
    5. ``threads`` is FFmpeg's codec threading (none, slice, frame or auto),
       ``thread_count`` its number of threads (0: FFmpeg's choice).
    6. Rotation metadata is applied; each frame is resized straight from YUV (area filter).
    7. ``decoder="nvdec"`` reconstructs frames on NVIDIA's decoder engine of GPU ``device``
       (see DECODERS) for the codecs in NVDEC_CODECS, others on the CPU. NvdecError when
       NVDEC cannot be used or fails on the stream (callers then decode it on the CPU).

    8. ``max_pixels`` and ``max_duration`` (seconds) refuse absurd inputs from their
       headers, before any packet is read (and the duration again from the packets).

    Every option returns the same frames, bit for bit (for NVDEC, because the codecs it is
    used for decode exactly by their standards; tests/test_cuda.py and
    benchmarks/decode_speed.py --nvdec check it on a GPU). Raises ValueError for an unknown
    option, VideoError with the reason when the file cannot be decoded.
    """
    _check_options(threads, thread_count, seek, skip, decoder)
    hwaccel = None
    try:
        if decoder == "nvdec":
            with av.open(str(path)) as container:  # the codec first: NVDEC only where it is exact
                codec = container.streams.video[0].codec_context.name if container.streams.video else ""
            hwaccel = nvdec_accel(device) if codec in NVDEC_CODECS else None
        with av.open(str(path), hwaccel=hwaccel) as container:
            if not container.streams.video:
                raise VideoError("no video stream")
            stream = container.streams.video[0]
            _guard(container, stream, max_pixels, max_duration)
            stream.thread_type = THREAD_TYPES[threads]
            stream.codec_context.thread_count = thread_count
            origin = stream.start_time or 0
            index = _index_packets(container, stream, origin)
            duration = index.end if math.isfinite(index.end) and index.end > 0 else _stream_duration(container, stream)
            if not math.isfinite(duration) or duration <= 0:
                raise VideoError("cannot determine the video's duration")
            if max_duration and duration > max_duration:
                raise VideoError(f"video lasts {duration:.0f} s, above the limit of {max_duration:g} s (extract.max_duration)")
            targets = sample_times(duration, n_samples)
            if skip == "nonref" and stream.codec_context.name in SKIPPABLE_CODECS:
                try:
                    return _decode_at(container, stream, index, targets, size, duration, seek, planned=True)
                except _PlanMiss:
                    pass
            return _decode_at(container, stream, index, targets, size, duration, seek, planned=False)
    except NvdecError:
        raise
    except VideoError as err:
        if hwaccel is not None:  # what failed on NVDEC gets the CPU's verdict (callers retry there)
            raise NvdecError(f"on NVDEC: {err}") from None
        raise
    except Exception as err:
        if hwaccel is not None:
            raise NvdecError(f"on NVDEC: {_reason(err)}") from None
        raise VideoError(_reason(err)) from None


def _guard(container, stream, max_pixels: int | None, max_duration: float | None) -> None:
    """Refuse a frame size or a duration beyond the limits, from the headers alone."""
    width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
    if max_pixels and width * height > max_pixels:
        raise VideoError(f"frames are {width}x{height}, above the limit of {max_pixels} pixels (extract.max_pixels)")
    if max_duration:
        duration = _stream_duration(container, stream)
        if math.isfinite(duration) and duration > max_duration:
            raise VideoError(f"video lasts {duration:.0f} s, above the limit of {max_duration:g} s (extract.max_duration)")


class _PlanMiss(Exception):
    """The decoded frames disagree with the packet index: decode again without skipping."""


def _frame_time(frame: av.VideoFrame, origin: int, time_base: Fraction | None, fallback: float) -> float:
    if frame.pts is not None and time_base is not None:
        return float((frame.pts - origin) * time_base)
    return fallback


def _upright(frame: av.VideoFrame, box: LetterboxBox, quarter_turns: int, resizer: VideoReformatter) -> np.ndarray:
    """The frame resized into the letterbox box and turned upright, as RGB uint8."""
    # swscale's area filter resizes straight from YUV: anti-aliased, no full-size RGB copy.
    # One reformatter per clip keeps swscale's context (its filters) from frame to frame.
    stored_w, stored_h = (box.height, box.width) if quarter_turns % 2 else (box.width, box.height)
    rgb = resizer.reformat(frame, width=stored_w, height=stored_h, format="rgb24", interpolation="AREA", threads=1).to_ndarray()
    return np.rot90(rgb, k=quarter_turns) if quarter_turns else rgb


def _runs(index: _PacketIndex, targets: np.ndarray, on_screen: np.ndarray, seek: str) -> list[int]:
    """For each sample, the last sample decoded before the next seek (the end of its run)."""
    n = len(targets)
    last = [n - 1] * n
    if seek == "gaps":
        end = n - 1
        for j in range(n - 2, -1, -1):
            if index.keyframe_before(targets[j + 1]) > on_screen[j]:
                end = j
            last[j] = end
    return last


def _decode_at(
    container, stream, index: _PacketIndex, targets: np.ndarray, size: int, duration: float, seek: str, planned: bool
) -> DecodedClip:
    """Decode the sampled frames. ``planned``: the frames' times come from the index, so
    unsampled non-reference frames are skipped and a finished run drains the decoder;
    any disagreement raises _PlanMiss. Otherwise each sample waits for the first frame
    past it and takes the one before (the rule that needs no index)."""
    n_samples = len(targets)
    time_base = stream.time_base
    origin = stream.start_time or 0
    rate = stream.average_rate or stream.guessed_rate
    step = 1.0 / float(rate) if rate else 0.04
    codec = stream.codec_context
    resizer = VideoReformatter()
    expected = index.on_screen(targets) if planned else None
    if planned and expected is None:
        raise _PlanMiss
    run_end = _runs(index, targets, expected, seek) if planned else None
    frames = np.zeros((n_samples, size, size, 3), dtype=np.uint8)
    source = np.full(n_samples, np.nan)
    geometry: tuple[LetterboxBox, int] | None = None
    n_decoded = n_seeks = 0

    def take(held: tuple[av.VideoFrame, float], sample: int) -> None:
        nonlocal geometry
        frame, t = held
        if geometry is None:
            quarter_turns = int(round((frame.rotation or 0) / 90)) % 4
            h, w = (frame.width, frame.height) if quarter_turns % 2 else (frame.height, frame.width)
            geometry = (letterbox_geometry(h, w, size), quarter_turns)
        box, turns = geometry
        if sample > 0 and source[sample - 1] == t:
            frames[sample] = frames[sample - 1]
        else:
            frames[sample] = place_in_canvas(_upright(frame, box, turns, resizer), size, box)
        source[sample] = t

    nxt = 0
    previous: tuple[av.VideoFrame, float] | None = None
    last_time = -math.inf
    started = drained = False
    codec.skip_frame = "DEFAULT"
    while nxt < n_samples:
        if not started or drained or (seek == "gaps" and index.keyframe_before(targets[nxt]) > last_time):
            # "gaps": the frames between here and that keyframe are not needed, jump over
            # them; "never": back to the start once (indexing read to the end)
            keyframe = index.keyframe_before(targets[nxt] if seek == "gaps" else -math.inf)
            container.seek(origin + round(keyframe / time_base), stream=stream, backward=True, any_frame=False)
            n_seeks += 1
            started, drained, previous = True, False, None
        if planned:
            run_last = run_end[nxt]
            pending = set(expected[nxt : run_last + 1].tolist())
        stop = False
        for packet in container.demux(stream):
            if planned:
                t_packet = float((packet.pts - origin) * time_base) if packet.pts is not None else None
                wanted = t_packet in pending or packet.is_keyframe
                mode = "DEFAULT" if wanted else "NONREF"
                if codec.skip_frame != mode:
                    codec.skip_frame = mode
                pending.discard(t_packet)
            decoded = codec.decode(packet)
            if planned and not pending and packet.size:
                decoded += codec.decode(None)  # the run's frames are all sent: drain, do not feed
                drained = True
            for frame in decoded:
                n_decoded += 1
                if planned and frame.pts is None:
                    raise _PlanMiss
                t = _frame_time(frame, origin, time_base, last_time + step if math.isfinite(last_time) else 0.0)
                if planned:
                    if nxt < n_samples and targets[nxt] < t and expected[nxt] != t:
                        raise _PlanMiss  # a frame the packets promised never came
                    while nxt < n_samples and expected[nxt] == t:
                        take((frame, t), nxt)
                        nxt += 1
                else:
                    while nxt < n_samples and targets[nxt] < t:
                        # the sample time falls before this frame: the previous frame was on screen
                        take(previous if previous is not None else (frame, t), nxt)
                        nxt += 1
                previous, last_time = (frame, t), t
                if nxt == n_samples or (seek == "gaps" and index.keyframe_before(targets[nxt]) > t):
                    stop = True
                    break
            if stop:
                break
            if drained:
                raise _PlanMiss  # drained, yet a sample of the run is missing
        else:  # end of stream: the last frame stays on screen
            if planned:
                raise _PlanMiss
            if previous is None:
                raise VideoError("no decodable video frames")
            while nxt < n_samples:
                take(previous, nxt)
                nxt += 1
    assert geometry is not None
    return DecodedClip(
        frames=frames,
        box=geometry[0],
        source_times=source,
        n_decoded=n_decoded,
        n_seeks=n_seeks,
        rotation=geometry[1] * 90,
        duration=duration,
        decoder="nvdec" if codec.is_hwaccel else "cpu",
    )
