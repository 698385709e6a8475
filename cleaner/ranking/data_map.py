"""A map of the data: the run's one embedding space in two dimensions (``map.png``).

Pure array functions: which train rows to draw (:func:`map_rows`: all of them up
to :data:`MAX_POINTS`, else a fixed random subsample that keeps every queue row)
and where (:func:`project_2d`: t-SNE from scikit-learn); :func:`queue_map` takes
them from a run's embeddings and its queue, and :func:`map_image` draws that for
``flag`` (the figure is :func:`cleaner.core.figures.data_map_png`'s).

t-SNE, not UMAP: scikit-learn is already here, and umap-learn pulls in numba.
Measured on this project's 2-core machine (PCA to 50 dimensions, then 500
iterations): 5,000 MNIST rows took 14 to 17 s with the cores to itself and 16 to
30 s while other jobs shared them (D = 96, 512 or 784); 1,500 rows 2 to 4 s
(7 to 12 s shared). The 2-D nearest-neighbour accuracy of the map was the same
at 500 iterations as at 1,000 (0.93 at 5,000 rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.formats.embeddings import Embeddings
from cleaner.formats.run_files import QueueFiles
from cleaner.formats.runs import Run
from cleaner.review.gallery import MapImage

MAX_POINTS = 5_000  # t-SNE's time grows faster than the rows; a map needs no more
SEED = 0  # the same rows and the same layout on every run of the same data
TSNE_ITERATIONS = 500  # sklearn's minimum is 250; 1,000 drew no better map (module docstring)
PCA_DIMENSIONS = 50  # t-SNE's usual first step: less time, less noise


def map_rows(
    n: int, *, keep: np.ndarray | Sequence[int], max_points: int = MAX_POINTS, seed: int = SEED
) -> np.ndarray:
    """Sorted indices of the ``n`` rows to draw: all of them when ``n <= max_points``,
    else every index in ``keep`` (the queue's rows) and a random draw of the others,
    ``max(max_points, len(keep))`` in all; the draw is seeded, so the same on every run.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    kept = np.unique(np.asarray(keep, dtype=np.int64))
    if kept.size and (kept[0] < 0 or kept[-1] >= n):
        raise ValueError(f"keep holds indices outside 0..{n - 1}")
    if n <= max_points:
        return np.arange(n)
    others = np.setdiff1d(np.arange(n), kept, assume_unique=True)
    room = max(max_points - kept.size, 0)
    drawn = np.random.default_rng(seed).choice(others, size=room, replace=False)
    return np.sort(np.concatenate([kept, drawn]))


def project_2d(
    embeddings: np.ndarray, *, seed: int = SEED, max_iter: int = TSNE_ITERATIONS
) -> np.ndarray:
    """``(M, D)`` embeddings -> ``(M, 2)`` positions by t-SNE.

    Rows are scaled to unit length first: the space's distances are cosine ones
    (``flag``'s outliers and near duplicates), and on unit vectors Euclidean
    distance orders pairs as cosine distance does. Then PCA to
    :data:`PCA_DIMENSIONS` and t-SNE (PCA start, perplexity 30, or less for a
    few rows). Fewer than 5 rows, too few for t-SNE: their first two principal
    components.
    """
    from sklearn.decomposition import PCA  # sklearn only where a map is drawn
    from sklearn.manifold import TSNE

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (M, D), got shape {x.shape}")
    m = len(x)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    if m == 0 or np.ptp(x, axis=0).max() == 0:
        # Every row the same point (a model that learned nothing): one place for all.
        # (PCA of such rows divides by zero, and sklearn's t-SNE crashed on the NaN.)
        return np.zeros((m, 2))
    if m < 5:
        out = np.zeros((m, 2))
        k = min(2, m - 1, x.shape[1])  # one row has no direction to spread along
        if k > 0:
            out[:, :k] = PCA(n_components=k, random_state=seed).fit_transform(x)
        return out
    if x.shape[1] > PCA_DIMENSIONS:  # (PCA has at most as many components as rows)
        x = PCA(n_components=min(PCA_DIMENSIONS, m), random_state=seed).fit_transform(x)
    tsne = TSNE(
        n_components=2,
        perplexity=min(30.0, (m - 1) / 3),  # t-SNE needs perplexity < rows
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        random_state=seed,
    )
    return np.asarray(tsne.fit_transform(x), dtype=np.float64)


@dataclass(frozen=True)
class DataMap:
    """What ``map.png`` draws: ``n`` train rows of the one space, in two dimensions."""

    xy: np.ndarray  # (n, 2) t-SNE positions
    labels: np.ndarray  # (n,) given class index
    issue: np.ndarray  # (n,) str: the row's queue issue, "" for a row not in the queue
    classes: tuple[str, ...]
    caption: str


def queue_map(
    emb: Embeddings,
    *,
    sample_ids: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    queue: pd.DataFrame,
    max_points: int = MAX_POINTS,
) -> DataMap:
    """The map of the train rows (``sample_ids`` (N,), given ``labels`` (N,)) in the
    embedding space ``emb``, the queue's rows among them marked by their issue.

    A ``group:ID`` row and an unlabeled row have no single train point and are not
    marked; the caption says how many queue rows are.
    """
    ids = np.asarray(sample_ids, dtype=str)
    at = pd.Index(emb.sample_ids).get_indexer(ids)
    if (at < 0).any():  # flag checked this when it read the run (checked_embeddings)
        raise ValueError(f"{int((at < 0).sum())} train rows have no embedding")
    # A sample queued twice (a label issue and a near duplicate) shows its first, best row.
    pairs = zip(queue["sample_id"].astype(str), queue["issue"].astype(str), strict=True)
    issue_of = dict(reversed(list(pairs)))
    issues = np.array([issue_of.get(s, "") for s in ids], dtype=object)
    queued = np.flatnonzero(issues != "")
    rows = map_rows(len(ids), keep=queued, max_points=max_points)
    xy = project_2d(emb.embeddings[at[rows]])
    n, shown = len(ids), len(rows)
    caption = (
        f"t-SNE of the one embedding space ({emb.source}) of "
        + (f"all {n:,} train rows" if shown == n else f"{shown:,} of the {n:,} train rows")
        + (
            f" (a fixed random draw, every queue row kept; at most {max_points:,} are drawn)"
            if shown < n
            else ""
        )
        + f". Colour: the given label; black edge: the {len(queued):,} of {len(queue):,} "
        "queue rows that are one train image, shaped by issue. Neighbours on the map are "
        "neighbours in the space; distances between clusters mean little."
    )
    return DataMap(xy, np.asarray(labels)[rows], issues[rows].astype(str), tuple(classes), caption)


def map_image(runs: Sequence[Run], queue: pd.DataFrame) -> MapImage | None:
    """``flag``'s map of the data for ``queue``: the train rows of the first run that has
    embeddings (``None`` without any), drawn as the gallery shows it and ``map.png`` holds."""
    run = next((r for r in runs if r.embeddings is not None), None)
    if run is None or run.embeddings is None or run.cfg.flag.map_points == 0:
        return None
    from cleaner.core.figures import data_map_png  # matplotlib only where it draws

    found = queue_map(
        run.embeddings,
        sample_ids=run.sample_ids,
        labels=run.labels,
        classes=run.classes,
        queue=queue,
        max_points=max(run.cfg.flag.map_points, 1),
    )
    title = f"map of the data: {run.manifest_path.name}, the queue's rows marked"
    png = data_map_png(
        found.xy, found.labels, found.issue, found.classes, title=title, caption=found.caption
    )
    return MapImage(png, found.caption, QueueFiles(Path(".")).map_png.name)
