"""The whole job through the command line, on a small demo dataset made here.

demo-data -> index -> extract (T=4, 32 px) -> store info -> train gbm, as subprocesses; then
the honesty checks: the grouped k-fold AUC is above chance, and with labels shuffled
across groups it falls to chance (a permutation test over 20 shuffles).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, TINY, run_cli
from vidstore.configs import load_config
from vidstore.heads.train import train_head

SETS = [arg for item in TINY for arg in ("--set", item)]
DEMO = ["--set", "demo.width=96", "--set", "demo.height=72", "--set", "demo.n_frames=24"]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    data, samples, store, runs = root / "data", root / "samples.parquet", root / "features.zarr", root / "runs"
    run_cli("demo-data", str(data), "--videos", "64", "--seed", "0", *DEMO)
    run_cli("index", str(data), "--out", str(samples))
    # a file that breaks after indexing: extraction must record it and go on
    broken = pl.read_parquet(samples)["path"][5]
    open(broken, "wb").write(b"\x00" * 1000)
    extract = run_cli("extract", "--samples", str(samples), "--store", str(store), "-c", "configs/demo.yaml", *SETS)
    train = run_cli("train", "gbm", "--store", str(store), "-c", "configs/demo.yaml", "--out", str(runs), *SETS)
    return {"root": root, "samples": samples, "store": store, "runs": runs, "broken": broken, "extract": extract, "train": train}


def test_extract_records_the_broken_video_and_fills_the_rest(job):
    assert "63 videos extracted, 1 failed" in job["extract"].stdout and "126 clips" in job["extract"].stdout
    info = json.loads(run_cli("store", "info", str(job["store"]), "--json").stdout)
    # 64 videos x 2 variants (the original and one augmentation)
    assert info["n_rows"] == 128 and info["rows_by_status"] == {"pending": 0, "done": 126, "failed": 2}
    paths = {a["path"]: a for a in info["arrays"]}
    assert set(paths) == {f"s{s}/{n}" for s in (32, 16) for n in ("embedding", "layer4", "handcrafted")}
    assert paths["s32/embedding"]["shape"] == [128, 512] and paths["s32/layer4"]["shape"] == [128, 512, 1, 2, 2]
    assert paths["s32/embedding"]["dtype"] == "float16" and "zstd" in paths["s32/embedding"]["compressor"]
    prov = info["provenance"]
    assert prov["backbone"]["weights"]["source"] == "random" and len(prov["backbone"]["weights"]["sha256"]) == 64
    assert prov["preprocessing"]["clip"]["frames"] == 4 and prov["preprocessing_hash"]
    text = run_cli("store", "info", str(job["store"])).stdout
    assert "done 126" in text and "s32/layer4" in text and "ratio" in text


def test_rerun_extract_does_nothing(job):
    again = run_cli("extract", "--samples", str(job["samples"]), "--store", str(job["store"]), "-c", "configs/demo.yaml", *SETS)
    assert "nothing to do" in again.stdout


def test_extract_refuses_another_config_naming_the_key(job):
    other = run_cli(
        "extract", "--samples", str(job["samples"]), "--store", str(job["store"]), "-c", "configs/demo.yaml", *SETS,
        "--set", "clip.frames=8", check=False,
    )
    assert other.returncode == 2 and "clip.frames" in other.stderr and "Traceback" not in other.stderr


def test_train_writes_the_run_folder(job):
    (run_dir,) = list(job["runs"].iterdir())
    assert {"config.yaml", "summary.json", "oof.parquet", "metrics.jsonl", "report.html", "roc.png"} <= {p.name for p in run_dir.iterdir()}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["head"] == "gbm" and summary["n_folds"] == 5 and summary["split"] == "grouped"
    assert summary["split_audit"]["leaking_groups"] == 0 and summary["split_audit"]["leaking_videos"] == 0
    for name in ("roc_auc", "pr_auc", "accuracy", "balanced_accuracy", "f1", "precision", "recall", "log_loss", "brier", "ece"):
        assert len(summary["metrics"][name]["per_fold"]) == 5 and summary["metrics"][name]["mean"] is not None
    oof = pl.read_parquet(run_dir / "oof.parquet")
    assert oof.columns[:7] == ["video_id", "group", "fold", "label", "prob", "threshold", "prob_tta"]
    assert summary["n_variants"] == 2 and summary["tta"]["pooled"]["roc_auc"] is not None
    assert oof.height == 63 and oof["video_id"].n_unique() == 63  # the broken video is not scored
    per_group = oof.group_by("group").agg(pl.col("fold").n_unique())
    assert (per_group["fold"] == 1).all()
    assert "roc_auc" in job["train"].stdout and "groups in two folds: 0" in job["train"].stdout
    assert load_config(run_dir / "config.yaml").train.features == ["handcrafted"]


def test_auc_above_chance_and_at_chance_with_shuffled_labels(job, tmp_path):
    # ranking only: no threshold search (inner_folds=0) and no bootstrap keep 21 runs quick
    base = load_config(ROOT / "configs/demo.yaml", TINY + [f"train.out={tmp_path}", "train.inner_folds=0", "train.bootstrap=0"])
    _, real = train_head("gbm", job["store"], base)
    null = []
    for seed in range(20):
        cfg = base.model_copy(update={"train": base.train.model_copy(update={"shuffle_labels": True, "seed": seed})})
        null.append(train_head("gbm", job["store"], cfg)[1].pooled["roc_auc"])
    real_auc = real.pooled["roc_auc"]
    assert real_auc > 0.75, real_auc
    assert 0.4 < float(np.mean(null)) < 0.6, null
    assert real_auc > np.quantile(null, 0.95), (real_auc, sorted(null))


def test_naive_split_is_labelled_and_leaks(job, tmp_path):
    naive = run_cli("train", "gbm", "--store", str(job["store"]), "-c", "configs/demo.yaml", "--out", str(tmp_path), "--split", "naive", *SETS)
    assert "WARNING: naive row-level split" in naive.stdout
    (run_dir,) = list(tmp_path.iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["split_audit"]["leaking_groups"] > 0


@pytest.mark.parametrize(
    "args,needle",
    [
        (["store", "info", "nowhere.zarr"], "store not found: nowhere.zarr"),
        (["train", "gbm", "--store", "nowhere.zarr"], "store not found"),
        (["train", "xgb", "--store", "nowhere.zarr"], "unknown head 'xgb'"),
        (["extract", "--samples", "nowhere.parquet", "--store", "x.zarr"], "samples table not found"),
        (["extract", "--samples", "x.parquet", "--store", "x.zarr", "--set", "clip.framez=3"], "unknown config key 'clip.framez'"),
        (["index", "nowhere", "--out", "x.parquet"], "source not found: nowhere"),
        (["extract", "--samples", "x", "--store", "y", "-c", "missing.yaml"], "config file not found: missing.yaml"),
    ],
)
def test_user_errors_are_one_line(args, needle, tmp_path):
    proc = run_cli(*args, cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_demo_command_end_to_end(tmp_path):
    proc = run_cli(
        "demo", "--out", str(tmp_path / "demo"),
        "--set", "demo.videos=16", "--set", "demo.width=64", "--set", "demo.height=48", "--set", "demo.n_frames=16",
        "--set", "train.folds=3", *SETS,
    )
    out = proc.stdout
    for step in ("[1/4]", "[2/4]", "[3/4]", "[4/4]", "roc_auc", "split: grouped 3-fold", "done in"):
        assert step in out, step
    runs = [p for p in (tmp_path / "demo" / "runs").iterdir()]
    assert len(runs) == 5  # gbm on train.features and the four of demo.also_train
    for head in ("gbm", "logreg", "inception"):
        assert any(f"-{head}-" in run.name for run in runs) and f"\n{head} " in out
    # a second run reuses the dataset and the store
    again = run_cli(
        "demo", "--out", str(tmp_path / "demo"),
        "--set", "demo.videos=16", "--set", "demo.width=64", "--set", "demo.height=48", "--set", "demo.n_frames=16",
        "--set", "train.folds=3", *SETS,
    ).stdout
    assert "already there" in again and "nothing to do" in again


def test_handcrafted_statistics_separate_manipulated_from_real(job):
    """A standardised logistic regression on the handcrafted vector, grouped 5-fold."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from vidstore.heads.features_table import load_feature_table
    from vidstore.heads.splits import grouped_stratified_folds
    from vidstore.store import FeatureStore

    table, _ = load_feature_table(FeatureStore.open(str(job["store"])), 32, ["handcrafted"])
    originals = (table.rows["variant"] == 0).to_numpy()
    X, y, groups = table.X[originals], table.labels[originals], table.rows["group"].to_numpy()[originals]
    folds = grouped_stratified_folds(y, groups, 5, seed=0)
    scores = np.zeros(len(y))
    for fold in range(5):
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
        model.fit(X[folds != fold], y[folds != fold])
        scores[folds == fold] = model.predict_proba(X[folds == fold])[:, 1]
    assert roc_auc_score(y, scores) > 0.75
