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

import numpy as np
import pandas as pd
from rich.progress import Progress

from cleaner.config import PipelineConfig
from cleaner.embeddings import Embeddings
from cleaner.errors import InputError
from cleaner.ingest import ingest_arrays, ingest_folder, load_digits_arrays
from cleaner.manifest import check_ids, id_matcher, read_manifest
from cleaner.progress import make_progress
from cleaner.review import ApplySummary, apply_queue
from cleaner.runs import Run, load_run
from cleaner.starter import write_starter

__all__ = [
    "InputError",
    "apply",
    "find_label_issues",
    "flag",
    "ingest_digits",
    "ingest_folder",
    "init",
    "load_run",
    "oof",
    "read_manifest",
    "retrain",
]


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[Progress]:
    with make_progress(quiet=not show) as progress:
        yield progress


def ingest_digits(
    images_dir: str | Path,
    manifest: str | Path,
    *,
    noise: float = 0.1,
    noise_kind: str = "uniform",
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Path:
    """scikit-learn's digits as PNGs and a manifest with ``noise`` of the train labels
    flipped (``cleaner ingest digits``; ``noise_kind`` one of
    :data:`cleaner.noise.NOISE_KINDS`); the truth stays in ``true_label``."""
    images, labels = load_digits_arrays()
    ids = [f"digit-{i:04d}" for i in range(len(labels))]
    return ingest_arrays(
        images, labels, ids, images_dir, manifest, noise=noise, noise_kind=noise_kind,
        seed=seed, test_fraction=test_fraction,
    )  # fmt: skip


def init(manifest: str | Path, out: str | Path, *, gpu: bool | None = None) -> Path:
    """Write a starting pipeline for ``manifest`` (``cleaner init``); returns its path."""
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    return write_starter(manifest, out, gpu=gpu)


def oof(
    pipeline: str | Path,
    overrides: Iterable[str] = (),
    *,
    out: str | Path | None = None,
    progress: bool = False,
) -> Run:
    """K-fold out-of-fold probabilities (``cleaner oof``); returns the finished run.

    Resumes a run folder ``out`` left unfinished; ``overrides`` are ``--set`` texts.
    """
    from cleaner.config import load_config
    from cleaner.oof import run_oof
    from cleaner.pipeline import load_pipeline_data

    cfg = load_config(pipeline, overrides)
    with _progress(progress) as bars:
        data = load_pipeline_data(cfg, progress=bars, source=pipeline)
        result = run_oof(data, name=Path(pipeline).stem, out=out, progress=bars)
    return load_run(result.run_dir)


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
    from cleaner.queue import check_settings
    from cleaner.runs import scored_run

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
    from cleaner.queue_rows import build_queue

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
    runs: str | Path | Sequence[str | Path], *, top: int | None = None, force: bool = False
) -> pd.DataFrame:
    """``cleaner flag``: write ``queue.csv`` (and its page) beside the first run; return it."""
    from cleaner.queue import make_queue
    from cleaner.queue_file import read_queue_table

    run_dirs = [runs] if isinstance(runs, str | Path) else list(runs)
    summary = make_queue(run_dirs, top=top, force=force)
    assert summary.queue_csv is not None
    return read_queue_table(summary.queue_csv)


def apply(queue: str | Path, *, reviewer: str = "", unsure_factor: float = 0.5) -> ApplySummary:
    """``cleaner apply``: the queue's decisions into the next manifest version and the log."""
    return apply_queue(queue, reviewer=reviewer, unsure_factor=unsure_factor, reuse_applied=True)


def retrain(
    pipeline: str | Path,
    overrides: Iterable[str] = (),
    *,
    queue: str | Path | None = None,
    manifest: str | Path | None = None,
    out: str | Path | None = None,
    reviewer: str = "",
    baselines: bool = False,
    progress: bool = False,
) -> Path:
    """``cleaner retrain`` on the cleaned data (``queue`` is applied first, as with
    ``--queue``); returns the run folder with ``submission.csv`` and ``report.md``."""
    from cleaner.config import load_config
    from cleaner.retrain import RetrainOptions, run_retrain

    cfg = load_config(pipeline, overrides)
    options = RetrainOptions(
        queue=_path(queue), manifest=_path(manifest), out=_path(out), reviewer=reviewer,
        baselines=baselines,
    )  # fmt: skip
    with _progress(progress) as bars:
        result = run_retrain(cfg, options, progress=bars, name=Path(pipeline).stem, source=pipeline)
    return result.run_dir


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
