"""The next batch: Bernhardt et al.'s score, ActiveLab for several labels, never a settled row."""

from __future__ import annotations

import numpy as np
import pytest

from cleaner.rounds.select import (
    MORE_LABELS,
    RELABEL,
    UNLABELED,
    label_counts,
    percentile,
    relabel_scores,
    select_batch,
)


def random_case(n: int = 300, k: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pred_probs = rng.dirichlet(np.ones(k), n)
    counts = np.zeros((n, k), dtype=int)
    counts[np.arange(n), rng.integers(0, k, n)] = 1
    more = rng.random(n) < 0.3  # some rows have a second label
    counts[np.flatnonzero(more), rng.integers(0, k, more.sum())] += 1
    return pred_probs, counts


def test_label_counts_from_a_matrix_with_missing_labels() -> None:
    labels = np.array([[0, 2, np.nan], [1, 1, 1], [np.nan, np.nan, np.nan], [2, -1, 0]])
    np.testing.assert_array_equal(
        label_counts(labels, 3), [[1, 0, 1], [0, 3, 0], [0, 0, 0], [1, 0, 1]]
    )
    with pytest.raises(ValueError, match="not below num_classes"):
        label_counts(labels, 2)


def test_relabel_score_is_bernhardts_cross_entropy_minus_ambiguity() -> None:
    p = np.array([[0.2, 0.8], [0.5, 0.5], [0.99, 0.01]])
    counts = np.array([[1, 0], [1, 0], [1, 0]])
    scores = relabel_scores(counts, p)

    def h(row: np.ndarray) -> float:
        return float(-(row * np.log2(row)).sum())

    expected_0 = -np.log2(0.2) - max(h(p[0]) - 0.3, 0)
    assert scores[0] == pytest.approx(expected_0)
    # Fully ambiguous: cross-entropy 1 minus entropy above 0.3 (0.7) = 0.3.
    assert scores[1] == pytest.approx(0.3)
    assert scores[2] == pytest.approx(-np.log2(0.99), abs=1e-9)
    # A confidently contradicted label outranks a truly ambiguous image.
    assert scores[0] > scores[1] > scores[2]
    # The label distribution counts: two annotators split between the classes.
    split = relabel_scores(np.array([[1, 1]]), np.array([[0.2, 0.8]]))
    assert split[0] == pytest.approx(-(np.log2(0.2) + np.log2(0.8)) / 2 - (h(p[0]) - 0.3))
    assert np.isnan(relabel_scores(np.array([[0, 0]]), np.array([[0.5, 0.5]]))[0])


def test_percentile_shares_ranks_between_ties() -> None:
    np.testing.assert_allclose(percentile(np.array([3.0, 1.0, 3.0, 2.0])), [5 / 6, 0, 5 / 6, 1 / 3])
    assert np.isnan(percentile(np.array([1.0, np.nan]))[1])


def test_never_offers_a_decided_row_nor_one_at_its_label_limit() -> None:
    pred_probs, counts = random_case()
    rng = np.random.default_rng(1)
    decided = rng.random(len(counts)) < 0.4
    limit = 2
    batch = select_batch(
        pred_probs, label_counts=counts, budget=1000, decided=decided, max_labels=limit
    )
    offered = batch.rows
    assert not decided[offered].any()
    assert (counts[offered].sum(axis=1) < limit).all()
    # Everything else is offered (the budget is larger than what is open), best first.
    open_rows = ~decided & (counts.sum(axis=1) < limit)
    assert set(offered.tolist()) == set(np.flatnonzero(open_rows).tolist())
    assert (np.diff(batch.priority) <= 0).all()
    # A per-row limit works the same way.
    per_row = np.where(np.arange(len(counts)) % 2 == 0, 1, 5)
    batch = select_batch(pred_probs, label_counts=counts, budget=1000, max_labels=per_row)
    assert (counts[batch.rows].sum(axis=1) < per_row[batch.rows]).all()


def test_the_budget_counts_rows_and_the_order_is_the_relabel_score() -> None:
    pred_probs, counts = random_case()
    single = counts.sum(axis=1) == 1
    batch = select_batch(pred_probs[single], label_counts=counts[single], budget=25)
    assert len(batch.rows) == 25 and set(batch.kind) == {RELABEL}
    best = np.argsort(-relabel_scores(counts[single], pred_probs[single]), kind="stable")[:25]
    np.testing.assert_array_equal(batch.rows, best)


def test_ties_are_broken_by_row_index_and_the_batch_repeats() -> None:
    pred_probs = np.full((6, 2), 0.5)
    counts = np.tile([1, 0], (6, 1))
    batch = select_batch(pred_probs, label_counts=counts, budget=4)
    np.testing.assert_array_equal(batch.rows, [0, 1, 2, 3])
    p, c = random_case(seed=3)
    a = select_batch(p, label_counts=c, budget=50)
    b = select_batch(p.copy(), label_counts=c.copy(), budget=50)
    np.testing.assert_array_equal(a.rows, b.rows)


def test_activelab_ranks_rows_with_several_labels_and_unlabeled_rows() -> None:
    pred_probs, counts = random_case(n=200)
    counts[:20] = 0  # rows nobody labelled yet
    activelab = np.random.default_rng(2).random(len(counts))
    batch = select_batch(pred_probs, label_counts=counts, budget=200, activelab_scores=activelab)
    kinds = dict(zip(batch.rows.tolist(), batch.kind, strict=True))
    several = np.flatnonzero(counts.sum(axis=1) >= 2)
    assert {kinds[i] for i in several} == {MORE_LABELS}
    assert {kinds[i] for i in range(20)} == {UNLABELED}
    # Among unlabeled rows, lower ActiveLab (one more label worth more) comes first.
    unlabeled = [i for i in batch.rows.tolist() if i < 20]
    assert unlabeled == sorted(unlabeled, key=lambda i: activelab[i])
    # Without ActiveLab scores, unlabeled rows cannot be ranked and are not offered.
    plain = select_batch(pred_probs, label_counts=counts, budget=200)
    assert not (plain.rows < 20).any() and not plain.eligible[:20].any()
    # A row with several labels and a better ActiveLab score moves up.
    i = int(several[0])
    better, worse = activelab.copy(), activelab.copy()
    better[i], worse[i] = -1.0, 2.0
    up = select_batch(pred_probs, label_counts=counts, budget=200, activelab_scores=better)
    down = select_batch(pred_probs, label_counts=counts, budget=200, activelab_scores=worse)
    assert list(up.rows).index(i) < list(down.rows).index(i)


def test_bad_arguments_are_refused() -> None:
    pred_probs, counts = random_case(n=10)
    with pytest.raises(ValueError, match="decided"):
        select_batch(pred_probs, label_counts=counts, budget=1, decided=np.zeros(3, bool))
    with pytest.raises(ValueError, match="max_labels"):
        select_batch(pred_probs, label_counts=counts, budget=1, max_labels=0)
    with pytest.raises(ValueError, match="budget"):
        select_batch(pred_probs, label_counts=counts, budget=-1)
    assert len(select_batch(pred_probs, label_counts=counts, budget=0).rows) == 0
