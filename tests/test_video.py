"""Probing, uniform sampling by timestamp, letterboxing: exact expectations on made videos."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import decode_level_to_index, index_coded_frames, write_video
from vidstore.extract.video import (
    LetterboxBox,
    VideoError,
    decode_clip,
    letterbox_geometry,
    place_in_canvas,
    probe_video,
    sample_frame_indices,
    sample_times,
)


def test_sample_frame_indices_are_bin_centres():
    assert sample_frame_indices(100, 4).tolist() == [12, 37, 62, 87]
    assert sample_frame_indices(8, 8).tolist() == list(range(8))
    assert sample_frame_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]  # short video: repeats
    assert sample_frame_indices(1, 3).tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        sample_frame_indices(0, 4)


def test_sample_times_match_indices_for_constant_rate():
    fps, n = 25.0, 90
    times = sample_times(n / fps, 6)
    assert np.array_equal(np.floor(times * fps).astype(int), sample_frame_indices(n, 6))


def test_letterbox_geometry():
    assert letterbox_geometry(48, 64, 32) == LetterboxBox(top=4, left=0, height=24, width=32)
    assert letterbox_geometry(64, 48, 32) == LetterboxBox(top=0, left=4, height=32, width=24)
    assert letterbox_geometry(360, 640, 112) == LetterboxBox(top=24, left=0, height=63, width=112)
    assert letterbox_geometry(50, 50, 32) == LetterboxBox(top=0, left=0, height=32, width=32)


def test_place_in_canvas_pads_black():
    content = np.full((24, 32, 3), 200, dtype=np.uint8)
    canvas = place_in_canvas(content, 32, letterbox_geometry(48, 64, 32))
    assert canvas.shape == (32, 32, 3)
    assert (canvas[:4] == 0).all() and (canvas[28:] == 0).all()
    assert (canvas[4:28] == 200).all()


def indices_of(clip, fps: float) -> list[int]:
    return np.round(clip.source_times * fps).astype(int).tolist()


def test_decode_picks_the_uniformly_sampled_frames(tmp_path):
    n = 40
    path = write_video(tmp_path / "coded.mp4", index_coded_frames(n), fps=20)
    clip = decode_clip(path, 8, 32)
    assert clip.frames.shape == (8, 32, 32, 3)
    expected = sample_frame_indices(n, 8)
    assert indices_of(clip, 20) == expected.tolist()
    box = clip.box
    seen = [decode_level_to_index(float(f[box.top : box.top + box.height].mean()), n) for f in clip.frames]
    assert seen == expected.tolist()
    # letterbox bars of a 4:3 video stay black
    assert clip.frames[:, : box.top].max() == 0 and clip.frames[:, box.top + box.height :].max() == 0
    assert clip.n_decoded <= n and clip.duration == pytest.approx(2.0)


@pytest.mark.parametrize(("skip", "n_decoded"), [("nonref", 1 + 3 + 4 + 1), ("none", 2 + 4 + 5 + 2)])
def test_decode_seeks_over_gaps_between_keyframes(tmp_path, skip, n_decoded):
    # 46 frames at 10 fps, a keyframe every 5 frames: 4 samples need 4 short runs
    path = write_video(tmp_path / "gop.mp4", index_coded_frames(46), fps=10, gop=5)
    clip = decode_clip(path, 4, 32, skip=skip)
    assert indices_of(clip, 10) == sample_frame_indices(46, 4).tolist() == [5, 17, 28, 40]
    # from each sample's keyframe to the sample; without the packets' times, one frame past it
    assert clip.n_seeks == 4 and clip.n_decoded == n_decoded
    seen = [decode_level_to_index(float(f[clip.box.top : clip.box.top + clip.box.height].mean()), 46) for f in clip.frames]
    assert seen == [5, 17, 28, 40]


def write_b_frame_video(path, n: int, gop: int) -> None:
    """Index-coded frames with B-frames that nothing refers to (x264, no B-pyramid)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18", "g": str(gop), "keyint_min": str(gop),
                          "x264-params": "bframes=3:b-adapt=0:b-pyramid=none:scenecut=0"}
        for frame in index_coded_frames(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))


OPTIONS = [
    dict(threads=threads, seek=seek, skip=skip)
    for threads in ("none", "slice", "frame", "auto")
    for seek in ("gaps", "never")
    for skip in ("nonref", "none")
] + [dict(threads="auto", thread_count=1), dict(threads="frame", thread_count=3)]


def test_every_decoder_option_gives_the_same_frames(tmp_path):
    path = tmp_path / "bframes.mp4"
    write_b_frame_video(path, 45, gop=12)
    plain = decode_clip(path, 7, 32, threads="none", seek="gaps", skip="none")
    seen = [decode_level_to_index(float(f[plain.box.top : plain.box.top + plain.box.height].mean()), 45) for f in plain.frames]
    assert seen == sample_frame_indices(45, 7).tolist()
    for options in OPTIONS:
        clip = decode_clip(path, 7, 32, **options)
        assert np.array_equal(clip.frames, plain.frames), options
        assert clip.source_times.tolist() == plain.source_times.tolist(), options
    # the B-frames no sample takes are skipped, not decoded
    assert decode_clip(path, 7, 32, skip="nonref").n_decoded < plain.n_decoded
    # straight through: one seek (back to the start after indexing), every frame up to the last sample
    through = decode_clip(path, 7, 32, seek="never", skip="none")
    assert through.n_seeks == 1 and through.n_decoded > plain.n_decoded


def test_every_decoder_option_gives_the_same_frames_on_a_real_video(shared_videos):
    path = shared_videos[0]  # 360p H.264 with B-frames
    plain = decode_clip(path, 16, 64, threads="none", seek="gaps", skip="none")
    for options in OPTIONS[::3]:
        clip = decode_clip(path, 16, 64, **options)
        assert np.array_equal(clip.frames, plain.frames), options
    assert decode_clip(path, 16, 64).n_decoded < plain.n_decoded


def test_skipping_falls_back_when_the_packets_mislead(tmp_path, monkeypatch):
    import vidstore.extract.video as video

    path = tmp_path / "bframes.mp4"
    write_b_frame_video(path, 30, gop=30)
    plain = decode_clip(path, 5, 32, skip="none")
    # promise each sample the frame after the right one: decoding must notice and redo
    honest = video._PacketIndex.on_screen
    monkeypatch.setattr(video._PacketIndex, "on_screen", lambda self, targets: honest(self, targets) + 0.1)
    clip = decode_clip(path, 5, 32, skip="nonref")
    assert np.array_equal(clip.frames, plain.frames)
    assert clip.source_times.tolist() == plain.source_times.tolist()


@pytest.mark.parametrize(
    ("options", "named"),
    [(dict(threads="fast"), "threads='fast'"), (dict(seek="always"), "seek='always'"),
     (dict(skip="all"), "skip='all'"), (dict(thread_count=-1), "thread_count=-1"), (dict(decoder="gpu"), "decoder='gpu'")],
)
def test_unknown_decoder_option_is_a_one_line_error(tmp_path, options, named):
    path = write_video(tmp_path / "v.mp4", index_coded_frames(10))
    with pytest.raises(ValueError) as err:
        decode_clip(path, 4, 32, **options)
    assert named in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("height,width", [(48, 64), (76, 102), (1080, 1920)])
def test_nv12_frames_as_nvdec_hands_them_back_give_the_cpu_decoders_rgb(tmp_path, height, width):
    # NVDEC's frames come back as NV12 (chroma interleaved), the CPU decoder's as YUV420P, with
    # the same samples (H.264 decoding is exact): the resize to RGB must not tell them apart
    import av
    from av.video.reformatter import VideoReformatter

    from vidstore.extract.video import _upright

    block = max(2, height // 24)  # coarse random blocks: detail that survives the resize to 112
    rng = np.random.default_rng(height)
    coarse = rng.integers(0, 256, (3, -(-height // block), -(-width // block), 3), dtype=np.uint8)
    frames = coarse.repeat(block, axis=1).repeat(block, axis=2)[:, :height, :width]
    path = write_video(tmp_path / "v.mp4", np.ascontiguousarray(frames), crf=30)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            box = letterbox_geometry(frame.height, frame.width, 112)
            nv12 = frame.reformat(format="nv12")
            assert nv12.format.name == "nv12" and frame.format.name == "yuv420p"
            plain = _upright(frame, box, 0, VideoReformatter())
            assert plain.std() > 10  # real content, not a flat frame
            assert np.array_equal(_upright(nv12, box, 0, VideoReformatter()), plain)
            assert np.array_equal(_upright(nv12, box, 1, VideoReformatter()), _upright(frame, box, 1, VideoReformatter()))


def test_decode_goes_straight_on_when_samples_are_close(tmp_path):
    path = write_video(tmp_path / "dense.mp4", index_coded_frames(40), fps=10, gop=20)
    clip = decode_clip(path, 16, 32)
    assert indices_of(clip, 10) == sample_frame_indices(40, 16).tolist()
    assert clip.n_seeks == 2  # to the start, then to the second keyframe; never backwards
    assert clip.n_decoded <= 40


def test_decode_variable_frame_rate_by_timestamp(tmp_path):
    pts = [0, 40, 80, 200, 240, 500, 540, 580, 900, 940]  # ms, irregular
    path = write_video(tmp_path / "vfr.mp4", index_coded_frames(10), pts_ms=pts)
    clip = decode_clip(path, 5, 32)
    # duration 0.98 s (last frame 0.94 s + its 1/24 s); samples at 0.098, 0.294, 0.490, 0.687, 0.883 s
    assert clip.source_times.tolist() == pytest.approx([0.08, 0.24, 0.24, 0.58, 0.58])
    assert clip.n_unique == 3


def test_decode_short_video_repeats_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", index_coded_frames(3), fps=10)
    clip = decode_clip(path, 8, 32)
    assert indices_of(clip, 10) == sample_frame_indices(3, 8).tolist()
    assert clip.n_unique == 3
    assert np.array_equal(clip.frames[0], clip.frames[1])


def test_decode_honours_rotation_metadata(tmp_path):
    frames = np.zeros((6, 48, 64, 3), dtype=np.uint8)
    frames[:, :12, :16] = 255  # a white mark at the top-left of a landscape frame
    plain = decode_clip(write_video(tmp_path / "plain.mp4", frames), 2, 32)
    turned = decode_clip(write_video(tmp_path / "turned.mp4", frames, rotation=90), 2, 32)
    assert plain.rotation == 0 and turned.rotation == 90
    assert (plain.box.height, plain.box.width) == (24, 32)
    assert (turned.box.height, turned.box.width) == (32, 24)  # displayed as portrait
    # turned 90 degrees counter-clockwise, the top-left mark is now at the bottom-left
    b = turned.box
    content = turned.frames[0, b.top : b.top + b.height, b.left : b.left + b.width].mean(axis=2)
    assert content[-6:, :4].mean() > 200 and content[:6, :4].mean() < 50


def test_decode_container_without_frame_count_and_odd_size(tmp_path):
    import av

    mkv = write_video(tmp_path / "v.mkv", index_coded_frames(20), fps=10)
    with av.open(str(mkv)) as container:
        assert container.streams.video[0].frames == 0  # Matroska states no frame count
    assert probe_video(mkv)["n_frames"] == 20  # estimated from duration x fps
    assert indices_of(decode_clip(mkv, 4, 32), 10) == sample_frame_indices(20, 4).tolist()
    odd = write_video(tmp_path / "odd.mp4", index_coded_frames(10, 47, 63), pix_fmt="yuv444p")
    clip = decode_clip(odd, 4, 32)
    assert clip.box == letterbox_geometry(47, 63, 32)


def test_probe_made_video(tmp_path):
    path = write_video(tmp_path / "v.mp4", index_coded_frames(30, 48, 64), fps=15)
    info = probe_video(path)
    assert (info["width"], info["height"], info["n_frames"], info["codec"]) == (64, 48, 30, "h264")
    assert info["fps"] == pytest.approx(15.0)
    assert info["duration"] == pytest.approx(2.0, abs=0.1)
    assert info["has_audio"] is False


def test_probe_and_decode_real_videos(shared_videos):
    for path in shared_videos:
        info = probe_video(path)
        assert info["codec"] == "h264" and info["has_audio"] is True
        assert info["width"] >= 320 and info["n_frames"] > 100
        clip = decode_clip(path, 8, 64)
        assert clip.n_unique == 8 and clip.n_decoded < info["n_frames"] / 2
        assert clip.frames[:, clip.box.top : clip.box.top + clip.box.height].mean() > 5


@pytest.mark.parametrize("kind", ["empty", "text", "truncated"])
def test_corrupt_files_raise_video_error(corrupt_files, kind):
    with pytest.raises(VideoError) as err:
        probe_video(corrupt_files[kind])
    assert str(err.value) and "\n" not in str(err.value)
    with pytest.raises(VideoError):
        decode_clip(corrupt_files[kind], 4, 32)


def test_corrupt_middle_is_a_decode_error(tmp_path):
    rng = np.random.default_rng(0)
    path = write_video(tmp_path / "v.mp4", rng.integers(0, 255, (60, 96, 128, 3), dtype=np.uint8), fps=10, gop=10)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4000] = rng.integers(0, 255, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    assert probe_video(path)["n_frames"] == 60  # the header is intact
    with pytest.raises(VideoError) as err:
        decode_clip(path, 8, 32)
    assert "\n" not in str(err.value)


def test_real_video_samples_match_a_full_decode(shared_videos):
    import av

    path = shared_videos[0]
    clip = decode_clip(path, 16, 64)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = np.array([float((f.pts - (stream.start_time or 0)) * stream.time_base) for f in container.decode(stream)])
    wanted = sample_times(clip.duration, 16)
    expected = times[np.searchsorted(times, wanted, side="right") - 1]
    assert clip.source_times.tolist() == pytest.approx(expected.tolist())
    assert clip.n_decoded < len(times) / 2  # seeking skipped most of the file


def test_decode_4k_video(tmp_path):
    frames = np.zeros((4, 2160, 3840, 3), dtype=np.uint8)
    frames[:, :1080] = 200  # top half bright
    clip = decode_clip(write_video(tmp_path / "uhd.mp4", frames, fps=4), 4, 64)
    assert clip.box == letterbox_geometry(2160, 3840, 64)
    b = clip.box
    content = clip.frames[:, b.top : b.top + b.height, b.left : b.left + b.width]
    assert content[:, : b.height // 2 - 1].mean() > 190 and content[:, b.height // 2 + 1 :].mean() < 10
