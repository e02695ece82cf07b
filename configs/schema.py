"""The config schema (pydantic) and its loader: defaults <- file <- ``--set`` overrides."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from vidstore.features.device import DEVICE_HELP, DEVICE_PATTERN

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

# Kinetics-400 normalisation used by torchvision's video models.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)

TAP_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4", "pool")
# Kept in step with extract/augment.py (a test checks it); listed here so that configs
# stay importable without torch.
AUGMENT_OPS = (
    "drop", "duplicate", "reverse", "speed",
    "rotate", "hflip", "color", "hue", "noise", "blur", "affine", "cutout", "elastic", "jpeg", "rescale",
)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def _require_known(values: list[str], known: tuple[str, ...], what: str) -> None:
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; choose from {list(known)}")


def _numeric_only(annotation: Any) -> bool:
    """Whether a field takes numbers and not booleans (int, float, tuples or lists of them)."""
    import typing

    if annotation is bool:
        return False
    if annotation in (int, float):
        return True
    args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
    return bool(args) and all(_numeric_only(a) for a in args)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info) -> Any:
        """``clip.frames=true`` is a mistake, not 1: numbers refuse booleans."""
        field = cls.model_fields.get(info.field_name)
        if field is not None and _numeric_only(field.annotation):
            items = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) for v in items):
                raise ValueError(f"expects a number, got the boolean {value!r}")
        return value


ConfigSection = _Strict  # what a head's Params derive from: unknown keys are errors


class ClipConfig(_Strict):
    """How a video becomes clips: T frames sampled uniformly, letterboxed to the first scale."""

    frames: int = Field(16, ge=1, le=512, description="frames sampled uniformly over the video (T)")
    scales: list[int] = Field(
        default_factory=lambda: [224, 112],
        description="square sizes; the first is the letterbox size, the rest are downscales of it",
    )
    downscale: Literal["area", "bilinear"] = "area"
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD

    @field_validator("scales")
    @classmethod
    def _scales_descending(cls, scales: list[int]) -> list[int]:
        if not scales:
            raise ValueError("needs at least one size")
        if any(s < 16 for s in scales):
            raise ValueError(f"sizes must be >= 16, got {scales}")
        if sorted(set(scales), reverse=True) != scales:
            raise ValueError(f"sizes must be distinct and descending (letterbox size first), got {scales}")
        return scales

    @property
    def size(self) -> int:
        return self.scales[0]


class BackboneConfig(_Strict):
    """Which video network runs over the clips, with which weights, and what it returns."""

    name: Literal["r3d_18", "mc3_18", "r2plus1d_18"] = "r3d_18"
    weights: Literal["kinetics400", "random"] = "kinetics400"
    weights_path: str | None = Field(None, description="a local state-dict file; tried first")
    weights_url: str | None = Field(None, description="download address (default: torchvision's)")
    allow_download: bool = True
    seed: int = Field(0, description="initialisation seed when weights=random")
    taps: list[str] = Field(default_factory=lambda: ["layer4", "pool"], description="stored outputs: stem, layer1..layer4, pool (the 512-d embedding)")

    @field_validator("taps")
    @classmethod
    def _known_taps(cls, taps: list[str]) -> list[str]:
        _require_known(taps, TAP_NAMES, "tap")
        if not taps:
            raise ValueError("needs at least one tap")
        return sorted(set(taps), key=TAP_NAMES.index)


class AugmentConfig(_Strict):
    """Augmented variants per video: how many, and which augmentations each one draws."""

    variants: int = Field(10, ge=0, le=255, description="K: augmented variants per video besides the original")
    seed: int = Field(0, description="global seed; a variant is seeded by (seed, video_id, variant)")
    spatial: tuple[int, int] = Field((1, 2), description="min and max spatial augmentations per variant")
    temporal: tuple[int, int] = Field((0, 1), description="min and max temporal augmentations per variant")
    ops: list[str] = Field(default_factory=lambda: list(AUGMENT_OPS), description="augmentations to draw from")
    explicit: list[list[str]] = Field(
        default_factory=list, description="optional: variant k uses explicit[(k-1) % len] instead of drawing ops"
    )

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, ops: list[str]) -> list[str]:
        _require_known(ops, AUGMENT_OPS, "augmentation")
        return ops

    @field_validator("explicit")
    @classmethod
    def _known_explicit(cls, explicit: list[list[str]]) -> list[list[str]]:
        for ops in explicit:
            cls._known_ops(ops)
            if len(set(ops)) != len(ops):
                raise ValueError(f"an augmentation appears twice in {ops}")
        return explicit

    @field_validator("spatial", "temporal")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError(f"must be [min, max] with 0 <= min <= max, got {list(value)}")
        return value


class FeaturesConfig(_Strict):
    """What is computed from a clip besides the backbone taps."""

    handcrafted: bool = Field(True, description="forensic statistics (features/handcrafted.py) per row and scale")


class CompressionConfig(_Strict):
    codec: Literal["zstd", "lz4", "none"] = "zstd"
    level: int = Field(1, ge=0, le=9, description="zstd 1: 1.52x on float16 maps at half the CPU of level 3 (1.57x); benchmarks/store_io.py --threads")
    shuffle: Literal["shuffle", "bitshuffle", "noshuffle"] = "shuffle"


class ExtractConfig(_Strict):
    """The extraction job: batching, device, workers, and how arrays are stored."""

    batch_size: int = Field(16, ge=1, description="clips per backbone forward")
    num_workers: int = Field(2, ge=0, description="decode worker processes (they decode and letterbox, nothing else)")
    decoder: Literal["cpu", "nvdec"] = Field(
        "cpu",
        description="what reconstructs frames: cpu (FFmpeg) or nvdec (NVIDIA's decoder engine through FFmpeg, for H.264, HEVC "
        "and VP9, which decode exactly; other codecs on the CPU; workers are spawned, not forked; "
        "benchmarks/decode_speed.py --nvdec compares the two)",
    )
    prefetch: int = Field(4, ge=1, description="decoded videos each worker keeps ready")
    stage_threads: int = Field(0, ge=0, description="videos in the device stage at once; 0 = one per core on a CPU, 4 on CUDA")
    writer_threads: int = Field(2, ge=0, description="background threads compressing and writing shards; 0 = write in the job's thread")
    writer_queue: int = Field(1, ge=0, description="finished shards that may wait for a writer thread (memory bound)")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)
    amp: bool = Field(True, description="autocast on CUDA")
    amp_dtype: Literal["bf16", "fp16"] = Field("bf16", description="autocast dtype on CUDA")
    dtype: Literal["float16", "float32"] = "float16"
    chunk_mb: float = Field(1.0, gt=0, description="target uncompressed size of one chunk along rows")
    shard_videos: int = Field(32, ge=1, description="videos per shard: a shard is one file per array, owned by one writer")
    wait_timeout: float = Field(3600, gt=0, description="seconds a rank other than 0 waits for the store to be ready")
    decode_timeout: float = Field(120, ge=0, description="seconds one video may take to decode; its worker is then replaced and the video recorded failed (0 = no limit; needs num_workers >= 1)")
    max_pixels: int = Field(7680 * 4320, ge=0, description="refuse videos whose frames have more pixels (from the headers, before decoding; 0 = no limit)")
    max_duration: float = Field(6 * 3600, ge=0, description="refuse videos longer than this many seconds (from the headers; 0 = no limit)")
    lease_timeout: float = Field(300, gt=0, description="seconds without a heartbeat after which another process takes over a shard's lease")
    verify: bool = Field(False, description="before planning, read every done shard of this rank back and check it against its marker's checksums (recompute those that fail)")
    compression: CompressionConfig = Field(default_factory=CompressionConfig)


class TrainConfig(_Strict):
    """Head training: which store arrays, which split, where the run goes."""

    folds: int = Field(5, ge=2)
    seed: int = 0
    scale: int | None = Field(None, description="store scale to read (default: the store's largest)")
    features: list[str] = Field(
        default_factory=lambda: ["embedding", "handcrafted"], description="arrays for gbm and logreg (maps enter as channel mean/max)"
    )
    tap: str = Field("layer4", description="the stored map the inception head reads")
    inner_holdout: float = Field(
        0.2, ge=0, lt=0.6,
        description="inception: share of the training groups held out in each fold for early stopping, threshold and calibration",
    )
    inner_folds: int = Field(
        3, ge=0, description="gbm/logreg: inner grouped folds of the training rows whose predictions set threshold and calibration (0: use inner_holdout)"
    )
    calibration: Literal["none", "platt", "isotonic"] = "none"
    threshold: str = Field(
        "f1", description="how the decision threshold is chosen on training-side predictions: f1, youden, eer, or fpr:0.05 (at most that false-positive rate)"
    )
    shuffle_labels: bool = Field(False, description="permutation check: train on group-shuffled labels")
    bootstrap: int = Field(1000, ge=0, description="resamples for the pooled 95 % intervals (of groups, and of videos beside); 0: none")
    out: str = "runs"
    map_cache_mb: float = Field(8192, ge=0, description="a map head's maps stay in RAM when they fit in this (else they stream from the store every epoch)")
    tensorboard: bool = Field(
        False, description="also write the training curves (per fold and stage) and the final metrics as TensorBoard events in RUN/tensorboard/ (the tensorboard extra)"
    )

    @field_validator("threshold")
    @classmethod
    def _threshold_rule(cls, rule: str) -> str:
        from vidstore.heads.metrics import parse_threshold_rule

        parse_threshold_rule(rule)
        return rule
    # and one section per registered head, train.<head>, validated by the head's Params (see config_model)


class FinetuneConfig(_Strict):
    """End-to-end fine-tuning of backbone + Inception3D head (``vidstore finetune``)."""

    trainable: list[str] = Field(default_factory=lambda: ["layer3", "layer4"], description="backbone stages that train ([all] for every stage)")
    freeze_bn: bool = Field(True, description="batch norms of the backbone keep their statistics and weights")
    lr_backbone: float = Field(5e-6, gt=0)
    lr_head: float = Field(5e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    epochs: int = Field(10, ge=1)
    warmup_epochs: float = Field(1, ge=0)
    patience: int = Field(3, ge=1, description="epochs without a better hold-out loss before stopping")
    batch_size: int = Field(16, ge=1, description="effective batch per rank (one optimiser step)")
    micro_batch: int = Field(16, ge=1, description="clips per forward; halves on CUDA out-of-memory (accumulation doubles)")
    balance: Literal["class_weights", "balanced_batches"] = "class_weights"
    grad_clip: float = Field(1.0, gt=0)
    amp: Literal["bf16", "fp16", "none"] = Field("bf16", description="autocast on CUDA (fp16 with a gradient scaler)")
    holdout: float = Field(0.2, ge=0, lt=0.6, description="share of groups held out for early stopping and the threshold (0: none)")
    augment: bool = Field(True, description="training clips draw fresh augmentations every epoch (the augment policy)")
    num_workers: int = Field(2, ge=0)
    seed: int = 0
    device: str = Field("auto", pattern=DEVICE_PATTERN, description=DEVICE_HELP)
    export: list[Literal["pt2", "onnx", "torchscript"]] = Field(
        default_factory=lambda: ["pt2"],
        description="exports, each loaded back and checked against the eager model (pt2: torch.export; onnx needs onnxscript; "
                    "torchscript is deprecated by torch)",
    )
    tensorboard: bool = Field(
        False, description="also write each epoch's loss, hold-out metrics and lr, and the final hold-out metrics, as TensorBoard events in OUT/tensorboard/ (the tensorboard extra)"
    )


class DemoConfig(_Strict):
    """The built-in demo dataset."""

    videos: int = Field(120, ge=4)
    seed: int = 0
    width: int = Field(128, ge=32)
    height: int = Field(96, ge=32)
    n_frames: int = Field(32, ge=8)
    fps: int = Field(24, ge=1)
    also_train: list[str] = Field(
        default_factory=lambda: ["gbm:embedding", "gbm:embedding+handcrafted", "logreg:handcrafted", "inception:layer4"],
        description="runs the demo trains besides `gbm` on train.features, as head:array+array (inception: head:tap)",
    )

    @field_validator("also_train")
    @classmethod
    def _head_and_arrays(cls, runs: list[str]) -> list[str]:
        for run in runs:
            head, sep, arrays = run.partition(":")
            if not sep or not head or not arrays:
                raise ValueError(f"{run!r} must look like head:array[+array] (a registered head)")
        return runs

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"must be even (H.264 4:2:0), got {value}")
        return value


class Config(_Strict):
    clip: ClipConfig = Field(default_factory=ClipConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    demo: DemoConfig = Field(default_factory=DemoConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def config_hash(section: BaseModel | dict) -> str:
    """A short stable hash of a config section (sorted-key JSON)."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else section
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def packaged_configs(folder: str = "") -> list[str]:
    """Names of the configs installed with vidstore (``demo``, ``fvc``; ``sweeps/gbm``)."""
    where = resources.files("vidstore.configs").joinpath(folder) if folder else resources.files("vidstore.configs")
    prefix = f"{folder}/" if folder else ""
    return sorted(prefix + item.name[:-5] for item in where.iterdir() if item.name.endswith(".yaml"))


def find_config(name: str | Path, what: str = "config file", folder: str = ""):
    """A path names a file; a bare name (``demo``, ``fvc.yaml``; ``gbm`` for a sweep grid)
    names a config installed with vidstore, so the packaged ones work from any folder.
    Returns something with ``read_text`` (a Path or an installed resource)."""
    path = Path(name)
    if path.is_file():
        return path
    bare = str(name).removesuffix(".yaml")
    if bare and "/" not in bare and "\\" not in bare:
        packaged = resources.files("vidstore.configs").joinpath(*(folder.split("/") if folder else []), f"{bare}.yaml")
        if packaged.is_file():
            return packaged
    names = ", ".join(item.split("/")[-1] for item in packaged_configs(folder))
    raise ConfigError(f"{what} not found: {name} (a path, or one installed with vidstore: {names})")


def _read_yaml(path) -> dict[str, Any]:
    path = find_config(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value is not valid YAML") from None
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def _describe(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"unknown config key '{key}' in {source}"
    msg = first["msg"].removeprefix("Value error, ")
    return f"bad config value for '{key}' in {source}: {msg}"


_MODELS: dict[tuple, type] = {}


def config_model() -> type[Config]:
    """The Config schema with a ``train.<head>`` section per registered head, each of the
    head's own ``Params`` (heads register as they load: heads/registry.py)."""
    from vidstore.heads.registry import HEADS, load_builtin_heads

    load_builtin_heads()
    key = tuple(sorted((name, id(cls.Params)) for name, cls in HEADS.items()))
    if key not in _MODELS:
        clash = sorted(set(HEADS) & set(TrainConfig.model_fields))
        if clash:
            raise ConfigError(f"head name(s) {clash} are train keys already; register the head under another name")
        sections = {name: (cls.Params, Field(default_factory=cls.Params)) for name, cls in sorted(HEADS.items())}
        train = create_model("TrainConfig", __base__=TrainConfig, **sections)
        _MODELS[key] = create_model("Config", __base__=Config, train=(train, Field(default_factory=train)))
    return _MODELS[key]


def default_config() -> Config:
    """Every default, from the schema (configs/default.yaml is this, with comments; a test keeps them equal)."""
    return config_model()()


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The schema's defaults, then the file at ``path`` (if any), then ``key=value`` overrides; validated."""
    data: dict[str, Any] = {}
    sources = ["defaults"]
    if path is not None:
        data = _read_yaml(path)
        sources.append(str(path))
    for text in overrides:
        data = _deep_merge(data, parse_override(text))
    if overrides:
        sources.append("--set")
    try:
        return config_model().model_validate(data)
    except ValidationError as err:
        raise ConfigError(_describe(err, " + ".join(sources))) from None
