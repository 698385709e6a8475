"""PNG figures beside the reports: a noise matrix as a heatmap, per-class F1 as bars.

matplotlib with its headless ``Agg`` backend; each function takes arrays and a
path, draws one figure, and writes it atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: servers, CI, notebooks' kernels alike

import matplotlib.pyplot as plt
import numpy as np

from cleaner.core.atomic import atomic_path


def plain(texts: Sequence[str]) -> list[str]:
    """User text (class names) drawn as written: ``$`` escaped, so matplotlib never reads
    ``$\\undefinedcmd{x}$`` as math (which raised instead of drawing the figure)."""
    return [str(t).replace("$", r"\$") for t in texts]


def _size(k: int) -> float:
    return min(max(4.0, 0.45 * k + 2.0), 16.0)


def noise_matrix_png(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: Path,
    *,
    title: str,
    xlabel: str = "true label",
    ylabel: str = "given label",
) -> Path:
    """Heatmap of a (K, K) matrix of shares, rows the given label; cells annotated in %."""
    k = len(classes)
    fig, ax = plt.subplots(figsize=(_size(k), _size(k) * 0.9))
    share = matrix / max(matrix.sum(), 1e-12)
    image = ax.imshow(share, cmap="viridis")
    ax.set_xticks(range(k), labels=plain(classes), rotation=90 if k > 8 else 0)
    ax.set_yticks(range(k), labels=plain(classes))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if k <= 20:  # numbers stay readable up to about 20 classes
        for i in range(k):
            for j in range(k):
                if share[i, j] >= 0.0005:
                    light = share[i, j] < share.max() * 0.6
                    ax.text(j, i, f"{100 * share[i, j]:.1f}", ha="center", va="center",
                            fontsize=7, color="white" if light else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of all rows")
    fig.tight_layout()
    return _save(fig, path)


def per_class_f1_png(
    f1: Mapping[str, Mapping[str, float]], classes: Sequence[str], path: Path, *, title: str
) -> Path:
    """Grouped bars: per-class F1 of each model (``f1[model][class]``)."""
    k, models = len(classes), list(f1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * k * len(models) + 2), 4))
    width = 0.8 / max(len(models), 1)
    x = np.arange(k)
    for m, name in enumerate(models):
        ax.bar(x + (m - (len(models) - 1) / 2) * width, [f1[name].get(c, 0.0) for c in classes],
               width, label=plain([name])[0])  # fmt: skip
    ax.set_xticks(x, labels=plain(classes), rotation=90 if k > 12 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 on the test rows")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
