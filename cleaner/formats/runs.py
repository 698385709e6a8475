"""A run's out-of-fold probabilities read strictly, as a :class:`Run`.

Where later steps (``flag``, ``retrain``) meet a run:

- :func:`load_run` reads a run folder: it refuses a run without ``oof.csv`` or without
  its completion record (``metrics.json``, written last), one whose
  manifest changed since (sha256), rows that do not match the manifest or
  ``folds.csv``, and probabilities that are not probability vectors;
- :func:`load_probs` reads probabilities made outside ``cleaner`` (the same
  layout, ``fold`` and ``pred`` optional) against a manifest, with the same checks,
  and :func:`scored_run` checks such probabilities given as arrays;
- :func:`mean_probs` is an ensemble's mean, as ``flag RUN1 RUN2`` ranks by it.

The table layout and its writer are :mod:`cleaner.formats.prob_table`'s; the lenient
readers and ensemble folders are :mod:`cleaner.formats.scores`'. Their entry points
``oof_table``, ``write_table``, ``read_scores``, ``read_ensemble_scores``,
``expand_runs`` and ``ensemble_text`` are importable from here too (the redundant
``as`` imports below), where the CLI, the API, ``oof``, ``retrain`` and ``report``
import them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.core.config import PipelineConfig
from cleaner.core.errors import InputError, Problem
from cleaner.formats.embeddings import Embeddings, read_embeddings
from cleaner.formats.manifest import (
    check_classes,
    id_matcher,
    line_of,
    read_manifest,
    sha256_file,
)
from cleaner.formats.prob_table import (
    OOF_COLUMNS,
    PROB_PREFIX,
    bad_probability_rows,
    read_header,
    read_prob_table,
)
from cleaner.formats.run_files import RunFiles
from cleaner.formats.run_records import read_manifest_record, require_finished


@dataclass(frozen=True)
class Run:
    run_dir: Path
    cfg: PipelineConfig
    manifest_path: Path
    manifest_sha: str
    sample_ids: np.ndarray  # (N,) train rows, in manifest order
    labels: np.ndarray  # (N,) class index of the given label
    pred_probs: np.ndarray  # (N, K) out-of-fold probabilities
    embeddings: Embeddings | None  # every row in one feature space, when the run has them
    unlabeled_ids: np.ndarray  # (U,) unlabeled rows, when the run predicted them
    unlabeled_probs: np.ndarray  # (U, K), averaged over the fold models
    # An older run's fold-local ``embeddings.npy`` (K feature spaces): not used.
    legacy_embeddings: bool = False
    probs_file: Path | None = None  # set when the probabilities came from ``--probs``

    @property
    def classes(self) -> tuple[str, ...]:
        return self.cfg.data.classes


def _folds_problems(table: pd.DataFrame, folds_csv: Path, path: Path) -> list[Problem]:
    """Rows of ``oof.csv`` that are not the run's ``folds.csv``: ids in its order, same folds."""
    if not folds_csv.is_file():
        return [Problem(str(folds_csv), "not found: the run folder is incomplete")]
    folds = pd.read_csv(folds_csv, dtype=str, keep_default_na=False)
    if list(folds.columns) != ["sample_id", "fold"]:
        return [Problem(str(folds_csv), "expected the columns sample_id, fold", 1)]
    if len(folds) != len(table):
        return [Problem(str(path), f"{len(table)} rows, but {folds_csv} has {len(folds)}")]
    ids, want = table["sample_id"].to_numpy(), folds["sample_id"].to_numpy()
    fold = table["fold"].astype(str).to_numpy()
    problems = []
    for i in np.flatnonzero((ids != want) | (fold != folds["fold"].to_numpy())):
        problems.append(
            Problem(
                str(path),
                f"row {ids[i]!r} in fold {fold[i]} is not {folds_csv}'s {want[i]!r} in fold "
                f"{folds['fold'].iloc[i]} (rows keep the order and folds of the split)",
                line_of(int(i)),
            )
        )
    return problems


def load_run(run_dir: str | Path) -> Run:
    """Read and check a run folder made by ``cleaner oof``."""
    run_dir = Path(run_dir)
    require_finished(run_dir)
    files = RunFiles(run_dir)
    oof_csv = files.oof
    cfg = files.read_config()
    recorded, manifest = read_manifest_record(run_dir)
    if not manifest.is_file() and Path(cfg.data.manifest).is_file():
        # A run folder copied away from its project: the config's path, from here.
        manifest = Path(cfg.data.manifest)
    if not manifest.is_file():
        raise InputError(
            [
                Problem(
                    str(manifest),
                    f"manifest of run {run_dir} not found "
                    f"({files.manifest_record.name} names it relative to the run folder)",
                )
            ]
        )
    current = sha256_file(manifest)
    if current != recorded:
        raise InputError(
            [
                Problem(
                    str(oof_csv),
                    f"made from manifest sha256 {recorded[:12]}..., "
                    f"but {manifest} is now {current[:12]}...: the manifest changed "
                    "since this run; run `cleaner oof` on it again",
                )
            ]
        )
    classes = cfg.data.classes
    table, pred_probs = read_prob_table(oof_csv, classes, OOF_COLUMNS)
    df = read_manifest(manifest)
    train = df[df["split"] == "train"]
    given = dict(zip(train["sample_id"], train["label"].str.strip(), strict=True))
    problems = manifest_problems(table, given, oof_csv, manifest)
    problems += _folds_problems(table, files.folds, oof_csv)
    if problems:
        raise InputError(problems)
    index = {c: i for i, c in enumerate(classes)}
    embeddings = None
    if files.embeddings.exists():
        embeddings = checked_embeddings(files.embeddings, table["sample_id"].to_numpy())
    u_ids, u_probs = np.array([], dtype=object), np.zeros((0, len(classes)))
    if files.unlabeled.exists():
        u, u_probs = read_prob_table(files.unlabeled, classes, ("sample_id", "pred"))
        u_ids = u["sample_id"].to_numpy()
    return Run(
        run_dir=run_dir,
        cfg=cfg,
        manifest_path=manifest,
        manifest_sha=current,
        sample_ids=table["sample_id"].to_numpy(),
        labels=table["label"].map(index).to_numpy(np.int64),
        pred_probs=pred_probs,
        embeddings=embeddings,
        unlabeled_ids=u_ids,
        unlabeled_probs=u_probs,
        legacy_embeddings=embeddings is None and files.legacy_embeddings.exists(),
    )


def checked_embeddings(
    path: Path, train_ids: np.ndarray, split_of: pd.Series | None = None
) -> Embeddings:
    """``embeddings.npz``, refused unless its train rows are exactly ``train_ids`` (N,).

    ``split_of`` (the manifest's split by sample_id) replaces the file's own
    ``split``, for a file made outside ``cleaner``.
    """
    emb = read_embeddings(path)
    if len(set(emb.sample_ids)) != len(emb.sample_ids):
        raise InputError([Problem(str(path), "a sample_id appears twice")])
    if split_of is not None:
        split = split_of.reindex(emb.sample_ids)
        if split.isna().any():
            stray = emb.sample_ids[split.isna().to_numpy()]
            raise InputError(
                [Problem(str(path), f"{len(stray)} rows not in the manifest, e.g. {stray[0]!r}")]
            )
        emb = dataclasses.replace(emb, split=split.to_numpy().astype(str))
    ids = emb.sample_ids[emb.split == "train"]
    if set(ids) != set(np.asarray(train_ids, dtype=str)):
        raise InputError(
            [
                Problem(
                    str(path),
                    f"its {len(ids)} train rows are not the {len(train_ids)} rows "
                    "of the probabilities",
                )
            ]
        )
    return emb


def manifest_problems(
    table: pd.DataFrame,
    given: dict[str, str],
    path: Path | str,
    manifest: Path,
    at: Callable[[int], tuple[str, int | None]] | None = None,
) -> list[Problem]:
    """Rows of a probability table that are not the manifest's train rows with their labels:
    an id twice, an id that is not a train row, a label that is not the manifest's, rows
    missing. ``at(i)`` names row ``i`` as (file, line); default ``path`` and its line.
    """
    where = at or (lambda i: (str(path), line_of(i)))

    def problem(i: int, reason: str) -> Problem:
        file, line = where(i)
        return Problem(file, reason, line)

    ids = table["sample_id"].to_numpy()
    dup = table["sample_id"].duplicated().to_numpy()
    problems = [problem(int(i), f"sample_id {ids[i]!r} appears twice") for i in np.flatnonzero(dup)]
    for i, (sid, label) in enumerate(zip(ids, table["label"], strict=True)):
        if sid not in given:
            problems.append(problem(i, f"sample_id {sid!r} is not a train row of {manifest}"))
        elif given[sid] != label:
            problems.append(
                problem(i, f"label {label!r} of {sid!r} is not the manifest's {given[sid]!r}")
            )
    missing = sorted(set(given) - set(ids))
    if missing:
        problems.append(
            Problem(
                str(path),
                f"{len(missing)} train rows of {manifest} have no probabilities, e.g. "
                + ", ".join(repr(m) for m in missing[:3]),
            )
        )
    return problems


def load_probs(
    probs_csv: str | Path,
    manifest: str | Path,
    cfg: PipelineConfig,
    *,
    embeddings: str | Path | None = None,
) -> Run:
    """Out-of-fold probabilities made outside ``cleaner``, checked against ``manifest``.

    ``probs_csv`` has the ``oof.csv`` layout (``sample_id, [fold,] label, [pred,]
    p:CLASS...``); its ``p:`` columns give the classes and their order. Every
    train row of the manifest must appear once, with the manifest's label
    (:func:`scored_run`'s checks). ``cfg`` supplies ``flag.*`` and ``data.group``;
    ``data.classes`` is filled in.
    """
    probs_csv, manifest = Path(probs_csv), Path(manifest)
    if not probs_csv.is_file():
        raise InputError([Problem(str(probs_csv), "probability file not found")])
    if not manifest.is_file():
        raise InputError([Problem(str(manifest), "manifest not found")])
    header = read_header(probs_csv)
    classes = tuple(c[len(PROB_PREFIX) :] for c in header if c.startswith(PROB_PREFIX))
    first = tuple(c for c in header if not c.startswith(PROB_PREFIX))
    allowed = [c for c in OOF_COLUMNS if c in first]
    if not classes or "sample_id" not in first or "label" not in first or list(first) != allowed:
        raise InputError(
            [
                Problem(
                    str(probs_csv),
                    "expected columns sample_id, [fold,] label, [pred,] then one p:CLASS "
                    f"column per class; found {', '.join(header)}",
                    1,
                )
            ]
        )
    cfg = cfg.replace("data", manifest=str(manifest), classes=classes)
    table, pred_probs = read_prob_table(probs_csv, classes, first)
    df = read_manifest(manifest)
    run = scored_run(
        df,
        table["sample_id"].to_numpy(),
        table["label"].to_numpy(),
        pred_probs,
        cfg=cfg,
        manifest=manifest,
        file=str(probs_csv),
    )
    emb = None
    if embeddings is not None:
        split_of = pd.Series(df["split"].to_numpy(), index=df["sample_id"].to_numpy())
        emb = checked_embeddings(Path(embeddings), run.sample_ids, split_of)
    return dataclasses.replace(run, run_dir=probs_csv.parent, embeddings=emb, probs_file=probs_csv)


def scored_run(
    df: pd.DataFrame,
    sample_ids: Sequence[str] | np.ndarray,
    labels: Sequence[str] | np.ndarray,
    pred_probs: np.ndarray,
    *,
    cfg: PipelineConfig,
    manifest: Path,
    file: str,
    at: Callable[[int], tuple[str, int | None]] | None = None,
) -> Run:
    """Probabilities made outside ``cleaner`` as a :class:`Run`, checked: the one validator
    of ``flag --probs`` and of :func:`cleaner.api.find_label_issues`.

    ``sample_ids`` (N,) name the rows of ``pred_probs`` (N, K) by the id rule
    (:func:`cleaner.formats.manifest.id_key`), ``labels`` (N,) their given class names,
    ``cfg.data.classes`` the K columns. Refused, every problem listed: rows that
    are not probability vectors (NaN, negative, not summing to 1), an id twice or
    not a train row of ``df``, a label that is not the manifest's, train rows
    without probabilities, a manifest label with no column. ``at(i)`` names row
    ``i`` as (file, line); default ``file`` and its line. Rows come back in
    manifest order, as a run folder's ``oof.csv`` has them.
    """

    classes = cfg.data.classes
    check_classes(df, classes, manifest)
    group = cfg.data.group
    if group and group not in df.columns:
        raise InputError(
            [Problem(str(manifest), f"data.group: column {group!r} not found in the manifest", 1)]
        )
    where = at or (lambda i: (file, line_of(i)))
    problems = [
        Problem(where(i)[0], reason, where(i)[1]) for i, reason in bad_probability_rows(pred_probs)
    ]
    # The id rule of every reader: an id written with other spaces or Unicode form is the
    # manifest's; two rows that reach one id are then "appears twice".
    match = id_matcher(df["sample_id"])
    ids = np.array([match(str(s)) or str(s) for s in sample_ids], dtype=object)
    table = pd.DataFrame({"sample_id": ids, "label": np.asarray(labels, dtype=object)})
    train = df[df["split"] == "train"]
    given = dict(zip(train["sample_id"], train["label"].str.strip(), strict=True))
    problems += manifest_problems(table, given, file, manifest, at)
    unknown = sorted(set(given.values()) - set(classes))
    if unknown:
        problems.append(
            Problem(file, "no p: column for class(es) " + ", ".join(map(repr, unknown)))
        )
    if problems:
        raise InputError(problems)
    order = pd.Index(ids).get_indexer(train["sample_id"])  # manifest order
    index = {c: i for i, c in enumerate(classes)}
    return Run(
        run_dir=manifest.parent,
        cfg=cfg,
        manifest_path=manifest,
        manifest_sha=sha256_file(manifest) if manifest.is_file() else "",
        sample_ids=ids[order],
        labels=table["label"].map(index).to_numpy(np.int64)[order],
        pred_probs=np.asarray(pred_probs, dtype=np.float64)[order],
        embeddings=None,
        unlabeled_ids=np.array([], dtype=object),
        unlabeled_probs=np.zeros((0, len(classes))),
    )


def mean_probs(runs: Sequence[Run], *, unlabeled: bool = False) -> np.ndarray:
    """An ensemble's probabilities: the mean over runs of one manifest version, rows in
    manifest order (``unlabeled``: of the unlabeled rows, averaged over fold models)."""
    return np.mean([r.unlabeled_probs if unlabeled else r.pred_probs for r in runs], axis=0)
