"""Cross-validation folds: stratified by label, never splitting a group."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cleaner.core.errors import InputError


def make_folds(
    labels: np.ndarray, *, n_splits: int, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Fold id (N,) for each sample; with ``groups``, all rows of a group share a fold."""
    labels = np.asarray(labels)
    folds = np.full(len(labels), -1, dtype=np.int64)
    x = np.zeros((len(labels), 1))
    if groups is None:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = splitter.split(x, labels)
    else:
        n_groups = len(np.unique(groups))
        if n_groups < n_splits:
            raise InputError(f"{n_groups} groups cannot fill {n_splits} folds")
        sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = sgkf.split(x, labels, groups)
    for k, (_, val) in enumerate(splits):
        folds[val] = k
    return folds


def describe_split(n_splits: int, seed: int, group: str = "") -> str:
    """How a run split its data, in words, for metrics.json and the console."""
    args = f"n_splits={n_splits}, shuffle=True, random_state={seed}"
    if group:
        return f"StratifiedGroupKFold({args}) on {group!r}"
    return f"StratifiedKFold({args})"
