"""``cleaner oof``: K models, each predicting only the fold it never saw.

A run folder (:mod:`cleaner.training.run_plan`) is named after what it computes, so
running the same command again finds the same folder: finished folds are
kept, an interrupted fold resumes from its last epoch (:mod:`cleaner.training.fold_train`),
and the folds are merged once all are done. ``--fold`` runs a single fold, so
folds can be spread over machines that write into one folder; ``--backend ray``
runs them as Ray tasks (:mod:`cleaner.training.ray_folds`).

Run folder: ``config.toml``, ``manifest.sha256``, ``folds.csv``,
``fold-K/{model.pt, metrics.json, oof.npz}``, then ``embeddings.npz`` (every
row embedded by one model after the folds: :mod:`cleaner.training.embed`), ``oof.csv``,
when the manifest has ``unlabeled`` rows ``unlabeled.csv`` (their
probabilities averaged over the K fold models), and last ``metrics.json``: the
run's completion record. A run folder without it is unfinished, whatever else
it holds; every reader refuses it, and the same command finishes it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress

from cleaner.core.choices import BACKENDS
from cleaner.core.errors import EMBED_TASK, FoldsFailed, InputError
from cleaner.core.metrics import classification_metrics
from cleaner.formats.metrics_file import (
    ClassScores,
    OofMetrics,
    read_fold_metrics,
    read_oof_metrics,
    write_metrics,
)
from cleaner.formats.prob_table import oof_table, write_table
from cleaner.formats.run_files import RunFiles
from cleaner.formats.scores import ensemble_text
from cleaner.training.distributed import context
from cleaner.training.embed import embed_run
from cleaner.training.fold_train import load_fold_outputs, load_unlabeled, train_folds
from cleaner.training.folds import describe_split
from cleaner.training.pipeline import PipelineData
from cleaner.training.ray_folds import RayOptions, run_folds_on_ray
from cleaner.training.run_plan import RunPlan, default_run_dir, init_file, plan_run


@dataclass(frozen=True)
class OofResult:
    run_dir: Path
    trained: list[int]  # folds trained by this call
    missing: list[int]  # folds still to train (other machines, or --fold)
    metrics: OofMetrics | None  # the merged metrics once every fold is done


def merge_folds(plan: RunPlan) -> OofMetrics:
    """Gather every fold's predictions in manifest order; write oof.csv and metrics.

    Every fold file is read and checked before anything is written, so a fold
    output that will not merge leaves the run as it was; ``metrics.json`` is
    written last, the run's completion record (``metrics.json``).
    """
    n, k_folds = len(plan.train_rows), plan.cfg.train.folds
    position = pd.Index(np.asarray(plan.sample_ids, dtype=str))
    pred_probs = np.full((n, len(plan.classes)), np.nan, dtype=np.float32)
    fold_metrics = []
    for k in range(k_folds):
        ids, probs, _ = load_fold_outputs(plan.fold(k).oof)
        pos = position.get_indexer(ids)
        if (pos < 0).any() or not np.all(plan.folds[pos] == k):
            raise RuntimeError(f"fold {k} predicted rows outside its fold")
        pred_probs[pos] = probs
        fold_metrics.append(read_fold_metrics(plan.fold(k).metrics))
    if np.isnan(pred_probs).any():
        raise RuntimeError("some train rows have no out-of-fold prediction")
    overall = classification_metrics(plan.labels, pred_probs.argmax(1), plan.classes)
    metrics = OofMetrics(
        manifest=str(plan.manifest_path),
        manifest_sha256=plan.manifest_sha,
        split=describe_split(k_folds, plan.cfg.train.seed, plan.cfg.data.group),
        classes=list(plan.classes),
        overall=ClassScores(**overall),
        folds=fold_metrics,
    )
    table = oof_table(plan.sample_ids, plan.folds, plan.labels, pred_probs, plan.classes)
    unlabeled = plan.unlabeled_rows
    u_table = None
    if len(unlabeled):
        probs = np.mean(
            [
                load_unlabeled(plan.fold(k).unlabeled, len(unlabeled), len(plan.classes))
                for k in range(k_folds)
            ],
            axis=0,
        )
        ids = plan.df["sample_id"].to_numpy()[unlabeled]
        u_table = oof_table(ids, np.full(len(ids), -1), probs.argmax(1), probs, plan.classes)
        u_table = u_table.drop(columns=["fold", "label"])
    # Each file once: a merge interrupted after some of them finishes with the others.
    files = plan.files
    if not files.oof.exists():
        write_table(files.oof, table)
    if u_table is not None and not files.unlabeled.exists():
        write_table(files.unlabeled, u_table)
    if not files.metrics.exists():
        write_metrics(files.metrics, metrics)
    return metrics


def run_oof(
    data: PipelineData,
    *,
    name: str = "run",
    fold: int | None = None,
    out: str | Path | None = None,
    progress: Progress,
    backend: str = "local",
    ray_options: RayOptions | None = None,
    embed: bool = True,
) -> OofResult:
    """Train the folds that are not done (or only ``fold``), then merge when all are.

    ``data`` is the resolved pipeline and its validated manifest
    (:func:`cleaner.training.pipeline.load_pipeline_data`); ``name`` prefixes the run
    folder's name when ``out`` is not given. Once every fold is done, ``embed``
    embeds every row with one model (:mod:`cleaner.training.embed`) before the merge.

    ``backend="ray"`` runs the folds as Ray tasks (see :mod:`cleaner.training.ray_folds`);
    under torchrun the processes train each fold together (:mod:`cleaner.training.distributed`).
    """
    BACKENDS.check(backend)
    dist = context()
    if backend == "ray" and dist.active:
        raise InputError("--backend ray runs folds as Ray tasks; do not start it under torchrun")
    if backend == "ray" and data.cfg.train.mode == "probe":
        raise InputError(
            "train.mode = 'probe' is one forward pass and K logistic regressions: "
            "run it with --backend local"
        )
    plan = plan_run(data, name=name, out=out, fold=fold)
    k_folds = plan.cfg.train.folds
    wanted = [fold] if fold is not None else list(range(k_folds))
    failed: dict[int, str] = {}  # fold -> error, from Ray
    if backend == "ray":
        todo = [k for k in wanted if not plan.fold_done(k)]
        # The embedding step needs no fold model: one more task beside the folds,
        # so that it too runs with the folds' resources and threads.
        tasks = todo
        if embed and fold is None and not plan.files.embeddings.exists():
            tasks = [*todo, EMBED_TASK]
        failed = run_folds_on_ray(plan, tasks, ray_options or RayOptions(), progress=progress)
    else:
        others_done = all(plan.fold_done(k) for k in range(k_folds) if k not in wanted)
        embeds = embed and others_done and not plan.files.embeddings.exists()
        trains_embedder = embeds and not (plan.cfg.model.pretrained or plan.cfg.model.weights)
        after = len(plan.train_rows) * plan.cfg.train.epochs if trains_embedder else 0
        todo = train_folds(plan, wanted, progress=progress, dist=dist, after=after)
    if failed:
        raise FoldsFailed(str(plan.run_dir), failed)
    missing = [k for k in range(k_folds) if not plan.fold_done(k)]
    if not missing:  # a fold output that will not merge is refused before more training
        for k in range(k_folds):
            load_fold_outputs(plan.fold(k).oof)
    if embed and not missing:
        embed_run(plan, progress=progress, dist=dist)  # every torchrun process takes part
    if missing or not dist.main:
        return OofResult(plan.run_dir, todo, missing, None)
    if plan.files.metrics.exists() and plan.files.oof.exists():
        metrics = read_oof_metrics(plan.files.metrics)
    else:
        metrics = merge_folds(plan)
    return OofResult(plan.run_dir, todo, [], metrics)


@dataclass(frozen=True)
class EnsembleResult:
    run_dir: Path  # the ensemble folder: ensemble.json and repeat-R/ run folders
    members: list[OofResult]


def run_repeats(
    data: PipelineData,
    repeats: int,
    *,
    name: str = "run",
    out: str | Path | None = None,
    progress: Progress,
    backend: str = "local",
    ray_options: RayOptions | None = None,
) -> EnsembleResult:
    """``oof --repeats R``: R oof runs with seeds ``train.seed + r`` (other folds,
    initialisations and shuffles) into ``repeat-r/`` of one ensemble folder.

    Each member is an ordinary run folder, resumable as one; repeat 0 is the
    run ``oof`` makes without ``--repeats``. Only repeat 0 embeds the rows: the
    queue takes the first run's embeddings, as ``flag RUN1 RUN2 ...`` does, so
    ``flag`` on the folder equals ``flag`` on the members given separately.
    """
    if repeats < 1:
        raise InputError(f"--repeats {repeats}: must be at least 1")
    seeds = [data.cfg.train.seed + r for r in range(repeats)]
    folder = Path(out) if out else default_run_dir(name, data.cfg, data.manifest_sha, f"x{repeats}")
    folder.mkdir(parents=True, exist_ok=True)
    members = [f"repeat-{r}" for r in range(repeats)]
    init_file(RunFiles(folder).ensemble, ensemble_text(members, seeds), "number of repeats")
    task = progress.add_task(f"{repeats} repeats", total=repeats, unit="run")
    results = []
    for r, (member, seed) in enumerate(zip(members, seeds, strict=True)):
        results.append(
            run_oof(
                dataclasses.replace(data, cfg=data.cfg.replace("train", seed=seed)),
                out=folder / member,
                progress=progress,
                backend=backend,
                ray_options=ray_options,
                # A probe's heads need the features: every repeat embeds (the same rows).
                embed=r == 0 or data.cfg.train.mode == "probe",
            )
        )
        progress.advance(task)
    progress.remove_task(task)
    return EnsembleResult(folder, results)


def oof_command(
    pipeline: str | Path,
    overrides: Sequence[str] = (),
    *,
    fold: int | None = None,
    out: str | Path | None = None,
    repeats: int = 1,
    backend: str = "local",
    ray_options: RayOptions | None = None,
    progress: Progress,
) -> OofResult | EnsembleResult:
    """``cleaner oof PIPELINE --set ...``: the pipeline resolved and its manifest checked
    once, then one run (or ``--fold K`` of it) or, with ``repeats`` > 1, an ensemble.

    The one orchestration of the step, under the CLI, the API and the benchmarks.
    """
    from cleaner.core.config import load_config
    from cleaner.training.pipeline import load_pipeline_data

    cfg = load_config(pipeline, overrides)  # a typo in --set is reported before torch loads
    if repeats != 1 and fold is not None:
        raise InputError(
            "--fold trains one fold of one run; with --repeats, train a member's fold "
            "with --out ENSEMBLE/repeat-R --fold K --set train.seed=SEED+R"
        )
    BACKENDS.check(backend)
    data = load_pipeline_data(cfg, progress=progress, source=pipeline)
    name = Path(pipeline).stem
    if repeats != 1:
        return run_repeats(
            data, repeats, name=name, out=out, progress=progress, backend=backend,
            ray_options=ray_options,
        )  # fmt: skip
    return run_oof(
        data, name=name, fold=fold, out=out, progress=progress, backend=backend,
        ray_options=ray_options,
    )  # fmt: skip
