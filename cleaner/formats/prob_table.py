"""The probability tables of a run folder: ``oof.csv``, ``unlabeled.csv``, ``predictions.csv``.

One home for the layout (``sample_id``, the leading columns, then one ``p:CLASS``
column per class in the pipeline's order), with its writer and its readers:

- :func:`oof_table` and :func:`write_table` write it (``oof`` at the merge, ``retrain``);
- :func:`read_prob_table` is the strict reader the run readers share (every row a
  probability vector, the columns the run's classes), :func:`read_header` its header
  check;
- :func:`read_prob_columns` is the forgiving one of the review page: a few
  rows' probabilities, a warning instead of an error.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.core.atomic import atomic_path
from cleaner.core.errors import InputError, Problem, not_utf8
from cleaner.formats.manifest import line_of

OOF_COLUMNS = ("sample_id", "fold", "label", "pred")
PROB_PREFIX = "p:"  # oof.csv names its probability columns p:CLASS


def oof_table(
    sample_ids: np.ndarray,
    folds: np.ndarray,
    labels: np.ndarray,
    pred_probs: np.ndarray,
    classes: Sequence[str],
) -> pd.DataFrame:
    """``sample_id, fold, label, pred, p:CLASS...`` with labels as class names."""
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame(
        {
            "sample_id": sample_ids,
            "fold": folds,
            "label": names[labels],
            "pred": names[pred_probs.argmax(1)],
        }
    )
    probs = pd.DataFrame(pred_probs, columns=[f"{PROB_PREFIX}{c}" for c in classes])
    return pd.concat([table, probs], axis=1)


def write_table(path: Path, table: pd.DataFrame, *, overwrite: bool = False) -> None:
    """Write a probability table (``oof.csv``, ``unlabeled.csv``, ``predictions.csv``):
    8 significant digits, atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        table.to_csv(tmp, index=False, float_format="%.8g")


def read_prob_table(
    path: Path, classes: tuple[str, ...], first: tuple[str, ...]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The leading columns of a probability table, and its probabilities (N, K), checked."""
    header = read_header(path)
    try:
        # As text: numbers are parsed below, where a cell too large for a float is NaN
        # (refused) rather than an OverflowError.
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        raise InputError([not_utf8(path)]) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError([Problem(str(path), f"not a readable CSV: {e}")]) from None
    if len(table.columns) != len(header):
        raise InputError([Problem(str(path), "rows have more cells than the header", 1)])
    expected = [*first, *(f"{PROB_PREFIX}{c}" for c in classes)]
    if list(table.columns) != expected:
        raise InputError(
            [
                Problem(
                    str(path),
                    f"columns do not match the run's classes: expected {', '.join(expected)}",
                    1,
                )
            ]
        )
    probs = table[expected[len(first) :]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)

    bad = bad_probability_rows(probs)
    if bad:
        raise InputError([Problem(str(path), reason, line_of(i)) for i, reason in bad])
    return table[list(first)], probs


def read_header(path: Path) -> list[str]:
    """The column names of a probability table as written, refused when empty, not UTF-8,
    or holding a name twice (pandas would quietly rename the second ``p:0`` to ``p:0.1``)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f), None)
    except UnicodeDecodeError:
        raise InputError([not_utf8(path)]) from None
    except csv.Error as e:
        raise InputError([Problem(str(path), f"not a readable CSV: {e}", 1)]) from None
    if not header:
        raise InputError([Problem(str(path), "empty file: no header line", 1)])
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        names = ", ".join(map(repr, twice))
        raise InputError([Problem(str(path), f"column(s) {names} appear more than once", 1)])
    return header


def read_prob_columns(
    path: Path, classes: Sequence[str], wanted: set[str]
) -> tuple[dict[str, np.ndarray], str | None]:
    """``sample_id -> (K,)`` for the wanted ids of an oof.csv / unlabeled.csv, or a warning.

    The forgiving reader, for showing probabilities beside a queue: a file that
    cannot be read, lacks a column or has a bad cell costs those rows their
    probabilities, with a warning, never the page. Only the needed columns are
    parsed: a queue names a few hundred rows of a table that may hold a million.
    """
    cols = ["sample_id", *(f"{PROB_PREFIX}{c}" for c in classes)]
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        missing = [c for c in cols if c not in header]
        if missing:
            return {}, f"{path}: no column(s) {', '.join(missing[:3])}: no model probabilities"
        table = pd.read_csv(path, usecols=cols, dtype={"sample_id": str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        return {}, f"{path}: not readable ({e}): no model probabilities from it"
    table = table[table["sample_id"].isin(wanted)]
    probs = table[cols[1:]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(probs).all(axis=1)
    return dict(zip(table["sample_id"][ok], probs[ok], strict=True)), None


def bad_probability_rows(pred_probs: np.ndarray, *, atol: float = 1e-3) -> list[tuple[int, str]]:
    """Rows of ``pred_probs`` (N, K) that are not probability vectors, with the reason."""
    p = np.asarray(pred_probs, dtype=np.float64)
    finite = np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0)
    nan = np.asarray(~np.isfinite(p).all(axis=1))
    neg = np.asarray((finite < 0).any(axis=1))
    off = np.asarray(np.abs(finite.sum(axis=1) - 1.0) > atol)
    out = []
    for i in np.flatnonzero(nan | neg | off):
        if nan[i]:
            out.append((int(i), "probability is NaN or infinite"))
        elif neg[i]:
            out.append((int(i), "negative probability"))
        else:
            out.append((int(i), f"probabilities sum to {p[i].sum():.6g}, not 1"))
    return out
