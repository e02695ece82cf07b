"""Video backbones (torchvision's r3d_18 family) and their named intermediate outputs.

``build_backbone`` makes the network and loads its weights; ``BackboneTaps`` runs it and
returns a dict of the requested outputs, stopping after the deepest one asked for.

Weights: ``kinetics400`` are looked for, in order, in a local file (``weights_path``), in
the torch hub cache, then downloaded into that cache. ``random`` initialises from a seed.
Either way the returned ``WeightsInfo`` names the source and a hash of the tensors, which
the store records as provenance.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import video as tv_video

TAP_ORDER = ("stem", "layer1", "layer2", "layer3", "layer4", "pool")

# Channels of each tap for the r3d_18 family (all three share the ResNet-18 widths).
TAP_CHANNELS = {"stem": 64, "layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512, "pool": 512}

# torchvision's Kinetics-400 checkpoints; the hex in each name is the start of its sha256.
KINETICS_URLS = {
    "r3d_18": "https://download.pytorch.org/models/r3d_18-b3b3357e.pth",
    "mc3_18": "https://download.pytorch.org/models/mc3_18-a90a0ba3.pth",
    "r2plus1d_18": "https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
}

_CONSTRUCTORS = {"r3d_18": tv_video.r3d_18, "mc3_18": tv_video.mc3_18, "r2plus1d_18": tv_video.r2plus1d_18}


class WeightsError(RuntimeError):
    """Weights that cannot be found or loaded; the message says which file to fetch."""


@dataclass(frozen=True)
class WeightsInfo:
    """Where a backbone's weights came from, and a hash identifying them."""

    name: str  # backbone name
    source: str  # "kinetics400" or "random"
    origin: str  # file path, cache path, URL, or "seed=N"
    sha256: str  # hash of the state dict's tensors (independent of file format)

    def to_dict(self) -> dict:
        return asdict(self)


def state_dict_sha256(model: nn.Module) -> str:
    """Hash of every tensor in the state dict, by name; the weights' identity."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _hub_checkpoint_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _find_kinetics_file(name: str, weights_path: str | None, weights_url: str | None, allow_download: bool) -> Path:
    if weights_path:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise WeightsError(f"backbone.weights_path {path} does not exist")
        return path
    url = weights_url or KINETICS_URLS[name]
    cached = _hub_checkpoint_path(url)
    if cached.is_file():
        return cached
    if allow_download:
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=False)
            return cached
        except Exception as err:  # network errors come in many types
            cached.unlink(missing_ok=True)
            why = f"download failed ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
    else:
        why = "downloads are off (backbone.allow_download=false)"
    raise WeightsError(
        f"no Kinetics-400 weights for {name}: {why}; fetch {url} and save it as {cached} "
        f"or pass --set backbone.weights_path=FILE (or use backbone.weights=random)"
    )


def build_backbone(
    name: str = "r3d_18",
    weights: str = "kinetics400",
    *,
    weights_path: str | None = None,
    weights_url: str | None = None,
    allow_download: bool = True,
    seed: int = 0,
) -> tuple[nn.Module, WeightsInfo]:
    """The backbone in eval mode on the CPU, with its weights' provenance."""
    if name not in _CONSTRUCTORS:
        raise WeightsError(f"unknown backbone {name!r}; choose from {sorted(_CONSTRUCTORS)}")
    if weights == "random":
        # torchvision initialises from the global RNG; fork it so the caller's stream is untouched
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _CONSTRUCTORS[name]()
        origin = f"seed={seed}"
    elif weights == "kinetics400":
        path = _find_kinetics_file(name, weights_path, weights_url, allow_download)
        model = _CONSTRUCTORS[name]()
        from vidstore.store.artifacts import ArtifactError, load_torch_file

        try:
            state = load_torch_file(path, what="weights file")
        except ArtifactError as err:
            raise WeightsError(str(err)) from None
        try:
            model.load_state_dict(state)
        except Exception as err:
            raise WeightsError(f"cannot load weights from {path}: {str(err).splitlines()[0][:200]}") from None
        origin = str(path)
    else:
        raise WeightsError(f"unknown weights {weights!r}; use kinetics400 or random")
    model.eval()
    return model, WeightsInfo(name=name, source=weights, origin=origin, sha256=state_dict_sha256(model))


class BackboneTaps(nn.Module):
    """Runs a torchvision video ResNet and returns the requested named outputs.

    Tap shapes for an input (B, 3, T, S, S), r3d_18 and r2plus1d_18: stem and layer1
    (B, 64, T, S/2, S/2); layer2 (B, 128, T/2, S/4, S/4); layer3 (B, 256, T/4, S/8, S/8);
    layer4 (B, 512, T/8, S/16, S/16) (each halving rounds up); pool (B, 512), the global
    average of layer4. mc3_18 keeps T throughout (see ``tap_shape``). The forward pass
    stops after the deepest requested tap.
    """

    def __init__(self, backbone: nn.Module, taps: list[str] | tuple[str, ...]):
        super().__init__()
        unknown = [t for t in taps if t not in TAP_ORDER]
        if unknown or not taps:
            raise ValueError(f"taps must be a non-empty subset of {TAP_ORDER}, got {list(taps)}")
        self.backbone = backbone
        self.taps = tuple(t for t in TAP_ORDER if t in taps)
        self._last = max(TAP_ORDER.index(t) for t in self.taps)

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        x = clips
        for position, stage in enumerate(TAP_ORDER):
            if stage == "pool":
                x = torch.flatten(self.backbone.avgpool(x), 1)
            else:
                x = getattr(self.backbone, stage)(x)
            if stage in self.taps:
                out[stage] = x
            if position == self._last:
                break
        return out


def tap_shape(tap: str, frames: int, size: int, backbone: str = "r3d_18") -> tuple[int, ...]:
    """Per-clip shape of a tap's output for T=frames, S=size (without the batch axis).

    r3d_18 and r2plus1d_18 halve time in layers 2-4; mc3_18 (3D convolutions only in its
    stem and layer1) keeps all T frames. Each halving rounds up (kernel 3, stride 2, pad 1).
    """
    if tap == "pool":
        return (TAP_CHANNELS["pool"],)
    time_halvings, space_halvings = {"stem": (0, 1), "layer1": (0, 1), "layer2": (1, 2), "layer3": (2, 3), "layer4": (3, 4)}[tap]
    if backbone == "mc3_18":
        time_halvings = 0

    def shrink(n: int, times: int) -> int:
        for _ in range(times):
            n = (n + 1) // 2
        return n

    s = shrink(size, space_halvings)
    return (TAP_CHANNELS[tap], shrink(frames, time_halvings), s, s)
