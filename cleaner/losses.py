"""Per-sample weighted losses: cross-entropy (with label smoothing) and focal.

Each loss maps ``logits (B, K)``, ``targets (B,)`` and ``weights (B,)`` to a
scalar ``sum(weights * loss) / B``: dividing by the batch size, not the sum of
weights, lets a down-weighted sample contribute less instead of being
renormalised back up.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cleaner.config import TrainConfig

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def weighted_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, *, smoothing: float = 0.0
) -> torch.Tensor:
    loss = F.cross_entropy(logits.float(), targets, reduction="none", label_smoothing=smoothing)
    return (weights * loss).sum() / len(targets)


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    *,
    gamma: float = 2.0,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): ``(1 - p_t) ** gamma`` times cross-entropy."""
    logits = logits.float()
    ce = F.cross_entropy(logits, targets, reduction="none", label_smoothing=smoothing)
    # p_t is the model's probability of the target, without smoothing.
    p_t = torch.exp(-F.cross_entropy(logits, targets, reduction="none"))
    loss = (1.0 - p_t).pow(gamma) * ce
    return (weights * loss).sum() / len(targets)


def build_loss(cfg: TrainConfig) -> LossFn:
    """The loss named by ``train.loss``."""
    if cfg.loss == "focal":
        return lambda lo, t, w: focal_loss(
            lo, t, w, gamma=cfg.focal_gamma, smoothing=cfg.label_smoothing
        )
    return lambda lo, t, w: weighted_cross_entropy(lo, t, w, smoothing=cfg.label_smoothing)
