"""cleaner.ingest.noise: exact flip counts, every flip a change, the documented models.

The ``realistic`` kind is checked on known probabilities (reproducible, exact
rate, wrong labels where the reference puts probability) and on real images
(sklearn's digits): its wrong labels sit on images that an independent model,
not the one that chose them, finds ambiguous.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaner.ingest.noise import (
    NOISE_KINDS,
    REFERENCE_KINDS,
    ambiguity,
    flip_toward_confusion,
    inject_noise,
    realistic_noise,
    reference_probs,
    shrink,
)

# The kinds that need nothing but the labels.
LABEL_KINDS = tuple(k for k in NOISE_KINDS if k not in REFERENCE_KINDS)


@st.composite
def noisy_cases(draw):
    k = draw(st.integers(2, 12))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), max_size=300)), dtype=np.int64)
    rate = draw(st.floats(0.0, 0.999, allow_nan=False))
    kind = draw(st.sampled_from(LABEL_KINDS))
    seed = draw(st.integers(0, 2**32 - 1))
    return labels, k, rate, kind, seed


@settings(max_examples=200, deadline=None)
@given(noisy_cases())
def test_flips_exactly_round_rate_n_and_each_flip_changes(case):
    labels, k, rate, kind, seed = case
    before = labels.copy()
    noisy = inject_noise(labels, rate=rate, kind=kind, n_classes=k, seed=seed)
    assert np.array_equal(labels, before)  # the input is not changed
    assert noisy.shape == labels.shape
    assert noisy.dtype == np.int64
    assert int((noisy != labels).sum()) == round(rate * len(labels))
    assert noisy.min(initial=0) >= 0
    assert noisy.max(initial=0) < k
    if kind == "pairs":
        flipped = noisy != labels
        assert np.array_equal(noisy[flipped], (labels[flipped] + 1) % k)


@settings(max_examples=50, deadline=None)
@given(noisy_cases())
def test_same_seed_same_noise(case):
    labels, k, rate, kind, seed = case
    a = inject_noise(labels, rate=rate, kind=kind, n_classes=k, seed=seed)
    b = inject_noise(labels, rate=rate, kind=kind, n_classes=k, seed=seed)
    assert np.array_equal(a, b)


def test_different_seeds_flip_different_rows():
    labels = np.arange(1000) % 10
    a = inject_noise(labels, rate=0.1, kind="uniform", n_classes=10, seed=0)
    b = inject_noise(labels, rate=0.1, kind="uniform", n_classes=10, seed=1)
    assert not np.array_equal(a != labels, b != labels)


def test_exact_counts():
    labels = np.zeros(1437, dtype=np.int64)
    noisy = inject_noise(labels, rate=0.1, kind="uniform", n_classes=10, seed=0)
    assert int((noisy != labels).sum()) == 144  # round(143.7)
    assert np.array_equal(
        inject_noise(labels, rate=0.0, kind="pairs", n_classes=10, seed=0), labels
    )


def test_pairs_maps_each_class_to_the_next():
    labels = np.repeat(np.arange(10), 100)
    noisy = inject_noise(labels, rate=0.5, kind="pairs", n_classes=10, seed=3)
    flipped = noisy != labels
    assert flipped.sum() == 500
    for c in range(10):
        assert set(noisy[flipped & (labels == c)].tolist()) <= {(c + 1) % 10}
    # The last class wraps around to the first.
    assert set(noisy[flipped & (labels == 9)].tolist()) == {0}


def test_uniform_hits_every_other_class_evenly():
    k, n = 10, 45_000
    labels = np.full(n, 4, dtype=np.int64)
    noisy = inject_noise(labels, rate=0.9, kind="uniform", n_classes=k, seed=7)
    counts = np.bincount(noisy, minlength=k)
    assert counts[4] == n - round(0.9 * n)
    others = np.delete(counts, 4)
    expected = round(0.9 * n) / (k - 1)  # 4,500 each
    # Binomial sd is about 63: 5 sd either way.
    assert np.all(np.abs(others - expected) < 320), others


def test_uniform_works_for_two_classes():
    labels = np.array([0, 1] * 50)
    noisy = inject_noise(labels, rate=0.5, kind="uniform", n_classes=2, seed=0)
    flipped = noisy != labels
    assert flipped.sum() == 50
    assert np.array_equal(noisy[flipped], 1 - labels[flipped])


def test_empty_labels():
    out = inject_noise(np.array([], dtype=np.int64), rate=0.5, kind="uniform", n_classes=3, seed=0)
    assert out.shape == (0,)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="noise rate must be in"):
        inject_noise(np.zeros(10, np.int64), rate=rate, kind="uniform", n_classes=3, seed=0)


@pytest.mark.parametrize("kind", ["gaussian", "", "Uniform"])
def test_bad_kind(kind):
    with pytest.raises(
        ValueError, match="noise kind must be one of uniform, pairs, toward, realistic"
    ):
        inject_noise(np.zeros(10, np.int64), rate=0.1, kind=kind, n_classes=3, seed=0)


def test_one_class_cannot_be_noisy():
    with pytest.raises(ValueError, match="at least 2 classes"):
        inject_noise(np.zeros(10, np.int64), rate=0.1, kind="uniform", n_classes=1, seed=0)
    # Without noise one class is fine.
    out = inject_noise(np.zeros(10, np.int64), rate=0.0, kind="uniform", n_classes=1, seed=0)
    assert np.array_equal(out, np.zeros(10))


# --- realistic: known probabilities ------------------------------------------------------


@st.composite
def prob_cases(draw):
    """Labels (N,), probabilities (N, K) with zeros in them, a rate and a seed."""
    k = draw(st.integers(2, 8))
    n = draw(st.integers(0, 200))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    probs = rng.dirichlet(np.full(k, 0.5), size=n)
    probs[rng.random((n, k)) < 0.3] = 0.0  # classes the reference rules out
    probs[np.arange(n), labels] += 1e-3  # every row sums to more than 0
    rate = draw(st.floats(0.0, 0.999, allow_nan=False))
    return labels, probs, rate, seed


@settings(max_examples=200, deadline=None)
@given(prob_cases())
def test_realistic_flips_exactly_to_classes_the_reference_allows(case):
    labels, probs, rate, seed = case
    before, probs_before = labels.copy(), probs.copy()
    noisy = realistic_noise(labels, probs, rate=rate, seed=seed)
    assert np.array_equal(labels, before) and np.array_equal(probs, probs_before)
    assert noisy.dtype == np.int64 and noisy.shape == labels.shape
    flipped = noisy != labels
    assert int(flipped.sum()) == round(rate * len(labels))
    # Every wrong label is one the reference gives positive probability, unless the
    # reference gives none to any other class (then any other class).
    rows = np.flatnonzero(flipped)
    others = probs[rows].copy()
    others[np.arange(len(rows)), labels[rows]] = 0
    allowed = (probs[rows, noisy[rows]] > 0) | (others.sum(axis=1) == 0)
    assert allowed.all()
    assert np.array_equal(realistic_noise(labels, probs, rate=rate, seed=seed), noisy)


def test_realistic_same_seed_same_labels_other_seed_other_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=2000)
    probs = rng.dirichlet(np.ones(10), size=2000)
    a = realistic_noise(labels, probs, rate=0.2, seed=5)
    assert np.array_equal(a, realistic_noise(labels, probs, rate=0.2, seed=5))
    b = realistic_noise(labels, probs, rate=0.2, seed=6)
    assert not np.array_equal(a != labels, b != labels)
    assert (a != labels).sum() == (b != labels).sum() == 400


def test_realistic_prefers_ambiguous_rows_and_look_alike_classes():
    # Half the rows are sure of their label (p = 0.99), half torn with class 2 (p = 0.4).
    n = 2000
    labels = np.zeros(n, dtype=np.int64)
    probs = np.zeros((n, 4))
    probs[: n // 2] = [0.99, 0.01 / 3, 0.01 / 3, 0.01 / 3]
    probs[n // 2 :] = [0.4, 0.05, 0.5, 0.05]
    noisy = realistic_noise(labels, probs, rate=0.1, seed=0)
    flipped = noisy != labels
    # Weights 0.01**2 against 0.6**2: about 1 flip in 3,600 lands on a sure row.
    assert flipped[: n // 2].sum() <= 2
    # The torn rows go to class 2 with probability 0.5 / 0.6.
    share = (noisy[flipped] == 2).mean()
    assert abs(share - 0.5 / 0.6) < 0.1, share


def test_realistic_rows_without_ambiguity_come_last():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.eye(2)[labels].astype(float)  # sure of every label
    probs[0] = [0.5, 0.5]  # only row 0 is ambiguous
    for seed in range(20):
        noisy = realistic_noise(labels, probs, rate=0.3, seed=seed)  # 2 flips
        flipped = np.flatnonzero(noisy != labels)
        assert len(flipped) == 2 and flipped[0] == 0
        # A flip on a sure row goes to the only other class.
        assert np.array_equal(noisy[flipped], 1 - labels[flipped])


def test_realistic_gamma_zero_is_uniform_choice_of_rows():
    n = 10_000
    labels = np.zeros(n, dtype=np.int64)
    probs = np.tile([0.5, 0.5], (n, 1))
    probs[: n // 2] = [0.999, 0.001]
    flipped = realistic_noise(labels, probs, rate=0.2, seed=1, gamma=0.0) != labels
    assert abs(flipped[: n // 2].sum() - 1000) < 5 * np.sqrt(1000)


def test_inject_noise_offers_the_reference_kinds():
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=10)
    assert np.array_equal(
        inject_noise(labels, rate=0.3, kind="realistic", n_classes=3, seed=4, pred_probs=probs),
        realistic_noise(labels, probs, rate=0.3, seed=4),
    )
    assert np.array_equal(
        inject_noise(labels, rate=0.3, kind="toward", n_classes=3, seed=4, pred_probs=probs),
        flip_toward_confusion(labels, probs, rate=0.3, seed=4),
    )
    with pytest.raises(ValueError, match="needs a reference model's pred_probs"):
        inject_noise(labels, rate=0.3, kind="realistic", n_classes=3, seed=0)
    with pytest.raises(ValueError, match=r"pred_probs has shape \(10, 2\), expected \(10, 3\)"):
        inject_noise(labels, rate=0.3, kind="toward", n_classes=3, seed=0, pred_probs=probs[:, :2])


@pytest.mark.parametrize(
    ("probs", "says"),
    [
        (np.full((3, 2), np.nan), "finite and non-negative"),
        (np.full((3, 2), -0.5), "finite and non-negative"),
        (np.zeros((3, 2)), "positive sum"),
        (np.full((2, 2), 0.5), "pred_probs must be"),
    ],
)
def test_realistic_bad_probs(probs, says):
    with pytest.raises(ValueError, match=says):
        realistic_noise(np.array([0, 1, 1]), probs, rate=0.5, seed=0)


def test_realistic_bad_rate_and_gamma():
    probs = np.full((3, 2), 0.5)
    with pytest.raises(ValueError, match="noise rate must be in"):
        realistic_noise(np.array([0, 1, 1]), probs, rate=1.0, seed=0)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        realistic_noise(np.array([0, 1, 1]), probs, rate=0.5, seed=0, gamma=-1)


# --- realistic: a reference model on real images -----------------------------------------


@pytest.fixture(scope="module")
def digits():
    from cleaner.ingest.arrays import load_digits_arrays

    return load_digits_arrays()


def test_shrink_keeps_channels():
    assert shrink(np.zeros((8, 8), np.uint8)).shape == (16, 16)
    assert shrink(np.zeros((40, 30, 3), np.uint8)).shape == (16, 16, 3)
    assert shrink(np.zeros((40, 30, 1), np.uint8)).shape == (16, 16, 1)


def test_reference_probs_are_out_of_half_and_seeded(digits):
    images, labels = digits
    probs = reference_probs(images, labels, seed=0)
    assert probs.shape == (len(labels), 10)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == labels).mean() > 0.9  # 0.965 when written
    assert np.array_equal(probs, reference_probs(images, labels, seed=0))
    assert not np.allclose(probs, reference_probs(images, labels, seed=1))


def test_reference_probs_give_unseen_classes_zero(digits):
    images, labels = digits
    keep = labels < 3
    probs = reference_probs(images[keep], labels[keep], seed=0, n_classes=5)
    assert probs.shape == (int(keep.sum()), 5)
    assert np.all(probs[:, 3:] == 0)


def test_reference_probs_need_two_images_of_each_class():
    images = np.zeros((5, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="at least 2 images of every class; class index 2"):
        reference_probs(images, np.array([0, 0, 1, 1, 2]), seed=0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        reference_probs(images, np.zeros(5, np.int64), seed=0)
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        reference_probs(images, np.zeros(4, np.int64), seed=0)


def test_realistic_noise_lands_on_images_an_independent_model_finds_ambiguous(digits):
    """The flipped digits are harder for a different model with different folds.

    The independent judge is 10-nearest-neighbours on the raw 8x8 pixels, 5 folds
    shuffled with another seed; the noise's own reference is logistic regression
    on 16x16 principal components over two halves. When written (1,797 digits,
    rate 0.1, seed 0, 180 flips each): mean judge ambiguity of the flipped
    images 0.223 (standard error 0.020) for realistic against 0.044 (0.009)
    for uniform, the mean over all images being 0.043; and 37% of realistic's
    wrong labels are the judge's own runner-up class, against 7% of uniform's.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    images, labels = digits
    judge = cross_val_predict(
        KNeighborsClassifier(n_neighbors=10),
        images.reshape(len(images), -1).astype(float),
        labels,
        cv=StratifiedKFold(5, shuffle=True, random_state=1),
        method="predict_proba",
    )
    hard = ambiguity(labels, judge)
    runner_up = np.where(np.eye(10, dtype=bool)[labels], -1.0, judge).argmax(axis=1)
    probs = reference_probs(images, labels, seed=0)
    stats = {}
    for kind in ("uniform", "realistic"):
        noisy = inject_noise(labels, rate=0.1, kind=kind, n_classes=10, seed=0, pred_probs=probs)
        flipped = noisy != labels
        assert flipped.sum() == 180
        a = hard[flipped]
        stats[kind] = (a.mean(), a.std(ddof=1) / np.sqrt(len(a)), (noisy == runner_up)[flipped])
    (real, real_se, real_top), (uni, uni_se, uni_top) = stats["realistic"], stats["uniform"]
    # A difference of more than 5 standard errors, not a near miss.
    assert real - uni > 5 * np.hypot(real_se, uni_se), stats
    assert real_top.mean() > 2 * uni_top.mean(), stats
