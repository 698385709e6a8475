"""Composite labels: classes that combine attributes (mask x gender x age band, say).

An attribute is a manifest column whose value the class label determines.
Each attribute's probability is the sum of the probabilities of the classes
that carry that value, so a queue row can say *which* attribute looks wrong
and suggest changing only that one. Pure functions over arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SPEC_SEP = "="  # a label change written as ``attribute=value``, e.g. ``gender=female``
SPECS_SEP = ";"  # several at once: ``gender=female;mask=incorrect``


@dataclass(frozen=True)
class AttributeTable:
    names: tuple[str, ...]  # (A,) attribute (column) names
    values: tuple[tuple[str, ...], ...]  # per attribute, its value names, sorted
    codes: np.ndarray  # (K, A) value index of each class per attribute; -1 if never seen

    def labels(self, labels: np.ndarray, a: int) -> np.ndarray:
        """The attribute's value index (N,) of each class label (N,)."""
        return self.codes[labels, a]

    def probs(self, pred_probs: np.ndarray, a: int) -> np.ndarray:
        """(N, V): the summed probability of the classes with each value of attribute ``a``."""
        onehot = np.zeros((len(self.codes), len(self.values[a])))
        seen = self.codes[:, a] >= 0
        onehot[np.flatnonzero(seen), self.codes[seen, a]] = 1.0
        out = np.asarray(pred_probs) @ onehot
        # Classes never seen in training carry no attribute: renormalise without them.
        return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)

    def change(self, labels: np.ndarray, a: int, new_values: np.ndarray) -> np.ndarray:
        """(N,) the class equal to each label but with attribute ``a`` set; -1 if none exists."""
        return self.change_many(labels, [(a, new_values)])

    def change_many(
        self, labels: np.ndarray, changes: Sequence[tuple[int, np.ndarray | int]]
    ) -> np.ndarray:
        """(N,) :meth:`change` for several attributes at once (a class may exist only
        with every change made); -1 where none exists."""
        wanted = self.codes[labels].copy()
        for a, new_values in changes:
            wanted[:, a] = new_values
        lookup = {tuple(row): k for k, row in enumerate(self.codes.tolist()) if min(row) >= 0}
        return np.array([lookup.get(tuple(w), -1) for w in wanted.tolist()], dtype=np.int64)

    def parse_spec(self, spec: str) -> tuple[int, int] | None:
        """``"gender=female"`` -> (attribute, value) indices, or None if it names none."""
        name, sep, value = spec.partition(SPEC_SEP)
        if not sep or name.strip() not in self.names:
            return None
        a = self.names.index(name.strip())
        if value.strip() not in self.values[a]:
            return None
        return a, self.values[a].index(value.strip())

    def parse_specs(self, text: str) -> list[tuple[int, int]] | None:
        """``"gender=female;mask=wear"`` -> [(attribute, value), ...]; None unless every
        part names an attribute value and no attribute twice."""
        specs = [self.parse_spec(part) for part in text.split(SPECS_SEP)]
        if any(x is None for x in specs):
            return None
        out = [x for x in specs if x is not None]
        return out if len({a for a, _ in out}) == len(out) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "values": [list(v) for v in self.values],
            "codes": self.codes.tolist(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttributeTable:
        return cls(
            tuple(data["names"]),
            tuple(tuple(v) for v in data["values"]),
            np.asarray(data["codes"], dtype=np.int64),
        )


def attribute_table(
    labels: np.ndarray, columns: Mapping[str, Sequence[Any] | np.ndarray], n_classes: int
) -> AttributeTable:
    """Learn which value of each attribute column every class carries, from rows (N,).

    Raises ValueError when a class carries two values of one attribute (then the
    column is not an attribute of the label).
    """
    names = tuple(columns)
    values = []
    codes = np.full((n_classes, len(names)), -1, dtype=np.int64)
    for a, name in enumerate(names):
        col = np.asarray(columns[name]).astype(str)
        uniq = tuple(sorted(set(col.tolist())))
        values.append(uniq)
        index = {v: i for i, v in enumerate(uniq)}
        for k in range(n_classes):
            seen = set(col[labels == k].tolist())
            if len(seen) > 1:
                raise ValueError(
                    f"class {k} carries several values of {name!r}: {', '.join(sorted(seen))}"
                )
            if seen:
                codes[k, a] = index[seen.pop()]
    return AttributeTable(names, tuple(values), codes)


def just_under_edge(
    values: np.ndarray, suggested_band: np.ndarray, *, edges: Sequence[float], margin: float
) -> np.ndarray:
    """(N,) bool: the number sits within ``margin`` under the edge into ``suggested_band``.

    Bands are numbered from 0 at the left of ``edges``; a value of 58 with edges
    (30, 60) and margin 3 is band 1, and a suggestion of band 2 is a boundary case.
    """
    values = np.asarray(values, dtype=np.float64)
    band = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    edge_up = np.asarray([*edges, np.inf], dtype=np.float64)[np.minimum(band, len(edges))]
    return (np.asarray(suggested_band) == band + 1) & (values >= edge_up - margin)
