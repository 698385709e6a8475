"""Synthetic label noise with a documented model, so every step can be measured.

``inject_noise`` flips exactly ``round(rate * N)`` labels, chosen uniformly at
random without replacement; every chosen label changes:

- ``uniform``: to one of the other ``K - 1`` classes, each equally likely;
- ``pairs``: class ``c`` to class ``(c + 1) mod K``, a fixed confusion
  between neighbouring classes (the "pair flip" of the noisy-label literature).

``flip_toward_confusion`` is the hardest kind, for benchmarks: each chosen
label moves to the class a reference model finds most likely after the true
one, the mistake a tired human annotator makes.
"""

from __future__ import annotations

import numpy as np

NOISE_KINDS = ("uniform", "pairs")


def inject_noise(
    labels: np.ndarray, *, rate: float, kind: str, n_classes: int, seed: int
) -> np.ndarray:
    """Return a copy of integer ``labels`` (N,) with ``round(rate * N)`` of them flipped."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must be in [0, 1), got {rate}")
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {', '.join(NOISE_KINDS)}, got {kind!r}")
    if n_classes < 2 and rate > 0:
        raise ValueError("label noise needs at least 2 classes")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    n_flip = round(rate * len(labels))
    idx = rng.choice(len(labels), size=n_flip, replace=False)
    if kind == "uniform":
        # An offset in 1..K-1 lands on every other class with equal probability.
        offset = rng.integers(1, n_classes, size=n_flip)
        noisy[idx] = (labels[idx] + offset) % n_classes
    else:
        noisy[idx] = (labels[idx] + 1) % n_classes
    return noisy


def flip_toward_confusion(
    labels: np.ndarray, pred_probs: np.ndarray, *, rate: float, seed: int
) -> np.ndarray:
    """Flip ``round(rate * N)`` random labels (N,) to their most likely other class.

    ``pred_probs`` (N, K) come from a reference model that saw the true labels
    (out of fold); the flipped label is its argmax over the other classes.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"noise rate must be in [0, 1), got {rate}")
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(labels), size=round(rate * len(labels)), replace=False)
    other = np.array(pred_probs, dtype=np.float64, copy=True)
    other[np.arange(len(labels)), labels] = -np.inf
    noisy = labels.copy()
    noisy[idx] = other[idx].argmax(axis=1)
    return noisy
