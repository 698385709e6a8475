"""Duplicate pairs among all rows of one feature space, and what each pair means.

A pair is two images that are the same file (equal sha256) or near
duplicates in the embedding space (Datalab's rule, :func:`cleaner.ranking.flag.embedding_issues`).
What it means depends on where the two sit:

- a train row and a test or unlabeled row: ``leakage`` (the test score is
  inflated; the train copy is kept or dropped);
- two train rows with different labels: ``near_duplicate`` (one label is wrong,
  or the image is truly ambiguous);
- two train rows with the same label: ``same_label`` (counted and listed only).

Pairs inside one ``data.group`` (a person's own photos) are expected and left out.
The table is ``duplicates.csv`` beside the queue, one row per pair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cleaner.formats.issue_kinds import LEAKAGE, NEAR_DUPLICATE

SAME_LABEL = "same_label"
DUPLICATE_COLUMNS = (
    "sample_id",
    "partner",
    "finding",
    "match",
    "distance",
    "split",
    "partner_split",
    "label",
    "partner_label",
)


def classify_pairs(
    pairs: np.ndarray,
    distance: np.ndarray,
    exact: np.ndarray,
    *,
    sample_ids: np.ndarray,
    split: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
) -> pd.DataFrame:
    """The ``duplicates.csv`` table of near pairs (P, 2) and exact pairs (Q, 2) of M rows.

    ``distance`` (P,) belongs to ``pairs``; ``sample_ids``, ``split``, ``labels``
    (class names, empty for rows without one) and ``groups`` are (M,). Train
    rows come first in a pair; leakage pairs name the train row in ``sample_id``.
    """
    found: dict[tuple[int, int], tuple[str, float]] = {}
    for (i, j), d in zip(pairs.tolist(), np.asarray(distance).tolist(), strict=True):
        found[(min(i, j), max(i, j))] = ("near", float(d))
    for i, j in exact.tolist():
        found[(min(i, j), max(i, j))] = ("exact", 0.0)  # the file itself is the same
    rows = []
    for (i, j), (match, d) in sorted(found.items()):
        if groups is not None and groups[i] and groups[i] == groups[j]:
            continue
        if split[i] != "train" and split[j] == "train":
            i, j = j, i
        if split[i] != "train":
            continue  # neither is a training image: nothing to clean
        if split[j] != "train":
            finding = LEAKAGE
        else:
            finding = NEAR_DUPLICATE if labels[i] != labels[j] else SAME_LABEL
        rows.append(
            (
                sample_ids[i],
                sample_ids[j],
                finding,
                match,
                d,
                split[i],
                split[j],
                labels[i],
                labels[j],
            )
        )
    table = pd.DataFrame(rows, columns=list(DUPLICATE_COLUMNS))
    # Exact copies first, then the closest pairs.
    order = np.lexsort((table["distance"].to_numpy(), (table["match"] != "exact").to_numpy()))
    return table.iloc[order].reset_index(drop=True)
