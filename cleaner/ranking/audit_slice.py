"""The audit slice: train rows drawn at random, reviewed beside the ranked queue.

The ranked rows are the ones a model doubts, so their decisions say nothing
about the labels or the models on the rest: on digits, the noisy-label model
was right on 90% of random rows but on 26% of the decided queue rows. A
uniform sample of the rows not yet decided, decided like any queue row, is
what measures "did cleaning help" without a test split of true labels
(:mod:`cleaner.final.audit_scores`).

The sample is drawn over every eligible row, the ranked ones included: rows
that the queue already holds stay as they are (and are marked audited in
``queue.json``); the others join the queue as ``audit`` rows at random places,
so that a reviewer who stops early has decided a random share of them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEED = 0  # the same run and settings draw the same rows: a queue is rebuilt exactly


def audit_sample(eligible: np.ndarray, n: int, *, seed: int = SEED) -> np.ndarray:
    """Up to ``n`` positions drawn uniformly without replacement from the ``True``
    places of the boolean mask ``eligible``, in increasing order."""
    at = np.flatnonzero(eligible)
    if n <= 0 or not len(at):
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(at, size=min(n, len(at)), replace=False))


def interleave(
    queue: pd.DataFrame, extra: pd.DataFrame, *, first: int = 0, seed: int = SEED
) -> pd.DataFrame:
    """``queue`` with the rows of ``extra`` at uniformly random places after its first
    ``first`` rows (the leakage rows, which stay first), in ``extra``'s order."""
    if not len(extra):
        return queue
    rng = np.random.default_rng(seed)
    n_rest = len(queue) - first
    # A random order of the rest of the queue and the extra rows: every arrangement of
    # where the extra rows fall is equally likely, and each part keeps its own order.
    is_extra = np.zeros(n_rest + len(extra), dtype=bool)
    is_extra[rng.choice(len(is_extra), size=len(extra), replace=False)] = True
    order = np.empty(len(is_extra), dtype=np.int64)
    order[~is_extra] = np.arange(n_rest)
    order[is_extra] = n_rest + np.arange(len(extra))
    both = pd.concat([queue.iloc[first:], extra], ignore_index=True)
    return pd.concat([queue.iloc[:first], both.iloc[order]], ignore_index=True)
