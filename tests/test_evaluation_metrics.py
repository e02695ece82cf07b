"""The metrics the field reports, on fixed inputs: against scikit-learn where it has them,
by hand where it does not (EER, the threshold rules); intervals that resample groups."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from vidstore.heads.metrics import (
    average_precision,
    binary_metrics,
    bootstrap_intervals,
    choose_threshold,
    degenerate_calls,
    equal_error_rate,
    parse_threshold_rule,
    roc_auc,
    roc_points,
    tpr_at_fpr,
)


def fixed_scores(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities rounded to one decimal, so that scores tie."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    return y, np.round(np.clip(rng.uniform(0, 0.8, n) + 0.25 * y, 0, 1), 1)


@pytest.mark.parametrize("seed", range(6))
def test_ranking_metrics_match_scikit_learn_with_ties(seed):
    y, p = fixed_scores(seed)
    fpr, tpr, _ = roc_points(y, p)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    assert roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)
    m = binary_metrics(y, p, 0.55)
    for rate in (0.01, 0.05, 0.2):
        # the best true-positive rate among scikit-learn's ROC points at or under the rate
        expected = sk_tpr[sk_fpr <= rate].max()
        assert tpr_at_fpr(y, p, rate) == pytest.approx(expected)
    assert m["tpr_at_fpr_0.05"] == pytest.approx(sk_tpr[sk_fpr <= 0.05].max())
    called = (p >= 0.55).astype(int)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, called))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p.clip(1e-7, 1 - 1e-7)))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    # the EER lies where the ROC curve crosses FPR = FNR: between sklearn's points around it
    sk_fnr = 1 - sk_tpr
    k = int(np.flatnonzero(sk_fnr - sk_fpr <= 0)[0])
    assert min(sk_fpr[k - 1], sk_fnr[k]) - 1e-12 <= m["eer"] <= max(sk_fpr[k], sk_fnr[k - 1]) + 1e-12


def test_equal_error_rate_by_hand():
    # reals 0.1, 0.4, 0.6; fakes 0.5, 0.9. Calling fake above 0.55 passes 1 of 3 reals and
    # misses 1 of 2 fakes (FPR 1/3, FNR 1/2); lowering the cut to 0.5 catches the other
    # fake at the same FPR. The FNR falls from 1/2 to 0 on that vertical step and meets
    # the FPR at 1/3.
    assert equal_error_rate(np.array([0, 0, 0, 1, 1]), np.array([0.1, 0.4, 0.6, 0.5, 0.9])) == pytest.approx(1 / 3)
    # a tie between a real and a fake (0.5): the ROC step goes diagonally from (0, 1/2)
    # to (1/2, 1); FPR = FNR = 1/4 halfway along it
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.2, 0.5, 0.5, 0.8])) == pytest.approx(0.25)
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert equal_error_rate(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert math.isnan(equal_error_rate(np.array([1, 1]), np.array([0.2, 0.9])))


def test_threshold_rules_on_fixed_predictions():
    reals = [0.1, 0.2, 0.3, 0.45, 0.7]
    fakes = [0.5, 0.6, 0.8, 0.9, 0.95]
    y, p = np.array([0] * 5 + [1] * 5), np.array(reals + fakes)
    # at 0.475 every fake and one real (0.7) are called fake: F1 10/11, TPR - FPR 0.8, both best
    assert choose_threshold(y, p, "f1") == pytest.approx(0.475)
    assert choose_threshold(y, p, "youden") == pytest.approx(0.475)
    # at 0.55 one fake (0.5) is missed and one real (0.7) passes: FPR = FNR = 0.2
    assert choose_threshold(y, p, "eer") == pytest.approx(0.55)
    # at most 1 real in 5 called fake: the lowest such cut is 0.475; none at all: 0.75
    assert choose_threshold(y, p, "fpr:0.2") == pytest.approx(0.475)
    assert choose_threshold(y, p, "fpr:0.01") == pytest.approx(0.75)
    for bad in ("fpr:2", "fpr:x", "best", "f1:0.1"):
        with pytest.raises(ValueError, match="threshold rule"):
            parse_threshold_rule(bad)


def test_a_threshold_that_calls_a_class_one_way_is_degenerate():
    y = np.array([0] * 20 + [1] * 20)
    p = np.r_[np.full(20, 0.3), np.full(20, 0.35)]
    assert degenerate_calls(y, p, 0.2) == "100% of 20 real videos called fake"
    assert degenerate_calls(y, p, 0.5) == "100% of 20 fake videos called real"
    assert degenerate_calls(y, p, 0.32) is None
    # 19 of 20 reals called fake is 95 %: degenerate; 18 of 20 is not
    p19 = p.copy()
    p19[0] = 0.1
    assert degenerate_calls(y, p19, 0.2) == "95% of 20 real videos called fake"
    p19[1] = 0.1
    assert degenerate_calls(y, p19, 0.2) is None


def test_the_group_interval_of_identical_copies_is_that_of_one_copy_per_group():
    rng = np.random.default_rng(3)
    n_groups = 40
    y = np.arange(n_groups) % 2
    p = np.clip(0.35 * y + rng.uniform(0, 0.65, n_groups), 0, 1)
    groups = np.array([f"g{i:02d}" for i in range(n_groups)])
    one = bootstrap_intervals(y, p, 0.5, groups, n=300, seed=1)
    copies = 4  # every group published four times, identical scores
    many = bootstrap_intervals(np.repeat(y, copies), np.repeat(p, copies), 0.5, np.repeat(groups, copies), n=300, seed=1)
    for metric in one:
        assert many[metric] == pytest.approx(one[metric]), metric
    # resampling the copies as if independent shrinks the interval about twofold
    by_video = bootstrap_intervals(np.repeat(y, copies), np.repeat(p, copies), 0.5, None, n=300, seed=1)
    width = {name: b - a for name, (a, b) in one.items()}
    for metric in one:
        assert by_video[metric][1] - by_video[metric][0] < 0.75 * width[metric], metric
