"""Test-time augmentation of predicted probabilities: the mirror, and airbench's shifts.

``train.tta`` averages each image's probabilities with its mirror's;
``train.tta_translate`` then gives half the weight to that and half to the
image shifted by that many pixels both ways (each mirrored too), as airbench's
``tta_level = 2`` (github.com/KellerJordan/cifar10-airbench).
"""

from __future__ import annotations

import torch
from torch import nn


def _flip_mean(
    model: nn.Module, x: torch.Tensor, p: torch.Tensor | None, flip: bool
) -> torch.Tensor:
    if p is None:
        p = torch.softmax(model(x).float(), dim=1)
    return (p + torch.softmax(model(x.flip(-1)).float(), dim=1)) / 2 if flip else p


def shift(x: torch.Tensor, pixels: int) -> torch.Tensor:
    """``x`` (B, C, H, W) moved by ``pixels`` down and right (negative: up and left), the
    uncovered border filled by reflection, as training's pad-and-crop translation."""
    t = abs(pixels)
    padded = torch.nn.functional.pad(x, (t, t, t, t), mode="reflect")
    start = 0 if pixels > 0 else 2 * t
    return padded[..., start : start + x.shape[-2], start : start + x.shape[-1]]


def tta_probs(
    model: nn.Module, x: torch.Tensor, p: torch.Tensor, flip: bool, translate: int
) -> torch.Tensor:
    """Test-time augmentation of the probabilities ``p`` (B, K) of the batch ``x``.

    ``flip``: mean with the mirrored images. ``translate``: half that, half the
    mean over the images shifted by ``translate`` pixels both ways (each
    flip-averaged too): airbench's ``tta_level = 2``.
    """
    p = _flip_mean(model, x, p, flip)
    if translate:
        moved = [_flip_mean(model, shift(x, s), None, flip) for s in (translate, -translate)]
        p = 0.5 * p + 0.25 * (moved[0] + moved[1])
    return p
