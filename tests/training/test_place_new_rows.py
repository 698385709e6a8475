"""``refresh``'s placing of train rows the run never split (pure)."""

from __future__ import annotations

import numpy as np

from cleaner.training.refresh import place_new_rows


def test_a_new_row_joins_the_fold_with_fewest_of_its_class() -> None:
    folds = np.array([0, 0, 1, 1, -1, -1, -1])
    labels = np.array([0, 1, 0, 0, 0, 1, 1])
    # class 0: fold 0 holds 1, fold 1 holds 2 -> fold 0. Class 1: fold 0 holds 1, fold 1
    # none -> fold 1. Class 1 again: one each, and 3 rows each -> the lower, fold 0.
    assert place_new_rows(folds, labels, None, 2).tolist() == [0, 0, 1, 1, 0, 1, 0]


def test_a_new_row_joins_its_groups_fold() -> None:
    folds = np.array([0, 1, -1, -1, -1])
    labels = np.array([0, 0, 0, 0, 0])
    groups = np.array(["p1", "p2", "p2", "p3", "p3"])
    # p2 is in fold 1; p3 is new: the fold with fewer class-0 rows (0), its second row too
    assert place_new_rows(folds, labels, groups, 2).tolist() == [0, 1, 1, 0, 0]


def test_known_rows_keep_their_folds() -> None:
    folds = np.array([2, 0, 1])
    assert place_new_rows(folds, np.array([0, 1, 2]), None, 3).tolist() == [2, 0, 1]
