"""A head from outside the tree: the README's example, loaded with --head-module, trains,
sweeps, is compared and predicts like the built-in heads; the registry's contract."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from conftest import DRAWN, ROOT, TINY, readme_head_module, run_cli
from vidstore.heads.registry import HeadError, head_class, head_names, load_head_module, register_head

SETS = [arg for item in TINY + DRAWN + ["train.folds=2", "train.bootstrap=0"] for arg in ("--set", item)]


@pytest.fixture(scope="module")
def knn_module(tmp_path_factory):
    return readme_head_module(tmp_path_factory.mktemp("user"))


def test_the_readme_head_trains_sweeps_compares_and_predicts(video_store, knn_module, tmp_path):
    runs = tmp_path / "runs"
    common = ["--store", str(video_store["store"]), "-c", "configs/demo.yaml", *SETS, "--set", f"train.out={runs}"]
    knn = run_cli("train", "knn", "--head-module", str(knn_module), *common, "--set", "train.features=[embedding]", "--set", "train.knn.k=3")
    assert "roc_auc" in knn.stdout and "groups in two folds: 0" in knn.stdout
    (knn_run,) = runs.glob("*-knn-*")
    summary = json.loads((knn_run / "summary.json").read_text())
    assert summary["head"] == "knn" and summary["features"] == ["embedding"] and summary["inputs"] == "vectors"
    assert summary["head_info"]["params"] == {"k": 3}
    assert sorted(p.name for p in (knn_run / "checkpoints" / "fold0").iterdir()) == ["calibration.json", "head.yaml", "neighbours.npz"]
    # its config section is validated by its Params
    bad = run_cli("train", "knn", "--head-module", str(knn_module), *common, "--set", "train.knn.kk=3", check=False)
    assert bad.returncode == 2 and "unknown config key 'train.knn.kk'" in bad.stderr and "Traceback" not in bad.stderr
    # without the module the head is unknown, in one line
    unknown = run_cli("train", "knn", *common, check=False)
    assert unknown.returncode == 2 and "unknown head 'knn'" in unknown.stderr and "--head-module" in unknown.stderr

    grid = tmp_path / "grid.yaml"
    grid.write_text("train.knn.k: [1, 5]\n")
    sweep = run_cli("sweep", "knn", "--head-module", str(knn_module), "--grid", str(grid), *common, "--set", "train.features=[embedding]", "--nested")
    assert "nested estimate of the sweep's choice" in sweep.stdout and len([p for p in runs.glob("*-knn-*") if p.is_dir()]) == 3

    run_cli("train", "gbm", *common)
    compared = run_cli("runs", "compare", *[str(p) for p in sorted(runs.glob("*-*-*")) if p.is_dir()], "--out", str(tmp_path / "cmp"))
    table = pl.read_csv(tmp_path / "cmp.csv")
    assert sorted(table["head"].to_list()) == ["gbm", "knn", "knn", "knn"] and "knn" in compared.stdout

    videos = sorted((video_store["root"] / "data" / "videos").glob("*.mp4"))[:3]
    out = tmp_path / "preds.csv"
    run_cli("predict", str(knn_run), *map(str, videos[:1]), "--head-module", str(knn_module), "--workers", "0", "--out", str(out))
    preds = pl.read_csv(out)
    assert preds["status"].to_list() == ["ok"] and 0 <= preds["prob_fake"][0] <= 1


def test_train_help_lists_every_registered_head(knn_module):
    assert "Registered heads: gbm, inception, logreg" in run_cli("train", "--help").stdout
    assert "Registered heads: gbm, inception, knn, logreg" in run_cli("train", "--help", "--head-module", str(knn_module)).stdout


def test_a_head_file_in_the_zoo_is_built_in_with_no_other_edit(tmp_path):
    """heads/zoo/ is scanned, not listed: a new file there is a head."""
    import subprocess
    import sys

    zoo = ROOT / "heads" / "zoo" / "zz_test_constant.py"
    zoo.write_text(
        "from vidstore.configs import ConfigSection\nfrom vidstore.heads.base import HeadBase\nfrom vidstore.heads.registry import register_head\n\n\n"
        "class P(ConfigSection):\n    p: float = 0.25\n\n\n@register_head('constant')\nclass Constant(HeadBase):\n"
        "    inputs, Params = 'vectors', P\n\n    def fit(self, data):\n        return self\n\n"
        "    def predict_proba(self, data):\n        return [self.cfg.p] * len(data)\n"
    )
    try:
        code = "import cli; from vidstore.heads.registry import head_names; from vidstore.configs import load_config; " \
               "print(head_names(), load_config(None, ['train.constant.p=0.5']).train.constant.p)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
    finally:
        zoo.unlink()
    assert out.strip() == "['constant', 'gbm', 'inception', 'logreg'] 0.5"


def test_the_registry_refuses_what_it_cannot_use(tmp_path):
    with pytest.raises(HeadError, match="lacks"):
        register_head("broken")(type("Broken", (), {"inputs": "vectors"}))
    with pytest.raises(HeadError, match="inputs must be one of"):
        register_head("odd")(type("Odd", (head_class("gbm"),), {"inputs": "pixels"}))
    with pytest.raises(HeadError, match="head module not found"):
        load_head_module(tmp_path / "nope.py")
    failing = tmp_path / "failing.py"
    failing.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(HeadError, match="failed to load: RuntimeError: boom"):
        load_head_module(failing)
    assert "odd" not in head_names() and "broken" not in head_names()
    assert np.isclose(head_class("logreg").Params().C, 0.3)
