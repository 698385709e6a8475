"""A simulated annotator, for benchmarks and the demo: answers from label columns on file.

Asking a person about a row is simulated by reading labels that other people
already gave: the columns of other annotators in a given order (CIFAR-10N's
``annotator_2``, ``annotator_3``), then, if wanted, a truth column (``cifar_label``).
As in Bernhardt et al. 2022, one ask draws the next column, and keeps drawing while
no class leads the row's labels strictly (the labels it had plus the answers), or
until its columns run out. Options: each row's column order shuffled, and a share
of answers replaced by another class (a noisy oracle from a truth column).

Everything random is drawn once, from ``numpy.random.default_rng(seed)``, when the
annotator is made; asking is then a pure function of the row and of how many of
its answers were already taken, so a resumed or replayed round gets the same
answers. The annotator says what it is: :attr:`SimulatedAnnotator.name` reads
"simulated from annotator_2, annotator_3, cifar_label", and every place that shows
an answer (audit log, report) must show it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MISSING = -1


@dataclass(frozen=True)
class SimulatedAnswer:
    """One simulated label: row ``row`` got class ``label`` from column ``annotator``."""

    row: int
    annotator: str
    label: int


@dataclass(frozen=True, eq=False)
class SimulatedAnnotator:
    """Answers read from label columns, one column per draw. Arrays are read-only.

    ``answers[n, a]`` is the ``a``-th answer row ``n`` would get (class index, ``-1``
    where that column has no label) and ``order[n, a]`` the column it comes from.
    """

    columns: tuple[str, ...]  # (A,) the answer columns, in the given order
    answers: np.ndarray  # (N, A) int, in each row's ask order (shuffled or not), flips applied
    order: np.ndarray  # (N, A) int: index into ``columns`` of each answer
    seed: int
    shuffle: bool = False
    error_rate: float = 0.0
    until_lead: bool = True
    prefix: str = ""  # put before a column's name to name the answer's annotator

    def __post_init__(self) -> None:
        self.answers.flags.writeable = False
        self.order.flags.writeable = False

    @classmethod
    def from_columns(
        cls,
        table: pd.DataFrame | Mapping[str, Sequence[int] | Sequence[str] | np.ndarray],
        columns: Sequence[str],
        *,
        classes: Sequence[str] | None = None,
        seed: int = 0,
        shuffle: bool = False,
        error_rate: float = 0.0,
        until_lead: bool = True,
        prefix: str = "",
    ) -> SimulatedAnnotator:
        """Answers from ``table[column]`` for each of ``columns``, in that order.

        Cells are class indices (``-1`` or NaN: no label) or, with ``classes``, class
        names (empty: no label). ``shuffle`` draws each row's own column order;
        ``error_rate`` replaces that share of answers by a uniformly drawn other class.
        ``until_lead=False`` gives exactly one answer per ask (a reviewer's decision).
        """
        if not columns:
            raise ValueError("give at least one answer column")
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("error_rate must lie in [0, 1]")
        coded = np.stack([_coded(table[c], c, classes) for c in columns], axis=1)
        n, a = coded.shape
        k = len(classes) if classes is not None else int(coded.max(initial=0)) + 1
        rng = np.random.default_rng(seed)
        # Every draw is made whatever the options, so a seed means the same draws for all.
        order = rng.permuted(np.tile(np.arange(a), (n, 1)), axis=1)
        flip = rng.random((n, a)) < error_rate
        other = rng.integers(1, max(k, 2), size=(n, a))
        if not shuffle:
            order = np.tile(np.arange(a), (n, 1))
        answers = np.take_along_axis(coded, order, axis=1)
        flipped = np.where(flip & (answers >= 0), (answers + other) % max(k, 2), answers)
        return cls(
            columns=tuple(columns),
            answers=flipped,
            order=order,
            seed=seed,
            shuffle=shuffle,
            error_rate=error_rate,
            until_lead=until_lead,
            prefix=prefix,
        )

    @property
    def name(self) -> str:
        """What it is, to print wherever its answers appear: "simulated from a, b (...)"."""
        notes = []
        if self.shuffle:
            notes.append("each row's order shuffled")
        if self.error_rate:
            notes.append(f"{self.error_rate:.0%} of answers flipped")
        if self.shuffle or self.error_rate:
            notes.append(f"seed {self.seed}")
        extra = f" ({', '.join(notes)})" if notes else ""
        return f"simulated from {', '.join(self.columns)}{extra}"

    source = name

    def remaining(self, taken: np.ndarray) -> np.ndarray:
        """(N,) int: answers each row still has, after ``taken`` (N,) were given."""
        available = (self.answers >= 0).sum(axis=1)
        return np.maximum(available - np.asarray(taken), 0)

    def taken(self, labels_multiannotator: np.ndarray, annotators: Sequence[str]) -> np.ndarray:
        """(N,) int: how many of each row's labels came from this annotator's columns,
        read from a label matrix (N, M) and its annotator names (M,)."""
        mine = [j for j, who in enumerate(annotators) if who in self._names()]
        labels = np.asarray(labels_multiannotator, dtype=np.float64)[:, mine]
        return (~np.isnan(labels) & (labels >= 0)).sum(axis=1)

    def _names(self) -> set[str]:
        return {self.prefix + c for c in self.columns}

    def ask(
        self, rows: Sequence[int] | np.ndarray, *, label_counts: np.ndarray, taken: np.ndarray
    ) -> list[SimulatedAnswer]:
        """The answers to one ask about each of ``rows``, in row order.

        ``label_counts`` (N, K) are the labels each row has now and ``taken`` (N,) how
        many answers this annotator already gave it (:meth:`taken`). Each row gets its
        next answer, then more while no class leads strictly (with ``until_lead``),
        until its columns run out; a row with none left gets no answer.
        """
        counts_all = np.asarray(label_counts)
        done = np.asarray(taken)
        out: list[SimulatedAnswer] = []
        for row in np.asarray(rows, dtype=np.int64).tolist():
            counts = counts_all[row].astype(np.int64).copy()
            given = [(a, k) for a, k in enumerate(self.answers[row].tolist()) if k >= 0]
            for a, k in given[int(done[row]) :]:
                column = self.columns[int(self.order[row, a])]
                out.append(SimulatedAnswer(row, self.prefix + column, int(k)))
                if k >= len(counts):
                    counts = np.pad(counts, (0, k + 1 - len(counts)))
                counts[k] += 1
                if not self.until_lead or _leads(counts):
                    break
        return out


def _leads(counts: np.ndarray) -> bool:
    """Whether one class has strictly more labels than every other."""
    top = np.sort(counts)[::-1]
    return bool(top[0] > (top[1] if len(top) > 1 else 0))


def _coded(
    values: pd.Series | Sequence[int] | Sequence[str] | np.ndarray,
    column: str,
    classes: Sequence[str] | None,
) -> np.ndarray:
    """(N,) int class indices of a column, ``-1`` where it has no label."""
    series = pd.Series(values).reset_index(drop=True)
    if not pd.api.types.is_numeric_dtype(series):
        if classes is None:
            raise ValueError(f"column {column!r} holds class names: give the classes")
        index = {c: k for k, c in enumerate(classes)}
        text = series.fillna("").astype(str).str.strip()
        unknown = sorted(set(text[(text != "") & ~text.isin(index)]))
        if unknown:
            raise ValueError(f"column {column!r}: labels not among the classes: {unknown[:5]}")
        return np.array([index.get(t, MISSING) for t in text], dtype=np.int64)
    numbers = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    if classes is not None and (numbers >= len(classes)).any():
        raise ValueError(f"column {column!r}: class indices not below {len(classes)}")
    return np.where(np.isnan(numbers) | (numbers < 0), MISSING, numbers).astype(np.int64)
