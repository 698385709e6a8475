"""What earlier runs scored, read leniently, and ensembles of runs (``ensemble.json``).

- :func:`read_scores` and :func:`read_ensemble_scores` are the lenient readers
  of ``retrain --reweight``, which scores an earlier manifest version: rows are
  matched by id and the manifest's hash is not asked for (the strict reader is
  :func:`cleaner.formats.runs.load_run`);
- :func:`ensemble_text` writes an ensemble folder's record (``oof --repeats``), and
  :func:`expand_runs` replaces an ensemble folder by its member runs wherever runs
  are given.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.core.errors import InputError, Problem
from cleaner.formats.manifest import check_ids
from cleaner.formats.prob_table import PROB_PREFIX, read_header, read_prob_table
from cleaner.formats.run_files import RunFiles
from cleaner.formats.run_records import require_complete


@dataclass(frozen=True)
class Scores:
    """What a run scored, read leniently: its rows, their labels and probabilities."""

    sample_ids: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) class index of the label the run scored (-1: not a class)
    probs: np.ndarray  # (N, K)
    classes: tuple[str, ...] = ()  # the probability columns' classes, in order


def read_scores(run_or_file: Path) -> Scores:
    """An oof run's scores, whatever manifest version it was made on.

    Reweighting reads the run that scored the *previous* version: rows are
    matched by ``sample_id``, so the manifest's sha256 need not match (the
    strict reader is :func:`cleaner.formats.runs.load_run`). ``run_or_file`` may also be a
    probability file in the ``oof.csv`` layout (``--probs``).
    """
    path = Path(run_or_file)
    oof_csv = path if path.is_file() else RunFiles(path).oof
    if not oof_csv.exists():
        raise InputError([Problem(str(path), f"no {oof_csv.name}: not a finished oof run")])
    if not path.is_file() and RunFiles(path).folds.exists():
        require_complete(path)  # a folder `cleaner oof` made (one with only oof.csv is taken)
    header = read_header(oof_csv)  # refuses a file that is not UTF-8 or repeats a column
    cols = [c for c in header if c.startswith(PROB_PREFIX)]
    if "sample_id" not in header or "label" not in header or not cols:
        raise InputError(
            [Problem(str(oof_csv), "expected the columns sample_id, label and p:CLASS...", 1)]
        )
    classes = [c[len(PROB_PREFIX) :] for c in cols]
    # read_prob_table's reading and checks (probability vectors), for the columns read here.
    table, probs = read_prob_table(
        oof_csv, tuple(classes), tuple(c for c in header if c not in cols)
    )
    check_ids(table["sample_id"], str(oof_csv))  # rows are matched by id: one row per id
    return Scores(
        sample_ids=table["sample_id"].to_numpy(),
        labels=pd.Index(classes).get_indexer(pd.Index(table["label"])),
        probs=probs,
        classes=tuple(classes),
    )


def read_ensemble_scores(paths: Sequence[str | Path]) -> Scores:
    """Several runs of one manifest version as one: their mean probabilities
    (an ensemble folder counts as its members).

    The ensemble ``flag RUN1 RUN2 ...`` ranks by; the runs must score the same
    rows with the same labels (oof runs of one version with other seeds or models).
    """
    paths = expand_runs(paths)
    scores = [read_scores(p) for p in paths]
    first, aligned = scores[0], [scores[0].probs]
    for path, other in zip(paths[1:], scores[1:], strict=True):
        position = pd.Index(other.sample_ids).get_indexer(first.sample_ids)
        if (position < 0).any() or len(position) != len(other.sample_ids):
            raise InputError(
                [Problem(str(path), f"scores other rows than {paths[0]}: not the same version")]
            )
        if (other.labels[position] != first.labels).any():
            raise InputError(
                [Problem(str(path), f"scored other labels than {paths[0]}: not the same version")]
            )
        aligned.append(other.probs[position])
    return dataclasses.replace(first, probs=np.mean(aligned, axis=0))


def ensemble_text(members: Sequence[str], seeds: Sequence[int]) -> str:
    """``ensemble.json``: the member run folders (relative to it) and their ``train.seed``."""
    return json.dumps({"members": list(members), "seeds": list(seeds)}, indent=2) + "\n"


def ensemble_members(path: Path) -> list[Path] | None:
    """The member runs of an ensemble folder, or None when ``path`` is not one."""
    record = RunFiles(Path(path)).ensemble
    if not record.is_file():
        return None
    try:
        members = json.loads(record.read_text(encoding="utf-8"))["members"]
        if not members or not all(isinstance(m, str) for m in members):
            raise ValueError("no member runs")
    except (ValueError, KeyError, TypeError) as e:
        raise InputError([Problem(str(record), f"not an ensemble record ({e})")]) from None
    # Members are named relative to the ensemble folder, which may have moved.
    return [Path(path) / m for m in members]


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """``paths`` with every ensemble folder replaced by its member runs, in order."""
    out: list[Path] = []
    for path in paths:
        members = ensemble_members(Path(path))
        out.extend(members if members is not None else [Path(path)])
    return out
