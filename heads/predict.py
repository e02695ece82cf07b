"""``predict MODEL VIDEO_OR_DIR``: probability of "fake" for new videos.

MODEL is either a fine-tuned model (``models/NAME``, from ``finetune``) or a head run
(``runs/<id>``, from ``train``). A model runs its eager weights (``weights.pt``), or, with
``--use-export pt2|onnx`` or in a folder without weights.pt, the checked export that
model.yaml lists (heads/export.py); the clips are made the same way. A head run needs the new videos' features: the run's
provenance rebuilds the store's backbone, taps, clip pipeline and handcrafted statistics,
and the run's fold models (and their calibrations) each score the video; their mean is
the probability, called fake above the mean of the folds' thresholds. Features are
rounded to the store's dtype, as the heads saw them. ``--tta`` averages over the
augmented variants the store drew for the video: its plans are seeded by the video's id,
which is, as in ``index``, its path relative to the folder given (extension included;
the file's name when one file is given), unless a samples table (``--samples``) names it.

Videos decode in worker processes with extraction's time limit (``extract.decode_timeout``)
and size guards (extract/workers.py); their clips are gathered across videos into forward
passes of ``batch_size`` clips or more, on the GPU when there is one.

Every entry with a video suffix gets a row: path, video_id, prob_fake, pred_label,
n_clips, status, reason (one that cannot be read, a broken symlink or a directory among
them, gets status failed, its reason, and no probability).
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import torch

from vidstore.configs import Config, FeaturesConfig
from vidstore.extract.clips import clips_of_video, make_variant, variant_ops
from vidstore.extract.progress import progress as with_progress
from vidstore.extract.sources import check_path, find_video_entries, relative_id
from vidstore.extract.video import VIDEO_SUFFIXES, VideoError, decode_clip, probe_video, unexpected_reason
from vidstore.extract.workers import decode_in_workers
from vidstore.features.backbone import BackboneTaps
from vidstore.features.device import pick_device
from vidstore.features.pooling import summarise_maps
from vidstore.heads.crossval import apply_calibration_params
from vidstore.heads.data import ArrayMaps, HeadData, VectorSource
from vidstore.heads.model import MODEL_SPEC, ModelSpec, VideoClassifier
from vidstore.heads.pipeline import augment_config_of, backbone_of, clip_at_scale, clip_config_of
from vidstore.heads.registry import head_class
from vidstore.heads.runs import RunSummary
from vidstore.store import StoreProvenance
from vidstore.store.artifacts import load_torch_file

PREDICTION_COLUMNS = ("path", "video_id", "prob_fake", "pred_label", "n_clips", "status", "reason")


class PredictError(ValueError):
    """A model path that is neither a model nor a run, or an input with no videos."""


def list_videos(target: str | Path) -> list[tuple[Path, str]]:
    """(path, default id) of every entry with a video suffix under a folder (readable or
    not: the broken ones become failed rows), or of the one file given."""
    target = Path(target)
    if target.is_dir():
        found = find_video_entries(target)
        if found:
            return [(p, relative_id(p, target)) for p in found]
        raise PredictError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) under {target}")
    if target.exists() or target.is_symlink():
        return [(target, target.name)]
    raise PredictError(f"not found: {target}")


class _Prepare:
    """``fn`` for the decode workers: a predictor's clips of one video, or the reason not."""

    def __init__(self, prepare):
        self.prepare = prepare

    def __call__(self, task: tuple[str, str]) -> dict:
        path, video_id = task
        reason = check_path(path)
        if reason:
            return {"reason": reason}
        try:
            return {"reason": "", **self.prepare(Path(path), video_id)}
        except VideoError as err:
            return {"reason": str(err)}
        except Exception as err:  # one odd file must not stop the others
            return {"reason": unexpected_reason(err)}


def export_to_use(folder: Path, spec: ModelSpec, use_export: str | None) -> str | None:
    """The export a model folder is scored with: the one asked for, else none (the eager
    weights), else, in a folder without weights.pt, its checked pt2 or onnx export."""
    if use_export is None:
        if (folder / spec.weights["file"]).is_file():
            return None
        found = [kind for kind in ("pt2", "onnx") if kind in spec.exports and (folder / spec.exports[kind]["file"]).is_file()]
        if not found:
            raise PredictError(f"model {folder} has neither its weights ({spec.weights['file']}) nor the file of a pt2 or onnx export")
        return found[0]
    if use_export not in ("pt2", "onnx"):
        raise PredictError(f"--use-export {use_export}: choose pt2 or onnx")
    if use_export not in spec.exports:
        raise PredictError(f"model {folder} has no {use_export} export in {MODEL_SPEC} (fine-tune with --set finetune.export=[{use_export}])")
    return use_export


class ModelPredictor:
    """A fine-tuned VideoClassifier artifact: its eager weights, or one of its exports
    (``use_export``, see ``export_to_use``) with the same preprocessing."""

    def __init__(self, folder: Path, cfg: Config, tta: bool, device: torch.device, video_ids: dict[str, str] | None = None,
                 use_export: str | None = None):
        spec = ModelSpec.read(folder)
        self.spec, self.tta, self.device, self.video_ids = spec, tta, device, video_ids or {}
        self.export = export_to_use(folder, spec, use_export)
        if self.export is None:
            head = head_class(spec.head).build_module(spec.head_args)
            self.model = VideoClassifier(backbone_of(spec.provenance, cfg.backbone), spec.tap, head)
            self.model.load_state_dict(load_torch_file(folder / spec.weights["file"], what="model weights file"))
            self.model.to(device).eval()
        else:
            self.model = self._load_export(folder, spec.exports[self.export])
        self.clip = clip_config_of(spec.provenance)
        self.scale = spec.scale
        self.policy = augment_config_of(spec.provenance)
        self.threshold = float(spec.threshold)
        self.limits = cfg.extract
        self.forward_passes = 0

    def _load_export(self, folder: Path, entry: dict):
        """The export's file, if it is the one model.yaml recorded and checked."""
        from vidstore.heads.export import file_sha256, load_export

        path = folder / entry["file"]
        if not path.is_file():
            raise PredictError(f"the {self.export} export {path} is missing (model.yaml lists it)")
        if file_sha256(path) != entry["sha256"]:
            raise PredictError(f"{path} is not the {self.export} export model.yaml recorded (sha256 differs): export the model again")
        if self.export == "onnx" and importlib.util.find_spec("onnxruntime") is None:
            raise PredictError("--use-export onnx needs onnxruntime (pip install onnxruntime)")
        return load_export(path, self.export, self.device)

    def prepare(self, path: Path, video_id: str) -> dict:
        x = self.limits
        decoded = decode_clip(path, self.clip.frames, self.clip.size, max_pixels=x.max_pixels or None, max_duration=x.max_duration or None)
        plans = variant_ops(self.policy, video_id, self.clip.frames) if self.tta else [[]]
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
            extract=cfg.extract,
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

    def prepare(self, path: Path, video_id: str) -> dict:
        info = probe_video(path)
        meta = {k: info.get(k) for k in ("bitrate", "fps", "width", "height", "duration", "codec")}
        made = clips_of_video(str(path), video_id, self.pipeline, meta)
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


def video_id_of(path: Path, video_ids: dict[str, str], default: str | None = None) -> str:
    """The id a video has in the samples table (its variants are seeded by it), else
    ``default`` (its path relative to the folder predicted on), else its file name."""
    return video_ids.get(os.path.abspath(path), default or Path(path).name)


def read_video_ids(samples: str | Path | None) -> dict[str, str]:
    """absolute path -> video_id from a samples table (``index``'s output)."""
    if samples is None:
        return {}
    path = Path(samples)
    if not path.is_file():
        raise PredictError(f"samples table not found: {path}")
    try:
        table = pl.read_parquet(path, columns=["path", "video_id"])
    except Exception as err:
        raise PredictError(f"{path} is not a samples table with path and video_id columns ({type(err).__name__})") from None
    return {os.path.abspath(p): v for p, v in zip(table["path"].to_list(), table["video_id"].to_list()) if p}


def _per_video(per_clip: np.ndarray, sizes: list[int]) -> list[tuple[float, int]]:
    """Clip probabilities of consecutive videos (``sizes`` clips each) -> (mean, clips) per video."""
    return [(float(part.mean()), n) for part, n in zip(np.split(per_clip, np.cumsum(sizes)[:-1]), sizes)]


def load_predictor(model: str | Path, cfg: Config, tta: bool = False, device: str = "auto", samples: str | Path | None = None,
                   use_export: str | None = None):
    """``use_export`` (pt2 or onnx): score a model folder with that export of it."""
    folder = Path(model)
    dev = pick_device(device)
    video_ids = read_video_ids(samples)
    if (folder / MODEL_SPEC).is_file():
        return ModelPredictor(folder, cfg, tta, dev, video_ids, use_export)
    if (folder / "summary.json").is_file():
        if use_export is not None:
            raise PredictError(f"--use-export is for a model folder (finetune); {folder} is a head run")
        return RunPredictor(folder, cfg, tta, dev, video_ids)
    raise PredictError(f"{folder} is neither a model folder (model.yaml) nor a run folder (summary.json)")


def predict(model: str | Path, target: str | Path, cfg: Config, *, tta: bool = False, workers: int = 2, batch_size: int = 32,
            progress: bool = True, samples: str | Path | None = None, device: str = "auto", use_export: str | None = None) -> pl.DataFrame:
    return predict_videos(load_predictor(model, cfg, tta, device, samples, use_export), list_videos(target), workers=workers,
                          batch_size=batch_size, progress=progress, cfg=cfg)


def predict_videos(predictor, entries: list, *, workers: int = 2, batch_size: int = 32, progress: bool = True,
                   cfg: Config | None = None) -> pl.DataFrame:
    """Videos are decoded in ``workers`` processes (``cfg.extract.decode_timeout`` each);
    their clips are gathered across videos into forward passes of at least ``batch_size``
    clips (a video's clips never split). ``entries``: (path, default id) pairs, or paths."""
    if batch_size < 1:
        raise PredictError(f"--batch-size must be at least 1, got {batch_size}")
    if workers < 0:
        raise PredictError(f"--workers must be 0 (decode in this process) or more, got {workers}")
    entries = [(Path(e), None) if isinstance(e, (str, Path)) else (Path(e[0]), e[1]) for e in entries]
    ids = [video_id_of(p, predictor.video_ids, default) for p, default in entries]
    timeout = (cfg.extract.decode_timeout if cfg is not None else 0) or None
    rows: list[dict] = []
    pending: list[dict] = []

    def row(index: int, **values) -> dict:
        return {"index": index, "path": str(entries[index][0]), "video_id": ids[index], **values}

    def flush() -> None:
        for item, (prob, n) in zip(pending, predictor.score_batch(pending)):
            rows.append(row(item["index"], prob_fake=prob, pred_label="fake" if prob >= predictor.threshold else "real", n_clips=n,
                            status="ok", reason=""))
        pending.clear()

    tasks = [(str(p), video_id) for (p, _), video_id in zip(entries, ids)]
    results = decode_in_workers(_Prepare(predictor.prepare), tasks, workers, timeout=timeout, name="predict-decode")
    for index, item in with_progress(results, "predict", "video", total=len(tasks), show=progress):
        item["index"] = index
        if item.get("reason"):
            rows.append(row(index, prob_fake=None, pred_label=None, n_clips=0, status="failed", reason=item["reason"]))
            continue
        pending.append(item)
        if sum(len(it["clips"]) for it in pending) >= batch_size:
            flush()
    if pending:
        flush()
    schema = {"index": pl.Int64, "path": pl.String, "video_id": pl.String, "prob_fake": pl.Float64, "pred_label": pl.String,
              "n_clips": pl.Int64, "status": pl.String, "reason": pl.String}
    return pl.DataFrame(rows, schema=schema).sort("index").drop("index")
