"""features/: backbone taps for the r3d_18 family, and each handcrafted statistic on
inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidstore.extract.clips import make_scaled_clips
from vidstore.extract.video import letterbox_geometry
from vidstore.configs import load_config
from vidstore.features.backbone import TAP_ORDER, BackboneTaps, build_backbone, tap_shape
from vidstore.features.handcrafted import HANDCRAFTED_NAMES, META_NAMES, PIXEL_NAMES, container_features, handcrafted_features, pixel_statistics
from vidstore.features.pooling import summarise_maps, summary_names


@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_taps_of_every_backbone(name):
    model, info = build_backbone(name, "random", seed=0)
    assert info.name == name
    for frames, size in [(4, 32), (8, 48)]:
        clips = torch.randn(2, 3, frames, size, size)
        with torch.no_grad():
            everything = BackboneTaps(model, list(TAP_ORDER))(clips)
            early = BackboneTaps(model, ["layer3"])(clips)
        for tap, value in everything.items():
            assert tuple(value.shape) == (2, *tap_shape(tap, frames, size, name)), (name, tap)
        assert list(early) == ["layer3"] and torch.equal(early["layer3"], everything["layer3"])


def stats(clip: torch.Tensor) -> dict[str, float]:
    return dict(zip(PIXEL_NAMES, pixel_statistics(clip).tolist()))


def test_flat_frames_have_no_detail():
    s = stats(torch.full((4, 3, 32, 48), 0.4))
    for name in ("noise_energy", "noise_std", "laplacian_var", "grad_mean", "grad_std", "edge_density", "dct_ac_energy", "dct_ac_abs_mean", "dct_dc_std", "tdiff_mean"):
        assert s[name] == pytest.approx(0.0, abs=1e-6), name
    assert s["dct_dc_mean"] == pytest.approx(8 * 0.4, rel=1e-5)  # orthonormal DCT: DC = 8 x block mean
    assert s["blockiness"] == pytest.approx(1.0)
    assert s["dup_ratio"] == 1.0


def test_duplicate_ratio_counts_repeated_frames():
    rng = torch.Generator().manual_seed(0)
    clip = torch.rand((8, 3, 32, 32), generator=rng)
    clip[3] = clip[2]
    clip[6] = clip[5]
    assert stats(clip)["dup_ratio"] == pytest.approx(2 / 7)


def test_a_splice_is_a_frame_difference_spike():
    rng = torch.Generator().manual_seed(1)
    a = torch.rand((1, 3, 32, 32), generator=rng) * 0.2 + 0.1
    b = torch.rand((1, 3, 32, 32), generator=rng) * 0.2 + 0.7
    moving = [torch.roll(a, t, dims=3) for t in range(4)] + [torch.roll(b, t, dims=3) for t in range(4)]
    spliced = stats(torch.cat(moving))
    smooth = stats(torch.cat([torch.roll(a, t, dims=3) for t in range(8)]))
    assert spliced["tdiff_spike"] > 3 * smooth["tdiff_spike"]


def test_noise_raises_the_residual_and_blur_lowers_it():
    rng = np.random.default_rng(2)
    base = torch.from_numpy(rng.uniform(0.3, 0.7, (4, 3, 40, 40)).astype(np.float32))
    noisy = (base + torch.from_numpy(rng.normal(0, 0.05, base.shape).astype(np.float32))).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(base, 3, stride=1, padding=1)
    assert stats(noisy)["noise_energy"] > stats(base)["noise_energy"] > stats(blurred)["noise_energy"]
    assert stats(base)["dct_hf_lf_ratio"] > stats(blurred)["dct_hf_lf_ratio"]


def test_blockiness_sees_an_8_pixel_grid():
    rng = np.random.default_rng(3)
    blocks = np.kron(rng.uniform(0.2, 0.8, (4, 5)), np.ones((8, 8)))  # constant 8x8 blocks
    smooth = np.add.outer(np.linspace(0, 0.5, 32), np.linspace(0, 0.3, 40))
    as_clip = lambda img: torch.from_numpy(np.broadcast_to(img, (2, 3, *img.shape)).astype(np.float32).copy())  # noqa: E731
    assert stats(as_clip(blocks))["blockiness"] > 10
    assert stats(as_clip(smooth))["blockiness"] == pytest.approx(1.0, abs=0.05)


def test_letterbox_bars_do_not_change_the_statistics():
    rng = np.random.default_rng(4)
    content = rng.integers(0, 256, (4, 24, 32, 3), dtype=np.uint8)  # 4:3 content
    box = letterbox_geometry(24, 32, 32)
    clip_cfg = load_config(None, ["clip.scales=[32]", "clip.frames=4"]).clip
    expected = pixel_statistics(torch.from_numpy(content).permute(0, 3, 1, 2).float() / 255)
    for bar in (0, 255):  # black bars, and bars of another colour
        canvas = np.full((4, 32, 32, 3), bar, dtype=np.uint8)
        canvas[:, box.top : box.top + box.height] = content
        got = make_scaled_clips(canvas, box, clip_cfg)[32].handcrafted[: len(PIXEL_NAMES)]
        assert torch.equal(got, expected), bar


def test_too_small_content_is_missing_not_zero():
    s = pixel_statistics(torch.rand(4, 3, 6, 32))
    assert torch.isnan(s).all()


def test_container_features():
    meta = {"bitrate": 999, "fps": 30.0, "width": 640, "height": 360, "duration": 12.5, "codec": "vp9"}
    v = dict(zip(META_NAMES, container_features(meta).tolist()))
    assert v["meta_log_bitrate"] == pytest.approx(math.log(1000)) and v["meta_width"] == 640
    assert (v["meta_codec_vp9"], v["meta_codec_h264"], v["meta_codec_other"]) == (1.0, 0.0, 0.0)
    assert container_features({**meta, "codec": "mpeg4"})[-1] == 1.0
    missing = container_features({})
    assert torch.isnan(missing).all()
    assert len(handcrafted_features(torch.rand(2, 3, 16, 16), meta)) == len(HANDCRAFTED_NAMES)


def test_map_summaries():
    maps = np.arange(2 * 3 * 2 * 2 * 2, dtype=np.float16).reshape(2, 3, 2, 2, 2)
    out = summarise_maps(maps, ("mean", "max", "std"))
    flat = maps.reshape(2, 3, -1).astype(np.float32)
    assert np.allclose(out, np.concatenate([flat.mean(2), flat.max(2), flat.std(2)], axis=1))
    assert summary_names("layer4", 3, ("mean", "max"))[:4] == ["layer4_mean_0", "layer4_mean_1", "layer4_mean_2", "layer4_max_0"]
