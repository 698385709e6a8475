"""Fit one model: optimizer, schedule, a checkpoint per epoch, resume.

``fit`` trains for ``train.epochs`` epochs and saves a checkpoint after each
one (model, optimizer, schedule, scaler, EMA, history). Started again on the
same checkpoint path it resumes after the last finished epoch; since each
epoch re-seeds its own randomness (shuffle, augmentation, dropout, mixup)
from ``(seed, epoch)``, the resumed run ends with the same weights as an
uninterrupted one on the CPU.

Optional, from timm: Mixup / CutMix per batch (``train.mixup``,
``train.cutmix``), with the per-sample loss weights mixed like the images;
an EMA of the weights (``train.ema``), which validation, the selected epoch
and the returned model use; and flip test-time augmentation of the
validation probabilities (``train.tta``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress, TaskID
from timm.optim import create_optimizer_v2
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Subset

from cleaner.core.atomic import atomic_file
from cleaner.core.config import TrainConfig
from cleaner.core.errors import InputError, Problem
from cleaner.core.metrics import classification_metrics
from cleaner.training.data import EpochSampler, ImageDataset, make_loader, seed_for
from cleaner.training.device import autocast, uses_amp, uses_channels_last
from cleaner.training.distributed import (
    SINGLE,
    Dist,
    ShardedEpochSampler,
    gather_rows,
    local_batch_size,
    shard,
    sync_buffers,
)
from cleaner.training.losses import build_loss
from cleaner.training.mixing import BatchMixer
from cleaner.training.models import init_from_data, logits_and_embeddings, needs_data_init
from cleaner.training.tta import tta_probs


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int) -> float:
    """Multiplier of ``train.lr`` at optimizer step ``step`` for the per-step schedules."""
    if cfg.scheduler == "cosine":
        total = cfg.epochs * steps_per_epoch
        warmup = min(int(cfg.warmup_epochs * steps_per_epoch), total - 1)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine
    if cfg.scheduler == "step":
        return float(cfg.gamma ** ((step // steps_per_epoch) // cfg.step_epochs))
    return 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """The schedule of ``train.scheduler``; ``plateau`` steps per epoch, the rest per step."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.gamma, patience=cfg.patience
        )
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg, steps_per_epoch)
    )


@dataclass
class FitResult:
    """What training produced; ``val_*`` are the last epoch's validation outputs."""

    history: list[dict[str, Any]] = field(default_factory=list)
    train_images: int = 0
    train_seconds: float = 0.0
    val_probs: np.ndarray | None = None
    val_embeddings: np.ndarray | None = None
    selected_epoch: int | None = None  # train.select = macro_f1: the epoch kept

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds > 0 else float("nan")


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: ImageDataset,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
    tta: bool = False,
    translate: int = 0,
    dist: Dist = SINGLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (N, K) and penultimate embeddings (N, D), in dataset order.

    ``tta`` averages the probabilities of each image and its horizontal mirror;
    ``translate`` (pixels) then weighs that half against the mean of the image
    shifted both ways (see :func:`tta_probs`). The embeddings stay those of the
    image as it is. Under torchrun each process predicts its shard and every
    process gets all N rows back.
    """
    model.eval()
    # Fewer rows than processes: every process predicts them all (no empty shards).
    sharded = dist.active and len(dataset) >= dist.world
    positions = shard(len(dataset), dist)
    part = Subset(dataset, positions.tolist()) if sharded else dataset
    loader = make_loader(part, batch_size=batch_size, workers=workers, device=device)
    probs, embs = [], []
    for x, _, _, _ in loader:
        x = dataset.normalize(x.to(device, non_blocking=True))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits, emb = logits_and_embeddings(model, x)
            p = tta_probs(model, x, torch.softmax(logits.float(), dim=1), tta, translate)
        probs.append(p.cpu())
        embs.append(emb.float().flatten(1).cpu())
    p_all, e_all = torch.cat(probs).numpy(), torch.cat(embs).numpy()
    if sharded:
        p_all, e_all = gather_rows(len(dataset), positions, p_all, e_all)
    return p_all, e_all


# Seed stream of the images a data-dependent initialisation sees.
_INIT_STREAM = 1 << 21
DATA_INIT_IMAGES = 5000  # airbench whitens from 5,000 training images


def data_init_images(train_ds: ImageDataset, seed: int) -> torch.Tensor:
    """Up to :data:`DATA_INIT_IMAGES` of the fit's own training images (N, C, H, W),
    normalised, as its first batches see them (augmented with a fixed seed): what a
    model's data-dependent first layer is computed from. Deterministic for ``seed``."""
    g = torch.Generator().manual_seed(seed_for(seed, _INIT_STREAM))
    rows = torch.randperm(len(train_ds), generator=g)[:DATA_INIT_IMAGES].tolist()
    images = torch.stack([train_ds[(i, _INIT_STREAM)][0] for i in rows])
    return train_ds.normalize(images)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    # The rolling checkpoint belongs to this fit alone, so replacing it is safe.
    with atomic_file(path, overwrite=True) as f:
        torch.save(state, f)


def _best_to_tensors(best: dict[str, Any] | None) -> dict[str, Any] | None:
    """The best epoch's record with its arrays as tensors: a checkpoint holds no numpy objects."""
    if best is None:
        return None
    return {**best, **{k: torch.from_numpy(np.asarray(best[k])) for k in ("probs", "embeddings")}}


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    """A rolling checkpoint, read with ``weights_only=True``: tensors and plain values only.

    A copied run folder is data, never code: a file that needs anything else
    to unpickle is refused, naming it.
    """
    try:
        state: dict[str, Any] = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(
            [
                Problem(
                    str(path),
                    f"not a checkpoint this version loads safely ({reason}); "
                    "delete it to train this model from the start",
                )
            ]
        ) from None
    best = state.get("best")
    if best is not None:
        state["best"] = {
            **best,
            **{k: best[k].cpu().numpy() for k in ("probs", "embeddings")},
        }
    return state


def eval_batch_size(cfg: TrainConfig) -> int:
    """Batch size for prediction: ``train.eval_batch_size``, else twice the training one
    (no gradients are kept, so twice as many images fit)."""
    return cfg.eval_batch_size or 2 * cfg.batch_size


@dataclass
class _Training:
    """What one ``fit`` steps: the model, its optimizer, schedule, scaler and loader."""

    model: nn.Module
    net: nn.Module  # the module the optimizer steps (DDP around ``model`` under torchrun)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    loader: Any
    sampler: EpochSampler | ShardedEpochSampler
    loss_fn: Any
    device: torch.device
    channels_last: bool
    amp: bool  # autocast (uses_amp)
    steps_per_epoch: int  # optimizer steps
    mixer: BatchMixer | None  # train.mixup / train.cutmix
    ema: ModelEmaV3 | None  # train.ema: follows ``model`` (not the DDP wrapper)
    keep: torch.Tensor  # (N,) 1 for training rows in use, 0 for those train.prune_at dropped

    @property
    def eval_model(self) -> nn.Module:
        """What validates and is kept: the EMA of the weights when there is one."""
        return self.ema.module if self.ema is not None else self.model


def _setup(
    model: nn.Module,
    train_ds: ImageDataset,
    cfg: TrainConfig,
    *,
    num_classes: int,
    seed: int,
    device: torch.device,
    dist: Dist,
) -> _Training:
    """Model on the device, optimizer, schedule, scaler, loss and the epoch loader."""
    use_cl = uses_channels_last(cfg, device)
    model.to(device)
    if use_cl:
        model.to(memory_format=torch.channels_last)
    opt_args: dict[str, Any] = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    # timm's factory leaves biases and norm weights out of weight decay.
    opt = f"lookahead_{cfg.optimizer}" if cfg.lookahead else cfg.optimizer
    optimizer = create_optimizer_v2(
        model, opt=opt, lr=cfg.lr, weight_decay=cfg.weight_decay, **opt_args
    )
    sampler: EpochSampler | ShardedEpochSampler = (
        ShardedEpochSampler(len(train_ds), seed=seed, d=dist)
        if dist.active
        else EpochSampler(len(train_ds), seed=seed)
    )
    loader = make_loader(
        train_ds,
        batch_size=local_batch_size(cfg.batch_size, dist),
        workers=cfg.workers,
        device=device,
        sampler=sampler,
    )
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    use_scaler = cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return _Training(
        model=model,
        net=model,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, cfg, steps_per_epoch),
        scaler=torch.amp.GradScaler("cuda", enabled=use_scaler),
        loader=loader,
        sampler=sampler,
        loss_fn=build_loss(cfg),
        device=device,
        channels_last=use_cl,
        amp=uses_amp(cfg, device),
        steps_per_epoch=steps_per_epoch,
        mixer=BatchMixer(cfg, num_classes, seed) if cfg.mixup > 0 or cfg.cutmix > 0 else None,
        # A copy of the model as it is now: on the device, in its memory format, not wrapped.
        ema=ModelEmaV3(model, decay=cfg.ema, use_warmup=cfg.ema_warmup) if cfg.ema > 0 else None,
        keep=torch.ones(len(train_ds), device=device),
    )


def _resume(t: _Training, checkpoint: Path, result: FitResult) -> tuple[int, dict[str, Any] | None]:
    """Load the rolling checkpoint into ``t`` and ``result``: the epochs done and the best."""
    state = load_checkpoint(checkpoint, t.device)
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    if t.ema is not None:
        if "ema" not in state:
            reason = "has no EMA weights (train.ema); delete it to start over"
            raise InputError([Problem(str(checkpoint), reason)])
        t.ema.module.load_state_dict(state["ema"])
    if "keep" in state:  # older checkpoints predate train.prune_at
        t.keep = state["keep"].to(t.device)
    result.history = state["history"]
    return int(state["epoch"]), state.get("best")


def _distribute(t: _Training, dist: Dist) -> None:
    """Under torchrun the optimizer steps a DDP wrapper; predictions and checkpoints
    keep using the model itself."""
    if not dist.active:
        return
    if t.device.type == "cuda":
        # Batch-norm statistics over the global batch, as in one process (GPUs only:
        # SyncBatchNorm has no CPU kernel, so on the CPU each shard keeps its own).
        nn.SyncBatchNorm.convert_sync_batchnorm(t.model)
    device_ids = [t.device] if t.device.type == "cuda" else None
    t.net = DistributedDataParallel(t.model, device_ids=device_ids)


def _train_epoch(
    t: _Training,
    train_ds: ImageDataset,
    cfg: TrainConfig,
    *,
    epoch: int,
    desc: str,
    advance: Callable[[int], None],
) -> tuple[float, int]:
    """One pass over the training rows: the mean loss and the images this process saw."""
    t.net.train()
    running, seen = 0.0, 0
    t.optimizer.zero_grad(set_to_none=True)
    for i, (x, y, w, idx) in enumerate(t.loader):
        x = train_ds.normalize(x.to(t.device, non_blocking=True))
        y = y.to(t.device, non_blocking=True)
        w = w.to(t.device, dtype=torch.float32, non_blocking=True) * t.keep[idx.to(t.device)]
        target = y
        if t.mixer is not None:
            x, target, w = t.mixer(x, y, w)
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(t.device, t.amp):
            loss = t.loss_fn(t.net(x), target, w)
        if not torch.isfinite(loss):
            raise RuntimeError(
                f"{desc}: loss became {loss.item()} in epoch {epoch + 1}; lower train.lr"
            )
        t.scaler.scale(loss / cfg.grad_accum).backward()
        if (i + 1) % cfg.grad_accum == 0 or i + 1 == len(t.loader):
            _optimizer_step(t, cfg, step=epoch * t.steps_per_epoch + i // cfg.grad_accum + 1)
        running += loss.item() * len(y)
        seen += len(y)
        advance(len(y))
    return running / max(1, seen), seen


def prune_epoch(cfg: TrainConfig) -> int:
    """The epoch (0-based) before which ``train.prune_at`` drops rows; at least 1."""
    return max(1, round(cfg.prune_at * cfg.epochs))


class _FixedEpoch(torch.utils.data.Dataset):
    """A training dataset read in order with the augmentation of one fixed pseudo-epoch:
    the same images however the fit got here (resumed or not)."""

    def __init__(self, ds: ImageDataset, epoch: int):
        self.ds, self.epoch, self.normalize = ds, epoch, ds.normalize

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, float, int]:
        return self.ds[(i, self.epoch)]


def prune_mask(t: _Training, train_ds: ImageDataset, cfg: TrainConfig, dist: Dist) -> torch.Tensor:
    """(N,) 0 for the training rows cleanlab flags on the model's predictions of them, else 1.

    cleanlab's ``find_label_issues`` (confident learning, per-class
    thresholds) on the probabilities the evaluated model (the EMA with
    ``train.ema``) gives the training rows now, before it has memorised their
    wrong labels. Fewer than two classes, or a class with too few rows for
    cleanlab, drops nothing.
    """
    from cleanlab.filter import find_label_issues

    probs, _ = predict(
        t.eval_model,
        _FixedEpoch(train_ds, _INIT_STREAM + 1),  # type: ignore[arg-type]
        batch_size=eval_batch_size(cfg),
        workers=cfg.workers,
        device=t.device,
        amp=t.amp,
        channels_last=t.channels_last,
        tta=cfg.tta,
        dist=dist,
    )
    keep = torch.ones(len(train_ds))
    labels = train_ds.labels
    if len(np.unique(labels)) < 2 or np.bincount(labels).min() < 2:
        return keep
    issues = find_label_issues(labels, probs, n_jobs=1)
    keep[torch.from_numpy(issues)] = 0.0
    return keep


def _optimizer_step(t: _Training, cfg: TrainConfig, *, step: int) -> None:
    """Step the optimizer (and the schedule, the EMA); ``step`` counts steps from 1 over
    the whole fit, as timm's ``ModelEmaV3.update(model, step=...)`` wants for its warmup."""
    t.scaler.step(t.optimizer)
    t.scaler.update()
    t.optimizer.zero_grad(set_to_none=True)
    if cfg.scheduler != "plateau":
        t.scheduler.step()
    if t.ema is not None:
        t.ema.update(t.model, step=step)


def _evaluate(
    t: _Training,
    val_ds: ImageDataset,
    cfg: TrainConfig,
    classes: Sequence[str],
    dist: Dist,
    *,
    tta: bool,
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Validation loss, accuracy and macro F1, with the probabilities and embeddings
    (of the EMA weights with ``train.ema``; test-time augmented when ``tta``)."""
    if dist.active:
        sync_buffers(t.model)
        if t.ema is not None:  # on the CPU each process's batch norm statistics differ
            sync_buffers(t.ema.module)
    probs, emb = predict(
        t.eval_model,
        val_ds,
        batch_size=eval_batch_size(cfg),
        workers=cfg.workers,
        device=t.device,
        amp=t.amp,
        channels_last=t.channels_last,
        tta=tta,
        translate=cfg.tta_translate if tta else 0,
        dist=dist,
    )
    labels = val_ds.labels
    eps = 1e-12
    m = classification_metrics(labels, probs.argmax(1), classes)
    scores = {
        "val_loss": float(-np.mean(np.log(probs[np.arange(len(labels)), labels] + eps))),
        "val_accuracy": m["accuracy"],
        "val_macro_f1": m["macro_f1"],
    }
    return scores, probs, emb


def _keep_best(
    best: dict[str, Any] | None,
    model: nn.Module,
    epoch: int,
    score: float,
    probs: np.ndarray,
    emb: np.ndarray,
) -> dict[str, Any] | None:
    """``train.select = macro_f1``: this epoch's weights and outputs if it beats ``best``."""
    if best is not None and score <= best["score"]:
        return best
    return {
        "score": score,
        "epoch": epoch,
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "probs": probs,
        "embeddings": emb,
    }


def _checkpoint_state(
    t: _Training, epoch: int, result: FitResult, best: dict[str, Any] | None
) -> dict[str, Any]:
    state = {
        "epoch": epoch,
        "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(),
        "scaler": t.scaler.state_dict(),
        "history": result.history,
        "best": _best_to_tensors(best),
        "keep": t.keep.cpu(),
    }
    if t.ema is not None:
        state["ema"] = t.ema.module.state_dict()
    return state


def _start_epoch(t: _Training, epoch: int, seed: int) -> None:
    """Re-seed the epoch's randomness from ``(seed, epoch)``: shuffle and augmentation
    (the sampler), dropout and other in-model randomness (torch), mixup."""
    t.sampler.set_epoch(epoch)
    torch.manual_seed(seed_for(seed, epoch, 1))
    if t.mixer is not None:
        t.mixer.set_epoch(epoch)


def _final_weights(
    t: _Training, model: nn.Module, result: FitResult, best: dict[str, Any] | None
) -> None:
    """Leave in ``model`` what the fit returns: the best epoch's weights (train.select),
    else the EMA's (train.ema), else the last."""
    if best is not None:
        model.load_state_dict(best["model"])
        result.val_probs, result.val_embeddings = best["probs"], best["embeddings"]
        result.selected_epoch = best["epoch"]
    elif t.ema is not None:
        model.load_state_dict(t.ema.module.state_dict())


def fit(
    model: nn.Module,
    train_ds: ImageDataset,
    val_ds: ImageDataset | None,
    cfg: TrainConfig,
    *,
    classes: Sequence[str],
    checkpoint: Path,
    seed: int,
    device: torch.device,
    progress: Progress,
    desc: str = "train",
    dist: Dist = SINGLE,
    on_epoch: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``model`` in place, resuming from ``checkpoint``; ``on_epoch(images, s)`` hears each.

    ``model`` ends with the weights the result's validation outputs are of:
    the selected epoch's (``train.select``), else the EMA's (``train.ema``),
    else the last epoch's. Under torchrun (``dist.active``) the processes
    train one model with DistributedDataParallel; only rank 0 writes the
    checkpoint.
    """
    if not checkpoint.exists() and needs_data_init(model):
        init_from_data(model, data_init_images(train_ds, seed))
    t = _setup(model, train_ds, cfg, num_classes=len(classes), seed=seed, device=device, dist=dist)
    result = FitResult()
    start_epoch = 0
    # train.select = macro_f1: the best epoch's weights, score and validation outputs.
    best: dict[str, Any] | None = None
    if checkpoint.exists():
        start_epoch, best = _resume(t, checkpoint, result)
        if not progress.disable:
            progress.console.print(f"{desc}: resuming after epoch {start_epoch} from {checkpoint}")
    _distribute(t, dist)
    n = len(train_ds)
    task: TaskID = progress.add_task(
        desc, total=n * cfg.epochs, completed=n * start_epoch, unit="img"
    )

    def advance(images: int) -> None:
        progress.advance(task, images * dist.world)

    for epoch in range(start_epoch, cfg.epochs):
        _start_epoch(t, epoch, seed)
        t0 = time.perf_counter()
        if cfg.prune_at > 0 and epoch == prune_epoch(cfg):
            t.keep = prune_mask(t, train_ds, cfg, dist).to(t.device)

        loss, seen = _train_epoch(t, train_ds, cfg, epoch=epoch, desc=desc, advance=advance)
        result.train_seconds += time.perf_counter() - t0
        result.train_images += seen * dist.world
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "lr": t.optimizer.param_groups[0]["lr"],
            "train_rows_used": int(t.keep.sum().item()),
        }
        if val_ds is not None and len(val_ds):
            # TTA (up to 6 passes with tta_translate) where the probabilities are kept: the
            # last epoch, or every epoch when train.select may keep any of them. The other
            # epochs' validation figures are of the images as they are.
            tta = cfg.tta and (epoch + 1 == cfg.epochs or cfg.select != "last")
            scores, probs, emb = _evaluate(t, val_ds, cfg, classes, dist, tta=tta)
            record.update(scores)
            result.val_probs, result.val_embeddings = probs, emb
            if cfg.select == "macro_f1":
                best = _keep_best(best, t.eval_model, epoch + 1, scores["val_macro_f1"], probs, emb)
            if cfg.scheduler == "plateau":
                t.scheduler.step(record["val_loss"])
        result.history.append(record)
        shown = f" val acc {record['val_accuracy']:.4f}" if "val_accuracy" in record else ""
        progress.update(task, description=f"{desc} epoch {epoch + 1}/{cfg.epochs}{shown}")
        if dist.main:
            _save_checkpoint(checkpoint, _checkpoint_state(t, epoch + 1, result, best))
        if on_epoch is not None:  # the whole epoch's time: validation and checkpoint too
            on_epoch(seen * dist.world, time.perf_counter() - t0)
    progress.update(task, completed=n * cfg.epochs)
    _final_weights(t, model, result, best)
    return result
