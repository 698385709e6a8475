"""Folds as Ray tasks: ``cleaner oof PIPELINE --backend ray``.

Each fold that is not done becomes one Ray task that asks for
``cpus_per_fold`` CPUs and ``gpus_per_fold`` GPUs; Ray runs as many at once
as the cluster has room for. The task runs the same code as ``--fold K``
(:func:`cleaner.training.fold_train.train_folds`) into the same run folder, so the folds are
merged exactly as separately run ``--fold`` runs are. Ray retries a fold that
raises (or whose worker dies) once; a fold that fails again is reported with
its error, and the folds that finished stay done, so running the command
again trains only what is missing (resuming from the fold's last epoch).

The run folder, the manifest and the images must be reachable under the same
paths from every node (a shared file system); relative paths are resolved
from the driver's working directory, which each task moves into. Without an
address, a local Ray instance is started for the command and stopped after it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from cleaner.core.config import load_config
from cleaner.core.errors import EMBED_TASK, InputError, task_name
from cleaner.formats.metrics_file import read_fold_metrics, to_json
from cleaner.formats.run_files import RunFiles
from cleaner.training.embed import embed_run
from cleaner.training.fold_train import train_folds
from cleaner.training.pipeline import load_pipeline_data
from cleaner.training.ray_options import RayOptions
from cleaner.training.run_plan import RunPlan, plan_run

INSTALL_HINT = (
    "--backend ray needs Ray: pip install 'cleaner[ray]' (in a checkout: pip install -e '.[ray]')"
)
RETRIES = 1  # a failing fold runs at most twice


def import_ray() -> Any:
    """The ``ray`` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError(INSTALL_HINT) from None
    return ray


def fold_resources(
    options: RayOptions, *, workers: int, device: str, cluster: dict[str, float]
) -> tuple[float, float]:
    """``(cpus, gpus)`` one fold task asks for, checked against what the cluster has.

    A request the cluster can never grant would leave the tasks pending
    forever, so it is refused up front.
    """
    cpus = options.cpus_per_fold if options.cpus_per_fold is not None else max(1, workers)
    has_gpus = cluster.get("GPU", 0.0)
    if options.gpus_per_fold is not None:
        gpus = options.gpus_per_fold
    else:
        gpus = 1.0 if has_gpus >= 1 and device != "cpu" else 0.0
    if cpus <= 0 or gpus < 0:
        raise InputError("--cpus-per-fold must be positive and --gpus-per-fold not negative")
    if gpus > 1:
        raise InputError(
            "--gpus-per-fold above 1: a Ray fold trains on one GPU; to train one fold on "
            "several GPUs, run it under torchrun (see the README)"
        )
    if gpus and device == "cpu":
        raise InputError("--gpus-per-fold is set but the pipeline has train.device = cpu")
    if cpus > cluster.get("CPU", 0.0):
        raise InputError(
            f"--cpus-per-fold {cpus:g}: the Ray cluster has {cluster.get('CPU', 0.0):g} CPUs"
        )
    if gpus > has_gpus:
        raise InputError(f"--gpus-per-fold {gpus:g}: the Ray cluster has {has_gpus:g} GPUs")
    return cpus, gpus


def train_fold_task(run_dir: str, k: int, cwd: str, threads: int) -> dict[str, Any]:
    """One Ray task: train fold ``k`` into ``run_dir`` as ``--fold k`` does; its metrics.

    The task reads the resolved config the driver wrote to ``run_dir/config.toml``,
    so driver and tasks train exactly the same pipeline. ``k = EMBED_TASK`` runs
    the run's embedding step instead (it needs no fold model, so it runs beside
    the folds, with the same resources).
    """
    from cleaner.core.progress import make_progress

    if os.path.isdir(cwd):  # relative paths in the pipeline mean the driver's directory
        os.chdir(cwd)
    torch.set_num_threads(threads)
    config = RunFiles(Path(run_dir)).config
    with make_progress(quiet=True) as progress:
        data = load_pipeline_data(load_config(config), progress=progress, source=config)
        if k == EMBED_TASK:
            t0 = time.perf_counter()
            embed_run(plan_run(data, out=run_dir), progress=progress)
            return {"seconds": time.perf_counter() - t0}
        plan = plan_run(data, out=run_dir, fold=k)
        train_folds(plan, [k], progress=progress)
    # Ray hands plain data back to the driver: the record as its JSON object.
    return to_json(read_fold_metrics(plan.fold(k).metrics))


FoldTask = Callable[[str, int, str, int], dict[str, Any]]


def run_folds_on_ray(
    plan: RunPlan,
    folds: Sequence[int],
    options: RayOptions,
    *,
    progress: Progress,
    task_fn: FoldTask = train_fold_task,
) -> dict[int, str]:
    """Run ``folds`` as concurrent Ray tasks; return ``{fold: error}`` of those that failed.

    ``task_fn`` is the function each task runs (tests pass one that fails).
    """
    ray = import_ray()
    if not folds:
        return {}
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=options.address,
            num_cpus=options.num_cpus if options.address is None else None,
            include_dashboard=False,
            log_to_driver=False,  # each task's output stays in Ray's logs, not on the console
            logging_level="ERROR",
        )
    try:
        cpus, gpus = fold_resources(
            options,
            workers=plan.cfg.train.workers,
            device=plan.cfg.train.device,
            cluster=ray.cluster_resources(),
        )
        remote = ray.remote(task_fn).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=True
        )
        cwd, run_dir = os.getcwd(), str(plan.run_dir.resolve())
        threads = max(1, int(cpus))
        pending = {remote.remote(run_dir, k, cwd, threads): k for k in folds}
        task = progress.add_task(
            f"folds on Ray ({cpus:g} CPU, {gpus:g} GPU each)", total=len(folds), unit="fold"
        )
        failed: dict[int, str] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            k = pending.pop(ready[0])
            try:
                m = ray.get(ready[0])
                score = f"accuracy {m['accuracy']:.4f}, " if "accuracy" in m else ""
                progress.console.print(f"{task_name(k)}: {score}{m['seconds']:.0f} s on Ray")
            except ray.exceptions.RayError as e:
                failed[k] = _reason(e)
                progress.console.print(f"{task_name(k)} failed twice: {failed[k]}")
            progress.advance(task)
        return failed
    finally:
        if started:
            ray.shutdown()


def _reason(error: Exception) -> str:
    """The original exception of a failed task, in one line."""
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"
