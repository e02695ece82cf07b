"""Grouped stratified folds: no group in two folds, checked by an audit that can fail."""

from __future__ import annotations

import numpy as np
import pytest

from vidstore.heads.splits import SplitError, audit_folds, grouped_stratified_folds, naive_row_folds, shuffle_labels_by_group


def cascades(n_groups: int = 30, seed: int = 0):
    """Videos in near-duplicate groups of 1-4, one label per group (like demo scenes)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_groups)
    groups = np.repeat([f"g{i}" for i in range(n_groups)], sizes)
    labels = np.repeat(np.arange(n_groups) % 2, sizes)
    videos = np.array([f"v{i}" for i in range(len(groups))])
    return videos, groups, labels


def test_no_group_in_two_folds_and_folds_are_stratified():
    videos, groups, labels = cascades()
    folds = grouped_stratified_folds(labels, groups, 5, seed=0)
    assert set(folds.tolist()) == set(range(5))
    for g in np.unique(groups):
        assert len(set(folds[groups == g].tolist())) == 1
    audit = audit_folds(folds, videos, groups)
    assert audit["leaking_groups"] == 0 and audit["leaking_videos"] == 0
    for f in range(5):
        assert 0.2 < labels[folds == f].mean() < 0.8


def test_same_seed_same_folds_other_seed_other_folds():
    _, groups, labels = cascades()
    a = grouped_stratified_folds(labels, groups, 5, seed=3)
    assert np.array_equal(a, grouped_stratified_folds(labels, groups, 5, seed=3))
    assert not np.array_equal(a, grouped_stratified_folds(labels, groups, 5, seed=4))


def test_audit_catches_a_group_split_across_folds():
    videos, groups, labels = cascades()
    folds = grouped_stratified_folds(labels, groups, 5, seed=0)
    big = next(g for g in np.unique(groups) if (groups == g).sum() >= 2)
    members = np.flatnonzero(groups == big)
    folds[members[0]] = (folds[members[0]] + 1) % 5  # deliberately mix one group
    audit = audit_folds(folds, videos, groups)
    assert audit["leaking_groups"] == 1 and big in audit["examples"]


def test_audit_catches_rows_of_one_video_in_two_folds():
    videos = np.array(["a", "a", "b", "b"])
    groups = np.array(["a", "a", "b", "b"])
    audit = audit_folds(np.array([0, 1, 1, 1]), videos, groups)
    assert audit["leaking_videos"] == 1 and audit["leaking_groups"] == 1


def test_naive_split_leaks_groups():
    videos, groups, _ = cascades()
    audit = audit_folds(naive_row_folds(len(videos), 5, seed=0), videos, groups)
    assert audit["leaking_groups"] > 0


def test_split_errors():
    with pytest.raises(SplitError, match="groups cannot fill"):
        grouped_stratified_folds(np.array([0, 1, 0]), np.array(["a", "b", "c"]), 5)
    with pytest.raises(SplitError, match="label 1 has only 2 videos"):
        grouped_stratified_folds(np.array([0, 0, 0, 1, 1, 0]), np.arange(6).astype(str), 3)
    with pytest.raises(SplitError, match="one class"):
        grouped_stratified_folds(np.zeros(10), np.arange(10).astype(str), 5)


def test_shuffled_labels_keep_one_label_per_group_and_class_counts():
    _, groups, labels = cascades()
    shuffled = shuffle_labels_by_group(labels, groups, seed=1)
    for g in np.unique(groups):
        assert len(set(shuffled[groups == g].tolist())) == 1
    _, first = np.unique(groups, return_index=True)
    assert sorted(shuffled[first].tolist()) == sorted(labels[first].tolist())
    assert not np.array_equal(shuffled, labels)
