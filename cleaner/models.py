"""Models by name through timm's factory, plus embedding extraction."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from cleaner.config import ModelConfig
from cleaner.errors import InputError


def create_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """A timm model: hub weights (``pretrained``), a local file (``weights``) or random init."""
    if not timm.is_model(cfg.name):
        raise InputError(f"model.name: timm has no model named {cfg.name!r}")
    kwargs: dict = {
        "pretrained": cfg.pretrained or bool(cfg.weights),
        "num_classes": num_classes,
        "in_chans": cfg.in_chans,
        "drop_rate": cfg.drop_rate,
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
