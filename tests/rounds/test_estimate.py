"""The errors left: cleanlab's count corrected by what reviewers found, and the stop rule."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from cleaner.rounds.estimate import errors_left, expected_errors, stop_rule


def noisy_data(
    n: int, k: int, *, noise: float, sharpness: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True labels (N,), labels with ``noise`` of them flipped (N,), and model probabilities
    (N, K) that favour the true class by ``sharpness`` logits."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    labels = truth.copy()
    flip = rng.random(n) < noise
    labels[flip] = (truth[flip] + rng.integers(1, k, flip.sum())) % k
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), truth] += sharpness
    pred_probs = np.exp(logits)
    return truth, labels, pred_probs / pred_probs.sum(axis=1, keepdims=True)


def review_most_doubtful(labels: np.ndarray, pred_probs: np.ndarray, count: int) -> np.ndarray:
    """(N,) bool: the ``count`` rows of lowest label quality, as a round reviews first."""
    reviewed = np.zeros(len(labels), dtype=bool)
    order = np.argsort(get_label_quality_scores(labels, pred_probs), kind="stable")
    reviewed[order[:count]] = True
    return reviewed


def test_with_nothing_reviewed_the_estimate_is_cleanlabs_count() -> None:
    _, labels, pred_probs = noisy_data(2000, 4, noise=0.1, sharpness=3.0)
    result = errors_left(labels, pred_probs)
    flags = find_label_issues(labels, pred_probs)
    assert result.cleanlab_estimate == flags.sum() and result.estimate == flags.sum()
    assert result.ratio == 1.0 and result.bands == ()
    low, high = result.interval
    assert low <= result.estimate <= high


@pytest.mark.parametrize(
    ("noise", "sharpness", "reviewed_share"),
    [(0.15, 3.0, 0.05), (0.15, 3.0, 0.1), (0.3, 3.0, 0.1)],
)
def test_the_estimate_lands_near_the_errors_truly_left(
    noise: float, sharpness: float, reviewed_share: float
) -> None:
    truth, labels, pred_probs = noisy_data(4000, 5, noise=noise, sharpness=sharpness)
    reviewed = review_most_doubtful(labels, pred_probs, int(reviewed_share * len(labels)))
    wrong = labels != truth
    result = errors_left(labels, pred_probs, reviewed=reviewed, found_wrong=wrong)
    left = int((wrong & ~reviewed).sum())
    assert abs(result.estimate - left) <= 0.1 * left
    assert result.num_reviewed == reviewed.sum() and result.found_wrong == (wrong & reviewed).sum()
    assert result.error_probability[reviewed].sum() == 0
    assert result.error_probability.sum() == pytest.approx(result.estimate)


def test_a_weak_models_overcount_is_corrected_by_what_reviewers_found() -> None:
    # A model right on ~79% of rows: cleanlab's flags count its own mistakes too.
    truth, labels, pred_probs = noisy_data(4000, 5, noise=0.15, sharpness=2.0)
    reviewed = review_most_doubtful(labels, pred_probs, 400)
    wrong = labels != truth
    result = errors_left(labels, pred_probs, reviewed=reviewed, found_wrong=wrong)
    left = int((wrong & ~reviewed).sum())
    assert result.ratio < 0.9  # the frontier band found fewer errors than flags
    assert abs(result.estimate - left) < abs(result.cleanlab_estimate - left)
    # Still above the truth: the frontier's precision overstates that of the rows further
    # down the ranking (the module's caveat), less so than cleanlab's count alone.
    assert left < result.estimate < result.cleanlab_estimate
    # Precision falls from the most doubtful band to the frontier.
    ratios = [b.ratio for b in result.bands]
    assert len(ratios) == 5 and ratios[0] > ratios[-1] == result.ratio


def test_the_interval_is_seeded_and_widens_with_fewer_reviewed_rows() -> None:
    truth, labels, pred_probs = noisy_data(3000, 4, noise=0.15, sharpness=2.0)
    wrong = labels != truth
    few = review_most_doubtful(labels, pred_probs, 60)
    many = review_most_doubtful(labels, pred_probs, 600)
    a = errors_left(labels, pred_probs, reviewed=few, found_wrong=wrong, seed=1)
    b = errors_left(labels, pred_probs, reviewed=few, found_wrong=wrong, seed=1)
    assert a.interval == b.interval
    assert len(a.bands) == 3  # 60 rows make three bands of at least 20
    c = errors_left(labels, pred_probs, reviewed=many, found_wrong=wrong, seed=1)
    width = [r.interval[1] - r.interval[0] for r in (a, c)]
    assert all(r.interval[0] <= r.estimate <= r.interval[1] for r in (a, c))
    assert width[0] > 0 and width[1] > 0


def test_stop_when_the_next_batch_is_expected_to_find_fewer_than_n() -> None:
    truth, labels, pred_probs = noisy_data(2000, 4, noise=0.1, sharpness=3.0)
    wrong = labels != truth
    reviewed = review_most_doubtful(labels, pred_probs, 150)
    result = errors_left(labels, pred_probs, reviewed=reviewed, found_wrong=wrong)
    batch = np.flatnonzero(~reviewed)[:100]
    assert expected_errors(result, batch) == pytest.approx(result.error_probability[batch].sum())
    rule = stop_rule(result, rows=batch, min_errors=1e9)
    assert rule.stop and rule.batch_size == 100 and "stop" in str(rule)
    # By budget: the rows most likely wrong, so the most any batch of that size can find.
    by_budget = stop_rule(result, budget=100, min_errors=1)
    assert by_budget.expected >= rule.expected and not by_budget.stop
    everything_reviewed = errors_left(
        labels, pred_probs, reviewed=np.ones(len(labels), bool), found_wrong=wrong
    )
    assert everything_reviewed.estimate == 0
    assert stop_rule(everything_reviewed, budget=100, min_errors=1).stop
    with pytest.raises(ValueError, match="budget"):
        stop_rule(result, min_errors=1)
