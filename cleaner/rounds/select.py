"""The next batch of a round: which rows a budget of labels goes to.

Pure numpy over ``pred_probs`` (N, K) out-of-fold probabilities and ``label_counts``
(N, K), how many annotators gave each row each class; no file I/O, no model.

The score is Bernhardt et al. 2022 ("Active label cleaning for improved dataset
quality under resource constraints", Nature Communications; their
``PosteriorBasedSelector`` with the ``JOINT`` rule): the cross-entropy between the
row's current label distribution (its label counts, normalised) and the model's
posterior, minus the part of the posterior's entropy above 0.3, both in units of
log K, so that a truly ambiguous image, on which every annotator and the model
hesitate, is not relabelled again and again. Rows that already carry several
labels also get cleanlab's ActiveLab score (how much one more label is worth there,
from :func:`cleaner.ranking.crowd.active_learning_scores`, computed by the caller);
the two are on different scales, so each is turned into its percentile among the
rows that may be offered and the two percentiles are averaged (``activelab_weight``).
Rows with no label compete by their ActiveLab percentile alone.

A row already decided by a person, or at its limit of labels, is never offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Bernhardt et al.'s gamma: posterior entropy (in units of log K) up to this much is
# ordinary model doubt; above it the image counts as ambiguous and scores less.
AMBIGUITY = 0.3
# Their cross-entropy adds this inside the log: a zero probability costs ~27.6 / log K.
EPS = 1e-12
# Why a row is in the batch (the queue's ``issue``).
RELABEL = "relabel"  # one label, and the model doubts it (Bernhardt)
MORE_LABELS = "more_labels"  # several labels (Bernhardt and ActiveLab)
UNLABELED = "unlabeled"  # no label yet (ActiveLab)


def label_counts(labels_multiannotator: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, K) int: how many annotators gave each row each class.

    ``labels_multiannotator`` (N, M) holds class indices with ``NaN`` or a negative
    number where an annotator gave no label.
    """
    labels = np.asarray(labels_multiannotator, dtype=np.float64)
    if labels.ndim != 2:
        raise ValueError(f"labels_multiannotator must be (N, M), got shape {labels.shape}")
    given = ~np.isnan(labels) & (labels >= 0)
    rows, cols = np.nonzero(given)
    classes = labels[rows, cols].astype(np.int64)
    if len(classes) and classes.max() >= num_classes:
        raise ValueError(f"a label {classes.max()} is not below num_classes = {num_classes}")
    counts = np.zeros((len(labels), num_classes), dtype=np.int64)
    np.add.at(counts, (rows, classes), 1)
    return counts


def relabel_scores(
    label_counts: np.ndarray, pred_probs: np.ndarray, *, ambiguity: float = AMBIGUITY
) -> np.ndarray:
    """Bernhardt et al.'s relabelling score (N,): high = relabel first; NaN for no label.

    ``CE(q, p) - max(H(p) - ambiguity, 0)`` where ``q`` is the row's label counts (N, K)
    normalised, ``p`` its posterior ``pred_probs`` (N, K), ``CE(q, p) = -sum q log p`` and
    ``H(p) = CE(p, p)``, both in units of log K (so ``H`` lies in [0, 1]).
    """
    counts = np.asarray(label_counts, dtype=np.float64)
    p = np.asarray(pred_probs, dtype=np.float64)
    if counts.shape != p.shape or p.ndim != 2:
        raise ValueError(f"label_counts {counts.shape} and pred_probs {p.shape} must be (N, K)")
    k = p.shape[1]
    log_p = np.log(p + EPS) / np.log(max(k, 2))
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = counts / total  # NaN rows where no label: no current label to doubt
    cross_entropy = -(q * log_p).sum(axis=1)
    entropy = -(p * log_p).sum(axis=1)
    return cross_entropy - np.maximum(entropy - ambiguity, 0.0)


def percentile(values: np.ndarray) -> np.ndarray:
    """Each finite value's rank among the finite ones, in [0, 1] (ties share their mean
    rank; 1 = largest); NaN where the value is not finite."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    n = int(finite.sum())
    if n == 0:
        return out
    if n == 1:
        out[finite] = 1.0
        return out
    _, inverse, counts = np.unique(values[finite], return_inverse=True, return_counts=True)
    # Mean 0-based rank of each distinct value: its first rank plus half of its ties.
    first = np.cumsum(counts) - counts
    out[finite] = (first + (counts - 1) / 2.0)[inverse] / (n - 1)
    return out


@dataclass(frozen=True, eq=False)
class Selection:
    """The batch, best first, and the scores it was chosen by. Arrays are read-only."""

    rows: np.ndarray  # (B,) int row indices, best first; B <= budget
    priority: np.ndarray  # (B,) in [0, 1], the combined percentile that ordered them
    kind: tuple[str, ...]  # (B,) RELABEL, MORE_LABELS or UNLABELED
    relabel_score: np.ndarray  # (N,) Bernhardt's score of every row (NaN without a label)
    eligible: np.ndarray  # (N,) bool: rows that could be offered

    def __post_init__(self) -> None:
        for a in (self.rows, self.priority, self.relabel_score, self.eligible):
            a.flags.writeable = False


def _per_row(value: int | np.ndarray | None, n: int, name: str) -> np.ndarray:
    """A scalar or (N,) limit as (N,) float; ``None`` is no limit."""
    if value is None:
        return np.full(n, np.inf)
    out = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()
    if (out < 1).any():
        raise ValueError(f"{name} must be at least 1")
    return out


def select_batch(
    pred_probs: np.ndarray,
    *,
    label_counts: np.ndarray,
    budget: int,
    decided: np.ndarray | None = None,
    max_labels: int | np.ndarray | None = None,
    activelab_scores: np.ndarray | None = None,
    activelab_weight: float = 0.5,
    ambiguity: float = AMBIGUITY,
) -> Selection:
    """The ``budget`` rows to ask about next, best first (fewer when fewer may be offered).

    ``pred_probs`` (N, K) and ``label_counts`` (N, K) as in :func:`relabel_scores`;
    ``decided`` (N,) bool marks rows a person settled (never offered); ``max_labels``
    (an int or (N,)) is the most labels a row may carry: a row that has that many is
    never offered. ``activelab_scores`` (N,) are ActiveLab's (low = one more label is
    worth most; NaN where not computed): for rows with two or more labels the priority
    is ``(1 - activelab_weight) * percentile(relabel score) + activelab_weight *
    percentile(-ActiveLab)``, for rows with none it is the ActiveLab percentile alone,
    for rows with one label the relabel percentile alone. Percentiles are taken among
    the rows that may be offered. Ties go to the higher relabel score, then the lower
    row index, so the same input gives the same batch.
    """
    p = np.asarray(pred_probs, dtype=np.float64)
    counts = np.asarray(label_counts)
    n = len(p)
    if budget < 0:
        raise ValueError("budget must be >= 0")
    if not 0.0 <= activelab_weight <= 1.0:
        raise ValueError("activelab_weight must lie in [0, 1]")
    score = relabel_scores(counts, p, ambiguity=ambiguity)
    num_labels = counts.sum(axis=1)
    done = np.zeros(n, dtype=bool) if decided is None else np.asarray(decided, dtype=bool)
    if done.shape != (n,):
        raise ValueError(f"decided has shape {done.shape}, expected ({n},)")
    active = np.full(n, np.nan) if activelab_scores is None else np.asarray(activelab_scores, float)
    if active.shape != (n,):
        raise ValueError(f"activelab_scores has shape {active.shape}, expected ({n},)")
    open_rows = ~done & (num_labels < _per_row(max_labels, n, "max_labels"))
    has_active = np.isfinite(active)
    eligible = open_rows & np.where(num_labels > 0, np.isfinite(score), has_active)
    pct_relabel = percentile(np.where(eligible, score, np.nan))
    pct_active = percentile(np.where(eligible & has_active, -active, np.nan))
    several = (num_labels >= 2) & has_active
    priority = np.where(
        num_labels == 0,
        pct_active,
        np.where(
            several,
            (1 - activelab_weight) * pct_relabel + activelab_weight * pct_active,
            pct_relabel,
        ),
    )
    candidates = np.flatnonzero(eligible)
    # lexsort sorts by its last key first: priority (high first), relabel score, index.
    tie = np.nan_to_num(score[candidates], nan=-np.inf)
    order = np.lexsort((candidates, -tie, -priority[candidates]))
    rows = candidates[order][:budget]
    kinds = tuple(
        UNLABELED if num_labels[i] == 0 else MORE_LABELS if several[i] else RELABEL
        for i in rows.tolist()
    )
    return Selection(
        rows=rows,
        priority=priority[rows],
        kind=kinds,
        relabel_score=score,
        eligible=eligible,
    )
