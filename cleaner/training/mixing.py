"""Mixup and CutMix of whole batches, the per-sample loss weights mixed like the images.

timm's ``Mixup`` in batch mode with a random stream of its own, re-seeded at
each epoch from ``(seed, epoch)``, so that a resumed fit mixes exactly as an
uninterrupted one (``train.mixup``, ``train.cutmix``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target

from cleaner.core.config import TrainConfig
from cleaner.training.data import seed_for

# Seed stream of mixup's draws, apart from torch's (1) and the loader workers' (0, 1, ...).
_MIX_STREAM = 1 << 20


class _LamMixup(Mixup):
    """timm's Mixup that keeps the lam of its last batch (cutmix's corrected by the box's
    clipped area), which the per-sample loss weights need."""

    lam: float = 1.0

    def _mix_batch(self, x: torch.Tensor) -> float:
        self.lam = float(super()._mix_batch(x))
        return self.lam


class BatchMixer:
    """Mixup / CutMix of whole batches (timm's ``mode="batch"``), weights included.

    timm mixes row ``i`` with row ``B-1-i`` (``x.flip(0)``) with one ``lam``
    per batch and gives soft targets (B, K) with ``train.label_smoothing`` in
    them; the weights mix the same way, ``lam * w + (1 - lam) * w.flip(0)``.
    timm needs an even batch: a batch of odd size mixes all rows but its last,
    which keeps its (smoothed) one-hot target and its weight.
    """

    def __init__(self, cfg: TrainConfig, num_classes: int, seed: int):
        self.mixup = _LamMixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            prob=cfg.mix_prob,
            switch_prob=cfg.mix_switch_prob,
            mode="batch",
            label_smoothing=cfg.label_smoothing,
            num_classes=num_classes,
        )
        self.seed, self.num_classes, self.smoothing = seed, num_classes, cfg.label_smoothing
        self._state: Any = None

    def set_epoch(self, epoch: int) -> None:
        # timm's Mixup draws from numpy's global RNG. It gets a stream of its own instead,
        # seeded at each epoch start from (seed, epoch) like shuffling and augmentation, so
        # a resumed run mixes as an uninterrupted one; __call__ swaps it in and back out,
        # so the global state is left as it was and other users of it change nothing here.
        self._state = np.random.RandomState(seed_for(self.seed, epoch, _MIX_STREAM)).get_state()

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mixed images (B, C, H, W), soft targets (B, K) and weights (B,)."""
        if self._state is None:
            raise RuntimeError("BatchMixer.set_epoch must be called before mixing")
        n = len(x) - len(x) % 2
        target = mixup_target(y, self.num_classes, smoothing=self.smoothing)
        if n == 0:
            return x, target, w
        outside = np.random.get_state()
        np.random.set_state(self._state)
        try:
            mixed, mixed_target = self.mixup(x[:n], y[:n])
            self._state = np.random.get_state()
        finally:
            np.random.set_state(outside)
        lam = self.mixup.lam
        mixed_w = lam * w[:n] + (1.0 - lam) * w[:n].flip(0)
        return (
            torch.cat([mixed, x[n:]]),
            torch.cat([mixed_target, target[n:]]),
            torch.cat([mixed_w, w[n:]]),
        )
