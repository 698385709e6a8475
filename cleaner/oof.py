"""Out-of-fold predictions: K models, each predicting only the fold it never saw.

A run folder is named after what it computes (the pipeline's name and a hash
of the resolved config plus the manifest's sha256), so running the same
command again finds the same folder: finished folds are kept, an interrupted
fold resumes from its last epoch, and the folds are merged once all are
done. ``fold`` runs a single fold, so folds can be spread over machines that
write into one folder.

Run folder: ``config.toml``, ``manifest.sha256``, ``folds.csv``,
``fold-K/{model.pt, metrics.json, oof.npz}``, then ``embeddings.npz`` (every
row embedded by one model after the folds: :mod:`cleaner.embed`), ``oof.csv``,
``metrics.json``, and when the manifest has ``unlabeled`` rows,
``unlabeled.csv``: their probabilities averaged over the K fold models.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import timm
import torch
from rich.progress import Progress

from cleaner.atomic import atomic_path, write_text
from cleaner.config import PipelineConfig, load_config
from cleaner.data import (
    ImageDataset,
    Normalize,
    decode_all,
    seed_for,
    transform_problems,
)
from cleaner.distributed import SINGLE, Dist, context
from cleaner.embed import embed_run
from cleaner.embeddings import EMBEDDINGS_FILE
from cleaner.errors import EMBED_TASK, FoldsFailed, InputError, Problem
from cleaner.folds import describe_split, make_folds
from cleaner.images import load_image
from cleaner.manifest import (
    apply_weights_file,
    read_manifest,
    resolve_paths,
    sha256_file,
    validate_manifest,
)
from cleaner.metrics import classification_metrics
from cleaner.models import create_model
from cleaner.pipeline import make_dataset, model_and_normalize, predict_rows
from cleaner.progress import warn
from cleaner.runs import MANIFEST_RECORD, manifest_record, oof_table, read_manifest_record
from cleaner.train import device_problem, fit, predict, resolve_device

if TYPE_CHECKING:
    from cleaner.ray_folds import RayOptions


@dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, resolved and validated once, before any training."""

    cfg: PipelineConfig  # resolved: data.classes filled in
    run_dir: Path
    manifest_path: Path
    manifest_sha: str
    df: pd.DataFrame  # the whole manifest
    train_rows: np.ndarray  # (N,) positions in df of the train rows
    labels: np.ndarray  # (N,) class index of each train row
    folds: np.ndarray  # (N,) fold of each train row

    @property
    def classes(self) -> tuple[str, ...]:
        return self.cfg.data.classes

    @property
    def sample_ids(self) -> np.ndarray:
        return self.df["sample_id"].to_numpy()[self.train_rows]

    @property
    def unlabeled_rows(self) -> np.ndarray:
        """Positions in df of the ``unlabeled`` rows."""
        return np.flatnonzero((self.df["split"] == "unlabeled").to_numpy())

    def fold_dir(self, k: int) -> Path:
        return self.run_dir / f"fold-{k}"

    def fold_done(self, k: int) -> bool:
        return (self.fold_dir(k) / "oof.npz").exists()


@dataclass(frozen=True)
class OofResult:
    run_dir: Path
    trained: list[int]  # folds trained by this call
    missing: list[int]  # folds still to train (other machines, or --fold)
    metrics: dict[str, Any] | None  # the merged metrics once every fold is done


def resolve_classes(cfg: PipelineConfig, df: pd.DataFrame) -> PipelineConfig:
    """Fill an empty ``data.classes`` with the sorted labels of the train rows."""
    if cfg.data.classes:
        return cfg
    labels = df.loc[df["split"] == "train", "label"].str.strip()
    return cfg.replace("data", classes=tuple(sorted(set(labels) - {""})))


def default_run_dir(pipeline: Path, cfg: PipelineConfig, manifest_sha: str) -> Path:
    key = hashlib.sha256((cfg.to_toml() + manifest_sha).encode()).hexdigest()[:8]
    return Path("runs") / f"{pipeline.stem}-{key}"


def _init_file(path: Path, text: str, what: str) -> None:
    """Write ``text`` once; later runs must find the same text there."""
    try:
        write_text(path, text)
    except FileExistsError:
        if path.read_text() != text:
            raise InputError(
                [
                    Problem(
                        str(path),
                        f"this run folder was made with a different {what}; "
                        "pass --out for a new run folder",
                    )
                ]
            ) from None


def _init_manifest_record(run_dir: Path, sha: str, manifest: Path) -> None:
    """Write ``manifest.sha256`` once; a later run must name the same manifest, however
    its path was spelled (older runs stored it relative to the working directory)."""
    record = run_dir / MANIFEST_RECORD
    if record.exists():
        recorded, path = read_manifest_record(run_dir)
        if recorded == sha and path.exists() and path.resolve() == manifest.resolve():
            return
    _init_file(record, manifest_record(sha, manifest, run_dir), "manifest")


@dataclass(frozen=True)
class PipelineData:
    """A pipeline and its manifest, loaded and validated once, before any training."""

    cfg: PipelineConfig  # resolved: data.classes filled in
    manifest_path: Path
    manifest_sha: str
    df: pd.DataFrame  # the whole manifest
    train_rows: np.ndarray  # (N,) positions in df of the train rows
    labels: np.ndarray  # (N,) class index of each train row


def load_pipeline_data(
    pipeline: str | Path, overrides: Iterable[str] = (), *, progress: Progress
) -> PipelineData:
    """Load the pipeline and validate its manifest (every bad row listed, nothing written)."""
    pipeline = Path(pipeline)
    cfg = load_config(pipeline, overrides)
    if not cfg.data.manifest:
        raise InputError([Problem(str(pipeline), "data.manifest is not set")])
    manifest_path = Path(cfg.data.manifest)
    df = read_manifest(manifest_path)
    if cfg.data.weights:
        df = apply_weights_file(df, cfg.data.weights)
    cfg = resolve_classes(cfg, df)
    task = progress.add_task(
        "checking images", total=len(df), unit="img", visible=cfg.data.check_images
    )
    warnings = validate_manifest(
        df,
        file=manifest_path,
        classes=cfg.data.classes,
        folds=cfg.train.folds,
        group=cfg.data.group,
        check_images=cfg.data.check_images,
        in_chans=cfg.model.in_chans,
        damaged_images=cfg.data.damaged_images,
        on_image=lambda: progress.advance(task),
    )
    for warning in warnings:
        warn(warning)
    progress.remove_task(task)
    train_rows = np.flatnonzero((df["split"] == "train").to_numpy())
    index = {c: i for i, c in enumerate(cfg.data.classes)}
    labels = np.array(
        [index[v.strip()] for v in df["label"].to_numpy()[train_rows]], dtype=np.int64
    )
    return PipelineData(cfg, manifest_path, sha256_file(manifest_path), df, train_rows, labels)


def preflight(cfg: PipelineConfig, first_image: Path) -> None:
    """What would fail at the first model or batch, checked before the run folder is made.

    A model name timm does not know, a device this machine lacks, a weights file
    that does not load into the model, transforms that do not run on an input
    image (a blank of data.image_size after the resize, else ``first_image``)
    and a normalisation that cannot apply: every one listed in one error. The
    model is built only from a local weights file (a hub one may download).
    """
    problems: list[str] = []
    if not timm.is_model(cfg.model.name):
        problems.append(f"model.name: timm has no model named {cfg.model.name!r}")
    elif cfg.model.weights:
        problems.extend(_weights_problems(cfg))
    device = device_problem(cfg.train.device)
    if device:
        problems.append(device)
    if cfg.augment.resize:
        image = np.zeros((*cfg.data.hw, cfg.model.in_chans), np.uint8)
        blank = "a blank {}x{} image".format(*cfg.data.hw)
        problems.extend(transform_problems(cfg.augment, image, blank))
    else:  # the transforms see the images as they are: try the first one
        image = load_image(first_image, cfg.model.in_chans)
        problems.extend(transform_problems(cfg.augment, image, f"the first image ({first_image})"))
    if cfg.data.mean:
        try:
            Normalize(cfg.data.mean, cfg.data.std)
        except InputError as e:
            problems.append(str(e))
        if len(cfg.data.mean) != cfg.model.in_chans:
            problems.append(
                f"data.mean has {len(cfg.data.mean)} values but model.in_chans is "
                f"{cfg.model.in_chans}"
            )
    if problems:
        raise InputError([Problem("", reason) for reason in dict.fromkeys(problems)])


def _weights_problems(cfg: PipelineConfig) -> list[str]:
    """Why ``model.weights`` does not load into the model (timm reads it weights-only)."""
    weights = Path(cfg.model.weights)
    if not weights.is_file():
        return [f"model.weights: file not found: {weights}"]
    try:
        create_model(cfg.model, max(len(cfg.data.classes), 1))
    except Exception as e:  # torch and timm raise many types for a file that is not weights
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return [
            f"model.weights: {weights} does not load into {cfg.model.name} "
            f"({type(e).__name__}: {reason[:300]})"
        ]
    return []


# What ``plan_run`` writes before any training: a folder holding only these was left
# by a command refused before it trained anything, and is set up afresh.
_START_FILES = frozenset({"config.toml", "manifest.sha256", "folds.csv"})


def _forget_refused_start(run_dir: Path) -> None:
    present = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
    if present and present <= _START_FILES:
        for name in present:
            (run_dir / name).unlink()


def plan_run(
    pipeline: str | Path,
    overrides: Iterable[str] = (),
    *,
    out: str | Path | None = None,
    fold: int | None = None,
    progress: Progress,
) -> RunPlan:
    """Load and validate the pipeline, its manifest and ``fold``; set up the run folder."""
    pipeline = Path(pipeline)
    folds_wanted = load_config(pipeline, overrides).train.folds
    if fold is not None and not 0 <= fold < folds_wanted:
        raise InputError(f"--fold {fold}: the pipeline has folds 0..{folds_wanted - 1}")
    data = load_pipeline_data(pipeline, overrides, progress=progress)
    cfg, manifest_path, sha, df = data.cfg, data.manifest_path, data.manifest_sha, data.df
    train_rows, labels = data.train_rows, data.labels
    groups = df[cfg.data.group].to_numpy()[train_rows] if cfg.data.group else None
    folds = make_folds(labels, n_splits=cfg.train.folds, seed=cfg.train.seed, groups=groups)

    preflight(cfg, resolve_paths(df.iloc[train_rows[:1]], manifest_path.parent)[0])
    run_dir = Path(out) if out else default_run_dir(pipeline, cfg, sha)
    run_dir.mkdir(parents=True, exist_ok=True)
    _forget_refused_start(run_dir)
    _init_file(run_dir / "config.toml", cfg.to_toml(), "config")
    _init_manifest_record(run_dir, sha, manifest_path)
    sample_ids = df["sample_id"].to_numpy()[train_rows]
    folds_csv = pd.DataFrame({"sample_id": sample_ids, "fold": folds}).to_csv(index=False)
    _init_file(run_dir / "folds.csv", folds_csv, "fold split")
    return RunPlan(cfg, run_dir, manifest_path, sha, df, train_rows, labels, folds)


def train_fold(
    plan: RunPlan,
    k: int,
    *,
    progress: Progress,
    cache: list[np.ndarray] | None = None,
    dist: Dist = SINGLE,
) -> dict[str, Any]:
    """Train fold ``k`` on the other folds, predict it, and save its outputs.

    Under torchrun every process runs this; rank 0 alone writes.
    """
    cfg = plan.cfg
    fold_dir = plan.fold_dir(k)
    fold_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.train.device, dist)
    seed = seed_for(cfg.train.seed, k)
    model, norm = model_and_normalize(cfg, seed)
    train_rows = np.flatnonzero(plan.folds != k)
    val_rows = np.flatnonzero(plan.folds == k)

    def part(rows: np.ndarray, train: bool) -> ImageDataset:
        images = [cache[i] for i in rows] if cache is not None else None
        return make_dataset(
            cfg,
            plan.df,
            plan.manifest_path.parent,
            plan.train_rows[rows],
            plan.labels[rows],
            train=train,
            normalize=norm,
            seed=seed,
            cache=images,
        )

    train_ds, val_ds = part(train_rows, True), part(val_rows, False)
    eval_bs = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    t0 = time.perf_counter()
    result = fit(
        model,
        train_ds,
        val_ds,
        cfg.train,
        classes=plan.classes,
        checkpoint=fold_dir / "checkpoint.pt",
        seed=seed,
        device=device,
        progress=progress,
        desc=f"fold {k + 1}/{cfg.train.folds}",
        dist=dist,
    )
    probs, emb = result.val_probs, result.val_embeddings
    if probs is None or emb is None:  # resumed after its last epoch: predict again
        probs, emb = predict(
            model,
            val_ds,
            batch_size=eval_bs,
            workers=cfg.train.workers,
            device=device,
            amp=cfg.train.amp,
            channels_last=cfg.train.channels_last and device.type == "cuda",
            dist=dist,
        )
    # Unlabeled rows get this fold model's opinion too (averaged over folds at merge),
    # for ranking them for labeling.
    unlabeled = plan.unlabeled_rows
    u_probs = None
    if len(unlabeled):
        u_probs = predict_rows(
            model, norm, cfg, plan.df, plan.manifest_path.parent, unlabeled, dist=dist
        )
    metrics = classification_metrics(plan.labels[val_rows], probs.argmax(1), plan.classes)
    metrics.update(
        fold=k,
        n_train=len(train_rows),
        train_images_per_s=result.images_per_s,
        seconds=time.perf_counter() - t0,
        device=str(device),
        processes=dist.world,
        history=result.history,
        selected_epoch=result.selected_epoch or cfg.train.epochs,
    )
    if not dist.main:
        return metrics
    if u_probs is not None:
        with atomic_path(fold_dir / "unlabeled.npz", overwrite=True) as tmp, open(tmp, "wb") as f:
            np.savez(f, probs=u_probs)
    with atomic_path(fold_dir / "model.pt", overwrite=True) as tmp:
        torch.save(model.state_dict(), tmp)
    write_text(fold_dir / "metrics.json", json.dumps(metrics, indent=2), overwrite=True)
    # oof.npz is written last: its presence marks the fold as done.
    with atomic_path(fold_dir / "oof.npz", overwrite=True) as tmp, open(tmp, "wb") as f:
        # Text ids, not objects: merging loads the file without pickle. The fold's
        # own embeddings stay here for comparison only; they are one space per fold.
        ids = np.asarray(plan.sample_ids[val_rows], dtype=str)
        np.savez(f, sample_id=ids, probs=probs, embeddings=emb)
    (fold_dir / "checkpoint.pt").unlink(missing_ok=True)
    return metrics


def load_fold_outputs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fold's ``oof.npz``: ids (R,), probabilities (R, K), its own embeddings (R, D).

    Loaded without pickle: a copied run folder is data, never code.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["sample_id"].astype(str), z["probs"], z["embeddings"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(
            [
                Problem(
                    str(path),
                    f"not a fold output this version reads safely ({e}); "
                    "delete the fold's folder to train it again",
                )
            ]
        ) from None


def merge_folds(plan: RunPlan) -> dict[str, Any]:
    """Gather every fold's predictions in manifest order; write oof.csv and metrics."""
    n, k_folds = len(plan.train_rows), plan.cfg.train.folds
    position = pd.Index(np.asarray(plan.sample_ids, dtype=str))
    pred_probs = np.full((n, len(plan.classes)), np.nan, dtype=np.float32)
    fold_metrics = []
    for k in range(k_folds):
        ids, probs, _ = load_fold_outputs(plan.fold_dir(k) / "oof.npz")
        pos = position.get_indexer(ids)
        if (pos < 0).any() or not np.all(plan.folds[pos] == k):
            raise RuntimeError(f"fold {k} predicted rows outside its fold")
        pred_probs[pos] = probs
        fold_metrics.append(json.loads((plan.fold_dir(k) / "metrics.json").read_text()))
    if np.isnan(pred_probs).any():
        raise RuntimeError("some train rows have no out-of-fold prediction")
    overall = classification_metrics(plan.labels, pred_probs.argmax(1), plan.classes)
    metrics = {
        "manifest": str(plan.manifest_path),
        "manifest_sha256": plan.manifest_sha,
        "split": describe_split(k_folds, plan.cfg.train.seed, plan.cfg.data.group),
        "classes": list(plan.classes),
        "overall": overall,
        "folds": fold_metrics,
    }
    table = oof_table(plan.sample_ids, plan.folds, plan.labels, pred_probs, plan.classes)
    if not (plan.run_dir / "oof.csv").exists():
        with atomic_path(plan.run_dir / "oof.csv") as tmp:
            table.to_csv(tmp, index=False, float_format="%.8g")
    unlabeled = plan.unlabeled_rows
    if len(unlabeled) and not (plan.run_dir / "unlabeled.csv").exists():
        probs = np.mean(
            [np.load(plan.fold_dir(k) / "unlabeled.npz")["probs"] for k in range(k_folds)], axis=0
        )
        ids = plan.df["sample_id"].to_numpy()[unlabeled]
        u_table = oof_table(ids, np.full(len(ids), -1), probs.argmax(1), probs, plan.classes)
        u_table = u_table.drop(columns=["fold", "label"])
        with atomic_path(plan.run_dir / "unlabeled.csv") as tmp:
            u_table.to_csv(tmp, index=False, float_format="%.8g")
    if not (plan.run_dir / "metrics.json").exists():
        write_text(plan.run_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


BACKENDS = ("local", "ray")


def train_folds(
    plan: RunPlan, folds: Iterable[int], *, progress: Progress, dist: Dist = SINGLE
) -> list[int]:
    """Train each of ``folds`` that is not done yet, in this process; return those trained."""
    todo = [k for k in folds if not plan.fold_done(k)]
    cache = None
    if todo and plan.cfg.data.cache:
        paths = resolve_paths(plan.df.iloc[plan.train_rows], plan.manifest_path.parent)
        task = progress.add_task("decoding images", total=len(paths), unit="img")
        cache = decode_all(paths, plan.cfg.model.in_chans, lambda: progress.advance(task))
        progress.remove_task(task)
    for k in todo:
        train_fold(plan, k, progress=progress, cache=cache, dist=dist)
        dist.barrier()  # the others wait for rank 0's files before looking at the folder
    return todo


def run_oof(
    pipeline: str | Path,
    overrides: Iterable[str] = (),
    *,
    fold: int | None = None,
    out: str | Path | None = None,
    progress: Progress,
    backend: str = "local",
    ray_options: RayOptions | None = None,
    embed: bool = True,
) -> OofResult:
    """Train the folds that are not done (or only ``fold``), then merge when all are.

    Once every fold is done, ``embed`` embeds every row with one model
    (:mod:`cleaner.embed`) before the merge.

    ``backend="ray"`` runs the folds as Ray tasks (see :mod:`cleaner.ray_folds`);
    under torchrun the processes train each fold together (:mod:`cleaner.distributed`).
    """
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    dist = context()
    if backend == "ray" and dist.active:
        raise InputError("--backend ray runs folds as Ray tasks; do not start it under torchrun")
    overrides = list(overrides)
    plan = plan_run(pipeline, overrides, out=out, fold=fold, progress=progress)
    k_folds = plan.cfg.train.folds
    wanted = [fold] if fold is not None else list(range(k_folds))
    failed: dict[int, str] = {}  # fold -> error, from Ray
    if backend == "ray":
        from cleaner.ray_folds import RayOptions, run_folds_on_ray

        todo = [k for k in wanted if not plan.fold_done(k)]
        # The embedding step needs no fold model: one more task beside the folds,
        # so that it too runs with the folds' resources and threads.
        tasks = todo
        if embed and fold is None and not (plan.run_dir / EMBEDDINGS_FILE).exists():
            tasks = [*todo, EMBED_TASK]
        failed = run_folds_on_ray(
            plan, pipeline, overrides, tasks, ray_options or RayOptions(), progress=progress
        )
    else:
        todo = train_folds(plan, wanted, progress=progress, dist=dist)
    if failed:
        raise FoldsFailed(str(plan.run_dir), failed)
    missing = [k for k in range(k_folds) if not plan.fold_done(k)]
    if not missing:  # a fold output that will not merge is refused before more training
        for k in range(k_folds):
            load_fold_outputs(plan.fold_dir(k) / "oof.npz")
    if embed and not missing:
        embed_run(plan, progress=progress, dist=dist)  # every torchrun process takes part
    if missing or not dist.main:
        return OofResult(plan.run_dir, todo, missing, None)
    if (plan.run_dir / "metrics.json").exists() and (plan.run_dir / "oof.csv").exists():
        metrics = json.loads((plan.run_dir / "metrics.json").read_text())
    else:
        metrics = merge_folds(plan)
    return OofResult(plan.run_dir, todo, [], metrics)
