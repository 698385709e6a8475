"""The run folder's tables: ``oof.csv`` (and ``unlabeled.csv``) written and read back.

One home for the format, with a reader for each use:

- :func:`oof_table` and :func:`write_table` write it (``oof`` at the merge);
- :func:`load_run` is the strict reader, where later steps (``flag``,
  ``retrain``) meet a run: it refuses a run without ``oof.csv`` or without
  its completion record (``metrics.json``, written last), one whose
  manifest changed since (sha256), rows that do not match the manifest or
  ``folds.csv``, and probabilities that are not probability vectors;
  :func:`load_probs` reads probabilities made outside ``cleaner`` (the same
  layout, ``fold`` and ``pred`` optional) against a manifest, with the same checks;
- :func:`read_scores` and :func:`read_ensemble_scores` are the lenient readers
  of ``retrain --reweight``, which scores an earlier manifest version: rows are
  matched by id and the manifest's hash is not asked for;
- :func:`read_prob_columns` is the forgiving one of the review page: a few
  rows' probabilities, a warning instead of an error;
- :func:`mean_probs` is an ensemble's mean, as ``flag RUN1 RUN2`` ranks by it;
  :func:`expand_runs` replaces an ensemble folder (``oof --repeats``, its
  ``ensemble.json``) by its member runs wherever runs are given.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.core.atomic import atomic_path
from cleaner.core.config import PipelineConfig
from cleaner.core.errors import InputError, Problem, not_utf8
from cleaner.formats.embeddings import Embeddings, read_embeddings
from cleaner.formats.manifest import (
    check_classes,
    check_ids,
    id_matcher,
    line_of,
    read_manifest,
    sha256_file,
)
from cleaner.formats.run_files import RunFiles

OOF_COLUMNS = ("sample_id", "fold", "label", "pred")
PROB_PREFIX = "p:"  # oof.csv names its probability columns p:CLASS


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


def _prob_table(
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
    from cleaner.ranking.flag import bad_probability_rows  # cleanlab loads only where ranking does

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


def manifest_record(sha: str, manifest: Path, run_dir: Path) -> str:
    """``manifest.sha256``'s text: the sha256 and the manifest's path relative to the run
    folder, so that a project moved or copied as a whole keeps its runs readable."""
    try:
        stored = os.path.relpath(manifest.resolve(), run_dir.resolve())
    except ValueError:  # another drive (Windows): no relative path exists
        stored = str(manifest.resolve())
    return f"{sha}  {Path(stored).as_posix()}\n"


def read_manifest_record(run_dir: Path) -> tuple[str, Path]:
    """The sha256 and path ``manifest.sha256`` records. The path is relative to the run
    folder; older runs stored it relative to the working directory, the fallback."""
    path = RunFiles(run_dir).manifest_record
    if not path.is_file():
        raise InputError([Problem(str(path), "not found: the run folder is incomplete")])
    sha, _, stored = path.read_text().rstrip("\n").partition("  ")
    beside = Path(os.path.normpath(run_dir / stored))
    if not stored or beside.exists() or not Path(stored).exists():
        return sha.strip(), beside
    return sha.strip(), Path(stored)


def _require_finished(run_dir: Path) -> None:
    """Refuse what is not a finished run folder: missing, an ensemble, unfinished."""
    files = RunFiles(run_dir)
    if not run_dir.is_dir():
        raise InputError([Problem(str(run_dir), "run folder not found")])
    if not files.oof.exists() and files.ensemble.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    "an ensemble folder (oof --repeats), not one run: give it to flag or "
                    "retrain --oof, which read its members, or name a member (repeat-K)",
                )
            ]
        )
    if not files.oof.exists() and files.train_weights.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    "a retrain folder (its final model and report), not an oof run: flag "
                    "reads the out-of-fold probabilities `cleaner oof` writes; for the next "
                    "round, run `cleaner oof PIPELINE --set data.manifest=NEWEST_VERSION "
                    "--out runs/NAME` and flag that folder",
                )
            ]
        )
    if not files.oof.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    f"no {files.oof.name}: the run is not finished; "
                    "run `cleaner oof` with the same arguments to finish it",
                )
            ]
        )
    _require_complete(run_dir)


def _require_complete(run_dir: Path) -> None:
    """Refuse a run whose merge stopped before its last file, the completion record
    (``metrics.json``, written last)."""
    record = RunFiles(run_dir).metrics
    if not record.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    f"no {record.name}: the run is not finished (its merge stopped "
                    "before the last file); run `cleaner oof` with the same arguments to "
                    "finish it",
                )
            ]
        )


def load_run(run_dir: str | Path) -> Run:
    """Read and check a run folder made by ``cleaner oof``."""
    run_dir = Path(run_dir)
    _require_finished(run_dir)
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
    table, pred_probs = _prob_table(oof_csv, classes, OOF_COLUMNS)
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
        u, u_probs = _prob_table(files.unlabeled, classes, ("sample_id", "pred"))
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
    table, pred_probs = _prob_table(probs_csv, classes, first)
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
    from cleaner.ranking.flag import bad_probability_rows  # cleanlab loads only where ranking does

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


@dataclass(frozen=True)
class Scores:
    """What a run scored, read leniently: its rows, their labels and probabilities."""

    sample_ids: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) class index of the label the run scored (-1: not a class)
    probs: np.ndarray  # (N, K)


def read_scores(run_or_file: Path) -> Scores:
    """An oof run's scores, whatever manifest version it was made on.

    Reweighting reads the run that scored the *previous* version: rows are
    matched by ``sample_id``, so the manifest's sha256 need not match (the
    strict reader is :func:`load_run`). ``run_or_file`` may also be a
    probability file in the ``oof.csv`` layout (``--probs``).
    """
    path = Path(run_or_file)
    oof_csv = path if path.is_file() else RunFiles(path).oof
    if not oof_csv.exists():
        raise InputError([Problem(str(path), f"no {oof_csv.name}: not a finished oof run")])
    if not path.is_file() and RunFiles(path).folds.exists():
        _require_complete(path)  # a folder `cleaner oof` made (one with only oof.csv is taken)
    header = read_header(oof_csv)  # refuses a file that is not UTF-8 or repeats a column
    cols = [c for c in header if c.startswith(PROB_PREFIX)]
    if "sample_id" not in header or "label" not in header or not cols:
        raise InputError(
            [Problem(str(oof_csv), "expected the columns sample_id, label and p:CLASS...", 1)]
        )
    classes = [c[len(PROB_PREFIX) :] for c in cols]
    # _prob_table's reading and checks (probability vectors), for the columns read here.
    table, probs = _prob_table(oof_csv, tuple(classes), tuple(c for c in header if c not in cols))
    check_ids(table["sample_id"], str(oof_csv))  # rows are matched by id: one row per id
    return Scores(
        sample_ids=table["sample_id"].to_numpy(),
        labels=pd.Index(classes).get_indexer(pd.Index(table["label"])),
        probs=probs,
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
