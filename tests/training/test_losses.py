"""cleaner.training.losses: weighted cross-entropy and focal loss against torch's own; GCE and SCE
against their papers' formulas on hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cleaner.core.config import TrainConfig
from cleaner.training.losses import (
    build_loss,
    focal_loss,
    generalized_cross_entropy,
    soft_cross_entropy,
    symmetric_cross_entropy,
    target_distribution,
    weighted_cross_entropy,
)


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


# --- soft targets, GCE and SCE -------------------------------------------------------------

# Logits whose softmax is exactly (0.5, 0.25, 0.25) and (0.1, 0.6, 0.3): the formulas'
# values below are worked out by hand from these probabilities.
HAND_LOGITS = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]))
HAND_TARGETS = torch.tensor([0, 2])


def test_soft_cross_entropy_of_one_hot_targets_equals_the_hard_one(batch):
    logits, targets = batch
    weights = torch.tensor([0.5, 2.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.25])
    one_hot = F.one_hot(targets, 5).float()
    torch.testing.assert_close(
        weighted_cross_entropy(logits, one_hot, weights),
        weighted_cross_entropy(logits, targets, weights),
    )
    # a smoothed one-hot is F.cross_entropy's label smoothing
    smoothed = target_distribution(targets, 5, smoothing=0.2)
    torch.testing.assert_close(smoothed.sum(1), torch.ones(8))
    torch.testing.assert_close(
        soft_cross_entropy(logits, smoothed, weights),
        weighted_cross_entropy(logits, targets, weights, smoothing=0.2),
    )
    # soft targets carry their own smoothing: the argument is not applied again
    torch.testing.assert_close(
        weighted_cross_entropy(logits, one_hot, weights, smoothing=0.2),
        weighted_cross_entropy(logits, targets, weights),
    )


def test_soft_cross_entropy_formula():
    # -(0.5 ln 0.5 + 0.5 ln 0.25) = 1.0397208 for row 0; -ln 0.6 = 0.5108256 for row 1
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    got = soft_cross_entropy(HAND_LOGITS, soft, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(got, torch.tensor((1.0397208 + 2 * 0.5108256) / 2))


def test_gce_against_the_formula():
    # (1 - p_y^q) / q with q = 0.5: row 0 p_y = 0.5 -> 2 (1 - 0.7071068) = 0.5857864,
    # row 1 p_y = 0.3 -> 2 (1 - 0.5477226) = 0.9045549; weights (1, 2), divided by B = 2.
    got = generalized_cross_entropy(HAND_LOGITS, HAND_TARGETS, torch.tensor([1.0, 2.0]), q=0.5)
    torch.testing.assert_close(got, torch.tensor((0.5857864 + 2 * 0.9045549) / 2))
    # q = 1 is MAE-like: 1 - p_y = 0.5 and 0.7
    ones = torch.ones(2)
    got = generalized_cross_entropy(HAND_LOGITS, HAND_TARGETS, ones, q=1.0)
    torch.testing.assert_close(got, torch.tensor((0.5 + 0.7) / 2))
    # q -> 0 is cross-entropy
    torch.testing.assert_close(
        generalized_cross_entropy(HAND_LOGITS, HAND_TARGETS, ones, q=1e-6),
        F.cross_entropy(HAND_LOGITS, HAND_TARGETS),
        atol=1e-5,
        rtol=1e-5,
    )


def test_gce_of_a_mixed_target_mixes_the_losses(batch):
    logits, targets = batch
    other = targets.flip(0)
    lam = 0.3
    soft = lam * F.one_hot(targets, 5).float() + (1 - lam) * F.one_hot(other, 5).float()
    weights = torch.tensor([0.5, 2.0, 1.0, 0.0, 1.0, 3.0, 1.0, 0.25])
    expected = lam * generalized_cross_entropy(logits, targets, weights) + (
        1 - lam
    ) * generalized_cross_entropy(logits, other, weights)
    torch.testing.assert_close(generalized_cross_entropy(logits, soft, weights), expected)


def test_sce_against_the_formula():
    # alpha * CE + beta * RCE, RCE = -sum_k p_k log q_k with log 0 = -4, alpha 0.1, beta 1:
    # row 0: CE = -ln 0.5 = 0.6931472, RCE = -(0.25 (-4) + 0.25 (-4)) = 2 -> 2.0693147
    # row 1: CE = -ln 0.3 = 1.2039728, RCE = 4 (1 - 0.3) = 2.8 -> 2.9203973
    got = symmetric_cross_entropy(HAND_LOGITS, HAND_TARGETS, torch.ones(2), alpha=0.1, beta=1.0)
    torch.testing.assert_close(got, torch.tensor((2.0693147 + 2.9203973) / 2))
    # soft target q = (0.5, 0.5, 0) for row 0 only, weight 1, row 1 weight 0:
    # CE = 0.5 ln 2 + 0.5 ln 4 = 1.0397208, RCE = -(0.5 ln 0.5 + 0.25 ln 0.5 - 0.25 * 4)
    # = 0.75 ln 2 + 1 = 1.5198604; alpha 0.5, beta 2 -> 0.5198604 + 3.0397208 = 3.5595812
    soft = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    got = symmetric_cross_entropy(HAND_LOGITS, soft, torch.tensor([1.0, 0.0]), alpha=0.5, beta=2.0)
    torch.testing.assert_close(got, torch.tensor(3.5595812 / 2))


def test_sce_with_beta_zero_is_scaled_cross_entropy(batch):
    logits, targets = batch
    got = symmetric_cross_entropy(logits, targets, torch.ones(8), alpha=0.7, beta=0.0)
    torch.testing.assert_close(got, 0.7 * F.cross_entropy(logits, targets))


def test_robust_losses_zero_weight_gets_no_gradient_and_half_precision(batch):
    logits, targets = batch
    weights = torch.ones(8)
    weights[5] = 0.0
    soft = target_distribution(targets, 5, smoothing=0.1)
    for loss in (generalized_cross_entropy, symmetric_cross_entropy, soft_cross_entropy):
        for t in (soft,) if loss is soft_cross_entropy else (targets, soft):
            x = logits.clone().requires_grad_(True)
            loss(x, t, weights).backward()
            assert x.grad is not None and torch.isfinite(x.grad).all()
            assert torch.all(x.grad[5] == 0) and torch.all(x.grad[4] != 0)
            assert loss(logits.to(torch.bfloat16), t, torch.ones(8)).dtype == torch.float32


def test_focal_refuses_soft_targets(batch):
    logits, targets = batch
    with pytest.raises(ValueError, match="class indices"):
        focal_loss(logits, F.one_hot(targets, 5).float(), torch.ones(8))


def test_build_loss_gce_and_sce_use_their_settings(batch):
    logits, targets = batch
    w = torch.tensor([1.0, 0.5, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    cfg = TrainConfig(loss="gce", gce_q=0.3, label_smoothing=0.1)
    torch.testing.assert_close(
        build_loss(cfg)(logits, targets, w),
        generalized_cross_entropy(logits, targets, w, q=0.3, smoothing=0.1),
    )
    cfg = TrainConfig(loss="sce", sce_alpha=0.4, sce_beta=0.6)
    torch.testing.assert_close(
        build_loss(cfg)(logits, targets, w),
        symmetric_cross_entropy(logits, targets, w, alpha=0.4, beta=0.6),
    )
    soft = target_distribution(targets, 5, smoothing=0.1)
    torch.testing.assert_close(
        build_loss(TrainConfig(label_smoothing=0.1))(logits, soft, w),
        soft_cross_entropy(logits, soft, w),
    )
