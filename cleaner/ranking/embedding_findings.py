"""What the one feature space shows about a run's train rows: outliers, near duplicates
whose labels conflict, and leakage (a train image that is also a test or unlabeled one).

:func:`embedding_findings` turns :func:`cleaner.ranking.flag.embedding_issues` on every
row of ``embeddings.npz`` into per-train-row flags, partners and notes for the queue
(:func:`cleaner.ranking.queue_rows.build_queue`). Pure on its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cleaner.formats.embeddings import Embeddings
from cleaner.formats.issue_kinds import LEAKAGE, NEAR_DUPLICATE
from cleaner.formats.runs import Run
from cleaner.ranking import flag
from cleaner.ranking.duplicates import DUPLICATE_COLUMNS, classify_pairs


@dataclass(frozen=True)
class EmbeddingFindings:
    """What the one feature space shows about the N train rows of a run."""

    is_outlier: np.ndarray  # (N,) bool
    is_near: np.ndarray  # (N,) bool: the queued member of a pair with different labels
    partner: np.ndarray  # (N,) sample_id of its other image, "" if none
    notes: np.ndarray  # (N,) why, for the queue's note column
    leak: np.ndarray  # (N,) bool: a copy of a test or unlabeled image
    distance: np.ndarray  # (N,) to the partner (0: the same file), inf without one
    pairs: pd.DataFrame  # duplicates.csv: every pair, with its finding

    @classmethod
    def none(cls, n: int) -> EmbeddingFindings:
        """Nothing found: a run without embeddings."""
        no, blank = (lambda: np.zeros(n, bool)), (lambda: np.full(n, "", dtype=object))
        return cls(
            no(), no(), blank(), blank(), no(), np.full(n, np.inf),
            pd.DataFrame(columns=list(DUPLICATE_COLUMNS)),
        )  # fmt: skip


def embedding_findings(
    df: pd.DataFrame, run: Run, emb: Embeddings, quality: np.ndarray
) -> EmbeddingFindings:
    """Outliers, conflicting near duplicates and leakage among ``emb``'s rows.

    Every row of ``emb`` (train, test and unlabeled) lies in one feature space,
    so distances between any two rows mean something.
    """
    n = len(run.sample_ids)
    names = np.asarray(run.classes, dtype=object)
    manifest_pos = pd.Index(df["sample_id"]).get_indexer(emb.sample_ids)
    group_col = run.cfg.data.group
    groups = (
        df[group_col].astype(str).to_numpy()[manifest_pos]
        if group_col and group_col in df.columns
        else None
    )
    found = flag.embedding_issues(emb.embeddings)
    pairs = classify_pairs(
        found.pairs,
        found.pair_distance,
        flag.same_value_pairs(emb.file_sha256),
        sample_ids=emb.sample_ids,
        split=emb.split,
        labels=df["label"].astype(str).str.strip().to_numpy()[manifest_pos],
        groups=groups,
    )
    position = pd.Index(np.asarray(run.sample_ids, dtype=str))
    at = pd.Index(emb.sample_ids).get_indexer(position)  # (N,) each train row's row in emb
    is_outlier = found.is_outlier[at]
    is_near, leak = np.zeros(n, bool), np.zeros(n, bool)
    partner = np.full(n, "", dtype=object)
    notes = np.full(n, "", dtype=object)
    distance = np.full(n, np.inf)
    radius = max(found.radius, 1e-12)
    for r, d in zip(pairs.itertuples(index=False), pairs["distance"].to_numpy(float), strict=True):
        a, b = position.get_indexer([r.sample_id, r.partner])
        # How sure: the same file, or how deep inside the near-duplicate radius.
        how = (
            "same file as"
            if r.match == "exact"
            else f"near duplicate ({d / radius:.0%} of the radius) of"
        )
        if r.finding == LEAKAGE:
            if not leak[a]:  # the first pair is the exact or closest one
                leak[a], partner[a], distance[a] = True, r.partner, d
                notes[a] = f"{how} {r.partner_split} row {r.partner}"
        elif r.finding == NEAR_DUPLICATE:
            # One row per pair: the image whose label the model doubts more.
            if quality[b] < quality[a]:
                a, b = b, a
            if not (is_near[a] or leak[a]):
                is_near[a], partner[a], distance[a] = True, run.sample_ids[b], d
                notes[a] = f"{how} {run.sample_ids[b]} (labelled {names[run.labels[b]]})"
    for i in np.flatnonzero(is_outlier & (notes == "")):
        notes[i] = f"atypical image (outlier score {found.outlier_score[at[i]]:.3f})"
    return EmbeddingFindings(is_outlier, is_near, partner, notes, leak, distance, pairs)
