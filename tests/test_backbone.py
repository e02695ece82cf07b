"""Backbone weights (local file, hub cache, download, offline error) and taps."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.video import r3d_18

from vidstore.features.backbone import (
    KINETICS_URLS,
    TAP_ORDER,
    BackboneTaps,
    WeightsError,
    build_backbone,
    state_dict_sha256,
    tap_shape,
)


@pytest.fixture()
def saved_weights(tmp_path):
    """A state dict the test makes itself, standing in for the Kinetics-400 file."""
    torch.manual_seed(123)
    model = r3d_18()
    path = tmp_path / "r3d_18-test.pth"
    torch.save(model.state_dict(), path)
    return path, state_dict_sha256(model)


@pytest.fixture()
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub.get_dir() is $TORCH_HOME/hub
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return tmp_path / "torch" / "hub"


def test_weights_from_local_file(saved_weights, empty_hub):
    path, sha = saved_weights
    model, info = build_backbone("r3d_18", "kinetics400", weights_path=str(path), allow_download=False)
    assert info.source == "kinetics400" and info.origin == str(path) and info.sha256 == sha
    assert not model.training


def test_weights_from_hub_cache(saved_weights, empty_hub):
    path, sha = saved_weights
    cached = empty_hub / "checkpoints" / KINETICS_URLS["r3d_18"].rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    _, info = build_backbone("r3d_18", "kinetics400", allow_download=False)
    assert info.origin == str(cached) and info.sha256 == sha


def test_weights_download_into_cache(saved_weights, empty_hub):
    path, sha = saved_weights
    url = path.resolve().as_uri()  # file:// goes through the same download code as https://
    _, info = build_backbone("r3d_18", "kinetics400", weights_url=url, allow_download=True)
    assert info.sha256 == sha
    assert (empty_hub / "checkpoints" / path.name).is_file()


def test_missing_weights_offline_names_the_file(empty_hub):
    with pytest.raises(WeightsError) as err:
        build_backbone("r3d_18", "kinetics400", allow_download=False)
    message = str(err.value)
    assert "r3d_18-b3b3357e.pth" in message and "\n" not in message


def test_bad_weights_file_is_a_clear_error(tmp_path, empty_hub):
    bad = tmp_path / "bad.pth"
    torch.save({"not": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="cannot load weights"):
        build_backbone("r3d_18", "kinetics400", weights_path=str(bad))


def test_random_weights_are_seeded():
    _, a = build_backbone("r3d_18", "random", seed=1)
    _, b = build_backbone("r3d_18", "random", seed=1)
    _, c = build_backbone("r3d_18", "random", seed=2)
    assert a.sha256 == b.sha256 != c.sha256
    assert a.origin == "seed=1"


@pytest.mark.parametrize("frames,size", [(4, 32), (5, 40), (8, 56)])
def test_tap_shapes_and_early_stop(frames, size):
    model, _ = build_backbone("r3d_18", "random", seed=0)
    clips = torch.randn(2, 3, frames, size, size)
    with torch.no_grad():
        everything = BackboneTaps(model, list(TAP_ORDER))(clips)
        up_to_layer2 = BackboneTaps(model, ["layer2"])(clips)
    for name, value in everything.items():
        assert tuple(value.shape) == (2, *tap_shape(name, frames, size)), name
    assert list(up_to_layer2) == ["layer2"]
    assert torch.equal(up_to_layer2["layer2"], everything["layer2"])
    assert torch.allclose(everything["pool"], everything["layer4"].mean(dim=(2, 3, 4)), atol=1e-5)
