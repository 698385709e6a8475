"""The Python API: the loop for notebooks and scripts, one function per step.

Each function is what the command of the same name runs (the CLI adds only
printing), with progress bars off unless ``progress=True``. Arrays follow
cleanlab's names: ``labels`` (N,) class indices, ``pred_probs`` (N, K)
out-of-fold probabilities.

    import cleaner.api as cl

    pipeline = cl.init("data_manifests/photos.csv", "pipelines/photos.toml")
    run = cl.oof(pipeline, out="runs/oof")
    issues = cl.find_label_issues("data_manifests/photos.csv", run.pred_probs,
                                  classes=run.classes, sample_ids=run.sample_ids)
    queue = cl.flag(run.run_dir)          # writes runs/oof/queue.csv for review
    ...                                   # a person fills in the decisions
    cl.apply("runs/oof/queue.csv", reviewer="kim")
    cl.retrain(pipeline, queue="runs/oof/queue.csv", out="runs/final")
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from rich.progress import Progress

from cleaner.core.config import PipelineConfig
from cleaner.core.errors import InputError
from cleaner.core.progress import make_progress
from cleaner.formats.embeddings import Embeddings
from cleaner.formats.manifest import check_ids, id_matcher, read_manifest
from cleaner.formats.runs import Run, load_run
from cleaner.ingest.arrays import ingest_digits
from cleaner.ingest.folder import ingest_folder
from cleaner.ingest.repoint import RepointResult
from cleaner.ingest.repoint import repoint as _repoint
from cleaner.ingest.starter import init_project
from cleaner.ingest.table import ingest_csv
from cleaner.review.apply import ApplySummary, apply_queue

if TYPE_CHECKING:  # torch loads with it: only when retrain runs
    from cleaner.final.retrain import RetrainResult
    from cleaner.rounds.round import RoundResult
    from cleaner.rounds.status import ProjectStatus

__all__ = [
    "InputError",
    "apply",
    "find_label_issues",
    "flag",
    "ingest_csv",
    "ingest_digits",
    "ingest_folder",
    "init",
    "load_run",
    "oof",
    "read_manifest",
    "refresh",
    "retrain",
    "round",
    "status",
]


@contextlib.contextmanager
def _progress(show: bool | Progress) -> Iterator[Progress]:
    """The bars of a step: the caller's own (the CLI's, the demo's), or new ones if ``show``."""
    if isinstance(show, Progress):
        yield show
        return
    with make_progress(quiet=not show) as progress:
        yield progress


def init(source: str | Path, out: str | Path | None = None, *, gpu: bool | None = None) -> Path:
    """Write a starting pipeline (``cleaner init``) for a manifest, or for a folder of
    class folders (ingested first, as ``cleaner ingest folder``); returns its path
    (default ``pipelines/NAME.toml``). ``gpu`` defaults to whether this machine has one."""
    return init_project(source, out, gpu=gpu).pipeline


def oof(
    pipeline: str | Path,
    overrides: Iterable[str] = (),
    *,
    out: str | Path | None = None,
    repeats: int = 1,
    backend: str = "local",
    address: str | None = None,
    gpus_per_fold: float | None = None,
    cpus_per_fold: float | None = None,
    progress: bool | Progress = False,
) -> Run:
    """K-fold out-of-fold probabilities (``cleaner oof``); returns the finished run.

    Resumes a run folder ``out`` left unfinished; ``overrides`` are ``--set`` texts.
    ``repeats`` > 1 trains an ensemble (``--repeats``) and returns its members' mean
    probabilities as one run (the first member's folder, embeddings and folds).
    ``backend="ray"`` runs the folds as Ray tasks (``address``, ``gpus_per_fold``,
    ``cpus_per_fold`` as the CLI's options). One fold alone (``--fold``) is the
    CLI's, for folds spread over machines: :func:`cleaner.training.oof.oof_command`.
    """
    from cleaner.training.oof import EnsembleResult, oof_command
    from cleaner.training.ray_options import ray_options

    options = ray_options(backend, address, gpus_per_fold, cpus_per_fold)
    with _progress(progress) as bars:
        result = oof_command(
            pipeline, list(overrides), out=out, repeats=repeats, backend=backend,
            ray_options=options, progress=bars,
        )  # fmt: skip
    if isinstance(result, EnsembleResult):
        from cleaner.formats.runs import mean_probs

        runs = [load_run(m.run_dir) for m in result.members]
        return dataclasses.replace(runs[0], pred_probs=mean_probs(runs))
    return load_run(result.run_dir)


def refresh(
    run: str | Path,
    manifest: str | Path,
    *,
    epochs: int = 2,
    out: str | Path | None = None,
    progress: bool | Progress = False,
) -> Run:
    """A cheap refresh between cleaning rounds: the finished run's fold models fine-tuned
    for ``epochs`` on ``manifest`` (a newer version of the run's, e.g. from :func:`apply`),
    each on its own training rows, into a new run folder (default ``RUN-refresh-HASH``
    beside ``run``); returns it, ready for :func:`flag`. Resumes an unfinished one;
    :mod:`cleaner.training.refresh` says how and why."""
    from cleaner.training.refresh import refresh_run

    with _progress(progress) as bars:
        result = refresh_run(run, manifest, epochs=epochs, out=out, progress=bars)
    return load_run(result.run_dir)


def status(folder: str | Path = ".") -> ProjectStatus:
    """``cleaner status``: each manifest's versions in ``folder``, the runs and queues of
    each, what is decided, and the next command (:mod:`cleaner.rounds.status`)."""
    from cleaner.rounds.status import project_status

    return project_status(folder)


def round(
    run: str | Path,
    *,
    budget: int,
    max_labels: int | None = None,
    stop_below: float = 1.0,
    out: str | Path | None = None,
    force: bool = False,
) -> RoundResult:
    """``cleaner round``: the next batch of ``budget`` rows to label (a queue folder,
    default ``RUN/round-N``), the estimate of the wrong labels left and whether to stop;
    :mod:`cleaner.rounds.round` says how. Answer it as a queue, :func:`apply` it, then
    :func:`refresh` the run on the new version for the next round."""
    from cleaner.rounds.round import next_round

    return next_round(
        run, budget=budget, max_labels=max_labels, stop_below=stop_below, out=out, force=force
    )


def find_label_issues(
    manifest: str | Path | pd.DataFrame,
    pred_probs: np.ndarray,
    *,
    classes: Sequence[str],
    sample_ids: Sequence[str] | None = None,
    labels: np.ndarray | None = None,
    embeddings: Embeddings | None = None,
    top: int = 200,
    method: str = "self_confidence",
    group: str = "",
) -> pd.DataFrame:
    """The relabel queue of probabilities made anywhere: arrays in, queue rows out.

    ``pred_probs`` (N, K) score the manifest's N train rows, in manifest order or
    in the order of ``sample_ids``; ``classes`` names the K columns. ``labels``, if
    given, must be the manifest's labels as indices into ``classes`` (a check that
    the arrays line up). The same ranking as ``cleaner flag --probs``; nothing is
    written and no decided rows are left out.
    """
    from cleaner.formats.runs import scored_run
    from cleaner.ranking.queue import check_settings

    if isinstance(manifest, pd.DataFrame):
        df, path = manifest, Path("manifest.csv")
        check_ids(df["sample_id"], "manifest")  # read_manifest's check, for a frame
    else:
        df, path = read_manifest(manifest), Path(manifest)
    check_settings(top, method)
    classes = tuple(str(c) for c in classes)
    if len(set(classes)) != len(classes):
        raise InputError("classes has duplicates")
    train = df[df["split"] == "train"]
    ids = np.asarray(train["sample_id"] if sample_ids is None else sample_ids, dtype=object)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.shape != (len(ids), len(classes)):
        raise InputError(
            f"pred_probs has shape {pred_probs.shape}; expected ({len(ids)}, {len(classes)}): "
            "one row per train row, one column per class"
        )
    if labels is None:  # the manifest's own: the check is then that every row is a train row
        match = id_matcher(train["sample_id"])
        given = dict(zip(train["sample_id"], train["label"].str.strip(), strict=True))
        names = [given.get(match(str(s)) or "", "") for s in ids]
    else:
        names = _class_names(labels, classes, len(ids))
    cfg = PipelineConfig().replace("data", classes=classes, group=group)
    run = scored_run(
        df,
        ids,
        names,
        pred_probs,
        cfg=cfg.replace("flag", top=top, method=method),
        manifest=path,
        file="pred_probs",
        at=lambda i: (f"find_label_issues: row {i}", None),
    )
    run = dataclasses.replace(run, run_dir=Path("."), embeddings=embeddings)
    from cleaner.ranking.queue_rows import build_queue

    queue, _ = build_queue(df, [run], top=top, method=method, decided=set())
    return queue


def _class_names(labels: np.ndarray, classes: Sequence[str], n: int) -> list[str]:
    """``labels`` (N,) class indices as class names; refused unless N indices into ``classes``."""
    array = np.asarray(labels)
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise InputError(f"labels must be {n} class indices, got an array of shape {array.shape}")
    outside = np.flatnonzero((array < 0) | (array >= len(classes)))
    if len(outside):
        raise InputError(f"labels[{outside[0]}] = {array[outside[0]]} is not a class index")
    return [classes[int(k)] for k in array]


def flag(
    runs: str | Path | Sequence[str | Path] = (),
    *,
    top: int | None = None,
    method: str | None = None,
    out: str | Path | None = None,
    include_unlabeled: bool = False,
    overrides: Sequence[str] = (),
    force: bool = False,
    probs: str | Path | None = None,
    manifest: str | Path | None = None,
    embeddings: str | Path | None = None,
    audit: int | None = None,
) -> pd.DataFrame:
    """``cleaner flag``: write ``queue.csv`` and its page (beside the first run, or in
    ``out``); return the queue. ``probs`` scores ``manifest`` with probabilities made
    elsewhere (the ``oof.csv`` layout), as ``--probs``; ``overrides`` are ``--set`` texts;
    ``audit`` adds that many random train rows (``--audit``)."""
    from cleaner.core.config import check_overrides
    from cleaner.formats.queue_file import read_queue_table
    from cleaner.ranking.queue import make_queue

    check_overrides(overrides, keys=("flag", "data.group") if probs else ("flag",))
    run_dirs = [runs] if isinstance(runs, str | Path) else list(runs)
    summary = make_queue(
        run_dirs, top=top, method=method, out=out, include_unlabeled=include_unlabeled,
        force=force, overrides=overrides, probs=probs, manifest=manifest, embeddings=embeddings,
        audit=audit,
    )  # fmt: skip
    assert summary.queue_csv is not None
    return read_queue_table(summary.queue_csv)


def repoint(
    manifest: str | Path, folder: str | Path, *, old_root: str | None = None
) -> RepointResult:
    """``cleaner repoint``: the next version of ``manifest`` with its images under ``folder``
    (the folder that held them all, or ``old_root``, replaced), audit-logged."""
    return _repoint(manifest, folder, old_root=old_root)


def apply(queue: str | Path, *, reviewer: str = "", unsure_factor: float = 0.5) -> ApplySummary:
    """``cleaner apply``: the queue's decisions into the next manifest version and the log."""
    return apply_queue(queue, reviewer=reviewer, unsure_factor=unsure_factor, reuse_applied=True)


def retrain(
    pipeline: str | Path,
    overrides: Iterable[str] = (),
    *,
    manifest: str | Path | None = None,
    queue: str | Path | None = None,
    reweight: str = "none",
    mode: str = "full",
    oof: Sequence[str | Path] = (),
    probs: str | Path | None = None,
    force: bool = False,
    tta: bool = False,
    out: str | Path | None = None,
    reviewer: str = "",
    baselines: bool = True,
    backend: str = "local",
    address: str | None = None,
    gpus_per_fold: float | None = None,
    cpus_per_fold: float | None = None,
    progress: bool | Progress = False,
) -> RetrainResult:
    """``cleaner retrain`` on the cleaned data (``queue`` is applied first, as with
    ``--queue``; ``oof`` are the runs ``reweight`` reads, as ``--oof``); returns the
    result: its ``run_dir`` holds ``submission.csv`` and ``report.md``."""
    from cleaner.core.config import load_config

    cfg = load_config(pipeline, overrides)  # a typo in overrides is reported before torch loads
    from cleaner.final.retrain import RetrainOptions, run_retrain
    from cleaner.training.distributed import from_env
    from cleaner.training.ray_options import ray_options

    if from_env().active:
        raise InputError(
            "cleaner retrain runs in one process; under torchrun, train the folds with "
            "`cleaner oof --fold K` (see the README)"
        )
    options = RetrainOptions(
        queue=_path(queue), manifest=_path(manifest), reweight=reweight, mode=mode,
        oof_runs=tuple(Path(r) for r in oof), probs=_path(probs), tta=tta, out=_path(out),
        reviewer=reviewer, backend=backend,
        ray_options=ray_options(backend, address, gpus_per_fold, cpus_per_fold),
        baselines=baselines, force=force,
    )  # fmt: skip
    with _progress(progress) as bars:
        return run_retrain(cfg, options, progress=bars, name=Path(pipeline).stem, source=pipeline)


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
