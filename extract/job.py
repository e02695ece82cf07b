"""The extraction job: samples table -> clips -> backbone taps -> feature store.

Videos are decoded in worker processes with a time limit per video (extract/workers.py;
the row order stays the samples order whatever the number of workers), clips of several videos are batched per scale, the backbone runs
once per batch and scale, and the results go to the store through the in-order chunk
writer. A video that fails to decode is recorded as failed with its reason; the job goes
on. Re-running on a store made with the same config continues where it stopped.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import pickle
import queue
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import astuple, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from vidstore.configs import Config, config_hash
from vidstore.extract.augment import AUGMENT_VERSION
from vidstore.extract.clips import variant_ops, variants_at_scales
from vidstore.extract.progress import Progress
from vidstore.extract.video import LetterboxBox, NvdecError, VideoError, check_nvdec, decode_clip, unexpected_reason
from vidstore.features.backbone import BackboneTaps, WeightsInfo, build_backbone, tap_shape
from vidstore.features.device import DeviceError, pick_device
from vidstore.features.handcrafted import HANDCRAFTED_NAMES, HANDCRAFTED_VERSION
from vidstore.extract.workers import decode_in_workers
from vidstore.store import SCHEMA_VERSION, ArraySpec, FeatureStore, Leases, ShardWriter, StoreError, StoreProvenance, owned_shards

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
    shards_held_elsewhere: list[int] = field(default_factory=list)  # leased or finished by another process
    device: str = ""
    worker_bytes: int = 0  # shipped from the decode workers, all videos together
    # seconds per stage, summed over the processes or threads that run it: decode (workers),
    # device_stage (variants, scales, statistics), write (the shard writer's threads)
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "device_stage": 0.0, "write": 0.0})
    decoder: str = "cpu"  # extract.decoder
    decoded_by: dict[str, int] = field(default_factory=dict)  # videos decoded, by what reconstructed their frames

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else float("nan")


def read_samples(path: str | Path) -> pl.DataFrame:
    """The indexed videos that can be extracted (status ok), in table order."""
    path = Path(path)
    if not path.is_file():
        raise ExtractError(f"samples table not found: {path} (make one with `vidstore index`)")
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
            "path": per_video("path", "").astype(str),
            "content_hash": per_video("content_hash", "").astype(str),
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
    differing = _diff_keys(store.provenance.preprocessing, record)
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
    if FeatureStore.being_created(store_path):  # by another process, now: use it once it is ready
        return wait_for_store(store_path, samples, cfg, weights)
    if FeatureStore.exists(store_path):
        try:
            store = FeatureStore.open(store_path, mode="r+")
        except StoreError as err:
            raise StoreMismatch(str(err)) from None
        _check_same_preprocessing(store, record)
        stored = store.rows().filter(pl.col("variant") == 0)
        known = set(stored["video_id"].to_list())
        new = samples.filter(~pl.col("video_id").is_in(list(known)))
        _refuse_renamed(store, stored, samples, new)
        if new.height:
            store.append_rows(row_table(new, cfg))
        return store
    provenance = StoreProvenance(
        version=SCHEMA_VERSION,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        code_version=_code_version(),
        packages=_package_versions(),
        backbone={"name": cfg.backbone.name, "taps": list(cfg.backbone.taps), "weights": weights.to_dict()},
        preprocessing=record,
        preprocessing_hash=config_hash(record),
        extract=cfg.extract.model_dump(mode="json"),
        samples={"path": str(Path(samples_path).resolve()), "n_videos": samples.height},  # absolute: reports find the videos
    )
    try:
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
    except StoreError:
        if not FeatureStore.exists(store_path):
            raise
        # another process is creating it at this moment: use that store once it is ready
        return wait_for_store(store_path, samples, cfg, weights)


def _refuse_renamed(store: FeatureStore, stored: pl.DataFrame, samples: pl.DataFrame, new: pl.DataFrame) -> None:
    """A new sample that is a stored video under another id (same path, or same content
    while the stored id left the table) would be appended a second time: refuse."""
    if new.height == 0:
        return
    wanted = set(samples["video_id"].to_list())
    gone = stored.filter(~pl.col("video_id").is_in(list(wanted)))
    if gone.height == 0:
        return
    if gone.height == stored.height and not any(stored["path"].to_list()):
        raise StoreMismatch(
            f"none of the {stored.height} videos of store {store.path} is in this samples table (e.g. {stored['video_id'][0]}), "
            "and the store predates recorded paths, so renamed ids cannot be told from new videos. Ids are now paths "
            "relative to the indexed folder, extension included: extract into a new store"
        )
    by_path = {p: v for p, v in zip(gone["path"].to_list(), gone["video_id"].to_list()) if p}
    by_hash = {h: v for h, v in zip(gone["content_hash"].to_list(), gone["video_id"].to_list()) if h}
    examples = []
    for row in new.iter_rows(named=True):
        old = by_path.get(row.get("path") or "") or by_hash.get(row.get("content_hash") or "")
        if old:
            examples.append(f"{old} -> {row['video_id']}")
    if examples:
        raise StoreMismatch(
            f"store {store.path} holds {len(examples)} of these videos under other ids (e.g. {', '.join(examples[:3])}); "
            "growing it would store them twice and leak them across folds. Index with the ids the store has, "
            "or extract into a new store"
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
                "is rank 0 running (or run `vidstore store init` first)?"
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


class DecodeVideo:
    """``fn(path)`` for the decode workers: the T sampled frames of the video letterboxed to
    the largest scale, uint8 (T, S, S, 3), with their content box and what the decoder
    did; or the reason it could not be read. This is all a worker does and all that
    crosses the process boundary."""

    def __init__(self, frames: int, size: int, max_pixels: int = 0, max_duration: float = 0, decoder: str = "cpu", device: int = 0):
        self.frames, self.size, self.max_pixels, self.max_duration = frames, size, max_pixels, max_duration
        self.decoder, self.device = decoder, device  # device: the GPU whose NVDEC decodes

    def _decode(self, path: str, decoder: str):
        limits = dict(max_pixels=self.max_pixels or None, max_duration=self.max_duration or None)
        return decode_clip(path, self.frames, self.size, decoder=decoder, device=self.device, **limits)

    def __call__(self, path: str) -> dict:
        started = time.perf_counter()
        item: dict = {"frames": None, "reason": ""}
        try:
            try:
                decoded = self._decode(path, self.decoder)
            except NvdecError:
                decoded = self._decode(path, "cpu")  # what NVDEC failed on gets the CPU's verdict
            item.update(
                frames=torch.from_numpy(decoded.frames),
                box=astuple(decoded.box),
                results={"frames_decoded": decoded.n_decoded, "frames_unique": decoded.n_unique},
                decoder=decoded.decoder,
            )
        except VideoError as err:
            item["reason"] = str(err)
        except Exception as err:  # one odd video must not stop a job over thousands
            item["reason"] = unexpected_reason(err)
        item["decode_seconds"] = time.perf_counter() - started
        return item


def item_bytes(item: dict) -> int:
    """What one decoded video costs to ship from a worker: its frames plus the pickled rest."""
    rest = {k: v for k, v in item.items() if k != "frames"}
    frames = item.get("frames")
    return len(pickle.dumps(rest)) + (frames.numel() * frames.element_size() if frames is not None else 0)


class DeviceStage:
    """Everything between decoded frames and the backbone, per video, on the job's device:
    the K variants from their stored parameters, the downscales, normalisation and the
    handcrafted statistics (``extract.clips.variants_at_scales``).

    Videos run in parallel on ``threads`` threads while the main thread runs the backbone.
    On the CPU each thread is single-threaded: a video's values then depend neither on the
    number of threads nor on the batch, and equal the per-clip reference (``make_variant``
    + ``make_scaled_clips``). On CUDA the threads queue work on the GPU and do the parts
    that stay on the CPU (numpy's random fields for noise and elastic, which release the
    GIL), so that no single Python thread bounds the GPU.
    """

    def __init__(self, cfg: Config, device: torch.device, threads: int):
        self.cfg, self.device = cfg, device
        init, arg = (torch.cuda.set_device, device) if device.type == "cuda" else (torch.set_num_threads, 1)
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="device-stage", initializer=init, initargs=(arg,))
        self.seconds = 0.0  # summed over threads; on CUDA it includes waiting for the GPU's statistics
        self._lock = threading.Lock()

    def submit(self, item: dict, plans: list[list[dict]], meta: dict) -> Future:
        return self.pool.submit(self._run, item, plans, meta)

    def _run(self, item: dict, plans: list[list[dict]], meta: dict):
        started = time.perf_counter()
        with torch.inference_mode():
            frames = item["frames"].to(self.device, non_blocking=True)
            out = variants_at_scales(frames, LetterboxBox(*item["box"]), plans, self.cfg.clip, self.cfg.features.handcrafted, meta)
        with self._lock:
            self.seconds += time.perf_counter() - started
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class BackboneRunner:
    """Runs the backbone taps on clips, at most ``batch_size`` per forward, on the chosen
    device, returning numpy arrays in the stored dtype. On CUDA: channels-last 3D, cuDNN
    autotuning, and bf16 or fp16 autocast."""

    def __init__(self, taps: BackboneTaps, device: torch.device, amp: bool, amp_dtype: str, dtype: str, batch_size: int):
        self.cuda = device.type == "cuda"
        self.memory_format = torch.channels_last_3d if self.cuda else torch.contiguous_format
        self.taps = taps.to(device, memory_format=self.memory_format) if self.cuda else taps.to(device)
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.device = device
        self.amp = amp and self.cuda
        self.amp_dtype = torch.bfloat16 if amp_dtype == "bf16" else torch.float16
        self.dtype = getattr(torch, dtype)
        self.batch_size = batch_size
        self.seconds = 0.0  # wall time inside the backbone, transfers included

    @torch.inference_mode()
    def __call__(self, clips: torch.Tensor) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        parts: dict[str, list[np.ndarray]] = {}
        n_batches = -(-len(clips) // self.batch_size)  # near-equal batches, none above batch_size
        for batch in clips.tensor_split(n_batches):
            batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                outputs = self.taps(batch)
            for name, value in outputs.items():
                key = "embedding" if name == "pool" else name
                # float32 first: the stored value is the float32 result rounded once
                parts.setdefault(key, []).append(value.float().to(self.dtype).cpu().numpy())
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
    plans: list[list[dict]]  # the stored ops and parameters of variants 0..K


def plan_jobs(
    store: FeatureStore, samples: pl.DataFrame, rank: int, world: int, *, verify: bool = False
) -> tuple[list[_Job], list[int], int, set[int]]:
    """This rank's work: the videos of its shards that are not done, in row order.

    Returns (jobs, shards to write, videos already done in this rank's shards, distrusted
    shards). A shard that grew keeps its earlier, done videos. A shard with a video
    missing from the samples table is left for a run that has it. A done marker over
    missing data (or, with ``verify``, over data that differs from its checksums) is
    distrusted: its shard is recomputed whole.
    """
    layout = store.layout
    markers = store.markers()
    rows = store.rows()
    video_ids = rows.filter(pl.col("variant") == 0)["video_id"].to_list()
    augment = rows["augment"].to_list()
    paths = dict(zip(samples["video_id"].to_list(), samples["path"].to_list()))
    meta_columns = [c for c in META_COLUMNS if c in samples.columns]
    metas = dict(zip(samples["video_id"].to_list(), samples.select(meta_columns).to_dicts()))
    n_var = layout.rows_per_video
    jobs: list[_Job] = []
    shards: list[int] = []
    distrusted: set[int] = set()
    skipped = 0
    for shard in owned_shards(layout.n_shards, rank, world):
        start, stop = layout.shard_rows(shard)
        first, last = layout.shard_video_range(shard)
        marker = markers.get(shard)
        kept = 0
        if marker is not None and int(marker["start"]) == start:
            why = store.verify_shard(shard, marker, full=verify)
            if why:
                warnings.warn(f"shard {shard} is recomputed: {why}")
                distrusted.add(shard)
            elif int(marker["stop"]) == stop:
                skipped += last - first
                continue
            else:
                kept = (int(marker["stop"]) - start) // layout.rows_per_video
        missing = [video_ids[v] for v in range(first + kept, last) if video_ids[v] not in paths]
        if missing:
            warnings.warn(f"shard {shard} left pending: {len(missing)} of its videos (e.g. {missing[0]}) are not in the samples table")
            continue
        skipped += kept
        shards.append(shard)
        for v in range(first + kept, last):
            plans = [json.loads(text) for text in augment[v * n_var : (v + 1) * n_var]]
            jobs.append(_Job(shard, v, paths[video_ids[v]], video_ids[v], v == last - 1, metas[video_ids[v]], plans))
    return jobs, shards, skipped, distrusted


class _Claims:
    """Which of the planned shards this process computes: it takes a shard's lease when the
    first of its videos is about to be decoded, and skips the shard when another live
    process holds it or finished it meanwhile."""

    def __init__(self, store: FeatureStore, leases: Leases, jobs: list[_Job], distrusted: set[int]):
        self.store, self.leases, self.jobs, self.distrusted = store, leases, jobs, distrusted
        self.skipped: list[int] = []  # shards another process had
        self._decided: dict[int, bool] = {}

    def _claim(self, shard: int) -> bool:
        if not self.leases.acquire(shard):
            return False
        marker = self.store.markers().get(shard)
        if marker is not None and shard not in self.distrusted:
            planned_from = next(j.position for j in self.jobs if j.shard == shard) * self.store.layout.rows_per_video
            if int(marker["stop"]) != planned_from:  # done (or grown) by another process since the plan
                self.leases.release(shard)
                return False
        return True

    def tasks(self):
        """(job index, path) of the videos to decode, in order, claiming shards as it goes."""
        for i, job in enumerate(self.jobs):
            if job.shard not in self._decided:
                self._decided[job.shard] = self._claim(job.shard)
                if not self._decided[job.shard]:
                    self.skipped.append(job.shard)
            if self._decided[job.shard]:
                yield i, job.path


_END = object()


def _stage_ahead(decoded, jobs: list[_Job], stage: DeviceStage, ahead: queue.Queue, stop: threading.Event) -> None:
    """Producer thread: decoded videos from the workers go to the device stage as they
    arrive and, in order, into ``ahead`` with their pending result (bounded: the stage runs
    at most the queue's size ahead of the backbone)."""
    try:
        for item in decoded:
            job = jobs[item["index"]]
            future = stage.submit(item, job.plans, job.meta) if item["frames"] is not None else None
            while not stop.is_set():
                try:
                    ahead.put((item, future), timeout=0.5)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
        ahead.put(_END)
    except BaseException as err:  # handed to the main thread, which raises it
        ahead.put(err)


def _decoded_items(claims: _Claims, decode: DecodeVideo, x) -> Iterator[dict]:
    """The decode workers' results for the claimed shards' videos, each with its job index."""
    tasks: list[int] = []  # job index of each task given to the workers, in order

    def paths() -> Iterator[str]:
        for index, path in claims.tasks():
            tasks.append(index)
            yield path
    # a process forked from this one, which may have used CUDA, cannot use CUDA: NVDEC workers are spawned
    start = "spawn" if decode.decoder == "nvdec" else None
    for n, result in decode_in_workers(
        decode, paths(), x.num_workers, timeout=x.decode_timeout or None, prefetch=x.prefetch, name="decode", start=start
    ):
        yield {"frames": None, "reason": "", "decode_seconds": 0.0, **result, "index": tasks[n]}


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

    The pipeline: decode workers (frames only) -> the device stage (variants, scales,
    statistics; a thread pool on the CPU, the GPU on CUDA), running ahead of -> the
    backbone, in batches that never cross a shard -> the shard writer (background threads).
    """
    x = cfg.extract
    target = pick_device(device or x.device)  # before anything is written: a device that is not here stops the job
    nvdec_device = (target.index or 0) if target.type == "cuda" else 0
    if x.decoder == "nvdec":  # likewise a decoder that is not here (checked in a fresh process)
        try:
            check_nvdec(nvdec_device)
        except NvdecError as err:
            raise DeviceError(f"extract.decoder=nvdec: {err} (extract.decoder=cpu decodes on the CPU)") from None
    samples = read_samples(samples_path)
    rank, world = resolve_rank(shard)
    model, weights = _load_backbone(cfg)
    store_path = str(store_path)
    if rank == 0:
        store = prepare_store(store_path, samples, cfg, weights, str(samples_path))
    else:
        store = wait_for_store(store_path, samples, cfg, weights)
    n_var = store.layout.rows_per_video
    x = cfg.extract
    jobs, shards, skipped, distrusted = plan_jobs(store, samples, rank, world, verify=x.verify)
    report = ExtractReport(store=store_path, n_videos=len(jobs) + skipped, n_skipped=skipped, rank=rank, world=world)
    if not jobs:
        return report
    leases = Leases(store.fs, store.root, rank=rank, timeout=x.lease_timeout)
    claims = _Claims(store, leases, jobs, distrusted)

    run = BackboneRunner(BackboneTaps(model, cfg.backbone.taps), target, x.amp, x.amp_dtype, x.dtype, x.batch_size)
    report.device, report.decoder = str(run.device), x.decoder
    stage = DeviceStage(cfg, run.device, x.stage_threads or (4 if run.device.type == "cuda" else os.cpu_count() or 1))
    writer = ShardWriter(
        store, [(scale, spec.name) for scale, specs in array_specs(cfg).items() for spec in specs],
        rank=rank, threads=x.writer_threads, queue=x.writer_queue, leases=leases,
    )
    decoded = _decoded_items(claims, DecodeVideo(cfg.clip.frames, cfg.clip.size, x.max_pixels, x.max_duration, x.decoder, nvdec_device), x)
    # the stage runs up to about two backbone batches ahead
    ahead: queue.Queue = queue.Queue(maxsize=max(2, 2 * -(-x.batch_size // n_var)))
    stop = threading.Event()
    producer = threading.Thread(target=_stage_ahead, args=(decoded, jobs, stage, ahead, stop), name="stage-ahead", daemon=True)
    shown = Progress(f"extract (rank {rank}/{world})", len(jobs) * n_var, "clip", show=progress)
    started = time.perf_counter()
    waiting: list[tuple[dict, dict | None]] = []  # (item, stage output or None when it failed)

    def run_batch() -> None:
        ready = [out for _, out in waiting if out is not None]
        outputs = {scale: run(torch.cat([clips[scale] for clips, _ in ready])) for scale in cfg.clip.scales} if ready else {}
        offset = 0
        for item, out in waiting:
            job = jobs[item["index"]]
            row = job.position * n_var
            if out is None:
                writer.add(row, n_var, None, item["reason"])
                report.n_failed += 1
                report.failures.append((job.video_id, item["reason"]))
            else:
                values = {(scale, name): arr[offset : offset + n_var] for scale, named in outputs.items() for name, arr in named.items()}
                values.update({(scale, "handcrafted"): stats for scale, stats in out[1].items()})
                writer.add(row, n_var, values, results=item["results"])
                offset += n_var
                report.n_done += 1
                report.clips += n_var
            shown.update(n_var)
        waiting.clear()

    producer.start()
    try:
        n_clips = 0
        while True:
            got = ahead.get()
            if got is _END:
                break
            if isinstance(got, BaseException):
                raise got
            item, future = got
            report.stage_seconds["decode"] += item["decode_seconds"]
            report.worker_bytes += item_bytes(item)
            if "decoder" in item:
                report.decoded_by[item["decoder"]] = report.decoded_by.get(item["decoder"], 0) + 1
            out = None
            if future is not None:
                try:
                    out = future.result()
                except Exception as err:  # the device stage failed on this video: record it, go on
                    if isinstance(err, torch.OutOfMemoryError):
                        raise
                    item["reason"] = unexpected_reason(err)
            item.pop("frames", None)
            job = jobs[item["index"]]
            if writer.shard is None:
                kept = writer.begin(job.shard, keep_earlier=job.shard not in distrusted)
                assert job.position == store.layout.shard_video_range(job.shard)[0] + kept
            waiting.append((item, out))
            n_clips += n_var if out is not None else 0
            # batches never cross a shard: the same batches whatever shard a run resumes at
            if n_clips >= x.batch_size or job.last_in_shard:
                run_batch()
                n_clips = 0
            if job.last_in_shard:
                writer.finish()
                report.shards_written += 1
        shown.close()
    finally:
        stop.set()
        shown.close(failed=True)  # closed above unless the job stopped on an error: then no final line
        stage.close()
        try:
            writer.close()  # every finished shard reaches the disk, also when the job stops on an error
        finally:
            leases.close()
    report.shards_held_elsewhere = sorted(claims.skipped)
    elsewhere = set(claims.skipped)
    report.n_skipped += sum(1 for j in jobs if j.shard in elsewhere)
    report.seconds = time.perf_counter() - started
    report.backbone_seconds = run.seconds
    report.stage_seconds["device_stage"] = stage.seconds
    report.stage_seconds["write"] = writer.write_seconds
    return report
