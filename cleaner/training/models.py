"""Models by name through timm's factory, plus embedding extraction.

Importing this module registers the small-photo networks of
:mod:`cleaner.training.smallnets` in timm's registry, so ``model.name`` reaches them too.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from cleaner.core.config import ModelConfig
from cleaner.core.errors import InputError
from cleaner.training import smallnets  # noqa: F401  (registers the small-photo models with timm)


def create_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """A timm model: hub weights (``pretrained``), a local file (``weights``) or random init."""
    if not timm.is_model(cfg.name):
        raise InputError(f"model.name: timm has no model named {cfg.name!r}")
    kwargs: dict = {
        "pretrained": cfg.pretrained or bool(cfg.weights),
        "num_classes": num_classes,
        "in_chans": cfg.in_chans,
        "drop_rate": cfg.drop_rate,
        # The model's own arguments (timm's --model-kwargs), e.g. widths or whiten.
        **cfg.kwargs,
    }
    if cfg.weights:
        weights = Path(cfg.weights)
        if not weights.is_file():
            raise InputError(f"model.weights: file not found: {weights}")
        # timm loads the file like hub weights, then adapts the classifier
        # and the first convolution to num_classes and in_chans.
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights.resolve())}
    return timm.create_model(cfg.name, **kwargs)


def default_mean_std(
    model: nn.Module, in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation of the model's pretrained config, fitted to ``in_chans`` channels."""
    cfg = timm.data.resolve_model_data_config(model)
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if len(mean) != in_chans:
        # A grayscale (or multi-band) input: average the RGB statistics.
        mean = (sum(mean) / len(mean),) * in_chans
        std = (sum(std) / len(std),) * in_chans
    return mean, std


def logits_and_embeddings(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class logits (B, K) and penultimate features (B, D) in one forward pass."""
    feats = model.forward_features(x)  # type: ignore[operator]
    emb = model.forward_head(feats, pre_logits=True)  # type: ignore[operator]
    logits = model.forward_head(feats)  # type: ignore[operator]
    return logits, emb


def needs_data_init(model: nn.Module) -> bool:
    """Whether ``model`` waits for :func:`init_from_data` (an airbench whitening stem, say)."""
    return bool(getattr(model, "data_init_pending", False))


@torch.no_grad()
def init_from_data(model: nn.Module, images: torch.Tensor) -> None:
    """Hand ``images`` (N, C, H, W), normalised as in training, to a model that waits for data.

    Only ever the training rows of the fit at hand: a fold's held-out rows
    must not shape its model, not even through first-layer statistics.
    """
    if needs_data_init(model):
        model.init_from_data(images)  # type: ignore[operator]
