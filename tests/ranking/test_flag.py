"""cleaner.ranking.flag: the pure array functions, on small hand-made arrays with exact answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaner.formats.prob_table import bad_probability_rows
from cleaner.ranking import flag

# A hand-made 5 x 3 pred_probs and its given labels (rows 3 and 4 look mislabeled).
P5 = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.3, 0.4],
        [0.6, 0.3, 0.1],
        [0.2, 0.2, 0.6],
    ]
)
Y5 = np.array([0, 1, 2, 1, 0])


def confident(true: np.ndarray, k: int = 3, p: float = 0.9) -> np.ndarray:
    """Rows that put ``p`` on the class in ``true`` and share the rest equally."""
    out = np.full((len(true), k), (1.0 - p) / (k - 1))
    out[np.arange(len(true)), true] = p
    return out


# 60 rows whose labels a confident model agrees with (20 per class), plus 5 rows
# whose given label contradicts a confident prediction: four say 0 but look like 1,
# one says 2 but looks like 0. They sit at ERROR_ROWS of the 65.
ERROR_ROWS = np.array([3, 17, 30, 44, 64])


def noisy_dataset() -> tuple[np.ndarray, np.ndarray]:
    n = 65
    clean = np.setdiff1d(np.arange(n), ERROR_ROWS)
    true = np.empty(n, dtype=np.int64)
    given_ = np.empty(n, dtype=np.int64)
    true[clean] = given_[clean] = np.repeat(np.arange(3), 20)
    true[ERROR_ROWS] = [1, 1, 1, 1, 0]
    given_[ERROR_ROWS] = [0, 0, 0, 0, 2]
    return given_, confident(true)


# --- review_order ----------------------------------------------------------------


def test_review_order_lowest_quality_first_ties_by_index():
    quality = np.array([0.5, 0.1, 0.9, 0.1, 0.3, 0.0, 0.5, 0.2])
    flagged = np.array([True, True, True, True, True, False, True, False])
    # 5 (0.0) and 7 (0.2) are not flagged; 1 and 3 tie at 0.1, 0 and 6 at 0.5.
    assert flag.review_order(quality, flagged).tolist() == [1, 3, 4, 0, 6, 2]


def test_review_order_nothing_flagged_is_empty():
    out = flag.review_order(np.array([0.3, 0.2]), np.zeros(2, bool))
    assert out.tolist() == []


# --- label_quality / ensemble_label_quality --------------------------------------


def test_self_confidence_is_probability_of_given_label():
    q = flag.label_quality(Y5, P5, method="self_confidence")
    assert np.array_equal(q, P5[np.arange(5), Y5])
    assert q.tolist() == [0.7, 0.8, 0.4, 0.3, 0.2]


def test_normalized_margin_on_hand_made_rows():
    q = flag.label_quality(Y5, P5, method="normalized_margin")
    # (p[given] - max other p + 1) / 2
    np.testing.assert_allclose(q, [0.75, 0.85, 0.55, 0.35, 0.3])


@pytest.mark.parametrize("method", flag.RANK_METHODS)
def test_every_method_scores_in_unit_interval_and_ranks_mislabeled_first(method):
    q = flag.label_quality(Y5, P5, method=method)
    assert q.shape == (5,)
    assert ((q >= 0) & (q <= 1)).all()
    assert np.argsort(q, kind="stable").tolist() == [4, 3, 2, 0, 1]


def test_the_three_methods_order_a_crafted_example_differently():
    rows = np.array(
        [
            [0.40, 0.60, 0.00],  # low self-confidence, and another class beats it
            [0.35, 0.33, 0.32],  # lowest self-confidence, but no class beats it; high entropy
            [0.45, 0.45, 0.10],  # a tie with another class
        ]
    )
    labels = np.array([0, 0, 0])
    orders = {
        m: np.argsort(flag.label_quality(labels, rows, method=m), kind="stable").tolist()
        for m in flag.RANK_METHODS
    }
    assert orders == {
        "self_confidence": [1, 0, 2],  # 0.35 < 0.40 < 0.45
        "normalized_margin": [0, 2, 1],  # 0.40 < 0.50 < 0.51
        "confidence_weighted_entropy": [1, 2, 0],
    }


@pytest.mark.parametrize("method", flag.RANK_METHODS)
def test_ensemble_of_one_is_the_single_model(method):
    single = flag.label_quality(Y5, P5, method=method)
    assert np.array_equal(flag.ensemble_label_quality(Y5, [P5], method=method), single)


@pytest.mark.parametrize("method", flag.RANK_METHODS)
def test_ensemble_of_two_identical_models_keeps_scores_and_ranking(method):
    single = flag.label_quality(Y5, P5, method=method)
    both = flag.ensemble_label_quality(Y5, [P5, P5.copy()], method=method)
    np.testing.assert_allclose(both, single)
    assert np.argsort(both, kind="stable").tolist() == np.argsort(single, kind="stable").tolist()


def test_ensemble_weighs_the_more_accurate_model_more():
    good = confident(Y5)  # always agrees with the labels
    bad = confident((Y5 + 1) % 3)  # never does
    mixed = P5  # right on 3 of 5
    q = flag.ensemble_label_quality(Y5, [good, mixed])
    # accuracy weights 1 and 0.6 (normalised to 1/1.6 and 0.6/1.6)
    np.testing.assert_allclose(q, (0.9 * 1.0 + P5[np.arange(5), Y5] * 0.6) / 1.6)
    # a model that is never right gets weight 0 next to one that is
    np.testing.assert_allclose(flag.ensemble_label_quality(Y5, [good, bad]), 0.9)


def test_ensemble_of_models_that_are_never_right_is_not_nan():
    # cleanlab's accuracy weights are 0 / 0 here; the members count equally instead.
    a = confident((Y5 + 1) % 3, p=0.8)
    b = confident((Y5 + 2) % 3, p=0.6)
    q = flag.ensemble_label_quality(Y5, [a, b])
    np.testing.assert_allclose(q, (0.1 + 0.2) / 2)


# --- suggest_labels --------------------------------------------------------------


def test_suggest_labels_best_other_class_and_its_probability():
    probs = np.array(
        [
            [0.8, 0.15, 0.05],  # given is the argmax: suggest the runner-up
            [0.1, 0.2, 0.7],  # given 0: suggest the argmax 2
            [0.4, 0.3, 0.3],  # tie among the others: the lower index
            [0.5, 0.5, 0.0],  # given ties with class 0: still not the given one
            [0.2, 0.4, 0.4],  # given 2 ties with 1: suggest 1
        ]
    )
    labels = np.array([0, 0, 0, 1, 2])
    suggested, prob = flag.suggest_labels(labels, probs)
    assert suggested.tolist() == [1, 2, 1, 0, 1]
    assert prob.tolist() == [0.15, 0.7, 0.3, 0.5, 0.4]
    assert probs.tolist()[0] == [0.8, 0.15, 0.05]  # the input is not changed


# --- find_label_errors / estimate_noise -------------------------------------------


def test_find_label_errors_flags_exactly_the_contradicted_rows():
    labels, probs = noisy_dataset()
    found = flag.find_label_errors(labels, probs)
    assert found.dtype == bool and found.shape == (65,)
    assert np.flatnonzero(found).tolist() == ERROR_ROWS.tolist()


def test_clean_dataset_has_no_label_errors():
    labels = np.repeat(np.arange(3), 20)
    probs = confident(labels)
    assert not flag.find_label_errors(labels, probs).any()
    noise = flag.estimate_noise(labels, probs)
    assert noise.num_label_issues == 0
    assert noise.confused_pairs() == []


def test_estimate_noise_counts_and_names_the_injected_pairs():
    labels, probs = noisy_dataset()
    noise = flag.estimate_noise(labels, probs)
    assert noise.num_label_issues == 5
    assert noise.joint.shape == (3, 3)
    assert noise.joint.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(
        noise.joint, np.array([[20, 4, 0], [0, 20, 0], [1, 0, 20]]) / 65, atol=1e-12
    )
    pairs = noise.confused_pairs()
    # (given, true, fraction): the four 0-for-1 rows first, then the one 2-for-0; no zeros.
    assert [(g, t) for g, t, _ in pairs] == [(0, 1), (2, 0)]
    assert [f for _, _, f in pairs] == pytest.approx([4 / 65, 1 / 65])
    assert [(g, t) for g, t, _ in noise.confused_pairs(top=1)] == [(0, 1)]


def test_confused_pairs_skips_the_diagonal_and_breaks_ties_by_position():
    joint = np.array([[0.5, 0.1, 0.0], [0.1, 0.2, 0.0], [0.0, 0.05, 0.05]])
    noise = flag.NoiseEstimate(num_label_issues=3, joint=joint, confident_joint=joint)
    assert noise.confused_pairs() == [(0, 1, 0.1), (1, 0, 0.1), (2, 1, 0.05)]
    assert joint[0, 0] == 0.5  # the estimate itself is not changed


# --- bad_probability_rows --------------------------------------------------------


def test_bad_probability_rows_exact_reasons():
    probs = np.array(
        [
            [0.5, 0.5],  # fine
            [np.nan, 1.0],
            [np.inf, 0.0],
            [-np.inf, 1.0],
            [-0.5, 1.5],  # sums to 1 but negative
            [0.5, 0.6],
            [0.5, 0.5005],  # within atol
            [-0.1, 0.2],  # negative and off: negative is named
            [np.nan, -1.0],  # NaN and negative: NaN is named
            [0.0, 1.0],  # fine
            [0.2, 0.3],
        ]
    )
    assert bad_probability_rows(probs) == [
        (1, "probability is NaN or infinite"),
        (2, "probability is NaN or infinite"),
        (3, "probability is NaN or infinite"),
        (4, "negative probability"),
        (5, "probabilities sum to 1.1, not 1"),
        (7, "negative probability"),
        (8, "probability is NaN or infinite"),
        (10, "probabilities sum to 0.5, not 1"),
    ]


def test_bad_probability_rows_atol():
    probs = np.array([[0.5, 0.5005], [0.4999, 0.5]])
    assert bad_probability_rows(probs) == []
    assert bad_probability_rows(probs, atol=1e-4) == [(0, "probabilities sum to 1.0005, not 1")]


def test_bad_probability_rows_all_fine_or_empty():
    assert bad_probability_rows(P5) == []
    assert bad_probability_rows(np.zeros((0, 3))) == []


# --- embedding_issues ------------------------------------------------------------


def blobs_with_duplicate_and_far_point() -> tuple[np.ndarray, int, int, int]:
    """3 Gaussian blobs of 50 points in 16-D, a copy of point 7, and one far-away point."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 10.0, (3, 16))
    points = np.concatenate([c + rng.normal(0.0, 1.0, (50, 16)) for c in centres])
    dup, far = len(points), len(points) + 1
    points = np.concatenate([points, points[7:8], centres[:1] + 100.0])
    return points, 7, dup, far


def test_embedding_issues_duplicate_pair_points_at_each_other():
    points, orig, dup, _ = blobs_with_duplicate_and_far_point()
    found = flag.embedding_issues(points)
    # An exact pair: each one's nearest neighbour (at distance 0) is the other.
    assert np.flatnonzero(found.near_duplicate_of >= 0).tolist() == [orig, dup]
    assert found.near_duplicate_of[orig] == dup
    assert found.near_duplicate_of[dup] == orig


def test_embedding_issues_far_point_is_the_clearest_outlier():
    points, _, _, far = blobs_with_duplicate_and_far_point()
    found = flag.embedding_issues(points)
    n = len(points)
    assert found.outlier_score.shape == found.is_outlier.shape == (n,)
    assert ((found.outlier_score > 0) & (found.outlier_score <= 1)).all()
    assert found.is_outlier[far]
    assert int(np.argmin(found.outlier_score)) == far
    # by a wide margin, and the IQR rule flags only a handful in all
    others = np.delete(found.outlier_score, far)
    assert found.outlier_score[far] < others.min() / 100
    assert found.is_outlier.sum() <= 0.05 * n


@pytest.mark.parametrize("n", [0, 1, 2])
def test_embedding_issues_fewer_than_three_points(n):
    found = flag.embedding_issues(np.arange(n * 4, dtype=float).reshape(n, 4))
    assert found.outlier_score.tolist() == [1.0] * n
    assert found.is_outlier.tolist() == [False] * n
    assert found.near_duplicate_of.tolist() == [-1] * n


def test_embedding_issues_three_points_and_k_larger_than_n():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    found = flag.embedding_issues(points, k=10)
    assert found.near_duplicate_of.tolist() == [-1, -1, -1]
    assert not found.is_outlier.any()
    # point 2 is the farthest from the others: the lowest score
    assert int(np.argmin(found.outlier_score)) == 2


def test_embedding_issues_all_identical_points_are_near_duplicates_not_outliers():
    found = flag.embedding_issues(np.ones((5, 3)))
    partner = found.near_duplicate_of
    assert (partner >= 0).all()
    assert (partner != np.arange(5)).all()  # never itself
    assert not found.is_outlier.any()


# --- group_consistency -----------------------------------------------------------


def test_group_consistency_exact_report():
    #               0    1    2    3    4    5    6    7    8    9
    groups = np.array(["c", "a", "b", "c", "a", "b", "d", "b", "d", "e"])
    labels = np.array([2, 0, 1, 2, 0, 2, 2, 1, 1, 1])
    probs = np.array(
        [
            [0.7, 0.1, 0.2],  # c: agrees on label 2 but the model says 0
            [0.9, 0.05, 0.05],  # a: agrees on 0, and so does the model
            [0.1, 0.8, 0.1],  # b: labels 1, 2, 1: mixed
            [0.5, 0.1, 0.4],
            [0.8, 0.1, 0.1],
            [0.1, 0.6, 0.3],
            [0.2, 0.3, 0.5],  # d: labels 2, 1 tie: given is 1 (lowest); the model says 2
            [0.2, 0.7, 0.1],
            [0.2, 0.4, 0.4],
            [0.1, 0.8, 0.1],  # e: a single row that agrees
        ]
    )
    rep = flag.group_consistency(labels, probs, groups)
    assert rep.groups.tolist() == ["a", "b", "c", "d", "e"]
    assert rep.inverse.tolist() == [2, 0, 1, 2, 0, 1, 3, 1, 3, 4]
    assert rep.given.tolist() == [0, 1, 2, 1, 1]
    assert rep.predicted.tolist() == [0, 1, 0, 2, 1]  # d's mean is (0.2, 0.35, 0.45)
    assert rep.mixed.tolist() == [False, True, False, True, False]
    assert rep.flagged.tolist() == [False, True, True, True, False]
    # mean probability of the group's given label over its rows
    np.testing.assert_allclose(
        rep.quality, [(0.9 + 0.8) / 2, (0.8 + 0.6 + 0.7) / 3, (0.2 + 0.4) / 2, 0.35, 0.8]
    )


def test_group_consistency_int_groups_and_agreeing_groups_not_flagged():
    groups = np.array([10, 2, 10, 2])
    labels = np.array([1, 0, 1, 0])
    probs = confident(labels, k=2)
    rep = flag.group_consistency(labels, probs, groups)
    assert rep.groups.tolist() == [2, 10]
    assert rep.inverse.tolist() == [1, 0, 1, 0]
    assert rep.given.tolist() == [0, 1]
    assert not rep.flagged.any()
    np.testing.assert_allclose(rep.quality, [0.9, 0.9])


def test_group_consistency_mean_prediction_decides_not_the_rows_majority():
    # both rows say 0 and one row's argmax is 0, but the mean (0.475, 0.525) says 1
    labels = np.array([0, 0])
    probs = np.array([[0.4, 0.6], [0.55, 0.45]])
    rep = flag.group_consistency(labels, probs, np.array(["g", "g"]))
    assert rep.given.tolist() == [0]
    assert rep.predicted.tolist() == [1]
    assert rep.mixed.tolist() == [False]
    assert rep.flagged.tolist() == [True]
    np.testing.assert_allclose(rep.quality, [0.475])


# --- mixed_groups ----------------------------------------------------------------


def test_mixed_groups_string_values_and_groups():
    groups = np.array(["p", "q", "p", "r", "q", "s", "s"])
    values = np.array(["m", "f", "f", "m", "f", "x", "x"])
    assert flag.mixed_groups(values, groups).tolist() == ["p"]


def test_mixed_groups_int_values():
    groups = np.array(["b", "a", "b", "a", "c"])
    values = np.array([1, 1, 2, 1, 3])
    assert flag.mixed_groups(values, groups).tolist() == ["b"]


def test_mixed_groups_int_groups_come_back_as_their_strings():
    # Rows are compared by their string form, so the ids come back as strings,
    # sorted as strings; the queue passes string groups already.
    groups = np.array([10, 2, 10, 2, 1, 1])
    values = np.array(["x", "y", "z", "y", "u", "v"])
    assert flag.mixed_groups(values, groups).tolist() == ["1", "10"]


def test_mixed_groups_object_column_with_missing_values():
    groups = np.array(["a", "a", "b", "b", "c", "c"], dtype=object)
    values = np.array([None, "x", np.nan, np.nan, "y", "y"], dtype=object)
    # a missing value differs from a present one; two missing ones agree
    assert flag.mixed_groups(values, groups).tolist() == ["a"]


def test_mixed_groups_nothing_mixed_or_empty():
    assert flag.mixed_groups(np.array([1, 1, 2]), np.array(["a", "a", "b"])).tolist() == []
    assert flag.mixed_groups(np.array([]), np.array([])).tolist() == []


# --- primary_issue ---------------------------------------------------------------


def test_primary_issue_precedence_label_then_duplicate_then_outlier():
    # every combination of (label, near duplicate, outlier), in binary order
    combos = np.array([[(i >> b) & 1 for b in (2, 1, 0)] for i in range(8)], dtype=bool)
    issue = flag.primary_issue(combos[:, 0], combos[:, 1], combos[:, 2])
    assert issue.tolist() == [
        "",
        "outlier",
        "near_duplicate",
        "near_duplicate",
        "label",
        "label",
        "label",
        "label",
    ]
    assert list(flag.ISSUE_PRECEDENCE) == [
        "label",
        "near_duplicate",
        "dark",
        "light",
        "low_information",
        "odd_aspect_ratio",
        "odd_size",
        "blurry",
        "grayscale",
        "outlier",
    ]


def test_primary_issue_puts_an_image_finding_between_duplicate_and_outlier():
    image = np.array(["dark", "blurry", "grayscale", ""], dtype=object)
    issue = flag.primary_issue([1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 1, 1], image)
    assert issue.tolist() == ["label", "near_duplicate", "grayscale", "outlier"]


def test_primary_issue_accepts_int_masks_and_empty():
    assert flag.primary_issue([0, 1], [1, 0], [1, 1]).tolist() == ["near_duplicate", "label"]
    assert flag.primary_issue([], [], []).tolist() == []


# --- properties ------------------------------------------------------------------


@st.composite
def classification_cases(draw, *, min_classes_seen: int = 1):
    """Valid pred_probs (rows sum to 1), labels and a flagged mask."""
    k = draw(st.integers(2, 6))
    n = draw(st.integers(max(1, min_classes_seen), 40))
    raw = np.array(
        draw(st.lists(st.floats(0.0, 1.0), min_size=n * k, max_size=n * k)), dtype=np.float64
    ).reshape(n, k)
    # some exact ties and zeros survive; every row keeps a positive sum
    raw[:, 0] += 1e-6
    probs = raw / raw.sum(axis=1, keepdims=True)
    labels = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    if len(np.unique(labels)) < min_classes_seen:
        labels[:min_classes_seen] = np.arange(min_classes_seen) % k
    flagged = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    method = draw(st.sampled_from(flag.RANK_METHODS))
    return probs, labels, flagged, method


@settings(max_examples=150, deadline=None)
@given(classification_cases())
def test_review_order_is_the_flagged_rows_by_quality(case):
    probs, labels, flagged, method = case
    quality = flag.label_quality(labels, probs, method=method)
    order = flag.review_order(quality, flagged)
    assert sorted(order.tolist()) == np.flatnonzero(flagged).tolist()
    assert (np.diff(quality[order]) >= 0).all()
    # ties keep the lower index first
    assert order.tolist() == sorted(np.flatnonzero(flagged), key=lambda i: (quality[i], i))


@settings(max_examples=150, deadline=None)
@given(classification_cases())
def test_suggestion_is_never_the_given_label(case):
    probs, labels, _, _ = case
    suggested, prob = flag.suggest_labels(labels, probs)
    assert (suggested != labels).all()
    assert (prob == probs[np.arange(len(labels)), suggested]).all()
    others = probs.copy()
    others[np.arange(len(labels)), labels] = -1.0
    assert (prob == others.max(axis=1)).all()


@settings(max_examples=75, deadline=None)
@given(classification_cases(min_classes_seen=2), classification_cases())
def test_ensemble_quality_is_finite_and_in_unit_interval(a, b):
    probs, labels, _, method = a
    other = b[0]
    if other.shape != probs.shape:
        other = probs[::-1].copy()
    q = flag.ensemble_label_quality(labels, [probs, other], method=method)
    assert q.shape == labels.shape
    assert np.isfinite(q).all()
    assert ((q >= 0) & (q <= 1 + 1e-12)).all()


def test_count_interval_brackets_the_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    labels = rng.integers(0, k, n)
    probs = np.full((n, k), 0.05)
    probs[np.arange(n), labels] = 0.85
    wrong = rng.random(n) < 0.1  # 10% of the labels disagree with a confident model
    labels = np.where(wrong, (labels + 1) % k, labels)
    noise = flag.estimate_noise(labels, probs)
    lo, hi = noise.interval
    assert lo <= noise.num_label_issues <= hi and hi - lo < 0.1 * n
    assert flag.count_interval(labels, probs) == noise.interval
    assert noise.disagreements == int(wrong.sum())
    assert f"{noise.disagreements / n:.1%}" in noise.caveat(n)
