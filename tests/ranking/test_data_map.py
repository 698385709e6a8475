"""The map of the data: which rows it draws, where t-SNE puts them, and the figure.

Synthetic embeddings made on the fly (well-separated blobs, so a map that keeps
neighbours apart is testable); ``flag`` writing ``map.png`` and the gallery
showing it are checked end to end in ``test_flag_cli``.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.neighbors import KNeighborsClassifier

from cleaner.core.figures import data_map_png
from cleaner.formats.embeddings import Embeddings
from cleaner.ranking.data_map import map_rows, project_2d, queue_map


def blobs(n_per: int, k: int = 3, d: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(k * n_per, d) points in k tight, far-apart clusters, and each one's cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 10
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + rng.normal(size=(len(labels), d)), labels


def test_every_row_when_they_fit() -> None:
    assert map_rows(10, keep=[3], max_points=10).tolist() == list(range(10))


def test_a_subsample_keeps_every_queue_row_and_is_the_same_each_time() -> None:
    keep = np.array([7, 9_999, 4_242, 7])  # unsorted, repeated
    rows = map_rows(10_000, keep=keep, max_points=500)
    assert len(rows) == 500 and len(set(rows.tolist())) == 500
    assert (np.diff(rows) > 0).all()  # sorted
    assert {7, 9_999, 4_242} <= set(rows.tolist())
    assert np.array_equal(rows, map_rows(10_000, keep=keep, max_points=500))
    assert not np.array_equal(rows, map_rows(10_000, keep=keep, max_points=500, seed=1))


def test_more_queue_rows_than_points_are_all_drawn() -> None:
    keep = np.arange(0, 1_000, 2)
    assert map_rows(1_000, keep=keep, max_points=100).tolist() == keep.tolist()


@pytest.mark.parametrize(("keep", "max_points"), [([10], 5), ([-1], 5), ([0], 0)])
def test_bad_arguments_are_refused(keep: list[int], max_points: int) -> None:
    with pytest.raises(ValueError):
        map_rows(10, keep=keep, max_points=max_points)


def test_the_map_keeps_clusters_apart_and_is_deterministic() -> None:
    x, labels = blobs(60)
    xy = project_2d(x)
    assert xy.shape == (180, 2) and np.isfinite(xy).all()
    knn = KNeighborsClassifier(5).fit(xy[::2], labels[::2])
    assert knn.score(xy[1::2], labels[1::2]) == 1.0
    assert np.array_equal(xy, project_2d(x))


def test_distances_are_cosine_ones() -> None:
    """Scaling a row changes no cosine distance, so it moves nothing on the map."""
    x, _ = blobs(20)
    scale = np.random.default_rng(1).uniform(0.1, 10, size=(len(x), 1))
    assert np.allclose(project_2d(x), project_2d(x * scale))


@pytest.mark.parametrize(("m", "d"), [(1, 8), (2, 8), (4, 8), (12, 300)])
def test_few_rows_still_get_a_place(m: int, d: int) -> None:
    xy = project_2d(np.random.default_rng(0).normal(size=(m, d)))
    assert xy.shape == (m, 2) and np.isfinite(xy).all()


@pytest.mark.parametrize("d", [8, 80])
def test_rows_all_alike_share_one_place(d: int) -> None:
    """A model that learned nothing embeds every row alike (t-SNE crashed on that)."""
    assert np.array_equal(project_2d(np.full((50, d), 0.3)), np.zeros((50, 2)))
    assert project_2d(np.zeros((0, d))).shape == (0, 2)


def embeddings_of(ids: list[str], x: np.ndarray, split: list[str]) -> Embeddings:
    n = len(ids)
    return Embeddings(np.array(ids), np.array(split), np.full(n, ""), x, "test model", 0.3)


def test_queue_rows_are_marked_by_issue_and_kept_in_a_subsample() -> None:
    x, labels = blobs(40)
    ids = [f"s{i}" for i in range(len(x))]
    # The space holds test rows too (leakage is found there); the map is the train rows'.
    emb = embeddings_of([*ids, "t0"], np.vstack([x, x[:1]]), [*(["train"] * len(x)), "test"])
    queue = pd.DataFrame(
        {
            "sample_id": ["s5", "group:g1", "s77", "s5", "u3"],
            "issue": ["label", "group_inconsistent", "outlier", "near_duplicate", "unlabeled"],
        }
    )
    order = np.random.default_rng(2).permutation(len(x))  # the run's order is not the space's
    found = queue_map(
        emb,
        sample_ids=np.array(ids)[order],
        labels=labels[order],
        classes=("a", "b", "c"),
        queue=queue,
        max_points=30,
    )
    assert found.xy.shape == (30, 2) and len(found.labels) == len(found.issue) == 30
    # s5 shows its first row's issue; the group row and the unlabeled row have no point.
    assert sorted(found.issue[found.issue != ""].tolist()) == ["label", "outlier"]
    assert "30 of the 120 train rows" in found.caption
    assert "the 2 of 5 queue rows that are one train image" in found.caption
    assert "(test model)" in found.caption and "every queue row kept" in found.caption
    everything = queue_map(
        emb, sample_ids=np.array(ids), labels=labels, classes=("a", "b", "c"), queue=queue
    )
    assert "all 120 train rows" in everything.caption
    assert np.array_equal(everything.labels, labels)


@pytest.mark.parametrize("k", [3, 30])
def test_the_figure_is_a_png(k: int) -> None:
    rng = np.random.default_rng(0)
    issue = np.array(["", "label", "outlier", "leakage", "someday_a_new_kind"] * 8)
    png = data_map_png(
        rng.normal(size=(40, 2)),
        rng.integers(0, k, size=40),
        issue,
        [f"$\\undefinedcmd{{{c}}}$" for c in range(k)],  # class names are drawn as written
        title="map of the data",
        caption="t-SNE of 40 rows. " * 8,
    )
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and min(im.size) > 300
