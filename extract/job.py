"""The extraction job: samples table -> clips -> backbone taps -> feature store.

Videos are decoded in DataLoader workers (the row order stays the samples order whatever
the number of workers), clips of several videos are batched per scale, the backbone runs
once per batch and scale, and the results go to the store through the in-order chunk
writer. A video that fails to decode is recorded as failed with its reason; the job goes
on. Re-running on a store made with the same config continues where it stopped.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from configs import Config, config_hash
from extract.augment import AUGMENT_VERSION, one_thread
from extract.clips import make_scaled_clips, make_variant, variant_ops
from extract.video import DecodedClip, VideoError, decode_clip, unexpected_reason
from features.backbone import BackboneTaps, WeightsInfo, build_backbone, tap_shape
from features.handcrafted import HANDCRAFTED_NAMES, HANDCRAFTED_VERSION
from store import ArraySpec, FeatureStore, ShardWriter, StoreError, owned_shards

SAMPLE_COLUMNS = ("video_id", "path", "label", "group", "status")
META_COLUMNS = ("bitrate", "fps", "width", "height", "duration", "codec")  # from the index's probe


class ExtractError(Exception):
    """A samples table or store the job cannot use; the message says what to change."""


class StoreMismatch(ExtractError):
    """An existing store made from another config or other videos."""


@dataclass
class ExtractReport:
    store: str
    n_videos: int
    n_done: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    clips: int = 0
    seconds: float = 0.0
    backbone_seconds: float = 0.0  # of ``seconds``, the time spent in the backbone forward
    shards_written: int = 0
    rank: int = 0
    world: int = 1
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else float("nan")


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present (the rank's own GPU under torchrun), else the CPU."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ExtractError("--device cuda was asked for but CUDA is not available here")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def read_samples(path: str | Path) -> pl.DataFrame:
    """The indexed videos that can be extracted (status ok), in table order."""
    path = Path(path)
    if not path.is_file():
        raise ExtractError(f"samples table not found: {path} (make one with `cli.py index`)")
    try:
        table = pl.read_parquet(path)
    except Exception as err:
        raise ExtractError(f"{path} is not a readable parquet table ({type(err).__name__})") from None
    missing = [c for c in SAMPLE_COLUMNS if c not in table.columns]
    if missing:
        raise ExtractError(f"samples table {path} lacks columns {missing}")
    usable = table.filter(pl.col("status") == "ok")
    if usable.height == 0:
        raise ExtractError(f"samples table {path} has no video with status ok")
    if usable["video_id"].n_unique() != usable.height:
        raise ExtractError(f"samples table {path} has repeated video_id values")
    return usable


def row_table(samples: pl.DataFrame, cfg: Config) -> pl.DataFrame:
    """One row per (video, variant), the K + 1 variants of a video contiguous, each with its
    augmentation ops and parameters (JSON): they depend only on (seed, video_id, variant)."""
    n_var = cfg.augment.variants + 1
    ops = [
        json.dumps(plan)
        for video_id in samples["video_id"].to_list()
        for plan in variant_ops(cfg.augment, video_id, cfg.clip.frames)
    ]
    def per_video(column: str, default) -> np.ndarray:
        values = samples[column].fill_null(default) if column in samples.columns else pl.repeat(default, samples.height, eager=True)
        return np.repeat(values.to_numpy(), n_var)

    return pl.DataFrame(
        {
            "video_id": per_video("video_id", ""),
            "group": np.repeat(samples["group"].cast(pl.String).to_numpy(), n_var),
            "label": per_video("label", 0).astype(np.int8),
            "variant": np.tile(np.arange(n_var, dtype=np.int16), samples.height),
            "augment": ops,
            "platform": per_video("platform", "").astype(str),
            "width": per_video("width", np.nan).astype(np.float32),
            "height": per_video("height", np.nan).astype(np.float32),
            "duration": per_video("duration", np.nan).astype(np.float32),
        }
    )


def preprocessing_record(cfg: Config, weights: WeightsInfo) -> dict:
    """Everything that decides the stored values; a store holds one such record."""
    return {
        "clip": cfg.clip.model_dump(mode="json"),
        "augment": {**cfg.augment.model_dump(mode="json"), "version": AUGMENT_VERSION},
        "backbone": {"name": cfg.backbone.name, "weights": weights.source, "weights_sha256": weights.sha256},
        "taps": list(cfg.backbone.taps),
        "handcrafted": HANDCRAFTED_VERSION if cfg.features.handcrafted else None,
        "dtype": cfg.extract.dtype,
    }


def _code_version() -> str:
    version = importlib.metadata.version("vidstore") if _installed("vidstore") else "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+{commit}" if commit else version


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _package_versions() -> dict[str, str]:
    names = ("torch", "torchvision", "av", "zarr", "numcodecs", "numpy", "polars")
    return {n: importlib.metadata.version(n) for n in names if _installed(n)}


def _diff_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _diff_keys(a, b, name + ".")
        elif a != b:
            keys.append(name)
    return keys


def array_specs(cfg: Config) -> dict[int, list[ArraySpec]]:
    """The arrays of every scale: one per tap (``pool`` is stored as ``embedding``), and
    ``handcrafted`` (float32, its feature names in the array's attributes)."""
    specs = {}
    for scale in cfg.clip.scales:
        specs[scale] = [
            ArraySpec("embedding" if tap == "pool" else tap, tap_shape(tap, cfg.clip.frames, scale, cfg.backbone.name), cfg.extract.dtype)
            for tap in cfg.backbone.taps
        ]
        if cfg.features.handcrafted:
            names = {"feature_names": list(HANDCRAFTED_NAMES), "version": HANDCRAFTED_VERSION}
            specs[scale].append(ArraySpec("handcrafted", (len(HANDCRAFTED_NAMES),), "float32", names, allow_nan=True))
    return specs


def _check_same_preprocessing(store: FeatureStore, record: dict) -> None:
    differing = _diff_keys(store.attrs.get("preprocessing", {}), record)
    if differing:
        raise StoreMismatch(
            f"store {store.path} was made with another preprocessing config (differs in: {', '.join(differing)}); "
            "extract into a new store"
        )


def prepare_store(store_path: str, samples: pl.DataFrame, cfg: Config, weights: WeightsInfo, samples_path: str) -> FeatureStore:
    """The coordinator's step: create the store, or grow it by the samples it lacks.

    New videos are appended after the existing ones (their rows never move), in samples
    order. An existing store made with another preprocessing config is refused.
    """
    record = preprocessing_record(cfg, weights)
    FeatureStore.remove_unfinished(store_path)  # a creation killed before the store was ready
    if FeatureStore.exists(store_path):
        try:
            store = FeatureStore.open(store_path, mode="r+")
        except StoreError as err:
            raise StoreMismatch(str(err)) from None
        _check_same_preprocessing(store, record)
        known = set(store.rows()["video_id"].unique().to_list())
        new = samples.filter(~pl.col("video_id").is_in(list(known)))
        if new.height:
            store.append_rows(row_table(new, cfg))
        return store
    provenance = {
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": _code_version(),
        "packages": _package_versions(),
        "backbone": {"name": cfg.backbone.name, "taps": list(cfg.backbone.taps), "weights": weights.to_dict()},
        "preprocessing": record,
        "preprocessing_hash": config_hash(record),
        "extract": cfg.extract.model_dump(mode="json"),
        "samples": {"path": str(samples_path), "n_videos": samples.height},
    }
    return FeatureStore.create(
        store_path,
        row_table(samples, cfg),
        array_specs(cfg),
        provenance,
        rows_per_video=cfg.augment.variants + 1,
        shard_videos=cfg.extract.shard_videos,
        chunk_mb=cfg.extract.chunk_mb,
        compression=cfg.extract.compression.model_dump(),
    )


def wait_for_store(store_path: str, samples: pl.DataFrame, cfg: Config, weights: WeightsInfo) -> FeatureStore:
    """A non-coordinating rank: wait until the store exists, is ready, and holds every
    sample video (rank 0 or `store init` makes it so), then check its config."""
    deadline = time.monotonic() + cfg.extract.wait_timeout
    wanted = set(samples["video_id"].to_list())
    record = preprocessing_record(cfg, weights)
    while True:
        store = None
        if FeatureStore.exists(store_path):
            try:
                store = FeatureStore.open(store_path, mode="r+")
            except StoreError:
                store = None  # rank 0 is still writing the store's attributes
        if store is not None and store.attrs.get("ready"):
            _check_same_preprocessing(store, record)
            if wanted <= set(store.rows()["video_id"].unique().to_list()):
                return store
        if time.monotonic() > deadline:
            raise ExtractError(
                f"store {store_path} did not hold the samples' videos after {cfg.extract.wait_timeout:.0f} s; "
                "is rank 0 running (or run `cli.py store init` first)?"
            )
        time.sleep(1.0)


def resolve_rank(shard: str | None = None) -> tuple[int, int]:
    """(rank, world size): ``--shard i/n``, else torchrun's RANK/WORLD_SIZE, else a SLURM
    array's task id and count, else (0, 1)."""
    env = os.environ
    if shard:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:
            raise ExtractError(f"--shard {shard!r} must look like i/n, e.g. 0/4") from None
        if not 0 <= i < n:
            raise ExtractError(f"--shard {shard}: i must be in 0..n-1")
        return i, n
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    return 0, 1


def _load_backbone(cfg: Config):
    return build_backbone(
        cfg.backbone.name,
        cfg.backbone.weights,
        weights_path=cfg.backbone.weights_path,
        weights_url=cfg.backbone.weights_url,
        allow_download=cfg.backbone.allow_download,
        seed=cfg.backbone.seed,
    )


def init_store(samples_path: str | Path, store_path: str | Path, cfg: Config) -> FeatureStore:
    """Create or grow the store without computing anything (run once before array jobs)."""
    samples = read_samples(samples_path)
    _, weights = _load_backbone(cfg)
    return prepare_store(str(store_path), samples, cfg, weights, str(samples_path))


class VideoClips(Dataset):
    """Item i: every variant of video i at every scale, from one decode, or the reason it
    could not be read."""

    def __init__(self, paths: list[str], video_ids: list[str], metas: list[dict], cfg: Config):
        self.paths = paths
        self.video_ids = video_ids
        self.metas = metas
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        try:
            clips = clips_of_video(self.paths[index], self.video_ids[index], self.cfg, self.metas[index])
            return {"index": index, "reason": "", **clips}
        except VideoError as err:
            return {"index": index, "clips": None, "reason": str(err)}
        except Exception as err:  # one odd video must not stop a job over thousands
            return {"index": index, "clips": None, "reason": unexpected_reason(err)}


def clips_of_video(path: str, video_id: str, cfg: Config, meta: dict | None = None) -> dict:
    """Decode once; make variants 0..K; each at every scale. Clips (V, 3, T, s, s) and
    handcrafted statistics (V, F) per scale, plus what the decoder did. ``meta``: the
    index's container metadata of the video (for the handcrafted vector)."""
    decoded = decode_clip(path, cfg.clip.frames, cfg.clip.size)
    with one_thread():  # the same bytes in a worker (one thread) and in the main process
        return _variants_at_scales(decoded, video_id, cfg, meta)


def _variants_at_scales(decoded: DecodedClip, video_id: str, cfg: Config, meta: dict | None) -> dict:
    plans = variant_ops(cfg.augment, video_id, cfg.clip.frames)
    n_var, frames = len(plans), cfg.clip.frames
    # filled in place: peak memory is one copy of the outputs plus one variant in flight
    clips = {s: torch.empty((n_var, 3, frames, s, s), dtype=torch.float32) for s in cfg.clip.scales}
    stats = {s: np.empty((n_var, len(HANDCRAFTED_NAMES)), dtype=np.float32) for s in cfg.clip.scales}
    for k, ops in enumerate(plans):
        variant = make_variant(decoded.frames, decoded.box, ops)
        for scale, scaled in make_scaled_clips(variant, decoded.box, cfg.clip, cfg.features.handcrafted, meta).items():
            clips[scale][k] = scaled.clip
            if scaled.handcrafted is not None:
                stats[scale][k] = scaled.handcrafted.numpy()
    return {
        "clips": clips,
        "handcrafted": stats if cfg.features.handcrafted else {},
        "results": {"frames_decoded": decoded.n_decoded, "frames_unique": decoded.n_unique},
    }


def _first(batch: list[dict]) -> dict:
    return batch[0]


class _Runner:
    """Runs the backbone taps on clips, at most ``batch_size`` per forward, on the chosen
    device, returning numpy arrays in the stored dtype."""

    def __init__(self, taps: BackboneTaps, device: torch.device, amp: bool, dtype: str, batch_size: int):
        self.taps = taps.to(device)
        self.device = device
        self.amp = amp and device.type == "cuda"
        self.dtype = np.dtype(dtype)
        self.batch_size = batch_size
        self.seconds = 0.0  # wall time inside the backbone, transfers included

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        parts: dict[str, list[np.ndarray]] = {}
        n_batches = -(-len(clips) // self.batch_size)  # near-equal batches, none above batch_size
        for batch in clips.tensor_split(n_batches):
            batch = batch.to(self.device, non_blocking=True)
            with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
                outputs = self.taps(batch)
            for name, value in outputs.items():
                key = "embedding" if name == "pool" else name
                parts.setdefault(key, []).append(value.float().cpu().numpy().astype(self.dtype))
        self.seconds += time.perf_counter() - started  # .cpu() waited for the device
        return {key: np.concatenate(values) for key, values in parts.items()}


@dataclass
class _Job:
    """A video to compute: its shard, its position in the store, where it is on disk."""

    shard: int
    position: int
    path: str
    video_id: str
    last_in_shard: bool
    meta: dict  # the index's container metadata (see features.handcrafted.container_features)


def plan_jobs(store: FeatureStore, samples: pl.DataFrame, rank: int, world: int) -> tuple[list[_Job], list[int], int]:
    """This rank's work: the videos of its shards that are not done, in row order.

    Returns (jobs, shards to write, videos already done in this rank's shards). A shard that
    grew keeps its earlier, done videos. A shard with a video missing from the samples
    table is left for a run that has it.
    """
    layout = store.layout
    markers = store.markers()
    video_ids = store.rows().filter(pl.col("variant") == 0)["video_id"].to_list()
    paths = dict(zip(samples["video_id"].to_list(), samples["path"].to_list()))
    meta_columns = [c for c in META_COLUMNS if c in samples.columns]
    metas = dict(zip(samples["video_id"].to_list(), samples.select(meta_columns).to_dicts()))
    jobs: list[_Job] = []
    shards: list[int] = []
    skipped = 0
    for shard in owned_shards(layout.n_shards, rank, world):
        start, stop = layout.shard_rows(shard)
        first, last = layout.shard_video_range(shard)
        marker = markers.get(shard)
        kept = 0
        if marker is not None and int(marker["start"]) == start:
            if int(marker["stop"]) == stop:
                skipped += last - first
                continue
            kept = (int(marker["stop"]) - start) // layout.rows_per_video
        missing = [video_ids[v] for v in range(first + kept, last) if video_ids[v] not in paths]
        if missing:
            warnings.warn(f"shard {shard} left pending: {len(missing)} of its videos (e.g. {missing[0]}) are not in the samples table")
            continue
        skipped += kept
        shards.append(shard)
        for v in range(first + kept, last):
            jobs.append(_Job(shard, v, paths[video_ids[v]], video_ids[v], v == last - 1, metas[video_ids[v]]))
    return jobs, shards, skipped


def run_extract(
    samples_path: str | Path,
    store_path: str | Path,
    cfg: Config,
    *,
    device: str | None = None,
    progress: bool = True,
    shard: str | None = None,
) -> ExtractReport:
    """Extract the indexed videos of ``samples_path`` into ``store_path``, this rank's share.

    Rank 0 (or a single process) creates or grows the store; other ranks wait for it.
    Each rank computes the shards it owns that have no done marker, so a restarted job
    computes only what is missing and several ranks fill one store.
    """
    samples = read_samples(samples_path)
    rank, world = resolve_rank(shard)
    model, weights = _load_backbone(cfg)
    store_path = str(store_path)
    if rank == 0:
        store = prepare_store(store_path, samples, cfg, weights, str(samples_path))
    else:
        store = wait_for_store(store_path, samples, cfg, weights)
    n_var = store.layout.rows_per_video
    jobs, shards, skipped = plan_jobs(store, samples, rank, world)
    report = ExtractReport(store=store_path, n_videos=len(jobs) + skipped, n_skipped=skipped, rank=rank, world=world)
    if not jobs:
        return report

    run = _Runner(
        BackboneTaps(model, cfg.backbone.taps),
        pick_device(device or cfg.extract.device),
        cfg.extract.amp,
        cfg.extract.dtype,
        cfg.extract.batch_size,
    )
    writer = ShardWriter(store, [(scale, spec.name) for scale, specs in array_specs(cfg).items() for spec in specs], rank=rank)
    loader = DataLoader(
        VideoClips([j.path for j in jobs], [j.video_id for j in jobs], [j.meta for j in jobs], cfg),
        batch_size=1,
        shuffle=False,
        num_workers=cfg.extract.num_workers,
        collate_fn=_first,
        pin_memory=run.device.type == "cuda",
        persistent_workers=False,
    )
    bar = tqdm(total=len(jobs) * n_var, unit="clip", disable=not progress, desc=f"extract (rank {rank}/{world})", smoothing=0.1)
    started = time.perf_counter()
    waiting: list[dict] = []

    def run_batch() -> None:
        ready = [item for item in waiting if item["clips"] is not None]
        outputs = {scale: run(torch.cat([item["clips"][scale] for item in ready])) for scale in cfg.clip.scales} if ready else {}
        offset = 0
        for item in waiting:
            job = jobs[item["index"]]
            row = job.position * n_var
            if item["clips"] is None:
                writer.add(row, n_var, None, item["reason"])
                report.n_failed += 1
                report.failures.append((job.video_id, item["reason"]))
            else:
                values = {(scale, name): arr[offset : offset + n_var] for scale, named in outputs.items() for name, arr in named.items()}
                values.update({(scale, "handcrafted"): stats for scale, stats in item["handcrafted"].items()})
                writer.add(row, n_var, values, results=item["results"])
                offset += n_var
                report.n_done += 1
                report.clips += n_var
            bar.update(n_var)
        waiting.clear()

    try:
        n_clips = 0
        for item in loader:
            job = jobs[item["index"]]
            if writer.shard is None:
                kept = writer.begin(job.shard)
                assert job.position == store.layout.shard_video_range(job.shard)[0] + kept
            waiting.append(item)
            n_clips += n_var if item["clips"] is not None else 0
            # batches never cross a shard: the same batches whatever shard a run resumes at
            if n_clips >= cfg.extract.batch_size or job.last_in_shard:
                run_batch()
                n_clips = 0
            if job.last_in_shard:
                writer.finish()
                report.shards_written += 1
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    report.backbone_seconds = run.seconds
    return report
