"""Per-sample weighted losses: cross-entropy, focal, and two robust to label noise.

Each loss maps ``logits (B, K)``, ``targets`` and ``weights (B,)`` to a
scalar ``sum(weights * loss) / B``: dividing by the batch size, not the sum of
weights, lets a down-weighted sample contribute less instead of being
renormalised back up.

``targets`` are class indices ``(B,)`` or, from mixup / cutmix, soft targets
``(B, K)`` whose rows sum to 1. Soft targets carry their own label smoothing
(timm's ``Mixup`` applies it), so ``smoothing`` applies to class indices only.
Cross-entropy, GCE and SCE take both; focal takes class indices only (the
config refuses focal with mixup or cutmix).

- GCE: Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep
  Neural Networks with Noisy Labels", NeurIPS 2018.
- SCE: Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy
  Labels", ICCV 2019.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cleaner.core.choices import LOSSES
from cleaner.core.config import TrainConfig

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# SCE's reverse cross-entropy takes log 0 as this (the paper's A = -4).
SCE_LOG_ZERO = -4.0


def target_distribution(
    targets: torch.Tensor, num_classes: int, *, smoothing: float = 0.0
) -> torch.Tensor:
    """Targets as distributions (B, K): class indices one-hot, smoothed like
    ``F.cross_entropy`` (``1 - s`` on the class plus ``s / K`` on each); soft targets as given."""
    if targets.ndim == 2:
        return targets.float()
    one_hot = F.one_hot(targets.long(), num_classes).float()
    return one_hot * (1.0 - smoothing) + smoothing / num_classes


def _weighted_mean(weights: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    return (weights * loss).sum() / len(loss)


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``sum(w * -(y * log_softmax(logits)).sum(1)) / B`` for soft targets ``y`` (B, K)."""
    loss = -(targets.float() * F.log_softmax(logits.float(), dim=1)).sum(1)
    return _weighted_mean(weights, loss)


def weighted_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, *, smoothing: float = 0.0
) -> torch.Tensor:
    if targets.ndim == 2:
        return soft_cross_entropy(logits, targets, weights)
    loss = F.cross_entropy(logits.float(), targets, reduction="none", label_smoothing=smoothing)
    return _weighted_mean(weights, loss)


def focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    *,
    gamma: float = 2.0,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017): ``(1 - p_t) ** gamma`` times cross-entropy."""
    if targets.ndim != 1:
        raise ValueError("focal loss takes class indices (B,), not soft targets")
    logits = logits.float()
    ce = F.cross_entropy(logits, targets, reduction="none", label_smoothing=smoothing)
    # p_t is the model's probability of the target, without smoothing.
    p_t = torch.exp(-F.cross_entropy(logits, targets, reduction="none"))
    loss = (1.0 - p_t).pow(gamma) * ce
    return _weighted_mean(weights, loss)


def generalized_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    *,
    q: float = 0.7,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018): ``(1 - p_y ** q) / q``.

    Between cross-entropy (``q -> 0``) and MAE (``q = 1``, ``1 - p_y``): a
    sample the model already contradicts pulls the weights less than under
    cross-entropy, so wrong labels are fitted later. For soft targets ``y``
    (B, K) it is ``sum_k y_k (1 - p_k ** q) / q``: linear in the target, so a
    mixed target gives mixup's ``lam * L(y_a) + (1 - lam) * L(y_b)``.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    y = target_distribution(targets, log_p.shape[1], smoothing=smoothing)
    # 1 - p ** q as -expm1(q log p): its gradient stays finite where p underflows to 0,
    # and it keeps its precision for small q.
    loss = -(y * torch.expm1(q * log_p)).sum(1) / q
    return _weighted_mean(weights, loss)


def symmetric_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    *,
    alpha: float = 0.1,
    beta: float = 1.0,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Symmetric cross-entropy (Wang et al., ICCV 2019): ``alpha * CE + beta * RCE``.

    ``CE = -sum_k q_k log p_k`` and the reverse ``RCE = -sum_k p_k log q_k``,
    with ``p`` the model's probabilities, ``q`` the label distribution and
    ``log 0`` taken as ``A = -4``; for a class label RCE is ``-A (1 - p_y)``.
    Soft targets (mixup, label smoothing) are ``q`` as they are.
    """
    log_p = F.log_softmax(logits.float(), dim=1)
    y = target_distribution(targets, log_p.shape[1], smoothing=smoothing)
    ce = -(y * log_p).sum(1)
    rce = -(log_p.exp() * torch.log(y).clamp(min=SCE_LOG_ZERO)).sum(1)
    return _weighted_mean(weights, alpha * ce + beta * rce)


# Each name of choices.LOSSES: the loss with the pipeline's settings (label smoothing for all).
_BUILDERS: dict[str, Callable[[TrainConfig], LossFn]] = {
    "ce": lambda c: lambda lo, t, w: weighted_cross_entropy(lo, t, w, smoothing=c.label_smoothing),
    "focal": lambda c: (
        lambda lo, t, w: focal_loss(lo, t, w, gamma=c.focal_gamma, smoothing=c.label_smoothing)
    ),
    "gce": lambda c: (
        lambda lo, t, w: generalized_cross_entropy(lo, t, w, q=c.gce_q, smoothing=c.label_smoothing)
    ),
    "sce": lambda c: (
        lambda lo, t, w: symmetric_cross_entropy(
            lo, t, w, alpha=c.sce_alpha, beta=c.sce_beta, smoothing=c.label_smoothing
        )
    ),
}
if set(_BUILDERS) != set(LOSSES):  # the registry and this table name the same losses
    raise ImportError(f"cleaner.training.losses implements {sorted(_BUILDERS)}, not {LOSSES.names}")


def build_loss(cfg: TrainConfig) -> LossFn:
    """The loss named by ``train.loss`` (one of :data:`cleaner.core.choices.LOSSES`)."""
    return _BUILDERS[LOSSES.check(cfg.loss)](cfg)
