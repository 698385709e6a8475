"""cleaner.losses: weighted cross-entropy and focal loss against torch's own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cleaner.config import TrainConfig
from cleaner.losses import build_loss, focal_loss, weighted_cross_entropy


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g) * 3
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    return logits, targets


def test_all_ones_weights_equal_mean_cross_entropy(batch):
    logits, targets = batch
    got = weighted_cross_entropy(logits, targets, torch.ones(8))
    torch.testing.assert_close(got, F.cross_entropy(logits, targets))
    assert got.ndim == 0


def test_zero_weight_removes_a_sample(batch):
    logits, targets = batch
    weights = torch.ones(8)
    weights[3] = 0.0
    got = weighted_cross_entropy(logits, targets, weights)
    # The same sum over the other samples, still divided by the batch size (not 7).
    keep = torch.arange(8) != 3
    expected = F.cross_entropy(logits[keep], targets[keep], reduction="sum") / 8
    torch.testing.assert_close(got, expected)
    # Changing the zero-weight sample's logits or target changes nothing.
    other = logits.clone()
    other[3] = torch.tensor([9.0, -9.0, 0.0, 4.0, 1.0])
    other_targets = targets.clone()
    other_targets[3] = 1
    torch.testing.assert_close(weighted_cross_entropy(other, other_targets, weights), got)


def test_zero_weight_sample_gets_no_gradient(batch):
    logits, targets = batch
    logits = logits.clone().requires_grad_(True)
    weights = torch.ones(8)
    weights[5] = 0.0
    for loss in (weighted_cross_entropy, focal_loss):
        logits.grad = None
        loss(logits, targets, weights).backward()
        assert logits.grad is not None
        assert torch.all(logits.grad[5] == 0)
        assert torch.all(logits.grad[4] != 0)


def test_weights_scale_each_sample(batch):
    logits, targets = batch
    weights = torch.tensor([0.5, 2.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.25])
    per_sample = F.cross_entropy(logits, targets, reduction="none")
    expected = (weights * per_sample).sum() / 8
    torch.testing.assert_close(weighted_cross_entropy(logits, targets, weights), expected)


def test_label_smoothing_passes_through(batch):
    logits, targets = batch
    got = weighted_cross_entropy(logits, targets, torch.ones(8), smoothing=0.2)
    torch.testing.assert_close(got, F.cross_entropy(logits, targets, label_smoothing=0.2))
    assert not torch.isclose(got, F.cross_entropy(logits, targets))


def test_focal_with_gamma_zero_equals_cross_entropy(batch):
    logits, targets = batch
    weights = torch.tensor([1.0, 0.5, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(
        focal_loss(logits, targets, weights, gamma=0.0),
        weighted_cross_entropy(logits, targets, weights),
    )
    torch.testing.assert_close(
        focal_loss(logits, targets, torch.ones(8), gamma=0.0, smoothing=0.1),
        F.cross_entropy(logits, targets, label_smoothing=0.1),
    )


def test_focal_down_weights_easy_samples(batch):
    logits, targets = batch
    ones = torch.ones(8)
    p_t = F.softmax(logits, 1)[torch.arange(8), targets]
    ce = F.cross_entropy(logits, targets, reduction="none")
    expected = ((1 - p_t) ** 2 * ce).mean()
    torch.testing.assert_close(focal_loss(logits, targets, ones, gamma=2.0), expected)
    assert focal_loss(logits, targets, ones, gamma=2.0) < weighted_cross_entropy(
        logits, targets, ones
    )


def test_half_precision_logits_give_a_float32_loss(batch):
    logits, targets = batch
    for loss in (weighted_cross_entropy, focal_loss):
        out = loss(logits.to(torch.bfloat16), targets, torch.ones(8))
        assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (TrainConfig(), lambda lo, t: F.cross_entropy(lo, t)),
        (
            TrainConfig(label_smoothing=0.1),
            lambda lo, t: F.cross_entropy(lo, t, label_smoothing=0.1),
        ),
        (
            TrainConfig(loss="focal", focal_gamma=0.0, label_smoothing=0.1),
            lambda lo, t: F.cross_entropy(lo, t, label_smoothing=0.1),
        ),
    ],
)
def test_build_loss(batch, cfg, expected):
    logits, targets = batch
    torch.testing.assert_close(
        build_loss(cfg)(logits, targets, torch.ones(8)), expected(logits, targets)
    )


def test_build_loss_focal_uses_gamma(batch):
    logits, targets = batch
    ones = torch.ones(8)
    got = build_loss(TrainConfig(loss="focal", focal_gamma=3.0))(logits, targets, ones)
    torch.testing.assert_close(got, focal_loss(logits, targets, ones, gamma=3.0))
    assert not torch.isclose(got, weighted_cross_entropy(logits, targets, ones))
