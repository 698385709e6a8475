"""Label noise planted at ingest, for measuring: the arguments checked, a stratified
clean test split held out, and train labels flipped (:mod:`cleaner.ingest.noise`).

The kinds of noise that need a reference model get one fitted on the train
images, decoded here as training decodes them; every train and held-out row
keeps its truth in ``true_label``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.model_selection import train_test_split

from cleaner.core.config import MAX_IMAGE_PIXELS
from cleaner.core.errors import InputError, Problem
from cleaner.ingest.noise import (
    REFERENCE_KINDS,
    REFERENCE_SIZE,
    check_noise,
    inject_noise,
    reference_probs,
    shrink,
)

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass(frozen=True)
class NoiseArgs:
    rate: float
    kind: str
    seed: int
    test_fraction: float


def _decode_small(paths: Sequence[Path], progress: Progress | None) -> np.ndarray:
    """The images at ``paths`` decoded as training does (RGB), shrunk for the reference model.

    A damaged JPEG (cut short, corrupt data: OpenCV fills the rest with grey) or an
    image above the pixel limit is refused, as ``oof`` would refuse it, before any
    is decoded.
    """
    from cleaner.formats.images import damaged_jpeg, load_image, too_large

    problems = []
    for path in paths:
        reason = too_large(path, MAX_IMAGE_PIXELS)
        damage = damaged_jpeg(path) if reason is None else None
        if damage is not None:
            reason = f"damaged JPEG ({damage}): the reference model would learn from grey pixels"
        if reason is not None:
            problems.append(Problem(str(path), reason))
    if problems:
        raise InputError(problems)
    out = np.empty((len(paths), REFERENCE_SIZE, REFERENCE_SIZE, 3), dtype=np.uint8)
    task = None
    if progress is not None:
        task = progress.add_task("decoding for the reference model", total=len(paths), unit="img")
    for i, path in enumerate(paths):
        out[i] = shrink(load_image(path, 3))  # keep only the small copy: memory stays small
        if progress is not None and task is not None:
            progress.advance(task)
    if progress is not None and task is not None:
        progress.remove_task(task)
    return out


def plant_folder(
    rows: list[dict[str, str]], manifest: Path, args: NoiseArgs, progress: Progress | None
) -> None:
    """Hold out test rows and flip labels among the train rows of ``rows``, in place."""
    train = [r for r in rows if r["split"] == "train"]
    truth = np.array([r["label"] for r in train])
    classes = np.unique(truth)
    check_noise_args(args.rate, args.kind, args.test_fraction, len(classes))
    test = hold_out(truth, args.test_fraction, args.seed)
    kept = [r for r, t in zip(train, test, strict=True) if not t]
    given = plant_noise(
        truth[~test],
        classes,
        noise=args.rate,
        noise_kind=args.kind,
        seed=args.seed,
        # Lexically, as the path was made: the manifest's folder need not exist yet.
        images=lambda: _decode_small(
            [Path(os.path.abspath(manifest.parent / r["path"])) for r in kept], progress
        ),
    )
    for r, t, held_out in zip(train, truth, test, strict=True):
        r["true_label"] = str(t)
        if held_out:
            r.update(split="test", label="")
    for r, g in zip(kept, given, strict=True):
        r["label"] = str(g)


def check_noise_args(noise: float, noise_kind: str, test_fraction: float, n_classes: int) -> None:
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    try:
        check_noise(rate=noise, kind=noise_kind, n_classes=n_classes)
    except ValueError as e:
        raise InputError(str(e)) from None


def hold_out(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """A stratified ``test_fraction`` of the rows of ``labels`` (N,), as a boolean mask."""
    n = len(labels)
    test = np.zeros(n, dtype=bool)
    if test_fraction > 0:
        try:
            _, test_idx = train_test_split(
                np.arange(n), test_size=test_fraction, stratify=labels, random_state=seed
            )
        except ValueError as e:  # too few rows of some class for a stratified split
            raise InputError(
                f"--test-fraction {test_fraction}: no stratified test split of {n} rows: {e}"
            ) from None
        test[test_idx] = True
    return test


def plant_noise(
    labels: np.ndarray,
    classes: np.ndarray,
    *,
    noise: float,
    noise_kind: str,
    seed: int,
    images: Callable[[], np.ndarray],
) -> np.ndarray:
    """``labels`` (N,), values of ``classes`` (sorted), with ``noise`` of them flipped.

    ``images()`` gives the rows' images (N, H, W[, C]); only the kinds that need a
    reference model ask for them, which is fitted on these images and labels.
    """
    # Noise is drawn in class-index space, then mapped back to class values.
    pos = np.searchsorted(classes, labels)
    probs = None
    if noise > 0 and noise_kind in REFERENCE_KINDS:
        counts = np.bincount(pos, minlength=len(classes))
        if np.any(counts == 1):
            raise InputError(
                f"--noise-kind {noise_kind} fits a reference model on two halves of the train "
                f"images and needs at least 2 of every class; class {classes[counts == 1][0]} "
                "has 1"
            )
        pixels = images()
        try:
            probs = reference_probs(pixels, pos, seed=seed, n_classes=len(classes))
        except ValueError as e:
            raise InputError(f"--noise-kind {noise_kind}: {e}") from None
    noisy = inject_noise(
        pos, rate=noise, kind=noise_kind, n_classes=len(classes), seed=seed, pred_probs=probs
    )
    return classes[noisy]
