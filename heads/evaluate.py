"""``evaluate RUN_OR_MODEL --samples SAMPLES [--store STORE] --out DIR``: a trained run or
model on a second labelled dataset it never saw (another platform, a later time window,
another corpus), written as a run folder so that ``runs compare`` shows it beside k-fold.

1. The evaluation set is the samples table's videos with status ok. A video that is also
   in the training data (the same ``video_id``, or the same group: a near-duplicate) is
   left out, counted and listed in ``overlap.csv``, never silently scored. The training
   data is a head run's store (its row table) or, for a fine-tuned model, the samples
   table it was trained on and the store its initial head came from; when it cannot be
   read the overlap cannot be checked and evaluate stops.
2. Scores. A head run: every fold model scores every video, each calibrated as saved,
   and their mean is the probability, called fake at the mean of the folds' thresholds
   (what ``predict`` does). Features are read from ``--store`` (a store extracted with
   the same preprocessing and backbone weights as the run's, checked by hash; original
   clips) or computed from the videos with the run's recorded pipeline. A fine-tuned
   model scores the videos themselves, at its own threshold.
3. ``DIR`` gets ``summary.json`` (``"split": "external"``; metrics, intervals that
   resample groups, the degenerate and worse-than-chance flags), ``oof.parquet``
   (video_id, group, label, prob, threshold, path), ``overlap.csv``, ``config.yaml`` and
   ``report.html``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from vidstore.configs import Config, load_config
from vidstore.heads.crossval import apply_calibration_params, evaluation_warnings
from vidstore.heads.metrics import binary_metrics, degenerate_calls, interval_record, slice_metrics
from vidstore.heads.model import MODEL_SPEC, ModelSpec
from vidstore.heads.runs import RunSummary, json_safe, write_run

OVERLAP_FILE = "overlap.csv"


class EvaluateError(ValueError):
    """An evaluation that cannot be done honestly: a bad table, an unreadable training set,
    a store made another way than the run's."""


def read_labelled_samples(path: str | Path) -> tuple[pl.DataFrame, int]:
    """The samples table's ok videos (video_id, group, label 0/1, path, ...) and how many
    rows were not ok (missing or failed files)."""
    path = Path(path)
    if not path.is_file():
        raise EvaluateError(f"samples table not found: {path} (make one with `vidstore index`)")
    try:
        table = pl.read_parquet(path)
    except Exception as err:
        raise EvaluateError(f"samples table {path} cannot be read as parquet: {err}") from None
    missing = [c for c in ("video_id", "label", "group") if c not in table.columns]
    if missing:
        raise EvaluateError(f"samples table {path} has no column(s) {missing}; evaluate needs labelled videos (`vidstore index`)")
    ok = table.filter(pl.col("status") == "ok") if "status" in table.columns else table
    labels = ok["label"].cast(pl.Int64, strict=False)
    if labels.null_count() or not labels.is_in([0, 1]).all():
        raise EvaluateError(f"samples table {path}: labels must be 0 (real) or 1 (fake)")
    if ok.height == 0:
        raise EvaluateError(f"samples table {path} has no video with status ok")
    return ok.with_columns(labels.alias("label"), pl.col("group").cast(pl.String)), table.height - ok.height


def _ids_and_groups(table: pl.DataFrame) -> tuple[set[str], set[str]]:
    return set(table["video_id"].cast(pl.String).to_list()), set(table["group"].cast(pl.String).to_list())


def training_videos(model: Path) -> tuple[set[str], set[str], list[str]]:
    """(video ids, groups, where they were read) of everything the run or model trained on."""
    from vidstore.store import FeatureStore

    ids: set[str] = set()
    groups: set[str] = set()
    sources: list[str] = []

    def add_store(where: str) -> None:
        try:
            rows = FeatureStore.open(where).rows()
        except Exception as err:
            raise EvaluateError(f"cannot check which videos {model} trained on: its store {where} cannot be read ({err})") from None
        i, g = _ids_and_groups(rows)
        ids.update(i), groups.update(g), sources.append(where)

    def add_samples(where: str) -> None:
        if not Path(where).is_file():
            raise EvaluateError(f"cannot check which videos {model} trained on: its samples table {where} is missing")
        i, g = _ids_and_groups(pl.read_parquet(where, columns=["video_id", "group"]))
        ids.update(i), groups.update(g), sources.append(where)

    if (model / MODEL_SPEC).is_file():
        spec = ModelSpec.read(model)
        trained_on = spec.training.get("samples_path")
        if not trained_on:
            raise EvaluateError(f"model {model} does not record the samples it was trained on (fine-tune it again with this version)")
        add_samples(trained_on)
        init_samples = spec.provenance.samples.get("path")
        if init_samples:
            add_samples(init_samples)
    else:
        add_store(RunSummary.read(model).store)
    return ids, groups, sources


def split_overlap(samples: pl.DataFrame, ids: set[str], groups: set[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(videos to score, videos left out) with the reason of each left-out one."""
    same_id = pl.col("video_id").cast(pl.String).is_in(list(ids))
    same_group = pl.col("group").is_in(list(groups))
    marked = samples.with_columns(
        pl.when(same_id).then(pl.lit("same video_id")).when(same_group).then(pl.lit("same group")).otherwise(None).alias("overlap")
    )
    return marked.filter(pl.col("overlap").is_null()).drop("overlap"), marked.filter(pl.col("overlap").is_not_null())


def fold_models(run: Path):
    """The run's fold heads with their saved calibration and threshold."""
    from vidstore.heads.registry import head_class

    summary = RunSummary.read(run)
    cls = head_class(summary.head)
    saved = sorted((run / "checkpoints").glob("fold*/calibration.json"))
    if not saved:
        raise EvaluateError(f"run {run} has no fold models in checkpoints/ (train it again with this version)")
    return summary, [(cls.load(p.parent), json.loads(p.read_text())) for p in saved]


def score_from_store(run: Path, store_path: str, videos: pl.DataFrame) -> tuple[pl.DataFrame, float, list[str], int]:
    """Per video of ``videos`` found done in the store: the fold models' mean calibrated
    probability on its original clip; the run's threshold; the ids not in the store; the
    number of fold models."""
    from vidstore.heads.data import HeadData, load_head_table
    from vidstore.store import FeatureStore, StoreProvenance

    summary, models = fold_models(run)
    trained = StoreProvenance.from_dict(json.loads((run / "provenance.json").read_text()), f"run {run} (provenance.json)")
    store = FeatureStore.open(store_path)
    other = store.provenance
    if other.preprocessing_hash != trained.preprocessing_hash:
        raise EvaluateError(
            f"store {store_path} was extracted with other preprocessing (hash {other.preprocessing_hash}) than run {run} "
            f"(hash {trained.preprocessing_hash}); extract the samples with the run's config, or leave out --store"
        )
    if (other.backbone.get("weights") or {}).get("sha256") != (trained.backbone.get("weights") or {}).get("sha256"):
        raise EvaluateError(f"store {store_path} holds features of other backbone weights than run {run}'s")
    cfg = load_config(None, [f"train.features={json.dumps(summary.features or ['embedding'])}", f"train.scale={summary.scale}",
                             *([f"train.tap={summary.tap}"] if summary.tap else [])])
    table = load_head_table(models[0][0].inputs, store, cfg)
    originals = table.rows.with_row_index("position").filter(pl.col("variant") == 0)
    wanted = originals.join(videos.select(pl.col("video_id").cast(pl.String)), on="video_id", how="inner")
    data = HeadData(table.source, wanted["position"].to_numpy().astype(np.int64))
    probs = np.mean([apply_calibration_params(saved["calibrator"], model.predict_proba(data)) for model, saved in models], axis=0)
    scored = pl.DataFrame({"video_id": wanted["video_id"], "prob": probs})
    absent = sorted(set(videos["video_id"].cast(pl.String).to_list()) - set(wanted["video_id"].to_list()))
    return scored, float(np.mean([saved["threshold"] for _, saved in models])), absent, len(models)


def score_from_videos(model: Path, videos: pl.DataFrame, samples: Path, cfg: Config, workers: int) -> tuple[pl.DataFrame, float, list[str]]:
    """Per readable video: the run's or model's probability as ``predict`` gives it."""
    from vidstore.heads.predict import load_predictor, predict_videos

    if "path" not in videos.columns:
        raise EvaluateError(f"samples table {samples} has no path column; pass --store with the videos' features")
    predictor = load_predictor(model, cfg, samples=samples)
    found = predict_videos(predictor, [Path(p) for p in videos["path"].to_list()], workers=workers, progress=True, cfg=cfg)
    ok = found.filter(pl.col("status") == "ok")
    failed = found.filter(pl.col("status") != "ok")["video_id"].to_list()
    return ok.select("video_id", pl.col("prob_fake").alias("prob")), float(predictor.threshold), failed


def evaluate(model: str | Path, samples: str | Path, out: str | Path, cfg: Config, *, store: str | None = None,
             bootstrap: int | None = None, workers: int = 2) -> tuple[Path, RunSummary]:
    """Score ``model`` (a run or model folder) on the labelled ``samples``; write ``out``."""
    started = time.perf_counter()
    model, samples, out = Path(model), Path(samples), Path(out)
    is_model = (model / MODEL_SPEC).is_file()
    if not is_model and not (model / "summary.json").is_file():
        raise EvaluateError(f"{model} is neither a model folder ({MODEL_SPEC}) nor a run folder (summary.json)")
    if store and is_model:
        raise EvaluateError("--store is for head runs; a fine-tuned model scores the videos themselves (leave out --store)")
    if out.exists() and any(out.iterdir()):
        raise EvaluateError(f"{out} exists and is not empty; choose another --out")
    table, n_not_ok = read_labelled_samples(samples)
    ids, groups, sources = training_videos(model)
    to_score, overlap = split_overlap(table, ids, groups)
    if to_score.height == 0:
        raise EvaluateError(f"every video of {samples} is also in the training data ({', '.join(sources)}): nothing left to evaluate")

    if store:
        scored, threshold, unscored, n_models = score_from_store(model, store, to_score)
        how = f"the run's {n_models} fold models, averaged, on the features in {store}"
    else:
        scored, threshold, unscored = score_from_videos(model, to_score, samples, cfg, workers)
        how = "the model on the videos" if is_model else "the run's fold models, averaged, on features computed with its recorded pipeline"
    keep = [c for c in ("path", "platform", "width", "height", "duration", "manipulation") if c in to_score.columns]
    oof = (to_score.select(pl.col("video_id").cast(pl.String), "group", "label", *keep)
           .join(scored, on="video_id", how="inner")
           .with_columns(pl.lit(-1).alias("fold"), pl.lit(threshold).alias("threshold")))
    oof = oof.select("video_id", "group", "fold", "label", "prob", "threshold", *[c for c in keep])
    if oof.height == 0:
        raise EvaluateError(f"no video of {samples} could be scored ({len(unscored)} not found or not readable)")

    y, p = oof["label"].to_numpy(), oof["prob"].to_numpy()
    t = cfg.train
    metrics = binary_metrics(y, p, threshold)
    intervals = interval_record(y, p, threshold, oof["group"].to_numpy(), n=t.bootstrap if bootstrap is None else bootstrap, seed=t.seed)
    degenerate = {"pooled": degenerate_calls(y, p, threshold), "folds": {}}
    warnings = evaluation_warnings(intervals, degenerate)
    if overlap.height:
        warnings.append(f"{overlap.height} videos of the evaluation set are also in the training data (same video_id or group); "
                        f"left out, listed in {OVERLAP_FILE}")
    summary = _external_summary(model, is_model, samples, store, oof, metrics, threshold, intervals, degenerate, warnings)
    summary = replace(summary, evaluated={
        "model": str(model.resolve()), "samples": str(samples.resolve()), "store": store, "scored_by": how, "training_data": sources,
        "n_samples_ok": table.height, "n_samples_not_ok": n_not_ok, "n_overlap": overlap.height,
        "overlap_same_video_id": int((overlap["overlap"] == "same video_id").sum()) if overlap.height else 0,
        "overlap_same_group": int((overlap["overlap"] == "same group").sum()) if overlap.height else 0,
        "n_unscored": len(unscored), "unscored_examples": unscored[:10],
    }, seconds=round(time.perf_counter() - started, 2), run_id=out.name)

    out.mkdir(parents=True, exist_ok=True)
    config = {"evaluate": {"model": str(model), "samples": str(samples), "store": store}, **cfg.to_dict()}
    write_run(out, config, summary, oof, [])
    overlap.select("video_id", "group", "label", "overlap").write_csv(out / OVERLAP_FILE)
    from vidstore.heads.report import write_report
    from vidstore.heads.train import sheet_config_of

    provenance = ModelSpec.read(model).provenance if is_model else _run_provenance(model)
    paths = dict(zip(oof["video_id"].to_list(), oof["path"].to_list())) if "path" in oof.columns else {}
    write_report(out, summary, oof, [], paths=paths, sheet_config=sheet_config_of(provenance))
    return out, summary


def _run_provenance(run: Path):
    from vidstore.store import StoreProvenance

    return StoreProvenance.from_dict(json.loads((run / "provenance.json").read_text()), f"run {run} (provenance.json)")


def _external_summary(model: Path, is_model: bool, samples: Path, store: str | None, oof: pl.DataFrame, metrics: dict,
                      threshold: float, intervals: dict, degenerate: dict, warnings: list[str]) -> RunSummary:
    """The evaluation as a run summary: one "fold" (the whole set), no spread to report."""
    labels = oof["label"].to_numpy()
    per_metric = {name: {"mean": value, "std": None, "per_fold": [value]} for name, value in metrics.items()}
    if is_model:
        spec = ModelSpec.read(model)
        head, inputs, features, tap, scale, n_models = f"finetuned:{spec.head}", "clips", [], spec.tap, spec.scale, 1
        seed, calibration, rule, provenance = 0, "none" if not spec.calibration else "saved", "holdout", spec.provenance
    else:
        trained = RunSummary.read(model)
        head, inputs, features, tap, scale, n_models = trained.head, trained.inputs, trained.features, trained.tap, trained.scale, len(trained.thresholds)
        seed, calibration, rule = trained.seed, trained.calibration, trained.threshold_rule
        provenance = _run_provenance(model)
    n_groups = int(oof["group"].n_unique())
    for column, default in (("platform", ""), ("width", float("nan")), ("height", float("nan")), ("duration", float("nan"))):
        if column not in oof.columns:
            oof = oof.with_columns(pl.lit(default).alias(column))
    return RunSummary(
        head=head, inputs=inputs, features=features, tap=tap, store=str(store or samples), scale=scale, n_folds=n_models, seed=seed,
        split="external", shuffle_labels=False, calibration=calibration, inner_holdout=0.0, inner_folds=0, thresholds=[threshold],
        level="video (original clips; fold models averaged)", n_rows=oof.height, n_videos=oof.height, n_variants=1,
        class_counts={"real": int(np.sum(labels == 0)), "fake": int(np.sum(labels == 1))},
        metrics=json_safe(per_metric), pooled=metrics, intervals=intervals, tta=None, slices=slice_metrics(oof),
        split_audit={"n_videos": oof.height, "n_groups": n_groups}, folds=[], head_info={"evaluated": str(model)},
        store_provenance={"backbone": provenance.backbone or None, "preprocessing_hash": provenance.preprocessing_hash},
        seconds=0.0, threshold_rule=rule, degenerate=degenerate, warnings=warnings,
    )
