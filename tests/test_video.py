"""Probing, uniform sampling by timestamp, letterboxing: exact expectations on made videos."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import decode_level_to_index, index_coded_frames, write_video
from extract.video import (
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


def test_decode_picks_the_uniformly_sampled_frames(tmp_path):
    n = 40
    path = write_video(tmp_path / "coded.mp4", index_coded_frames(n), fps=20)
    clip = decode_clip(path, 8, 32)
    assert clip.frames.shape == (8, 32, 32, 3)
    expected = sample_frame_indices(n, 8)
    assert clip.source_indices.tolist() == expected.tolist()
    box = clip.box
    seen = [decode_level_to_index(float(f[box.top : box.top + box.height].mean()), n) for f in clip.frames]
    assert seen == expected.tolist()
    # letterbox bars of a 4:3 video stay black
    assert clip.frames[:, : box.top].max() == 0 and clip.frames[:, box.top + box.height :].max() == 0
    # decoding stopped soon after the last sample instead of reading the whole file
    assert clip.n_decoded <= expected[-1] + 2


def test_decode_short_video_repeats_frames(tmp_path):
    path = write_video(tmp_path / "short.mp4", index_coded_frames(3), fps=10)
    clip = decode_clip(path, 8, 32)
    assert clip.source_indices.tolist() == sample_frame_indices(3, 8).tolist()
    assert clip.n_unique == 3
    assert np.array_equal(clip.frames[0], clip.frames[1])


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
        assert clip.source_indices.tolist() == sample_frame_indices(info["n_frames"], 8).tolist()
        assert clip.frames[:, clip.box.top : clip.box.top + clip.box.height].mean() > 5


@pytest.mark.parametrize("kind", ["empty", "text", "truncated"])
def test_corrupt_files_raise_video_error(corrupt_files, kind):
    with pytest.raises(VideoError) as err:
        probe_video(corrupt_files[kind])
    assert str(err.value) and "\n" not in str(err.value)
    with pytest.raises(VideoError):
        decode_clip(corrupt_files[kind], 4, 32)
