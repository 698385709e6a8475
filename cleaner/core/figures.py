"""PNG figures beside the reports: a noise matrix, per-class F1, the rounds of cleaning,
the map of the data.

matplotlib with its headless ``Agg`` backend; each function takes arrays and a
path, draws one figure, and writes it atomically; :func:`data_map_png` returns
its bytes instead, since the gallery embeds the same image that ``flag`` writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen: servers, CI, notebooks' kernels alike

import io

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba_array

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
    # Cells and colour bar speak one unit: percent of all rows.
    image = ax.imshow(100 * share, cmap="viridis")
    ax.set_xticks(range(k), labels=plain(classes), rotation=90 if k > 8 else 0)
    ax.set_yticks(range(k), labels=plain(classes))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    # A few classes make a narrow figure: the title wraps instead of being cut.
    ax.set_title(_wrapped(title, _size(k)), fontsize=10)
    if k <= 20:  # numbers stay readable up to about 20 classes
        for i in range(k):
            for j in range(k):
                if share[i, j] >= 0.0005:
                    light = share[i, j] < share.max() * 0.6
                    ax.text(j, i, f"{100 * share[i, j]:.1f}", ha="center", va="center",
                            fontsize=7, color="white" if light else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of all rows")
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
    ax.set_title(_wrapped(title, fig.get_size_inches()[0]), fontsize=10)
    # Beside the axes, never over the bars.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def annotators_png(
    names: Sequence[str],
    quality: Sequence[float],
    agreement: Sequence[float],
    path: Path,
    *,
    title: str,
) -> Path:
    """Horizontal bars, one pair per annotator: CROWDLAB's quality and the share of its
    labels that agree with the consensus, both in [0, 1]."""
    m = len(names)
    fig, ax = plt.subplots(figsize=(6.5, max(2.0, 0.45 * m + 1.2)))
    y = np.arange(m)
    ax.barh(y - 0.2, np.nan_to_num(quality), height=0.4, label="quality (CROWDLAB)")
    ax.barh(y + 0.2, np.nan_to_num(agreement), height=0.4, label="agreement with consensus")
    ax.set_yticks(y, labels=plain(names))
    ax.set_xlim(0, 1)
    ax.invert_yaxis()  # the table's order: worst first, at the top
    ax.set_title(_wrapped(title, 6.5), fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def rounds_png(
    labels_spent: Sequence[float] | np.ndarray,
    errors_found: Sequence[float] | np.ndarray,
    *,
    estimate: float,
    interval: tuple[float, float],
    path: Path,
    title: str,
) -> Path:
    """Active cleaning so far: errors found against labels spent (cumulative, one point per
    round) beside the estimate of the wrong labels still left, with its 95% interval."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.6), width_ratios=(3, 1))
    left.plot(labels_spent, errors_found, marker="o")
    top = max(float(np.max(labels_spent)), 1.0)
    left.plot([0, top], [0, top], color="grey", linestyle=":", label="every label an error")
    left.set_xlabel("labels spent (cumulative)")
    left.set_ylabel("wrong labels found (cumulative)")
    left.legend(loc="upper left", fontsize=8)
    low, high = interval
    right.bar([0], [estimate], yerr=[[estimate - low], [high - estimate]], capsize=6)
    right.set_xticks([0], labels=["left now"])
    right.set_ylabel("wrong labels left (95% interval)")
    fig.suptitle(_wrapped(title, 8), fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# Each issue kind's marker on the map (black-edged, over the other rows); others: "P".
_ISSUE_MARKERS = {
    "label": "o",
    "outlier": "X",
    "near_duplicate": "s",
    "leakage": "D",
    "group_inconsistent": "^",
    "unlabeled": "v",
}
MAP_LEGEND_CLASSES = 20  # more classes than this: colours without a legend


def _class_colours(k: int) -> np.ndarray:
    """(K, 4) RGBA colours: tab10 / tab20 while they last, then a sampled rainbow."""
    if k <= 20:  # a qualitative map's colours are its first K entries
        n = 10 if k <= 10 else 20
        return to_rgba_array(plt.get_cmap(f"tab{n}")(np.arange(k) / n + 0.5 / n))
    return to_rgba_array(plt.get_cmap("turbo")(np.linspace(0.0, 1.0, k)))


def data_map_png(
    xy: np.ndarray,
    labels: np.ndarray,
    issue: np.ndarray,
    classes: Sequence[str],
    *,
    title: str,
    caption: str,
) -> bytes:
    """A 2-D map of the rows (t-SNE): ``xy`` (n, 2), coloured by the given class
    (``labels`` (n,) class indices); rows whose ``issue`` (n,) is not blank drawn
    larger with a black edge, shaped by issue. The caption goes under the axes.
    Returns the PNG's bytes."""
    labels, issue = np.asarray(labels), np.asarray(issue, dtype=str)
    colours = _class_colours(len(classes))
    fig, ax = plt.subplots(figsize=(8.0, 6.5))
    face = np.where(labels[:, None] >= 0, colours[np.clip(labels, 0, None)], (0.6, 0.6, 0.6, 1))
    rest = issue == ""
    ax.scatter(xy[rest, 0], xy[rest, 1], s=6, c=face[rest], alpha=0.6, linewidths=0)
    handles = []
    for kind in dict.fromkeys(issue[~rest]):  # queue rows last: on top of the others
        rows = issue == kind
        marker = _ISSUE_MARKERS.get(kind, "P")
        ax.scatter(xy[rows, 0], xy[rows, 1], s=36, c=face[rows], marker=marker,
                   edgecolors="black", linewidths=0.8)  # fmt: skip
        handles.append(plt.Line2D([], [], ls="", marker=marker, mfc="white", mec="black",
                                  label=plain([f"queue: {kind}"])[0]))  # fmt: skip
    if len(classes) <= MAP_LEGEND_CLASSES:
        handles += [
            plt.Line2D([], [], ls="", marker="o", mfc=colours[k], mec="none", label=name)
            for k, name in enumerate(plain(classes))
        ]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, fontsize=8)  # fmt: skip
    ax.set_xticks([])  # t-SNE's axes have no unit
    ax.set_yticks([])
    ax.set_title(_wrapped(title, 8.0), fontsize=10)
    # At size 8 a line holds about 9 characters an inch: the 8-inch axes take 72.
    ax.set_xlabel(_wrapped(plain([caption])[0], 72 / 7), fontsize=8, loc="left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _wrapped(title: str, inches: float) -> str:
    """The title broken into lines that fit ``inches`` of figure width (about 7 characters
    an inch at size 10)."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width=max(20, int(7 * inches))))


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")  # legends beside axes too
    plt.close(fig)
    return path
