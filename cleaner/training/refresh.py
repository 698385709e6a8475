"""A cheap model refresh between cleaning rounds: each fold model fine-tuned on the new labels.

After a round of review (``cleaner apply`` wrote ``NAME.v2.csv``), most labels are
as they were. Instead of K models from scratch (``cleaner oof``), a refresh takes
a finished run's ``fold-K/model.pt`` and fine-tunes each for a few epochs
(``epochs``, default 2) on the rows of the *other* folds of the same split, with
the new manifest's labels and weights, then predicts its own fold's rows. The
same ``folds.csv`` (restricted to the rows that still train) keeps out-of-fold
out of fold: fold K's model, before and after the refresh, never saw a row of
fold K. A row that trains now but was never a train row of the run (a round
labelled an unlabeled row) joins a fold, its group's or the one with fewest rows of
its class; no fold model ever trained on it, so it too is predicted out of fold.
The result is an ordinary run folder that ``flag``, ``retrain --oof``
and the rounds read like any other.

**Learning rate.** The fine-tune starts at ``lr_factor`` x ``train.lr`` (default
0.3, :data:`LR_FACTOR`) and decays by a cosine without warmup to
``train.min_lr_ratio`` of that, with a fresh optimizer. The fold models ended
their schedule at ``min_lr_ratio`` x ``lr`` (0.01 x by default), converged on the
old labels, wrong ones memorised. At that final lr two epochs hardly move the
weights: the corrected labels are not learned (no better than no refresh). The
full lr without warmup is a warm restart (SGDR) of a converged model with fresh
optimizer moments, the riskiest start for a pretrained backbone. Measured on
sklearn's digits (30% noise, 15-epoch fold models, the 150 top-ranked labels
corrected, 3 noise seeds), the average precision of the labels still wrong was
0.918 without refresh, 0.950 at x 0.1, 0.956 at x 0.3, 0.961 at x 1 and 0.968 for
``oof`` from scratch (about 9x the time); accuracy against the true labels was
best at x 0.3. Decaying it lets the weights settle as the original schedule did.
Every other key of the recipe (loss, batch size, augmentation, EMA, mixup,
``select``, ``prune_at``) is the pipeline's.

**Embeddings.** ``flag`` wants ``embeddings.npz``: every row of the manifest in one
feature space, its train rows exactly those of ``oof.csv``. When every row the
new manifest embeds (train, test, unlabeled) is in the source run's file with
the same image bytes (sha256), those rows are copied: the images did not change,
so neither do their features, and a new embedding model would cost a fit on
every train row at the full schedule, several times the refresh itself. The
copied space was learned with the old labels (or is a pretrained backbone's,
blind to labels), which is what outliers and near duplicates need: one space for
all rows. Otherwise (an image changed or a row was added, or the source run has
no embeddings) the rows are embedded afresh by ``oof``'s own step
(:func:`cleaner.training.embed.embed_run`).

**What a refresh refuses.** A train row that was not a train row of the source run
(a new image, or an unlabeled row now labeled) has no fold and no model that
held it out: it is named, and the way on is ``cleaner oof`` on the new manifest.
Rows that left the train split (``drop``: ``excluded``) are simply not trained
on or predicted. A probe run (``train.mode = "probe"``) is refused: its heads are
already one logistic regression per fold, refit by ``cleaner oof`` in seconds.

**Run folder.** As ``oof``'s (:mod:`cleaner.training.oof`): ``config.toml`` (the source
run's, ``data.manifest`` set to the new version), ``manifest.sha256``,
``folds.csv``, ``fold-K/``, ``embeddings.npz``, ``oof.csv``, ``metrics.json`` last,
plus ``refresh.json`` (:mod:`cleaner.formats.refresh_record`), written first. The
default folder is a sibling of the source run, ``RUN-refresh-HASH`` (the hash of
the record: same source, manifest and settings, same folder). Resumable like
``oof``: run again, finished folds are kept, an interrupted fold resumes from its
last epoch; a finished refresh is returned as it is. The source run is only read.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from cleaner.core.config import PipelineConfig
from cleaner.core.errors import InputError, Problem
from cleaner.formats.embeddings import Embeddings, read_embeddings, write_embeddings
from cleaner.formats.manifest import line_of, resolve_paths, sha256_file
from cleaner.formats.metrics_file import read_oof_metrics
from cleaner.formats.prob_table import OOF_COLUMNS, read_prob_table
from cleaner.formats.refresh_record import RefreshRecord
from cleaner.formats.run_files import RunFiles
from cleaner.formats.run_records import read_manifest_record, require_finished
from cleaner.ranking.flag import own_group_neighbour_share
from cleaner.training.distributed import context
from cleaner.training.embed import SPLITS_EMBEDDED, embed_run, file_hashes
from cleaner.training.fold_train import WarmStart, load_fold_outputs, train_folds
from cleaner.training.oof import OofResult, merge_folds
from cleaner.training.pipeline import PipelineData, load_pipeline_data
from cleaner.training.run_plan import RunPlan, init_file, init_records

LR_FACTOR = 0.3  # the fine-tune's peak lr, as a fraction of train.lr (see the module docstring)
DEFAULT_EPOCHS = 2
_REFRESH_SUFFIX = re.compile(r"-refresh-[0-9a-f]{8}$")
_COPIED = re.compile(r" \(copied from .*\)$")  # a refresh's note on an embeddings source


def refresh_settings(cfg: PipelineConfig, *, epochs: int, lr_factor: float) -> PipelineConfig:
    """The pipeline with the fine-tune's schedule: ``epochs`` epochs from
    ``lr_factor`` x ``train.lr``, cosine without warmup; every other key as it is."""
    return cfg.replace(
        "train",
        epochs=epochs,
        lr=cfg.train.lr * lr_factor,
        scheduler="cosine",
        warmup_epochs=0.0,
    )


def default_refresh_dir(source: Path, key: str) -> Path:
    """``RUN-refresh-KEY`` beside the source run; a refresh of a refresh keeps the base name
    (``RUN-refresh-A`` refreshed again is ``RUN-refresh-B``, not ``RUN-refresh-A-refresh-B``)."""
    base = _REFRESH_SUFFIX.sub("", source.resolve().name)
    return source.parent / f"{base}-refresh-{key}"


def _source_folds(files: RunFiles, k_folds: int) -> pd.Series:
    """The source run's ``folds.csv`` as sample_id -> fold, refused unless well formed."""
    path = files.folds
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise InputError([Problem(str(path), f"not a readable fold split ({e})")]) from None
    if list(table.columns) != ["sample_id", "fold"]:
        raise InputError([Problem(str(path), "expected the columns sample_id, fold", 1)])
    wanted = {str(k) for k in range(k_folds)}
    bad = np.flatnonzero(~table["fold"].isin(wanted).to_numpy())
    if len(bad):
        i = int(bad[0])
        reason = f"fold {table['fold'].iloc[i]!r} is not one of the run's folds 0..{k_folds - 1}"
        raise InputError([Problem(str(path), reason, line_of(i))])
    if table["sample_id"].duplicated().any():
        raise InputError([Problem(str(path), "a sample_id appears twice")])
    return pd.Series(table["fold"].astype(int).to_numpy(), index=table["sample_id"].to_numpy())


def place_new_rows(
    folds: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, k_folds: int
) -> np.ndarray:
    """``folds`` with each ``-1`` (a train row the source run never split) given a fold;
    pure. A row joins its group's fold when the group has one (a group never spans two
    folds); else the fold with the fewest rows of its class, then the fewest rows, then
    the lowest number. No fold model ever trained on such a row (it was unlabeled, a test
    row, or new), so fold k's model predicting it stays out of fold."""
    out = folds.copy()
    k_labels = int(labels.max()) + 1 if len(labels) else 0
    count = np.zeros((k_folds, max(k_labels, 1)), dtype=np.int64)
    placed = out >= 0
    np.add.at(count, (out[placed], labels[placed]), 1)
    group_fold: dict[str, int] = {}
    if groups is not None:
        group_fold = {str(g): int(f) for g, f in zip(groups[placed], out[placed], strict=True)}
    for j in np.flatnonzero(~placed):
        g = str(groups[j]) if groups is not None else None
        if g is not None and g in group_fold:
            k = group_fold[g]
        else:
            k = min(range(k_folds), key=lambda f: (count[f, labels[j]], count[f].sum(), f))
        out[j] = k
        count[k, labels[j]] += 1
        if g is not None:
            group_fold[g] = k
    return out


def _refreshed_folds(data: PipelineData, folds: pd.Series, source: Path) -> np.ndarray:
    """(N,) each train row's fold: the source split's, and new train rows (a round labelled
    an unlabeled row, a test row moved to train) placed by :func:`place_new_rows`."""
    at = folds.index.get_indexer(pd.Index(data.sample_ids))
    known = folds.to_numpy()[np.maximum(at, 0)]
    result = np.where(at >= 0, known, -1).astype(np.int64)
    k_folds = int(folds.max()) + 1
    if (at < 0).any():
        column = data.cfg.data.group
        groups = data.df[column].to_numpy()[data.train_rows].astype(str) if column else None
        result = place_new_rows(result, data.labels, groups, k_folds)
    empty = sorted(set(range(k_folds)) - set(result.tolist()))
    if empty:
        raise InputError(
            [Problem(str(data.manifest_path), f"no train row left in fold {empty[0]} of {source}")]
        )
    return result


def _labels_changed(files: RunFiles, data: PipelineData) -> int:
    """Train rows whose label differs from the one the source run scored (its ``oof.csv``)."""
    table, _ = read_prob_table(files.oof, data.classes, OOF_COLUMNS)
    old = pd.Series(table["label"].to_numpy(), index=table["sample_id"].to_numpy())
    given = np.asarray(data.classes, dtype=object)[data.labels]
    return int((old.reindex(data.sample_ids).to_numpy() != given).sum())


def _check_out(out: Path, source: Path) -> None:
    """Refuse an ``out`` that is the source run, or a folder of something other than a refresh."""
    inside = source.resolve()
    if out.resolve() == inside or inside in out.resolve().parents:
        raise InputError(
            [
                Problem(
                    str(out), "a refresh never writes into the run it starts from; pass another out"
                )
            ]
        )
    if out.exists() and not out.is_dir():
        raise InputError([Problem(str(out), "not a folder")])
    present = out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir())
    if present and not RunFiles(out).refresh.exists():
        raise InputError(
            [Problem(str(out), "holds files that are not a refresh's; pass another out")]
        )


def _copied_embeddings(plan: RunPlan, source: RunFiles, progress: Progress) -> Embeddings | None:
    """The source run's embeddings of every row ``plan`` embeds, when each is there for the
    same image bytes; else ``None`` (see the module docstring)."""
    if not source.embeddings.exists():
        return None
    old = read_embeddings(source.embeddings)
    df = plan.df
    rows = np.flatnonzero(df["split"].isin(SPLITS_EMBEDDED).to_numpy())
    ids = df["sample_id"].to_numpy()[rows].astype(str)
    at = pd.Index(old.sample_ids).get_indexer(ids)
    if (at < 0).any():
        return None
    paths = resolve_paths(df.iloc[rows], plan.root)
    hashes = file_hashes(paths, progress)
    if not np.array_equal(old.file_sha256[at], np.asarray(hashes, dtype=str)):
        return None
    split = df["split"].to_numpy()[rows].astype(str)
    emb = old.embeddings[at]
    train = split == "train"
    same_rows = np.array_equal(old.sample_ids[old.split == "train"], ids[train])
    # The kNN check of one space (about 1/K): the same train rows keep the source's figure.
    share = old.own_fold_share if same_rows else own_group_neighbour_share(emb[train], plan.folds)
    return Embeddings(
        sample_ids=ids,
        split=split,
        file_sha256=np.asarray(hashes, dtype=str),
        embeddings=emb,
        source=f"{_COPIED.sub('', old.source)} (copied from {source.dir.name}: the same images)",
        own_fold_share=share,
    )


def _source_run(run_dir: Path) -> tuple[RunFiles, PipelineConfig]:
    """A finished, fine-tuned run with every fold model, and its config; else refused."""
    require_finished(run_dir)
    source = RunFiles(run_dir)
    cfg = source.read_config()
    if cfg.train.mode == "probe":
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    "a probe run (train.mode = 'probe') has nothing to fine-tune: its "
                    "heads refit in seconds; run `cleaner oof` on the new manifest",
                )
            ]
        )
    folds = range(cfg.train.folds)
    absent = [str(source.fold(k).model) for k in folds if not source.fold(k).model.is_file()]
    if absent:
        raise InputError([Problem(p, "fold model not found: nothing to fine-tune") for p in absent])
    return source, cfg


def refresh_run(
    run_dir: str | Path,
    manifest: str | Path,
    *,
    epochs: int = DEFAULT_EPOCHS,
    lr_factor: float = LR_FACTOR,
    out: str | Path | None = None,
    progress: Progress,
) -> OofResult:
    """Fine-tune a finished run's fold models on ``manifest`` (a newer version of its
    manifest) into a new run folder; return it like :func:`cleaner.training.oof.run_oof`.

    ``epochs`` of fine-tuning per fold from ``lr_factor`` x ``train.lr`` (cosine, no
    warmup); ``out`` defaults to ``RUN-refresh-HASH`` beside ``run_dir``. Everything is
    checked before anything is written: a run that is unfinished, an ensemble or a
    probe, an ``out`` that holds anything but this refresh. A train row the run did not
    split joins a fold (:func:`place_new_rows`). Run again, it finishes what a killed refresh left.
    """
    _check_settings(epochs, lr_factor)
    source_dir = Path(run_dir)
    source, cfg = _source_run(source_dir)
    k_folds = cfg.train.folds
    folds = _source_folds(source, k_folds)
    data = load_pipeline_data(
        cfg.replace("data", manifest=str(manifest)), progress=progress, source=manifest
    )
    plan_folds = _refreshed_folds(data, folds, source_dir)
    tuned = refresh_settings(data.cfg, epochs=epochs, lr_factor=lr_factor).train
    record = RefreshRecord(
        source_run="",
        source_metrics_sha256=sha256_file(source.metrics),
        source_manifest_sha256=read_manifest_record(source_dir)[0],
        manifest_sha256=data.manifest_sha,
        labels_changed=_labels_changed(source, data),
        rows_left_out=int((~folds.index.isin(data.sample_ids)).sum()),
        epochs=tuned.epochs,
        lr=tuned.lr,
        scheduler=tuned.scheduler,
        warmup_epochs=tuned.warmup_epochs,
    )
    out_dir = Path(out) if out is not None else default_refresh_dir(source_dir, record.key())
    _check_out(out_dir, source_dir)

    out_dir.mkdir(parents=True, exist_ok=True)
    where = Path(os.path.relpath(source_dir.resolve(), out_dir.resolve())).as_posix()
    files = RunFiles(out_dir)
    # The record first: a folder of another refresh is refused before anything else is written.
    init_file(files.refresh, dataclasses.replace(record, source_run=where).to_text(), "refresh")
    init_records(out_dir, data.cfg, data.manifest_sha, data.manifest_path)
    folds_csv = pd.DataFrame({"sample_id": data.sample_ids, "fold": plan_folds}).to_csv(index=False)
    init_file(files.folds, folds_csv, "fold split")
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(PipelineData)}
    plan = RunPlan(**fields, run_dir=out_dir, folds=plan_folds)
    if files.metrics.exists() and files.oof.exists():
        return OofResult(out_dir, [], [], read_oof_metrics(files.metrics))

    trained = train_folds(plan, range(k_folds), progress=progress, warm=WarmStart(source, tuned))
    _embed(plan, source, progress)
    return OofResult(out_dir, trained, [], merge_folds(plan))


def _check_settings(epochs: int, lr_factor: float) -> None:
    """Refuse settings that cannot refresh, before anything is read."""
    if epochs < 1:
        raise InputError(f"epochs {epochs}: a refresh trains at least one epoch")
    if not 0 < lr_factor <= 1:
        raise InputError(f"lr_factor {lr_factor}: must be in (0, 1], a fraction of train.lr")
    if context().active:
        raise InputError("a refresh runs in one process; do not start it under torchrun")


def _embed(plan: RunPlan, source: RunFiles, progress: Progress) -> None:
    """The refreshed run's embeddings: the old run's rows copied when they are the same
    images, else embedded anew; every fold output is checked first (it must merge)."""
    for k in range(plan.cfg.train.folds):
        load_fold_outputs(plan.fold(k).oof)
    if plan.files.embeddings.exists():
        return
    copied = _copied_embeddings(plan, source, progress)
    if copied is not None:
        write_embeddings(plan.files.embeddings, copied)
    else:
        embed_run(plan, progress=progress)
