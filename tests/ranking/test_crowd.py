"""CROWDLAB through cleanlab: the consensus and the annotators' quality equal cleanlab's own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from cleanlab.multiannotator import get_active_learning_scores, get_label_quality_multiannotator
from cleanlab.rank import get_label_quality_scores

from cleaner.ranking.crowd import (
    CROWDLAB,
    SINGLE,
    active_learning_scores,
    crowd_label_quality,
    majority_vote,
)

nan = np.nan
ANNOTATORS = ["ann", "bob", "cy"]
# A fixed small label matrix (12 rows, 3 annotators, 3 classes) and a model's probabilities.
LABELS = np.array(
    [
        [0, 0, 1],
        [0, 0, nan],
        [1, 1, 1],
        [1, 2, 1],
        [2, 2, nan],
        [2, 0, 2],
        [0, nan, 0],
        [1, 1, nan],
        [2, 2, 2],
        [0, 1, 0],
        [nan, 1, 1],
        [2, nan, 2],
    ]
)
PRED_PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.8, 0.1, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.2, 0.7],
        [0.3, 0.1, 0.6],
        [0.6, 0.3, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.1, 0.8],
        [0.5, 0.4, 0.1],
        [0.1, 0.6, 0.3],
        [0.2, 0.2, 0.6],
    ]
)


def cleanlab_reference(labels: np.ndarray) -> dict[str, pd.DataFrame]:
    return get_label_quality_multiannotator(
        pd.DataFrame(labels, columns=ANNOTATORS), PRED_PROBS, verbose=False
    )


def test_consensus_and_annotator_quality_equal_cleanlabs() -> None:
    result = crowd_label_quality(LABELS, PRED_PROBS, annotators=ANNOTATORS)
    ref = cleanlab_reference(LABELS)
    quality = ref["label_quality"]
    assert result.method == CROWDLAB and not result.single.any()
    np.testing.assert_array_equal(result.consensus_label, quality["consensus_label"])
    np.testing.assert_allclose(result.consensus_quality, quality["consensus_quality_score"])
    np.testing.assert_allclose(result.annotator_agreement, quality["annotator_agreement"])
    np.testing.assert_array_equal(result.num_annotations, quality["num_annotations"])
    stats = ref["annotator_stats"]
    for a in result.annotators:
        assert a.quality == pytest.approx(stats.loc[a.annotator, "annotator_quality"])
        assert a.agreement == pytest.approx(stats.loc[a.annotator, "agreement_with_consensus"])
        assert a.worst_class == stats.loc[a.annotator, "worst_class"]
        assert a.num_labelled == stats.loc[a.annotator, "num_examples_labeled"]
    # The table lists them worst first, as cleanlab does.
    table = result.annotator_table(classes=["cat", "dog", "frog"])
    assert list(table["annotator"]) == list(stats.index)
    assert set(table["worst_class"]) <= {"cat", "dog", "frog"}


def test_minus_one_marks_a_missing_label_as_nan_does() -> None:
    as_ints = np.where(np.isnan(LABELS), -1, LABELS).astype(int)
    a = crowd_label_quality(as_ints, PRED_PROBS)
    b = crowd_label_quality(LABELS, PRED_PROBS)
    np.testing.assert_array_equal(a.consensus_label, b.consensus_label)
    np.testing.assert_allclose(a.consensus_quality, b.consensus_quality)


def test_a_row_with_one_label_keeps_it_and_todays_label_quality() -> None:
    labels = LABELS.copy()
    labels[9] = [nan, 1, nan]  # the model prefers class 0 here
    labels[6] = [0, nan, nan]
    result = crowd_label_quality(labels, PRED_PROBS, annotators=ANNOTATORS)
    single = np.array([i in (6, 9) for i in range(len(labels))])
    np.testing.assert_array_equal(result.single, single)
    plain = get_label_quality_scores(np.array([0, 1]), PRED_PROBS[[6, 9]])
    np.testing.assert_array_equal(result.consensus_label[single], [0, 1])
    np.testing.assert_allclose(result.consensus_quality[single], plain)
    # Rows with several labels are cleanlab's, computed on the whole matrix.
    ref = cleanlab_reference(labels)["label_quality"]
    np.testing.assert_array_equal(
        result.consensus_label[~single], ref["consensus_label"].to_numpy()[~single]
    )
    # Asked to, the single-label rows take CROWDLAB's consensus instead: cleanlab's exactly.
    pure = crowd_label_quality(labels, PRED_PROBS, keep_single_labels=False)
    np.testing.assert_array_equal(pure.consensus_label, ref["consensus_label"])
    np.testing.assert_allclose(pure.consensus_quality, ref["consensus_quality_score"])


def test_one_label_per_row_takes_the_single_label_path() -> None:
    # cleanlab refuses this input ("use get_label_quality_scores instead").
    labels = np.full((6, 2), nan)
    given = np.array([0, 1, 2, 0, 1, 1])
    labels[:3, 0], labels[3:, 1] = given[:3], given[3:]
    result = crowd_label_quality(labels, PRED_PROBS[:6], annotators=["a", "b"])
    assert result.method == SINGLE and result.single.all()
    np.testing.assert_array_equal(result.consensus_label, given)
    np.testing.assert_allclose(
        result.consensus_quality, get_label_quality_scores(given, PRED_PROBS[:6])
    )
    a, b = result.annotators
    assert (a.num_labelled, b.num_labelled) == (3, 3)
    assert a.quality == pytest.approx(result.consensus_quality[:3].mean())
    one = crowd_label_quality(given[:, None], PRED_PROBS[:6])  # M = 1
    np.testing.assert_array_equal(one.consensus_label, given)


def test_an_annotator_with_no_label_here_gets_empty_stats() -> None:
    labels = np.hstack([LABELS, np.full((len(LABELS), 1), nan)])
    result = crowd_label_quality(labels, PRED_PROBS, annotators=[*ANNOTATORS, "dan"])
    reference = crowd_label_quality(LABELS, PRED_PROBS, annotators=ANNOTATORS)
    np.testing.assert_array_equal(result.consensus_label, reference.consensus_label)
    dan = result.annotators[-1]
    assert dan.num_labelled == 0 and np.isnan(dan.quality) and dan.worst_class == -1
    assert result.annotator_table()["annotator"].iloc[-1] == "dan"  # unknown quality last


def test_a_row_without_any_label_is_refused() -> None:
    labels = LABELS.copy()
    labels[4] = nan
    with pytest.raises(ValueError, match="no label"):
        crowd_label_quality(labels, PRED_PROBS)


def test_majority_vote_ties_are_broken_the_same_way_every_time() -> None:
    # Rows 0 and 1 tie on every rule cleanlab has (the model, class frequency, annotator
    # agreement), so cleanlab draws at random: seeded here, whatever the global state.
    labels = np.array([[0, 1], [1, 0], [2, 2]], dtype=float)
    flat = np.full((3, 3), 1 / 3)
    first = majority_vote(labels, flat)
    for seed in range(5):
        np.random.seed(seed)
        assert (majority_vote(labels, flat) == first).all()
    # ... and the caller's global random state is left as it was.
    np.random.seed(123)
    majority_vote(labels, flat)
    after = np.random.random()
    np.random.seed(123)
    assert np.random.random() == after


def test_active_learning_scores_are_activelabs() -> None:
    unlabeled = PRED_PROBS[:4]
    scores, scores_unlabeled = active_learning_scores(LABELS, PRED_PROBS, unlabeled)
    ref, ref_unlabeled = get_active_learning_scores(LABELS, PRED_PROBS, unlabeled)
    np.testing.assert_allclose(scores, ref)
    np.testing.assert_allclose(scores_unlabeled, ref_unlabeled)
    assert scores.shape == (12,) and scores_unlabeled.shape == (4,)
    only, only_unlabeled = active_learning_scores(None, None, unlabeled)
    assert only.shape == (0,)
    np.testing.assert_allclose(only_unlabeled, get_active_learning_scores(None, None, unlabeled)[1])
    # One label per row: cleanlab's own single-annotator path.
    single = np.array([[0], [1], [2], [0]], dtype=float)
    np.testing.assert_allclose(
        active_learning_scores(single, PRED_PROBS[:4])[0],
        get_active_learning_scores(single, PRED_PROBS[:4])[0],
    )
