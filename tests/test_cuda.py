"""The CUDA paths, checked against the CPU. Skipped where there is no GPU (CI, laptops);
`benchmarks/gpu_check.sh` runs them on a GPU node.

Stated tolerances (what a store extracted on a GPU may differ by from one made on a CPU):
- variants: the augmentation ops are the same functions on another device; resampling ops
  (rotate, affine, elastic, blur, rescale) round differently, so a few pixels move by one
  grey level: at most 2 levels anywhere and under 0.5 % of pixels changed. JPEG on CUDA
  uses nvJPEG, not libjpeg: its mean difference stays under 2 grey levels.
- handcrafted statistics of the same pixels: relative 1e-4 (float32 reductions in another order).
- backbone outputs under bf16 autocast: cosine similarity above 0.99 per row.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from conftest import ROOT, indexed_demo
from vidstore.configs import load_config
from vidstore.extract.augment import ALL_OPS, draw_params, one_thread
from vidstore.extract.clips import variants_at_scales
from vidstore.extract.job import META_COLUMNS, run_extract
from vidstore.extract.video import decode_clip
from vidstore.store import FeatureStore

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run benchmarks/gpu_check.sh on one)"),
]

CUDA = torch.device("cuda")
SETS = ["clip.frames=8", "clip.scales=[112,56]", "backbone.weights=random", "extract.num_workers=2", "augment.variants=2",
        "augment.explicit=[]"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return indexed_demo(tmp_path_factory.mktemp("cuda"), 6, seed=5)[0]


def _uint8(clip: torch.Tensor, cfg) -> torch.Tensor:
    """A normalised (3, T, s, s) clip back to grey levels."""
    mean = torch.tensor(cfg.clip.mean).view(3, 1, 1, 1)
    std = torch.tensor(cfg.clip.std).view(3, 1, 1, 1)
    return ((clip.cpu() * std + mean) * 255).round()


@pytest.mark.parametrize("op", [op for op in ALL_OPS if op != "jpeg"])
def test_device_stage_on_cuda_matches_the_cpu(samples, op):
    cfg = load_config(ROOT / "configs/demo.yaml", SETS)
    table = pl.read_parquet(samples)
    meta = {k: table[k][0] for k in META_COLUMNS}
    decoded = decode_clip(table["path"][0], cfg.clip.frames, cfg.clip.size)
    plans = [[], [{"op": op, **draw_params(op, np.random.default_rng(3), cfg.clip.frames)}]]
    frames = torch.from_numpy(decoded.frames)
    with one_thread():
        cpu_clips, cpu_stats = variants_at_scales(frames, decoded.box, plans, cfg.clip, True, meta)
    gpu_clips, gpu_stats = variants_at_scales(frames.to(CUDA), decoded.box, plans, cfg.clip, True, meta)
    for scale in cfg.clip.scales:
        assert gpu_clips[scale].is_cuda
        a, b = _uint8(cpu_clips[scale], cfg), _uint8(gpu_clips[scale], cfg)
        changed = (a != b).float().mean().item()
        assert (a - b).abs().max().item() <= 2 and changed < 0.005, (op, scale, changed)
        if op in ("hflip", "reverse", "drop", "duplicate", "speed", "cutout", "color", "hue", "noise"):
            np.testing.assert_allclose(gpu_stats[scale], cpu_stats[scale], rtol=1e-4, atol=1e-6)


def test_jpeg_on_cuda_stays_within_two_grey_levels_on_average(samples):
    cfg = load_config(ROOT / "configs/demo.yaml", SETS)
    path = pl.read_parquet(samples)["path"][1]
    decoded = decode_clip(path, cfg.clip.frames, cfg.clip.size)
    plans = [[{"op": "jpeg", "quality": 40}]]
    frames = torch.from_numpy(decoded.frames)
    cpu_clips, _ = variants_at_scales(frames, decoded.box, plans, cfg.clip, False)
    gpu_clips, _ = variants_at_scales(frames.to(CUDA), decoded.box, plans, cfg.clip, False)
    size = cfg.clip.size
    diff = (_uint8(cpu_clips[size], cfg) - _uint8(gpu_clips[size], cfg)).abs()
    assert diff.mean().item() < 2.0


def test_extraction_on_cuda_matches_the_cpu_store(samples, tmp_path):
    cfg = load_config(ROOT / "configs/demo.yaml", SETS)
    cpu = run_extract(samples, tmp_path / "cpu.zarr", cfg, device="cpu", progress=False)
    gpu = run_extract(samples, tmp_path / "gpu.zarr", cfg, device="cuda", progress=False)
    assert gpu.device.startswith("cuda") and gpu.n_done == cpu.n_done > 0
    a, b = FeatureStore.open(tmp_path / "cpu.zarr"), FeatureStore.open(tmp_path / "gpu.zarr")
    originals = (a.rows()["variant"] == 0).to_numpy()
    for scale in a.scales:
        for name in ("embedding", "layer4"):
            x = a.read(scale, name).reshape(a.n_rows, -1).astype(np.float32)
            y = b.read(scale, name).reshape(b.n_rows, -1).astype(np.float32)
            cosine = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-12)
            assert cosine.min() > 0.99, (scale, name, cosine.min())
        np.testing.assert_allclose(b.read(scale, "handcrafted")[originals], a.read(scale, "handcrafted")[originals], rtol=1e-4, atol=1e-6)


def test_nvdec_decodes_the_cpu_frames_and_extraction_uses_it(samples, tmp_path):
    # H.264 decoding is exact: NVDEC must give the CPU decoder's frames, bit for bit. Extraction's
    # NVDEC workers are spawned (a fork of this process, which has used CUDA, could not use it)
    table = pl.read_parquet(samples)
    for path in table["path"]:
        cpu, gpu = decode_clip(path, 8, 112), decode_clip(path, 8, 112, decoder="nvdec")
        assert gpu.decoder == "nvdec", path
        assert np.array_equal(gpu.frames, cpu.frames) and gpu.source_times.tolist() == cpu.source_times.tolist(), path
    cfg = load_config(ROOT / "configs/demo.yaml", SETS)
    on_cpu = run_extract(samples, tmp_path / "cpu-decoded.zarr", cfg, device="cuda", progress=False)
    cfg = load_config(ROOT / "configs/demo.yaml", SETS + ["extract.decoder=nvdec"])
    on_gpu = run_extract(samples, tmp_path / "nvdec.zarr", cfg, device="cuda", progress=False)
    assert on_gpu.decoded_by == {"nvdec": on_gpu.n_done} and on_gpu.n_done == on_cpu.n_done > 0
    a, b = FeatureStore.open(tmp_path / "cpu-decoded.zarr"), FeatureStore.open(tmp_path / "nvdec.zarr")
    for scale in a.scales:
        np.testing.assert_allclose(b.read(scale, "handcrafted"), a.read(scale, "handcrafted"), rtol=1e-4, atol=1e-6)
