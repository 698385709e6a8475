"""A reviewer's answer as one more annotation, in a manifest with ``annotator:NAME`` columns.

Where a manifest carries every annotator's label (:mod:`cleaner.formats.annotations`),
``label`` is their consensus, and a person's ``keep`` or ``relabel`` in a queue is one
more label, not a verdict: ``apply`` writes it into the reviewer's own column
(``annotator:REVIEWER``) and the row's ``label`` becomes the majority of its
annotations, a tie going to the newest answer (the reviewer, who saw the others'
labels and the model's suggestion). Asked again, a reviewer's new answer replaces
their old one: one annotator, one label per image. A manifest without annotator
columns is not touched here: there a decision sets the label, as it always did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cleaner.formats.annotations import ANNOTATOR_PREFIX


def annotator_columns(manifest: pd.DataFrame) -> list[str]:
    """The manifest's ``annotator:NAME`` columns, in file order."""
    return [str(c) for c in manifest.columns if str(c).startswith(ANNOTATOR_PREFIX)]


def answer_column(reviewer: str) -> str:
    """The column a reviewer's answers go to."""
    return f"{ANNOTATOR_PREFIX}{reviewer.strip() or 'reviewer'}"


def consensus(others: Sequence[str], answer: str) -> str:
    """The majority of ``others`` (blank: no label) and ``answer``; a tie goes to ``answer``."""
    counts = Counter(str(o) for o in others if str(o))
    counts[answer] += 1
    top = max(counts.values())
    return answer if counts[answer] == top else next(c for c, n in counts.items() if n == top)


def record_answer(
    cols: dict[str, np.ndarray],
    manifest: pd.DataFrame,
    row: int,
    answer: str,
    reviewer: str,
) -> str:
    """Write ``answer`` into the reviewer's column of ``row`` (``cols`` holds the new
    version's columns, the reviewer's added when missing); return the row's new label."""
    column = answer_column(reviewer)
    if column not in cols:
        old = (
            manifest[column] if column in manifest.columns else pd.Series("", index=manifest.index)
        )
        cols[column] = old.fillna("").to_numpy(dtype=object, copy=True)
    others = [cols.get(c, manifest[c].to_numpy())[row] for c in annotator_columns(manifest)]
    others = [o for c, o in zip(annotator_columns(manifest), others, strict=True) if c != column]
    cols[column][row] = answer
    return consensus(others, answer)
