"""Predictions proved, not assumed: for every registered head (the README's user head
included), calibrated or not, ``predict`` on a video that is in the store gives the mean of
the run's fold models on its stored features; with ``--tta`` over the store's own variants
of that video, found by its id even when the id is not the file's stem; and decoding in
worker processes changes nothing."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from conftest import DRAWN, ROOT, TINY, readme_head_module
from vidstore.configs import load_config
from vidstore.extract.clips import variant_ops
from vidstore.heads.crossval import apply_calibration_params
from vidstore.heads.data import HeadData, load_head_table
from vidstore.heads.pipeline import augment_config_of
from vidstore.heads.predict import predict, read_video_ids, video_id_of
from vidstore.heads.registry import head_class, head_names, load_head_module
from vidstore.heads.runs import RunSummary
from vidstore.heads.train import train_head
from vidstore.store import FeatureStore

load_head_module(readme_head_module(Path(tempfile.mkdtemp(prefix="readme_heads"))))
HEADS = head_names()
READS = {"vectors": ["train.features=[embedding]"], "map": []}
FLOAT16 = 2e-3  # features pass through float16 in the store; predict rounds them the same way


def train_run(video_store, root: Path, head: str, calibration: str) -> Path:
    cfg = load_config(ROOT / "configs/demo.yaml", TINY + DRAWN + READS[head_class(head).inputs] + [
        f"train.out={root}", "train.folds=2", "train.bootstrap=0", f"train.calibration={calibration}",
        "train.inception.epochs=3", "train.inception.batch_size=8", "train.knn.k=3"])
    return train_head(head, video_store["store"], cfg)[0]


def stored_probabilities(run_dir: Path, store_path: Path, video_ids: list[str], every_variant: bool) -> np.ndarray:
    """Per video: the mean over the run's fold models (each calibrated as saved) and over the
    video's stored rows (the original, or every variant) of the head's probability."""
    summary = RunSummary.read(run_dir)
    cls = head_class(summary.head)
    table = load_head_table(cls.inputs, FeatureStore.open(str(store_path)), load_config(run_dir / "config.yaml"))
    folds = sorted((run_dir / "checkpoints").glob("fold*/calibration.json"))
    models = [(cls.load(p.parent), json.loads(p.read_text())["calibrator"]) for p in folds]
    assert len(models) == summary.n_folds
    rows = table.rows
    out = []
    for video in video_ids:
        wanted = (rows["video_id"] == video) & ((rows["variant"] >= 0) if every_variant else (rows["variant"] == 0))
        data = HeadData(table.source, np.flatnonzero(wanted.to_numpy()))
        assert len(data) == (2 if every_variant else 1)
        out.append(np.mean([apply_calibration_params(c, m.predict_proba(data)) for m, c in models], axis=0).mean())
    return np.array(out)


@pytest.mark.parametrize("calibration", ["none", "platt", "isotonic"])
@pytest.mark.parametrize("head", HEADS)
def test_predict_is_the_mean_of_the_fold_models_on_the_stored_features(video_store, tmp_path, head, calibration):
    run_dir = train_run(video_store, tmp_path / "runs", head, calibration)
    table = video_store["table"]
    videos = [Path(p) for p in table["path"].to_list()[:3]]
    ids = table["video_id"].to_list()[:3]
    cfg = load_config(ROOT / "configs/demo.yaml", TINY)

    for path, video in zip(videos, ids):  # a copy of the indexed folder: the same relative paths
        (tmp_path / "plain" / video).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / "plain" / video)
    plain = predict(run_dir, tmp_path / "plain", cfg, workers=0, progress=False).sort("video_id")
    assert plain["video_id"].to_list() == sorted(ids)  # ids are paths relative to the folder, as in index
    expected = stored_probabilities(run_dir, video_store["store"], sorted(ids), every_variant=False)
    assert np.allclose(plain["prob_fake"].to_numpy(), expected, atol=FLOAT16), (plain["prob_fake"].to_list(), expected)

    # FVC-like files: every file is video.mp4 in a folder, so the stem is not the id; the
    # samples table names the ids and --tta then uses the store's own variants of each video
    renamed = []
    for i, path in enumerate(videos):
        target = tmp_path / "fvc" / f"v{i}" / "video.mp4"
        target.parent.mkdir(parents=True)
        shutil.copy(path, target)
        renamed.append(target)
    samples = tmp_path / "fvc_samples.parquet"
    pl.DataFrame({"video_id": ids, "path": [str(p) for p in renamed]}).write_parquet(samples)
    store = FeatureStore.open(str(video_store["store"]))
    policy = augment_config_of(store.provenance)
    stored_plans = store.rows().filter(pl.col("video_id") == ids[0]).sort("variant")["augment"].to_list()
    used_id = video_id_of(renamed[0], read_video_ids(samples))
    assert used_id == ids[0] and [json.dumps(p) for p in variant_ops(policy, used_id, 4)] == stored_plans

    tta = predict(run_dir, tmp_path / "fvc", cfg, tta=True, workers=0, progress=False, samples=samples).sort("video_id")
    assert tta["video_id"].to_list() == sorted(ids) and (tta["n_clips"] == 2).all()
    expected_tta = stored_probabilities(run_dir, video_store["store"], sorted(ids), every_variant=True)
    assert np.allclose(tta["prob_fake"].to_numpy(), expected_tta, atol=FLOAT16), (tta["prob_fake"].to_list(), expected_tta)

    if calibration == "none":
        # the same files decoded in two worker processes: the same rows
        in_workers = predict(run_dir, tmp_path / "fvc", cfg, tta=True, workers=2, progress=False, samples=samples).sort("video_id")
        assert in_workers.drop("prob_fake").equals(tta.drop("prob_fake"))
        assert np.allclose(in_workers["prob_fake"].to_numpy(), tta["prob_fake"].to_numpy(), atol=1e-6)


def test_tta_by_default_id_uses_other_variants_when_it_is_not_the_stores_id(video_store, tmp_path):
    """The check above can fail: with the folder-relative path as the id, the variants are not the store's."""
    run_dir = train_run(video_store, tmp_path / "runs", "logreg", "none")
    table = video_store["table"]
    ids = table["video_id"].to_list()[:2]
    for i, path in enumerate(table["path"].to_list()[:2]):
        (tmp_path / "fvc" / f"v{i}").mkdir(parents=True)
        shutil.copy(path, tmp_path / "fvc" / f"v{i}" / "video.mp4")
    cfg = load_config(ROOT / "configs/demo.yaml", TINY)
    by_stem = predict(run_dir, tmp_path / "fvc", cfg, tta=True, workers=0, progress=False).sort("path")
    assert by_stem["video_id"].to_list() == ["v0/video.mp4", "v1/video.mp4"]
    expected = stored_probabilities(run_dir, video_store["store"], ids, every_variant=True)
    assert not np.allclose(by_stem["prob_fake"].to_numpy(), expected, atol=1e-6)


def test_logreg_arithmetic_is_scikit_learns():
    """The saved logistic regression (medians, standardisation, coefficients) predicts what
    the scikit-learn pipeline it was fitted as predicts, missing values included."""
    from vidstore.heads.data import VectorSource
    from vidstore.heads.zoo.logreg import fit_logistic_pipeline

    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 12)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 3] + rng.standard_normal(300) > 0).astype(np.int64)
    X[rng.random(X.shape) < 0.05] = np.nan
    X[:, 7] = np.nan  # a column never measured
    cfg = head_class("logreg").Params(C=0.7)
    head = head_class("logreg")(cfg).fit(HeadData(VectorSource(X, []), np.arange(200), labels=y, seed=1))
    sklearn = fit_logistic_pipeline(X[:200], y[:200], 0.7, cfg.max_iter, 1)
    new = HeadData(VectorSource(X, []), np.arange(200, 300))
    assert np.allclose(head.predict_proba(new), sklearn.predict_proba(X[200:])[:, 1], rtol=0, atol=1e-6)
