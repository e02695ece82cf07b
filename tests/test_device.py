"""One device rule for extract, finetune and predict: auto, cpu, cuda (the rank's own GPU
under torchrun) or cuda:N, and a one-line error for a device that is not here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import index_coded_frames, run_cli, write_video
from vidstore.extract.video import NvdecError, check_nvdec
from vidstore.features.device import DeviceError, device_name, pick_device


def _nvdec_here() -> bool:
    try:
        check_nvdec()  # in a fresh process: this one's CUDA state is not touched
    except NvdecError:
        return False
    return True


NVDEC = _nvdec_here()


@pytest.mark.parametrize("requested,gpus,local_rank,expected", [
    ("auto", 0, None, "cpu"),
    ("auto", 0, "3", "cpu"),  # torchrun on a CPU machine: every rank on the CPU
    ("auto", 2, None, "cuda:0"),
    ("auto", 4, "3", "cuda:3"),  # torchrun: each process its own GPU
    ("cuda", 2, "1", "cuda:1"),
    ("cuda", 2, None, "cuda:0"),
    ("cuda:1", 2, None, "cuda:1"),
    ("cuda:1", 4, "3", "cuda:1"),  # an explicit index wins over the rank
    ("cpu", 2, "1", "cpu"),
])
def test_device_name(requested, gpus, local_rank, expected):
    assert device_name(requested, gpus, local_rank) == expected


@pytest.mark.parametrize("requested,gpus,local_rank,message", [
    ("cuda", 0, None, "device cuda was asked for but CUDA is not available here (use cpu or auto)"),
    ("cuda:0", 0, "0", "device cuda:0 was asked for but CUDA is not available here (use cpu or auto)"),
    ("cuda:2", 2, None, "device cuda:2 asks for cuda:2; this machine has 2 CUDA device(s), cuda:0 to cuda:1"),
    ("auto", 2, "2", "LOCAL_RANK 2 (torchrun) asks for cuda:2; this machine has 2 CUDA device(s), cuda:0 to cuda:1"),
    ("cuda", 1, "one", "LOCAL_RANK='one' is not a GPU index (torchrun sets it to 0, 1, ...)"),
    ("gpu", 1, None, "device 'gpu' is not one of auto, cpu, cuda or cuda:N"),
    ("cuda:", 1, None, "device 'cuda:' is not one of auto, cpu, cuda or cuda:N"),
])
def test_device_errors_say_what_to_choose(requested, gpus, local_rank, message):
    with pytest.raises(DeviceError) as err:
        device_name(requested, gpus, local_rank)
    assert str(err.value) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_this_machine_without_cuda(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert pick_device("auto") == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="CUDA is not available here"):
        pick_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_asked_for_without_cuda_is_one_line_from_every_command(tmp_path):
    missing = str(tmp_path / "none")
    for args in (["extract", "--samples", missing, "--store", missing, "--device", "cuda"],
                 ["finetune", "--samples", missing, "--init", missing, "--out", missing, "--device", "cuda:1"],
                 ["predict", missing, missing, "--device", "cuda"]):
        proc = run_cli(*args, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: device cuda") and "CUDA is not available here" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "none").exists()  # nothing was written before the device was checked
    bad = run_cli("extract", "--samples", missing, "--store", missing, "--device", "gpu", check=False)
    assert bad.returncode == 2 and "extract.device" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(NVDEC, reason="checks a machine without NVDEC")
def test_nvdec_asked_for_where_there_is_none_is_one_line_and_writes_nothing(tmp_path):
    missing = str(tmp_path / "none")
    proc = run_cli("extract", "--samples", missing, "--store", missing, "--set", "extract.decoder=nvdec", check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: extract.decoder=nvdec: NVDEC is not available here: ")
    assert "extract.decoder=cpu" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.skipif(NVDEC, reason="checks a machine without NVDEC")
def test_a_decode_worker_that_cannot_use_nvdec_decodes_the_video_on_the_cpu(tmp_path):
    # the job checks NVDEC before it starts; a worker that still cannot open it (a GPU out of
    # decoder sessions, say) must not lose the video
    from vidstore.extract.job import DecodeVideo

    from vidstore.extract.workers import decode_in_workers

    path = str(write_video(tmp_path / "v.mp4", index_coded_frames(12)))
    on_cpu = DecodeVideo(4, 32)(path)
    # in a spawned worker, as extraction runs it: there NVDEC would share the primary context
    ((_, asked),) = decode_in_workers(DecodeVideo(4, 32, decoder="nvdec"), [path], 1, start="spawn")
    assert asked["reason"] == "" and asked["decoder"] == on_cpu["decoder"] == "cpu"
    assert torch.equal(asked["frames"], on_cpu["frames"]) and asked["results"] == on_cpu["results"]


def test_a_codec_nvdec_would_not_decode_exactly_is_decoded_on_the_cpu(tmp_path):
    # MPEG-4 Part 2's IDCT is not exact: NVDEC's frames could differ from the CPU's, so it is not used
    import av

    from vidstore.extract.video import decode_clip

    path = tmp_path / "part2.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in index_coded_frames(10):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    asked = decode_clip(path, 4, 32, decoder="nvdec")
    assert asked.decoder == "cpu" and np.array_equal(asked.frames, decode_clip(path, 4, 32).frames)


@pytest.mark.skipif(NVDEC, reason="checks a machine without NVDEC")
def test_h264_asked_for_nvdec_where_there_is_none_is_an_nvdec_error(tmp_path):
    from vidstore.extract.video import decode_clip

    path = write_video(tmp_path / "v.mp4", index_coded_frames(12))
    with pytest.raises(NvdecError) as err:
        decode_clip(path, 4, 32, decoder="nvdec")
    assert str(err.value).startswith("on NVDEC: ") and "\n" not in str(err.value)
