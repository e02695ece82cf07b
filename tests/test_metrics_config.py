"""Metrics on hand-computed cases; config loading and its one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml

from conftest import ROOT, run_cli
from vidstore.configs import ConfigError, load_config
from vidstore.heads.metrics import binary_metrics, summarise_folds


def test_binary_metrics_hand_computed():
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    m = binary_metrics(labels, scores, threshold=0.5)
    # predicted fake: 0.6, 0.8, 0.9 -> tp 2, fp 1, fn 1
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(3 / 5)
    # pairs (fake, real) ranked right: 0.4>0.1, 0.8>0.1, 0.8>0.6, 0.9>0.1, 0.9>0.6 -> 5 of 6
    assert m["roc_auc"] == pytest.approx(5 / 6)


def test_one_class_fold_has_nan_ranking_metrics():
    m = binary_metrics(np.array([1, 1]), np.array([0.2, 0.9]))
    assert math.isnan(m["roc_auc"]) and m["recall"] == 0.5
    summary = summarise_folds([m, binary_metrics(np.array([0, 1]), np.array([0.1, 0.9]))])
    assert summary["roc_auc"]["mean"] == 1.0 and math.isnan(summary["roc_auc"]["per_fold"][0])


def test_config_layers_and_overrides():
    cfg = load_config(ROOT / "configs/demo.yaml", ["clip.frames=4", "train.gbm.num_leaves=7"])
    assert cfg.clip.frames == 4 and cfg.clip.scales == [112, 56] and cfg.backbone.weights == "random"
    assert cfg.train.gbm.num_leaves == 7 and cfg.train.folds == 5


@pytest.mark.parametrize(
    "override,needle",
    [
        ("clip.framez=4", "unknown config key 'clip.framez'"),
        ("clip.scales=[56,112]", "'clip.scales'"),
        ("backbone.taps=[layer9]", "unknown tap"),
        ("train.folds=1", "'train.folds'"),
        ("nonsense", "section.key=value"),
    ],
)
def test_config_errors_name_the_key(override, needle):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs/demo.yaml", [override])
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config(ROOT / "configs/nope.yaml")


def built_in(config: dict) -> dict:
    """``config`` without the sections of heads that other tests of the session loaded from
    outside heads/zoo (the README's knn): default.yaml and a fresh process know only these."""
    from vidstore.heads.registry import HEADS

    outside = [name for name, cls in HEADS.items() if not cls.__module__.startswith("vidstore.heads.zoo.")]
    return {**config, "train": {k: v for k, v in config["train"].items() if k not in outside}}


def test_default_yaml_is_the_schema_written_out():
    """Every default lives in the schema; configs/default.yaml must say exactly the same."""
    from vidstore.configs import default_config

    written = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    assert written == built_in(default_config().to_dict())
    # and the file is not read for defaults: a config with no file is the schema's
    assert built_in(load_config().to_dict()) == written


def test_config_show_prints_the_resolved_config():
    shown = run_cli("config", "show", "-c", "configs/demo.yaml", "--set", "train.gbm.num_leaves=7").stdout
    resolved = yaml.safe_load(shown)
    assert resolved == built_in(load_config(ROOT / "configs/demo.yaml", ["train.gbm.num_leaves=7"]).to_dict())
    assert resolved["train"]["gbm"]["num_leaves"] == 7 and resolved["clip"]["scales"] == [112, 56]
    bad = run_cli("config", "show", "--set", "train.gbm.leaves=7", check=False)
    assert bad.returncode == 2 and "unknown config key 'train.gbm.leaves'" in bad.stderr


def test_a_preset_never_overrides_what_the_user_set():
    seed = load_config(None, ["train.inception.preset=seed"]).train.inception
    assert (seed.branch_channels, seed.bottleneck) == (128, None)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.inception.preset=seed", "train.inception.branch_channels=64"])
    assert "preset seed sets branch_channels=128" in str(err.value) and "branch_channels=64" in str(err.value)
    assert "\n" not in str(err.value)
    # the resolved config of a seed run (preset and its values both written) loads again
    again = load_config(None, [f"train.inception={json.dumps(load_config(None, ['train.inception.preset=seed']).train.inception.model_dump())}"])
    assert again.train.inception == seed


def test_test_hooks_are_not_config_keys():
    with pytest.raises(ConfigError, match="unknown config key 'finetune.inject_oom_steps'"):
        load_config(None, ["finetune.inject_oom_steps=[1]"])
