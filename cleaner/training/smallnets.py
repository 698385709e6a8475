"""Networks for small photos (32-96 px), registered in timm's model registry.

timm's ImageNet architectures all shrink the input by 4 in their stem (a
stride-2 convolution and a max-pool): a 32x32 photo is 8x8 before the first
residual stage, and the network spends its compute on maps too small to see
anything. Its maintainer does not plan CIFAR stems (pytorch-image-models
#207). The models here keep the resolution in the stem instead, and join
timm's registry (``register_model``), so ``model.name`` selects them and
``timm.create_model`` builds them, with ``forward_features``,
``forward_head(pre_logits=True)``, ``reset_classifier`` and local weights
files (``pretrained_cfg_overlay={"file": ...}``) working as for timm's own:

- ``airbench_xs`` / ``airbench_s`` / ``airbench_m``: the 3-block net of
  Keller Jordan's airbench (github.com/KellerJordan/cifar10-airbench; "94% on
  CIFAR-10 in 3.29 seconds on a single GPU", arXiv:2404.00498): a 2x2
  patch-whitening convolution computed from the training images and then
  frozen, three groups of (conv, max-pool, batch norm, GELU, conv, batch
  norm, GELU), a global max-pool and a linear layer whose logits are scaled
  by 1/9. ``_m`` has airbench94's widths (64/256/256), ``_s`` a quarter of its
  compute (32/128/128), ``_xs`` a sixteenth.
- ``resnet10_cifar`` / ``resnet18_cifar``: timm's ``ResNet`` with the CIFAR
  stem of He et al. 2016 (section 4.2) and of the usual ResNet-18 CIFAR
  recipes: one 3x3 convolution of stride 1 and no max-pool, so the four
  stages see 32, 16, 8 and 4 pixels of a 32-pixel photo.

The whitening layer needs data: :func:`cleaner.training.models.init_from_data` hands a
model with ``data_init_pending`` set the fold's own training images before
its first step (never the held-out rows), and a model loaded from weights
keeps what it loaded.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, register_model
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

# Images whose 2x2 patches estimate the whitening: airbench uses 5,000 (its
# covariance has only (2*2*C)^2 = 144 entries for RGB, so more changes nothing).
WHITEN_IMAGES = 5000
WHITEN_EPS = 5e-4  # airbench's: keeps the near-zero eigenvalues from blowing up


def _cfg(**kwargs: Any) -> dict[str, Any]:
    # No hub weights: ``pretrained`` works with a local file (model.weights) only.
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        # CIFAR-10's channel statistics, as airbench normalises; a pipeline's
        # data.mean/data.std replace them.
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
        "license": "mit",
        **kwargs,
    }


default_cfgs = {
    "airbench_xs": _cfg(first_conv="whiten", classifier="fc"),
    "airbench_s": _cfg(first_conv="whiten", classifier="fc"),
    "airbench_m": _cfg(first_conv="whiten", classifier="fc"),
    "resnet10_cifar": _cfg(first_conv="conv1", classifier="fc"),
    "resnet18_cifar": _cfg(first_conv="conv1", classifier="fc"),
}


def patch_whitening(images: torch.Tensor, kernel: int, eps: float = WHITEN_EPS) -> torch.Tensor:
    """Whitening filters (2*C*k*k, C, k, k) of the k x k patches of ``images`` (N, C, H, W).

    Each eigenvector of the patch covariance, scaled by 1/sqrt(eigenvalue),
    and its negative (so that the GELU after it passes both signs), as in
    airbench's ``init_whitening_conv``. Computed in float64: deterministic and
    stable for the small eigenvalues.
    """
    c = images.shape[1]
    patches = images.double().unfold(2, kernel, 1).unfold(3, kernel, 1)  # N, C, H', W', k, k
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kernel * kernel)
    cov = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    filters = (eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]).flip(0)
    filters = filters.reshape(-1, c, kernel, kernel)
    return torch.cat([filters, -filters]).float()


class _BatchNorm(nn.BatchNorm2d):
    """airbench's batch norm: no learned scale (the next layer's weights carry it),
    a fast running average (torch momentum 0.4), a tiny eps."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad = False


class _Conv(nn.Conv2d):
    """3x3 'same' convolution without bias, started near the identity (airbench's dirac init:
    the first ``in`` output channels pass their input through)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, kernel_size=3, padding="same", bias=False)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class ConvGroup(nn.Module):
    """conv, 2x2 max-pool, BN, GELU, conv, BN, GELU: halves the map, widens the channels."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.pool, self.norm1 = _Conv(cin, cout), nn.MaxPool2d(2), _BatchNorm(cout)
        self.conv2, self.norm2, self.act = _Conv(cout, cout), _BatchNorm(cout), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


class AirNet(nn.Module):
    """The airbench net: a frozen patch-whitening stem, three conv groups, max-pool, linear.

    ``forward_features`` gives (B, widths[-1], H/8, W/8) (H - 1 for the 2x2
    stem, then three halvings); ``forward_head`` max-pools it to (B, D) and,
    unless ``pre_logits``, returns the scaled logits (B, num_classes).
    ``whiten=False`` trains the stem like any convolution instead.
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (64, 256, 256),
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        global_pool: str = "max",
        whiten: bool = True,
        whiten_kernel: int = 2,
        logit_scale: float = 1 / 9,
    ):
        super().__init__()
        self.num_classes, self.drop_rate, self.logit_scale = num_classes, drop_rate, logit_scale
        self.whiten = nn.Conv2d(in_chans, 2 * in_chans * whiten_kernel**2, whiten_kernel)
        self.whiten.weight.requires_grad = not whiten
        # Set until init_from_data (or loaded weights) fills the whitening filters.
        self.data_init_pending = whiten
        self.act = nn.GELU()
        chans = (self.whiten.out_channels, *widths)
        self.stages = nn.Sequential(*(ConvGroup(a, b) for a, b in itertools.pairwise(chans)))
        self.num_features = self.head_hidden_size = widths[-1]
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Whitening filters from ``images`` (N, C, H, W), normalised as training sees them."""
        k = self.whiten.kernel_size[0]
        self.whiten.weight.copy_(patch_whitening(images.float(), k))
        # airbench trains the bias (from zero) for its first epochs; here it trains throughout.
        if self.whiten.bias is not None:
            self.whiten.bias.zero_()
        self.data_init_pending = False

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        # airbench's linear layer has no bias; one costs nothing and lets a probe head
        # (cleaner.training.probe) be written into it.
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.act(self.whiten(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        if pre_logits:
            return x
        # airbench scales the logits down; with label smoothing it keeps the softmax soft.
        return self.fc(x) * self.logit_scale if self.num_classes else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _airbench(variant: str, default: tuple[int, ...], pretrained: bool, **kwargs: Any) -> AirNet:
    kwargs["widths"] = tuple(kwargs.get("widths", default))
    model = build_model_with_cfg(AirNet, variant, pretrained, **kwargs)
    if pretrained:  # the whitening filters came with the weights
        model.data_init_pending = False
    return model


@register_model
def airbench_xs(pretrained: bool = False, **kwargs: Any) -> AirNet:
    """airbench net at 16/64/64 channels: about 1/16 of airbench94's compute."""
    return _airbench("airbench_xs", (16, 64, 64), pretrained, **kwargs)


@register_model
def airbench_s(pretrained: bool = False, **kwargs: Any) -> AirNet:
    """airbench net at 32/128/128 channels: about 1/4 of airbench94's compute."""
    return _airbench("airbench_s", (32, 128, 128), pretrained, **kwargs)


@register_model
def airbench_m(pretrained: bool = False, **kwargs: Any) -> AirNet:
    """airbench94's net: 64/256/256 channels."""
    return _airbench("airbench_m", (64, 256, 256), pretrained, **kwargs)


def _cifar_resnet(variant: str, pretrained: bool, **kwargs: Any) -> ResNet:
    """timm's ResNet with a stride-1 3x3 stem and no max-pool."""
    # Any: timm's ResNet types its stem as a Sequential (the deep stems), ours is one conv.
    model: Any = build_model_with_cfg(ResNet, variant, False, **kwargs)
    stem, in_chans = model.conv1.out_channels, model.conv1.in_channels
    model.conv1 = nn.Conv2d(in_chans, stem, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    for info in model.feature_info:  # the stem no longer reduces: each stage is 4x finer
        info["reduction"] = max(1, info["reduction"] // 4)
    if pretrained:  # the weights fit the new stem, so they load after it is in place
        from timm.models import load_pretrained

        load_pretrained(
            model,
            num_classes=model.num_classes,
            in_chans=in_chans,
            strict=model.num_classes == model.pretrained_cfg.get("num_classes"),
        )
    return model


@register_model
def resnet10_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-10 (one basic block a stage, 32/64/128/256 channels) with a CIFAR stem."""
    args = dict(block=BasicBlock, layers=(1, 1, 1, 1), channels=(32, 64, 128, 256), stem_width=32)
    return _cifar_resnet("resnet10_cifar", pretrained, **dict(args, **kwargs))


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 (64-512 channels) with a CIFAR stem: the usual CIFAR ResNet-18."""
    args = dict(block=BasicBlock, layers=(2, 2, 2, 2))
    return _cifar_resnet("resnet18_cifar", pretrained, **dict(args, **kwargs))
