"""``predict MODEL VIDEO_OR_DIR``: probability of "fake" for new videos.

MODEL is either a fine-tuned model (``models/NAME``, from ``finetune``) or a head run
(``runs/<id>``, from ``train``). A head run needs the new videos' features: the run's
provenance rebuilds the store's backbone, taps, clip pipeline and handcrafted statistics,
and the run's fold models (and their calibrations) each score the video; their mean is
the probability, called fake above the mean of the folds' thresholds. Features are
rounded to the store's dtype, as the heads saw them. ``--tta`` averages over the
augmented variants the store drew for the video: its plans are seeded by the video's id,
which is the file's stem unless a samples table (``--samples``) names it otherwise.

Videos decode in DataLoader workers; their clips are gathered across videos into
forward passes of ``batch_size`` clips or more, on the GPU when there is one.

Every file gets a row: path, video_id, prob_fake, label, n_clips, status, reason (a file
that cannot be read gets status failed, its reason, and no probability).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from configs import Config, FeaturesConfig
from extract.clips import clips_of_video, make_variant, variant_ops
from extract.video import VIDEO_SUFFIXES, VideoError, decode_clip, probe_video, unexpected_reason
from features.backbone import BackboneTaps
from features.device import pick_device
from features.pooling import summarise_maps
from heads.crossval import apply_calibration_params
from heads.data import ArrayMaps, HeadData, VectorSource
from heads.model import MODEL_SPEC, ModelSpec, VideoClassifier
from heads.pipeline import augment_config_of, backbone_of, clip_at_scale, clip_config_of
from heads.registry import head_class
from heads.runs import RunSummary
from store import StoreProvenance

PREDICTION_COLUMNS = ("path", "video_id", "prob_fake", "label", "n_clips", "status", "reason")


class PredictError(ValueError):
    """A model path that is neither a model nor a run, or an input with no videos."""


def list_videos(target: str | Path) -> list[Path]:
    target = Path(target)
    if target.is_file():
        return [target]
    if target.is_dir():
        found = sorted(p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if found:
            return found
        raise PredictError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {target}")
    raise PredictError(f"not found: {target}")


class _Videos(Dataset):
    def __init__(self, paths: list[Path], prepare):
        self.paths, self.prepare = paths, prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        try:
            return {"index": i, "reason": "", **self.prepare(self.paths[i])}
        except VideoError as err:
            return {"index": i, "reason": str(err)}
        except Exception as err:  # one odd file must not stop the others
            return {"index": i, "reason": unexpected_reason(err)}


class ModelPredictor:
    """A fine-tuned VideoClassifier artifact."""

    def __init__(self, folder: Path, cfg: Config, tta: bool, device: torch.device, video_ids: dict[str, str] | None = None):
        spec = ModelSpec.read(folder)
        self.spec, self.tta, self.device, self.video_ids = spec, tta, device, video_ids or {}
        head = head_class(spec.head).build_module(spec.head_args)
        self.model = VideoClassifier(backbone_of(spec.provenance, cfg.backbone), spec.tap, head)
        self.model.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
        self.model.to(device).eval()
        self.clip = clip_config_of(spec.provenance)
        self.scale = spec.scale
        self.policy = augment_config_of(spec.provenance)
        self.threshold = float(spec.threshold)
        self.forward_passes = 0

    def prepare(self, path: Path) -> dict:
        decoded = decode_clip(path, self.clip.frames, self.clip.size)
        plans = variant_ops(self.policy, video_id_of(path, self.video_ids), self.clip.frames) if self.tta else [[]]
        clips = torch.stack([clip_at_scale(make_variant(decoded.frames, decoded.box, ops), self.clip, self.scale) for ops in plans])
        return {"clips": clips}

    @torch.inference_mode()
    def score_batch(self, items: list[dict]) -> list[tuple[float, int]]:
        """One forward pass over the clips of several videos; per video, the mean probability."""
        self.forward_passes += 1
        sizes = [len(item["clips"]) for item in items]
        logits = self.model(torch.cat([item["clips"] for item in items]).to(self.device)).float()
        probs = torch.sigmoid(logits).cpu().numpy().astype(np.float64)
        return _per_video(probs, sizes)


class RunPredictor:
    """A head run: the store's pipeline computes features, the fold models score them."""

    def __init__(self, folder: Path, cfg: Config, tta: bool, device: torch.device, video_ids: dict[str, str] | None = None):
        self.summary = RunSummary.read(folder)
        provenance = StoreProvenance.read(folder / "provenance.json", f"run {folder} (provenance.json)")
        self.head_class = head_class(self.summary.head)
        self.scale, self.video_ids = self.summary.scale, video_ids or {}
        record = provenance.preprocessing
        policy = augment_config_of(provenance)
        self.pipeline = Config(
            clip=clip_config_of(provenance),
            augment=policy.model_copy(update={"variants": policy.variants if tta else 0}),
            features=FeaturesConfig(handcrafted=record.get("handcrafted") is not None),
        )
        # features are rounded to the dtype the store keeps them in, as the heads saw them
        self.stored_dtype = np.dtype(provenance.extract.get("dtype", "float32"))
        self.taps = BackboneTaps(backbone_of(provenance, cfg.backbone), list(record["taps"])).to(device).eval()
        self.device = device
        folds = sorted((folder / "checkpoints").glob("fold*/calibration.json"))
        if not folds:
            raise PredictError(f"run {folder} has no fold models in checkpoints/ (train it again with this version)")
        self.calibrations = [json.loads(p.read_text()) for p in folds]
        self.models = [self.head_class.load(p.parent) for p in folds]
        self.threshold = float(np.mean([c["threshold"] for c in self.calibrations]))
        self.forward_passes = 0

    def prepare(self, path: Path) -> dict:
        info = probe_video(path)
        meta = {k: info.get(k) for k in ("bitrate", "fps", "width", "height", "duration", "codec")}
        made = clips_of_video(str(path), video_id_of(path, self.video_ids), self.pipeline, meta)
        return {"clips": made["clips"][self.scale], "handcrafted": made["handcrafted"].get(self.scale)}

    def head_data(self, outputs: dict[str, torch.Tensor], items: list[dict]) -> HeadData:
        """The clips' features as the head read them from the store."""
        arrays = {("embedding" if k == "pool" else k): v.float().cpu().numpy().astype(self.stored_dtype) for k, v in outputs.items()}
        if self.head_class.inputs == "map":
            return HeadData.of(ArrayMaps(arrays[self.summary.tap]))
        if "handcrafted" in self.summary.features:
            arrays["handcrafted"] = np.concatenate([item["handcrafted"] for item in items])
        X = np.concatenate([a.astype(np.float32) if a.ndim == 2 else summarise_maps(a) for a in (arrays[f] for f in self.summary.features)], axis=1)
        return HeadData.of(VectorSource(X, []))

    @torch.inference_mode()
    def score_batch(self, items: list[dict]) -> list[tuple[float, int]]:
        """One backbone pass over the clips of several videos; per video, the mean over its
        clips and the fold models of the calibrated probability."""
        self.forward_passes += 1
        sizes = [len(item["clips"]) for item in items]
        data = self.head_data(self.taps(torch.cat([item["clips"] for item in items]).to(self.device)), items)
        raw = [model.predict_proba(data) for model in self.models]
        per_clip = np.mean([apply_calibration_params(c["calibrator"], probs) for probs, c in zip(raw, self.calibrations)], axis=0)
        return _per_video(per_clip, sizes)


def video_id_of(path: Path, video_ids: dict[str, str]) -> str:
    """The id a video has in the samples table (its variants are seeded by it), else its stem."""
    return video_ids.get(str(Path(path).resolve()), Path(path).stem)


def read_video_ids(samples: str | Path | None) -> dict[str, str]:
    """path -> video_id from a samples table (``index``'s output)."""
    if samples is None:
        return {}
    path = Path(samples)
    if not path.is_file():
        raise PredictError(f"samples table not found: {path}")
    table = pl.read_parquet(path, columns=["path", "video_id"])
    return {str(Path(p).resolve()): v for p, v in zip(table["path"].to_list(), table["video_id"].to_list())}


def _per_video(per_clip: np.ndarray, sizes: list[int]) -> list[tuple[float, int]]:
    """Clip probabilities of consecutive videos (``sizes`` clips each) -> (mean, clips) per video."""
    return [(float(part.mean()), n) for part, n in zip(np.split(per_clip, np.cumsum(sizes)[:-1]), sizes)]


def _first(batch: list[dict]) -> dict:
    return batch[0]


def load_predictor(model: str | Path, cfg: Config, tta: bool = False, device: str = "auto", samples: str | Path | None = None):
    folder = Path(model)
    dev = pick_device(device)
    video_ids = read_video_ids(samples)
    if (folder / MODEL_SPEC).is_file():
        return ModelPredictor(folder, cfg, tta, dev, video_ids)
    if (folder / "summary.json").is_file():
        return RunPredictor(folder, cfg, tta, dev, video_ids)
    raise PredictError(f"{folder} is neither a model folder (model.yaml) nor a run folder (summary.json)")


def predict(model: str | Path, target: str | Path, cfg: Config, *, tta: bool = False, workers: int = 2, batch_size: int = 32,
            progress: bool = True, samples: str | Path | None = None, device: str = "auto") -> pl.DataFrame:
    return predict_videos(load_predictor(model, cfg, tta, device, samples), list_videos(target), workers=workers, batch_size=batch_size,
                          progress=progress)


def predict_videos(predictor, paths: list[Path], *, workers: int = 2, batch_size: int = 32, progress: bool = True) -> pl.DataFrame:
    """Videos are decoded in ``workers`` processes; their clips are gathered across videos
    into forward passes of at least ``batch_size`` clips (a video's clips never split)."""
    if batch_size < 1:
        raise PredictError(f"batch_size must be at least 1, got {batch_size}")
    loader = DataLoader(_Videos(paths, predictor.prepare), batch_size=1, collate_fn=_first, num_workers=workers)
    rows: list[dict] = []
    pending: list[dict] = []

    def flush() -> None:
        for item, (prob, n) in zip(pending, predictor.score_batch(pending)):
            path = paths[item["index"]]
            rows.append({"index": item["index"], "path": str(path), "video_id": video_id_of(path, predictor.video_ids), "prob_fake": prob,
                         "label": "fake" if prob >= predictor.threshold else "real", "n_clips": n, "status": "ok", "reason": ""})
        pending.clear()

    for item in tqdm(loader, total=len(paths), unit="video", desc="predict", disable=not progress):
        if item["reason"]:
            path = paths[item["index"]]
            rows.append({"index": item["index"], "path": str(path), "video_id": video_id_of(path, predictor.video_ids), "prob_fake": None, "label": None,
                         "n_clips": 0, "status": "failed", "reason": item["reason"]})
            continue
        pending.append(item)
        if sum(len(it["clips"]) for it in pending) >= batch_size:
            flush()
    if pending:
        flush()
    schema = {"index": pl.Int64, "path": pl.String, "video_id": pl.String, "prob_fake": pl.Float64, "label": pl.String,
              "n_clips": pl.Int64, "status": pl.String, "reason": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("index").drop("index")
