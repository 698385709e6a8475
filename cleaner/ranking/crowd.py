"""Several labels per image: the consensus and how good each annotator is (CROWDLAB).

Pure functions of ``labels_multiannotator`` (N, M): the class index annotator ``m``
gave row ``n``, ``NaN`` (or a negative integer) where it gave none, and out-of-fold
``pred_probs`` (N, K), named as in ``cleanlab.multiannotator``; no file I/O. The
work is cleanlab's own: :func:`crowd_label_quality` calls
``get_label_quality_multiannotator`` (CROWDLAB: the model's probabilities and the
annotators' labels weighed by how much each is trusted) and
:func:`active_learning_scores` calls ``get_active_learning_scores`` (ActiveLab:
which row one more label is worth most on).

A row with one label behaves exactly as a single-label manifest does today: its
consensus is that label and its quality cleanlab's ``get_label_quality_scores``
(what ``flag`` ranks by), so asking a second person about some rows never relabels
the others behind the user's back. cleanlab itself refuses data where no row has
two labels (it points to ``get_label_quality_scores``), so that case takes the same
single-label path for every row.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from cleanlab.multiannotator import (
    get_active_learning_scores,
    get_label_quality_multiannotator,
    get_majority_vote_label,
)
from cleanlab.rank import get_label_quality_scores

from cleaner.formats.annotations import ANNOTATOR_PREFIX, parse_wide
from cleaner.formats.runs import Run

CROWDLAB = "crowdlab"
SINGLE = "single label"
# cleanlab breaks the last ties of a majority vote with numpy's global random state;
# it is seeded (and restored after) so that the same labels give the same consensus.
TIE_SEED = 0


@dataclass(frozen=True)
class AnnotatorStats:
    """One annotator, as cleanlab's ``annotator_stats`` describes them."""

    annotator: str
    quality: float  # cleanlab's annotator_quality in [0, 1]; NaN when it cannot tell
    agreement: float  # share of this annotator's labels equal to the consensus
    worst_class: int  # class index this annotator gets wrong most; -1 when no label
    num_labelled: int


@dataclass(frozen=True, eq=False)
class CrowdResult:
    """The consensus of every row and the quality of every annotator. Arrays are read-only."""

    consensus_label: np.ndarray  # (N,) int class index
    consensus_quality: np.ndarray  # (N,) float in [0, 1]; low = the consensus is doubtful
    annotator_agreement: np.ndarray  # (N,) share of the row's annotators agreeing with it
    num_annotations: np.ndarray  # (N,) int
    single: np.ndarray  # (N,) bool: rows that took the single-label path
    annotators: tuple[AnnotatorStats, ...]  # (M,) in the order of the matrix's columns
    method: str  # CROWDLAB when cleanlab's CROWDLAB ran, SINGLE when no row has two labels
    model_weight: float = float("nan")  # CROWDLAB's trust in the model against annotators

    def __post_init__(self) -> None:
        for name in ("consensus_label", "consensus_quality", "annotator_agreement"):
            getattr(self, name).flags.writeable = False
        self.num_annotations.flags.writeable = False
        self.single.flags.writeable = False

    def annotator_table(self, classes: Sequence[str] | None = None) -> pd.DataFrame:
        """``annotator, quality, agreement, worst_class, num_labelled``, worst first (as
        cleanlab sorts them); ``worst_class`` by name when ``classes`` are given."""
        table = pd.DataFrame(
            {
                "annotator": [a.annotator for a in self.annotators],
                "quality": [a.quality for a in self.annotators],
                "agreement": [a.agreement for a in self.annotators],
                "worst_class": [a.worst_class for a in self.annotators],
                "num_labelled": [a.num_labelled for a in self.annotators],
            }
        )
        if classes is not None:
            names = [*classes, ""]  # -1 (no label) reads as empty
            table["worst_class"] = [names[k] for k in table["worst_class"]]
        # NaN quality (cleanlab could not tell) last; name breaks ties so the order is fixed.
        return table.sort_values(
            ["quality", "agreement", "annotator"], na_position="last", kind="stable"
        ).reset_index(drop=True)


def as_labels_multiannotator(labels_multiannotator: np.ndarray | pd.DataFrame) -> np.ndarray:
    """(N, M) float with ``NaN`` for a missing label: cleanlab's format, from NaN or ``-1``."""
    if isinstance(labels_multiannotator, pd.DataFrame):
        labels_multiannotator = labels_multiannotator.to_numpy(dtype=np.float64, na_value=np.nan)
    labels = np.array(labels_multiannotator, dtype=np.float64)
    if labels.ndim != 2:
        raise ValueError(f"labels_multiannotator must be (N, M), got shape {labels.shape}")
    labels[labels < 0] = np.nan
    return labels


def _check(labels: np.ndarray, pred_probs: np.ndarray) -> None:
    """Shapes that agree, whole class indices below K, and a label on every row."""
    if pred_probs.ndim != 2 or len(pred_probs) != len(labels):
        raise ValueError(
            f"pred_probs must be (N, K) with N = {len(labels)} rows, got {pred_probs.shape}"
        )
    given = labels[~np.isnan(labels)]
    if (given != np.round(given)).any() or (given >= pred_probs.shape[1]).any():
        raise ValueError(f"labels must be class indices 0..{pred_probs.shape[1] - 1}")
    empty = np.flatnonzero(np.isnan(labels).all(axis=1))
    if len(empty):
        raise ValueError(
            f"{len(empty)} row(s) have no label (first: {empty[:5].tolist()}); score them "
            "as unlabeled (pred_probs_unlabeled) instead"
        )


@contextlib.contextmanager
def _cleanlab_quietly() -> Iterator[None]:
    """cleanlab's prints silenced and its random tie-break seeded (state restored after)."""
    state = np.random.get_state()
    np.random.seed(TIE_SEED)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="breaking ties")
            yield
    finally:
        np.random.set_state(state)


def majority_vote(
    labels_multiannotator: np.ndarray | pd.DataFrame, pred_probs: np.ndarray | None = None
) -> np.ndarray:
    """cleanlab's majority vote (N,): ties broken by ``pred_probs``, then class frequency,
    annotator agreement and a seeded draw."""
    labels = as_labels_multiannotator(labels_multiannotator)
    with _cleanlab_quietly():
        return np.asarray(get_majority_vote_label(labels, pred_probs, verbose=False), dtype=int)


def crowd_label_quality(
    labels_multiannotator: np.ndarray | pd.DataFrame,
    pred_probs: np.ndarray,
    *,
    annotators: Sequence[str] | None = None,
    method: str = "self_confidence",
    keep_single_labels: bool = True,
) -> CrowdResult:
    """Consensus label, its quality and agreement (N,), and each annotator's stats (M,).

    ``labels_multiannotator`` (N, M) holds class indices, ``NaN`` or ``-1`` where missing;
    every row needs at least one label. ``pred_probs`` (N, K) are out-of-fold. ``method``
    is the label quality score (cleanlab's ``get_label_quality_scores`` method) used
    both inside CROWDLAB and for single-label rows.

    When some row has two or more labels, cleanlab's CROWDLAB runs on the whole matrix
    (``consensus_method="best_quality"``); rows with one label then keep that label,
    with cleanlab's plain label quality (``keep_single_labels=False`` keeps CROWDLAB's
    consensus for them instead, which may differ from the only label given when the
    model disagrees with it). The annotator stats are cleanlab's ``annotator_stats``
    as computed on the whole matrix. When no row has two labels the single-label path
    serves every row: each annotator's quality is the mean label quality of its labels,
    its agreement 1 and its worst class the one with the lowest mean quality.
    Annotators without a label among these rows get ``NaN`` stats.
    """
    labels = as_labels_multiannotator(labels_multiannotator)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    _check(labels, pred_probs)
    n, m = labels.shape
    names = list(annotators) if annotators is not None else [str(j) for j in range(m)]
    if len(names) != m:
        raise ValueError(f"{len(names)} annotator names for {m} columns")
    counts = (~np.isnan(labels)).sum(axis=1)
    single = counts == 1
    # The only label of a single-label row (the largest of one label and NaNs); 0 elsewhere.
    only = np.where(single, np.nanmax(labels, axis=1), 0).astype(int)
    plain = get_label_quality_scores(only, pred_probs, method=method)
    if single.all():
        return _single_label_result(labels, pred_probs, names, only, plain)
    # cleanlab refuses an annotator with no label at all: those leave the matrix first.
    active = np.flatnonzero((~np.isnan(labels)).any(axis=0))
    table = pd.DataFrame(labels[:, active], columns=[names[j] for j in active])
    with _cleanlab_quietly():
        info = get_label_quality_multiannotator(
            table,
            pred_probs,
            consensus_method="best_quality",
            quality_method="crowdlab",
            return_detailed_quality=False,
            return_annotator_stats=True,
            return_weights=True,
            verbose=False,
            label_quality_score_kwargs={"method": method},
        )
    quality = info["label_quality"]
    consensus = quality["consensus_label"].to_numpy(dtype=int).copy()
    consensus_quality = quality["consensus_quality_score"].to_numpy(dtype=np.float64).copy()
    agreement = quality["annotator_agreement"].to_numpy(dtype=np.float64).copy()
    keep = single if keep_single_labels else np.zeros(n, dtype=bool)
    consensus[keep] = only[keep]
    consensus_quality[keep] = plain[keep]
    agreement[keep] = 1.0
    rows = _annotator_stats(info["annotator_stats"], names, active)
    return CrowdResult(
        consensus_label=consensus,
        consensus_quality=consensus_quality,
        annotator_agreement=agreement,
        num_annotations=counts,
        single=keep,
        annotators=tuple(rows),
        method=CROWDLAB,
        model_weight=float(info["model_weight"]),
    )


def _annotator_stats(
    stats: Any,
    names: Sequence[str],
    active: np.ndarray,  # cleanlab's annotator_stats frame
) -> list[AnnotatorStats]:
    """cleanlab's ``annotator_stats`` per annotator, in column order; NaN for one that
    labelled none of the rows (cleanlab never saw it)."""
    rows = []
    for j, name in enumerate(names):
        if j in active:
            s = stats.loc[name]
            rows.append(
                AnnotatorStats(
                    name,
                    float(s["annotator_quality"]),
                    float(s["agreement_with_consensus"]),
                    int(s["worst_class"]),
                    int(s["num_examples_labeled"]),
                )
            )
        else:
            rows.append(AnnotatorStats(name, float("nan"), float("nan"), -1, 0))
    return rows


def _single_label_result(
    labels: np.ndarray,
    pred_probs: np.ndarray,
    names: Sequence[str],
    only: np.ndarray,
    plain: np.ndarray,
) -> CrowdResult:
    """Every row has one label: today's single-label path, with per-annotator summaries."""
    rows = []
    k = pred_probs.shape[1]
    for j, name in enumerate(names):
        mine = ~np.isnan(labels[:, j])
        if not mine.any():
            rows.append(AnnotatorStats(name, float("nan"), float("nan"), -1, 0))
            continue
        given = only[mine]
        # Mean quality per class this annotator used; the lowest (first on ties) is worst.
        total = np.bincount(given, weights=plain[mine], minlength=k)
        used = np.bincount(given, minlength=k)
        mean = np.where(used > 0, total / np.maximum(used, 1), np.inf)
        rows.append(
            AnnotatorStats(
                name, float(plain[mine].mean()), 1.0, int(np.argmin(mean)), int(mine.sum())
            )
        )
    n = len(labels)
    return CrowdResult(
        consensus_label=only.copy(),
        consensus_quality=np.asarray(plain, dtype=np.float64).copy(),
        annotator_agreement=np.ones(n),
        num_annotations=np.ones(n, dtype=int),
        single=np.ones(n, dtype=bool),
        annotators=tuple(rows),
        method=SINGLE,
    )


def active_learning_scores(
    labels_multiannotator: np.ndarray | pd.DataFrame | None,
    pred_probs: np.ndarray | None,
    pred_probs_unlabeled: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's ActiveLab scores: ``(scores (N,), scores_unlabeled (U,))``, in [0, 1].

    Low means one more label is worth most there; the two arrays are on one scale, so
    labelled and unlabeled rows compete for the same budget. ``labels_multiannotator``
    (N, M) and ``pred_probs`` (N, K) are the labelled rows (each with at least one
    label; ``None`` for none), ``pred_probs_unlabeled`` (U, K) rows no one labelled.
    cleanlab handles rows with one label (M = 1 included) itself.
    """
    if labels_multiannotator is None or pred_probs is None or len(pred_probs) == 0:
        if pred_probs_unlabeled is None:
            raise ValueError("give labelled rows (labels_multiannotator, pred_probs) or unlabeled")
        with _cleanlab_quietly():
            _, unlabeled = get_active_learning_scores(
                None, None, np.asarray(pred_probs_unlabeled, dtype=np.float64)
            )
        return np.empty(0), np.asarray(unlabeled, dtype=np.float64)
    labels = as_labels_multiannotator(labels_multiannotator)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    _check(labels, pred_probs)
    labels = labels[:, (~np.isnan(labels)).any(axis=0)]  # cleanlab refuses an empty column
    unlabeled_probs = (
        None if pred_probs_unlabeled is None else np.asarray(pred_probs_unlabeled, np.float64)
    )
    with _cleanlab_quietly():
        scores, unlabeled = get_active_learning_scores(labels, pred_probs, unlabeled_probs)
    return np.asarray(scores, dtype=np.float64), np.asarray(unlabeled, dtype=np.float64)


def run_label_matrix(df: pd.DataFrame, run: Run) -> tuple[np.ndarray, list[str]]:
    """(N, M) labels of the run's N train rows from the manifest's ``annotator:NAME``
    columns (NaN where an annotator gave none) and the M names; without such columns
    the run's own labels as one annotator, ``label``."""
    if not any(str(c).startswith(ANNOTATOR_PREFIX) for c in df.columns):
        return run.labels.astype(np.float64)[:, None], ["label"]
    notes = parse_wide(df, file=run.manifest_path, classes=run.classes)
    position = pd.Index(notes.sample_ids).get_indexer(pd.Index(run.sample_ids))
    return notes.labels_multiannotator[position], list(notes.annotators)


def crowd_of(df: pd.DataFrame, run: Run, pred_probs: np.ndarray) -> CrowdResult | None:
    """CROWDLAB on the manifest's annotator columns, or None when it has none."""
    labels, names = run_label_matrix(df, run)
    if names == ["label"]:
        return None
    return crowd_label_quality(labels, pred_probs, annotators=names, method=run.cfg.flag.method)
