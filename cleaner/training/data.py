"""Images to tensors: the Dataset, albumentations transforms and DataLoaders.

Augmentation is reproducible: the sampler hands every index together with
its epoch, and each loader process re-seeds its transforms when the epoch
changes, from ``(seed, epoch, worker)``. So an epoch's augmentations do not
depend on what ran before it, which is what lets a resumed run finish with
the same result as an uninterrupted one, with persistent workers.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from cleaner.core.config import MAX_IMAGE_PIXELS, AugmentConfig
from cleaner.core.errors import InputError
from cleaner.formats.images import load_image

# OpenCV's own threads fight the loader's processes and torch's threads for
# the same cores; one thread per process is faster overall.
cv2.setNumThreads(1)


def seed_for(*parts: int) -> int:
    """A 32-bit seed derived from integers (stable across processes and runs)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def _make_step(spec: dict[str, Any]) -> A.BasicTransform:
    """One albumentations transform from ``{name = ..., args...}``; refused if it cannot be."""
    args = dict(spec)
    name = args.pop("name")
    cls = getattr(A, name, None)
    if cls is None or not isinstance(cls, type):
        raise InputError(f"augment: albumentations has no transform named {name!r}")
    if not issubclass(cls, A.BasicTransform):
        raise InputError(f"augment: {name} is not an image transform")
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        # albumentations only warns about an argument it does not know, then ignores it.
        unknown = sorted(set(args) - set(params))
        if unknown:
            raise InputError(
                f"augment: {name} takes no argument {', '.join(map(repr, unknown))}; "
                f"it takes {', '.join(params) or 'none'}"
            )
    try:
        return cls(**args)
    except (TypeError, ValueError) as e:
        raise InputError(f"augment: {name}({args}) is invalid: {e}") from None


def build_transform(aug: AugmentConfig, *, train: bool, image_size: tuple[int, int]) -> A.Compose:
    """Resize, the configured albumentations transforms by name, then a uint8 tensor.

    Normalisation is not here: :class:`Normalize` does it per batch, on the device.
    """
    steps: list[Any] = [A.Resize(*image_size)] if aug.resize else []
    steps.extend(_make_step(spec) for spec in (aug.train if train else aug.eval))
    steps.append(ToTensorV2())
    return A.Compose(steps, seed=0)


def transform_problems(aug: AugmentConfig, image: np.ndarray, what: str) -> list[str]:
    """Why a configured transform cannot run on ``image`` alone, each named; empty if all can.

    The transforms are built and applied in order to ``image`` (``what`` says
    which image it is), each one for certain (``p = 1``): a transform that needs
    boxes, masks or metadata we never pass, or a crop larger than its input,
    fails here, before any file is written, rather than at the first batch.
    """
    problems = []
    for key in ("train", "eval"):
        x = image
        for i, spec in enumerate(getattr(aug, key)):
            try:
                step = _make_step(spec)
                if "p" in inspect.signature(type(step)).parameters:
                    step = _make_step({**spec, "p": 1.0})
                x = A.Compose([step], seed=0)(image=x)["image"]
            except InputError as e:
                problems.append(f"augment.{key}[{i}]: {str(e).removeprefix('augment: ')}")
                break
            except Exception as e:  # any failure on a plain image: it cannot run here
                reason = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
                needs = isinstance(e, KeyError) or "missing keys" in reason
                hint = "; it needs boxes, masks or metadata, which cleaner does not pass" * needs
                problems.append(
                    f"augment.{key}[{i}]: {spec['name']} fails on {what} "
                    f"({type(e).__name__}: {reason}){hint}"
                )
                break
        else:
            if not isinstance(x, np.ndarray):  # ToTensorV2 (or alike) in the list: ours is last
                problems.append(
                    f"augment.{key}: a transform returns {type(x).__name__}; "
                    "leave the tensor conversion to cleaner"
                )
    return problems


class Normalize:
    """Pixel normalisation of a whole batch ``(B, C, H, W)`` on its device.

    Batches stay uint8 until they reach the device: a quarter of the bytes to
    move, and no per-sample float work in the loader (like timm's prefetcher).
    uint8 input is scaled by 1/255; float input (from a transform that already
    made floats) is taken to be in [0, 1], albumentations' convention.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != len(std) or not mean:
            raise InputError("data.mean and data.std need the same, non-zero number of values")
        if any(v <= 0 for v in std):
            raise InputError("data.std values must be positive")
        self.mean, self.std = tuple(mean), tuple(std)
        self._on: dict[tuple[torch.device, bool], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype == torch.uint8)
        if key not in self._on:
            scale = 255.0 if key[1] else 1.0
            m = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1) * scale
            s = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1) * scale
            self._on[key] = (m, s)
        m, s = self._on[key]
        return (x.float() - m) / s


class ImageDataset(Dataset):
    """Images with labels (N,) (``-1`` for unknown) and loss weights (N,).

    Items are ``(image (C, H, W) uint8, label, weight, index)``; normalise
    batches with ``dataset.normalize``. Indices may
    arrive as ``(index, epoch)`` pairs from :class:`EpochSampler`.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: np.ndarray,
        weights: np.ndarray,
        transform: A.Compose,
        *,
        normalize: Normalize,
        in_chans: int,
        seed: int = 0,
        images: list[np.ndarray] | None = None,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ):
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.float32)
        self.transform = transform
        self.normalize = normalize  # applied per batch by the trainer, on the device
        self.in_chans = in_chans
        self.seed = seed
        self.images = images  # decoded in advance (data.cache)
        self.max_pixels = max_pixels  # data.max_image_pixels: larger images are refused
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int, float, int]:
        if isinstance(item, tuple):
            i, epoch = item
            if epoch != self._epoch:
                info = get_worker_info()
                worker = info.id if info is not None else 0
                self.transform.set_random_seed(seed_for(self.seed, epoch, worker))
                self._epoch = epoch
        else:
            i = item
        img = (
            self.images[i]
            if self.images is not None
            else load_image(self.paths[i], self.in_chans, max_pixels=self.max_pixels)
        )
        x = self.transform(image=img)["image"]
        return x, int(self.labels[i]), float(self.weights[i]), i


def decode_all(
    paths: Sequence[str | Path],
    in_chans: int,
    advance: Any = None,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> list[np.ndarray]:
    """Decode every image once (for ``data.cache``); ``advance()`` is called per image.

    An image of more than ``max_pixels`` pixels is refused before it is decoded."""
    out = []
    for p in paths:
        out.append(load_image(p, in_chans, max_pixels=max_pixels))
        if advance is not None:
            advance()
    return out


class EpochSampler(Sampler):
    """Shuffles with a seed per epoch and yields ``(index, epoch)`` pairs."""

    def __init__(self, n: int, *, seed: int, shuffle: bool = True):
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(seed_for(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return iter((i, self.epoch) for i in order)

    def __len__(self) -> int:
        return self.n


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader; without a sampler it reads in order (for prediction).

    Training (a sampler) skips a last batch of one sample: batch norm cannot
    normalise a single sample. The sampler's order is fixed per (seed, epoch),
    so the skipped sample is the same on resume.
    """
    n = len(sampler) if sampler is not None else 0  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        # Workers live across epochs when the loader is reused (training).
        persistent_workers=workers > 0 and sampler is not None,
        drop_last=sampler is not None and n % batch_size == 1,
    )
