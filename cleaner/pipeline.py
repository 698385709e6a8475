"""The pipeline's building blocks shared by ``oof``, ``retrain`` and the embedding step.

A dataset over manifest rows with the pipeline's transforms, a fresh model with
the normalisation its inputs need, and prediction of any manifest rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cleaner.config import PipelineConfig
from cleaner.data import ImageDataset, Normalize, build_transform
from cleaner.distributed import SINGLE, Dist
from cleaner.manifest import resolve_paths
from cleaner.models import create_model, default_mean_std
from cleaner.train import predict, resolve_device


def make_dataset(
    cfg: PipelineConfig,
    df: pd.DataFrame,
    root: Path,
    rows: np.ndarray,
    labels: np.ndarray,
    *,
    train: bool,
    normalize: Normalize,
    seed: int,
    weights: np.ndarray | None = None,
    cache: list[np.ndarray] | None = None,
) -> ImageDataset:
    """A dataset over manifest positions ``rows`` (paths relative to ``root``).

    ``weights`` (default: the manifest's) and ``cache`` are indexed like ``rows``.
    """
    sub = df.iloc[rows]
    if weights is None:
        weights = pd.to_numeric(sub["weight"]).to_numpy(np.float32)
    return ImageDataset(
        resolve_paths(sub, root),
        labels,
        weights,
        build_transform(cfg.augment, train=train, image_size=cfg.data.hw),
        normalize=normalize,
        in_chans=cfg.model.in_chans,
        seed=seed,
        images=cache,
    )


def model_and_normalize(cfg: PipelineConfig, seed: int) -> tuple[torch.nn.Module, Normalize]:
    """A fresh model initialised from ``seed``, and the normalisation its inputs need."""
    torch.manual_seed(seed)
    model = create_model(cfg.model, len(cfg.data.classes))
    if cfg.data.mean:
        return model, Normalize(cfg.data.mean, cfg.data.std)
    return model, Normalize(*default_mean_std(model, cfg.model.in_chans))


def predict_rows(
    model: torch.nn.Module,
    normalize: Normalize,
    cfg: PipelineConfig,
    df: pd.DataFrame,
    root: Path,
    rows: np.ndarray,
    *,
    tta: bool = False,
    dist: Dist = SINGLE,
) -> np.ndarray:
    """Probabilities (R, K) of manifest positions ``rows`` (unlabeled, test) under ``model``."""
    return predict_outputs(model, normalize, cfg, df, root, rows, tta=tta, dist=dist)[0]


def predict_outputs(
    model: torch.nn.Module,
    normalize: Normalize,
    cfg: PipelineConfig,
    df: pd.DataFrame,
    root: Path,
    rows: np.ndarray,
    *,
    tta: bool = False,
    dist: Dist = SINGLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (R, K) and penultimate embeddings (R, D) of manifest positions ``rows``.

    No rows (a manifest without test rows, say) is no prediction, and D is then 0.
    """
    if not len(rows):
        return np.zeros((0, len(cfg.data.classes)), np.float32), np.zeros((0, 0), np.float32)
    ds = make_dataset(
        cfg, df, root, rows, np.full(len(rows), -1), train=False, normalize=normalize, seed=0
    )
    device = resolve_device(cfg.train.device, dist)
    return predict(
        model,
        ds,
        batch_size=cfg.train.eval_batch_size or 2 * cfg.train.batch_size,
        workers=cfg.train.workers,
        device=device,
        amp=cfg.train.amp,
        channels_last=cfg.train.channels_last and device.type == "cuda",
        tta=tta,
        dist=dist,
    )
