"""``evaluate`` on a second labelled dataset: the probability of a video is the run's fold
models' mean on its features, computed here directly; videos that are also in the
training data are left out and counted; the result sits beside k-fold in ``runs compare``;
bad input is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from conftest import ROOT, run_cli, write_rows
from vidstore.configs import load_config
from vidstore.heads.crossval import apply_calibration_params
from vidstore.heads.data import HeadData, load_head_table
from vidstore.heads.registry import head_class
from vidstore.heads.runs import RunSummary
from vidstore.heads.train import train_head
from vidstore.store import SCHEMA_VERSION, ArraySpec, FeatureStore, StoreProvenance

RPV = 2
PROVENANCE = {"preprocessing_hash": "same-pipeline", "backbone": {"name": "r3d_18", "weights": {"source": "random", "sha256": "w0"}}}


def make_store(path, video_ids, groups, labels, seed, provenance=PROVENANCE):
    """A store of flat features: the label shifts the first embedding dimensions."""
    rng = np.random.default_rng(seed)
    n = len(video_ids)
    rows = pl.DataFrame({
        "video_id": np.repeat(video_ids, RPV), "group": np.repeat(groups, RPV), "label": np.repeat(labels, RPV),
        "variant": np.tile(np.arange(RPV), n), "platform": np.repeat(["youtube"] * n, RPV),
        "width": np.full(n * RPV, 640.0), "height": np.full(n * RPV, 360.0), "duration": np.full(n * RPV, 12.0),
    })
    record = StoreProvenance(SCHEMA_VERSION, **provenance)  # the store's provenance is typed when written
    store = FeatureStore.create(str(path), rows, {16: [ArraySpec("embedding", (8,))]}, record, rows_per_video=RPV, shard_videos=16)
    embedding = rng.standard_normal((n * RPV, 8)).astype(np.float32)
    embedding[:, :3] += 1.3 * np.repeat(labels, RPV)[:, None]
    write_rows(store, {(16, "embedding"): embedding})
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    train_ids = [f"v{i}" for i in range(60)]
    train_groups = [f"g{i // 2}" for i in range(60)]
    train_labels = np.array([(i // 2) % 2 for i in range(60)])
    # the evaluation set: 30 new videos in 15 groups, one video that is in the training
    # set under its own id, and one new video of a training group (a near-duplicate)
    eval_ids = [f"w{i}" for i in range(30)] + ["v0", "w_dup"]
    eval_groups = [f"h{i // 2}" for i in range(30)] + ["g0", "g1"]
    eval_labels = np.array([(i // 2) % 2 for i in range(30)] + [0, 1])
    make_store(root / "train.zarr", train_ids, train_groups, train_labels, 0)
    make_store(root / "eval.zarr", eval_ids, eval_groups, eval_labels, 1)
    make_store(root / "other.zarr", eval_ids[:4], eval_groups[:4], eval_labels[:4], 2, {**PROVENANCE, "preprocessing_hash": "another"})
    samples = root / "eval_samples.parquet"
    pl.DataFrame({"video_id": eval_ids, "path": [str(root / f"{v}.mp4") for v in eval_ids], "label": eval_labels.astype(np.int8),
                  "group": eval_groups, "status": ["ok"] * 32}).write_parquet(samples)
    cfg = load_config(ROOT / "configs/demo.yaml", [f"train.out={root / 'runs'}", "train.bootstrap=200", "train.features=[embedding]",
                                                   "train.calibration=platt", "train.folds=3"])
    run_dir, _ = train_head("gbm", root / "train.zarr", cfg)
    return {"root": root, "run": run_dir, "samples": samples, "eval_ids": eval_ids}


def fold_mean_directly(run_dir, store_path, video_ids):
    """Per video: the mean over the run's fold models (each calibrated as saved) on its
    original clip's stored features."""
    summary = RunSummary.read(run_dir)
    cls = head_class(summary.head)
    table = load_head_table(cls.inputs, FeatureStore.open(str(store_path)), load_config(run_dir / "config.yaml"))
    saved = sorted((run_dir / "checkpoints").glob("fold*/calibration.json"))
    models = [(cls.load(p.parent), json.loads(p.read_text())["calibrator"]) for p in saved]
    out = []
    for video in video_ids:
        rows = np.flatnonzero(((table.rows["video_id"] == video) & (table.rows["variant"] == 0)).to_numpy())
        out.append(np.mean([apply_calibration_params(c, m.predict_proba(HeadData(table.source, rows))) for m, c in models]))
    return np.array(out)


def test_evaluate_scores_new_videos_with_the_fold_models_and_leaves_out_the_overlap(stores, tmp_path):
    out = tmp_path / "external"
    proc = run_cli("evaluate", str(stores["run"]), "--samples", str(stores["samples"]), "--store", str(stores["root"] / "eval.zarr"),
                   "--out", str(out), "--set", "train.bootstrap=200")
    summary = RunSummary.read(out)
    assert summary.split == "external" and summary.n_videos == 30
    assert summary.evaluated["n_overlap"] == 2
    assert summary.evaluated["overlap_same_video_id"] == 1 and summary.evaluated["overlap_same_group"] == 1
    left_out = pl.read_csv(out / "overlap.csv")
    assert sorted(left_out["video_id"].to_list()) == ["v0", "w_dup"]
    assert any("also in the training data" in w for w in summary.warnings) and "also in the training data" in proc.stdout

    oof = pl.read_parquet(out / "oof.parquet").sort("video_id")
    assert "v0" not in oof["video_id"].to_list() and "w_dup" not in oof["video_id"].to_list()
    direct = fold_mean_directly(stores["run"], stores["root"] / "eval.zarr", oof["video_id"].to_list())
    np.testing.assert_allclose(oof["prob"].to_numpy(), direct, rtol=1e-6, atol=1e-9)
    thresholds = [json.loads(p.read_text())["threshold"] for p in sorted((stores["run"] / "checkpoints").glob("fold*/calibration.json"))]
    np.testing.assert_allclose(oof["threshold"].to_numpy(), np.mean(thresholds))
    y, p = oof["label"].to_numpy(), oof["prob"].to_numpy()
    assert summary.pooled["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert summary.pooled["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p >= np.mean(thresholds)))
    assert summary.pooled["roc_auc"] > 0.8  # the shift is learnable and carries over to new videos
    assert summary.intervals["n_groups"] == 15 and summary.intervals["by_group"]["roc_auc"][0] < summary.pooled["roc_auc"]
    assert {"eer", "tpr_at_fpr_0.01", "tpr_at_fpr_0.05"} <= set(summary.pooled)
    assert "n_groups=15" in proc.stdout and (out / "report.html").is_file()
    assert "naive" not in proc.stdout and "the mean of the fold models' thresholds" in proc.stdout

    table = run_cli("runs", "compare", str(stores["run"]), str(out))
    lines = table.stdout.splitlines()
    assert any(" external " in line and out.name in line for line in lines)
    assert any(" grouped " in line and stores["run"].name in line for line in lines)


def test_evaluate_refuses_what_it_cannot_do_honestly_in_one_line(stores, tmp_path):
    run = str(stores["run"])
    cases = [
        (["--samples", str(tmp_path / "nope.parquet"), "--out", str(tmp_path / "a")], "samples table not found"),
        (["--samples", str(stores["samples"]), "--store", str(stores["root"] / "other.zarr"), "--out", str(tmp_path / "b")],
         "other preprocessing"),
    ]
    # a table whose every video is in the training data leaves nothing to evaluate
    all_seen = tmp_path / "seen.parquet"
    pl.DataFrame({"video_id": ["v1", "v2"], "path": ["a", "b"], "label": [0, 1], "group": ["g0", "g1"], "status": ["ok", "ok"]}).write_parquet(all_seen)
    cases.append((["--samples", str(all_seen), "--store", str(stores["root"] / "eval.zarr"), "--out", str(tmp_path / "c")], "nothing left to evaluate"))
    # a run whose training store is gone cannot be checked for overlap
    moved = json.loads((stores["run"] / "summary.json").read_text())
    broken_run = tmp_path / "broken_run"
    broken_run.mkdir()
    (broken_run / "summary.json").write_text(json.dumps({**moved, "store": str(tmp_path / "gone.zarr")}))
    cases.append((["--samples", str(stores["samples"]), "--out", str(tmp_path / "d")], "cannot check which videos"))
    for i, (args, needle) in enumerate(cases):
        target = str(broken_run) if needle == "cannot check which videos" else run
        proc = run_cli("evaluate", target, *args, check=False)
        assert proc.returncode == 2, (needle, proc.stderr)
        assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
