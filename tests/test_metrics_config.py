"""Metrics on hand-computed cases; config loading and its one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import ROOT
from configs import ConfigError, load_config
from heads.metrics import binary_metrics, summarise_folds


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
