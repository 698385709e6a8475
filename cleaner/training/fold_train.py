"""Training the folds of a run: fold ``k`` trains on the others and predicts itself.

One fold's outputs go to ``fold-K/``: ``model.pt``, ``metrics.json``,
``unlabeled.npz`` (when the manifest has unlabeled rows) and, written last
so that its presence marks the fold as done, ``oof.npz``. The same code
trains a fold in this process, under torchrun and inside a Ray task. With a
:class:`WarmStart` a fold's model starts from another run's ``fold-K/model.pt``
and trains with other settings (a refresh: :mod:`cleaner.training.refresh`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from cleaner.core.atomic import atomic_file
from cleaner.core.config import TrainConfig
from cleaner.core.errors import InputError, Problem
from cleaner.core.metrics import classification_metrics
from cleaner.formats.manifest import resolve_paths
from cleaner.formats.metrics_file import FoldMetrics, write_metrics
from cleaner.formats.run_files import RunFiles
from cleaner.training.data import ImageDataset, Normalize, decode_all, seed_for
from cleaner.training.device import resolve_device, uses_amp, uses_channels_last
from cleaner.training.distributed import SINGLE, Dist
from cleaner.training.embed import embed_run
from cleaner.training.models import needs_data_init
from cleaner.training.pipeline import make_dataset, model_and_normalize, predict_outputs
from cleaner.training.probe import fit_head, head_probs, set_head
from cleaner.training.run_plan import RunPlan
from cleaner.training.train import FitResult, eval_batch_size, fit, predict


@dataclass(frozen=True)
class WarmStart:
    """Fold ``k``'s model fine-tuned from ``run``'s ``fold-K/model.pt`` with ``train`` (the
    epochs, learning rate and schedule of the fine-tune), not trained from a fresh model.

    ``run``'s fold ``k`` must have held out the same rows: its model never saw them.
    """

    run: RunFiles
    train: TrainConfig


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a trained model's ``state_dict`` (a fold's ``model.pt``) into ``model``.

    Read with ``weights_only=True`` (a copied run folder is data, never code) and
    refused, naming the file, unless it fits ``model``. The weights include any
    data-dependent first layer, so the model no longer waits for one.
    """
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            [Problem(str(path), f"not weights of this pipeline's model.name ({reason[:300]})")]
        ) from None
    if needs_data_init(model):
        model.data_init_pending = False  # type: ignore[assignment]  # a plain attribute


def _fold_datasets(
    plan: RunPlan, k: int, norm: Normalize, seed: int, cache: list[np.ndarray] | None
) -> tuple[ImageDataset, ImageDataset]:
    """Fold ``k``'s training rows (the other folds, augmented) and its own rows."""

    def part(rows: np.ndarray, train: bool) -> ImageDataset:
        images = [cache[i] for i in rows] if cache is not None else None
        return make_dataset(
            plan.cfg,
            plan.df,
            plan.root,
            plan.train_rows[rows],
            plan.labels[rows],
            train=train,
            normalize=norm,
            seed=seed,
            cache=images,
        )

    return part(np.flatnonzero(plan.folds != k), True), part(np.flatnonzero(plan.folds == k), False)


def _fold_predictions(
    plan: RunPlan,
    model: torch.nn.Module,
    val_ds: ImageDataset,
    result: FitResult,
    device: torch.device,
    dist: Dist,
) -> tuple[np.ndarray, np.ndarray]:
    """The fold's probabilities and embeddings: those of the epoch ``fit`` kept, or,
    resumed after its last epoch, predicted again (the same way: ``fit`` left the weights
    it validated in ``model``, and ``train.tta`` averages with the mirrored images)."""
    if result.val_probs is not None and result.val_embeddings is not None:
        return result.val_probs, result.val_embeddings
    cfg = plan.cfg.train
    return predict(
        model,
        val_ds,
        batch_size=eval_batch_size(cfg),
        workers=cfg.workers,
        device=device,
        amp=uses_amp(cfg, device),
        channels_last=uses_channels_last(cfg, device),
        tta=cfg.tta,
        translate=cfg.tta_translate if cfg.tta else 0,
        dist=dist,
    )


def _save_fold(
    plan: RunPlan,
    k: int,
    model: torch.nn.Module,
    outputs: dict[str, np.ndarray],
    metrics: FoldMetrics,
) -> None:
    """Write fold ``k``'s files; ``oof.npz`` last: its presence marks the fold as done."""
    files = plan.fold(k)
    if "unlabeled" in outputs:
        with atomic_file(files.unlabeled, overwrite=True) as f:
            np.savez(f, probs=outputs["unlabeled"])
    with atomic_file(files.model, overwrite=True) as f:
        torch.save(model.state_dict(), f)
    write_metrics(files.metrics, metrics, overwrite=True)
    with atomic_file(files.oof, overwrite=True) as f:
        # Text ids, not objects: merging loads the file without pickle. The fold's
        # own embeddings stay here for comparison only; they are one space per fold.
        ids = np.asarray(plan.sample_ids[plan.folds == k], dtype=str)
        np.savez(f, sample_id=ids, probs=outputs["probs"], embeddings=outputs["embeddings"])
    files.checkpoint.unlink(missing_ok=True)


def train_fold(
    plan: RunPlan,
    k: int,
    *,
    progress: Progress,
    cache: list[np.ndarray] | None = None,
    dist: Dist = SINGLE,
    warm: WarmStart | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FoldMetrics:
    """Train fold ``k`` on the other folds, predict it, and save its outputs.

    ``warm``: fine-tune ``warm.run``'s fold ``k`` model with ``warm.train`` instead.
    Under torchrun every process runs this; rank 0 alone writes.
    """
    cfg = plan.cfg
    train_cfg = warm.train if warm is not None else cfg.train
    plan.fold(k).dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.train.device, dist)
    seed = seed_for(cfg.train.seed, k)
    model, norm = model_and_normalize(cfg, seed)
    if warm is not None:
        load_weights(model, warm.run.fold(k).model)
    train_ds, val_ds = _fold_datasets(plan, k, norm, seed, cache)
    t0 = time.perf_counter()
    result = fit(
        model,
        train_ds,
        val_ds,
        train_cfg,
        classes=plan.classes,
        checkpoint=plan.fold(k).checkpoint,
        seed=seed,
        device=device,
        progress=progress,
        desc=f"{'refresh ' if warm is not None else ''}fold {k + 1}/{cfg.train.folds}",
        dist=dist,
        on_epoch=on_epoch,
    )
    probs, emb = _fold_predictions(plan, model, val_ds, result, device, dist)
    outputs = {"probs": probs, "embeddings": emb}
    # Unlabeled rows get this fold model's opinion too (averaged over folds at merge),
    # for ranking them for labeling.
    if len(plan.unlabeled_rows):
        outputs["unlabeled"] = predict_outputs(
            model, norm, cfg, plan.df, plan.root, plan.unlabeled_rows, tta=cfg.train.tta, dist=dist
        )[0]
    metrics = FoldMetrics(
        **classification_metrics(val_ds.labels, probs.argmax(1), plan.classes),
        fold=k,
        n_train=len(train_ds),
        train_images_per_s=result.images_per_s,
        seconds=time.perf_counter() - t0,
        device=str(device),
        processes=dist.world,
        history=result.history,
        selected_epoch=result.selected_epoch or train_cfg.epochs,
    )
    if dist.main:
        _save_fold(plan, k, model, outputs, metrics)
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


def probe_folds(plan: RunPlan, todo: list[int], *, progress: Progress, dist: Dist = SINGLE) -> None:
    """``train.mode = "probe"``: each fold of ``todo`` gets a logistic-regression head on
    the pretrained backbone's features of the other folds' rows (:mod:`cleaner.training.probe`).

    Every row is embedded once, before any head (``embeddings.npz``, the one
    feature space the queue uses too); a fold's ``model.pt`` is the backbone
    with its head, whose softmax gives the fold's probabilities.
    """
    emb = embed_run(plan, progress=progress, dist=dist)
    train_x = emb.embeddings[emb.split == "train"]
    unlabeled_x = emb.embeddings[emb.split == "unlabeled"]
    weights = pd.to_numeric(plan.df["weight"]).to_numpy(np.float64)[plan.train_rows]
    cfg = plan.cfg
    for k in todo:
        t0 = time.perf_counter()
        plan.fold(k).dir.mkdir(parents=True, exist_ok=True)
        fit_rows, own = plan.folds != k, plan.folds == k
        w, b = fit_head(
            train_x[fit_rows],
            plan.labels[fit_rows],
            weights[fit_rows],
            n_classes=len(plan.classes),
            c=cfg.train.probe_c,
        )
        model, _ = model_and_normalize(cfg, seed_for(cfg.train.seed, k))
        set_head(model, w, b)
        outputs = {"probs": head_probs(train_x[own], w, b), "embeddings": train_x[own]}
        if len(unlabeled_x):
            outputs["unlabeled"] = head_probs(unlabeled_x, w, b)
        metrics = FoldMetrics(
            **classification_metrics(plan.labels[own], outputs["probs"].argmax(1), plan.classes),
            fold=k,
            n_train=int(fit_rows.sum()),
            mode="probe",
            seconds=time.perf_counter() - t0,
        )
        if dist.main:
            _save_fold(plan, k, model, outputs, metrics)
        dist.barrier()


def load_unlabeled(path: Path, rows: int, classes: int) -> np.ndarray:
    """A fold's ``unlabeled.npz``: its model's probabilities of the unlabeled rows (U, K).

    Loaded without pickle, and refused (naming the file) unless it holds a finite
    ``(rows, classes)`` array.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            probs = np.asarray(z["probs"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        reason = f"not a fold output this version reads safely ({e})"
    else:
        if probs.shape == (rows, classes) and np.isfinite(probs).all():
            return probs
        reason = f"holds {probs.shape} probabilities, not the ({rows}, {classes}) of the run"
    raise InputError([Problem(str(path), f"{reason}; delete the fold's folder to train it again")])


class RunClock:
    """Says once, after the first epoch, how long the rest of the run should take: its
    images left at the first epoch's rate (resumed epochs are not counted: it measures
    what this process trains). A rate measured on one epoch; the later ones run alike."""

    def __init__(self, images: int, progress: Progress) -> None:
        self.images, self.progress, self.said = images, progress, False

    def __call__(self, images: int, seconds: float) -> None:
        self.images -= images
        if self.said or seconds <= 0 or self.progress.disable:
            return
        self.said = True
        rate = images / seconds
        self.progress.console.print(
            f"expected: about {_minutes(self.images / rate)} more for "
            f"{max(self.images, 0):,} images at {rate:,.0f} img/s (the first epoch's rate)",
            highlight=False,
            soft_wrap=True,
        )


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def train_folds(
    plan: RunPlan,
    folds: Iterable[int],
    *,
    progress: Progress,
    dist: Dist = SINGLE,
    warm: WarmStart | None = None,
    after: int = 0,
) -> list[int]:
    """Train each of ``folds`` that is not done yet, in this process; return those trained.

    ``warm``: each fine-tuned from another run's fold model (:class:`WarmStart`).
    ``after``: the images trained once the folds are done (the embedding model's), for
    the expected time printed after the first epoch (:class:`RunClock`).
    """
    todo = [k for k in folds if not plan.fold_done(k)]
    if plan.cfg.train.mode == "probe":
        if todo:
            probe_folds(plan, todo, progress=progress, dist=dist)
        return todo
    cache = None
    if todo and plan.cfg.data.cache:
        paths = resolve_paths(plan.df.iloc[plan.train_rows], plan.root)
        task = progress.add_task("decoding images", total=len(paths), unit="img")
        cache = decode_all(
            paths,
            plan.cfg.model.in_chans,
            lambda: progress.advance(task),
            max_pixels=plan.cfg.data.max_image_pixels,
        )
        progress.remove_task(task)
    epochs = (warm.train if warm is not None else plan.cfg.train).epochs
    images = sum(int((plan.folds != k).sum()) for k in todo) * epochs + after
    clock = RunClock(images, progress) if todo and dist.main else None
    for k in todo:
        train_fold(plan, k, progress=progress, cache=cache, dist=dist, warm=warm, on_epoch=clock)
        dist.barrier()  # the others wait for rank 0's files before looking at the folder
    return todo
