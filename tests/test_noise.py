"""cleaner.noise.inject_noise: exact flip counts, every flip a change, the documented models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleaner.noise import NOISE_KINDS, inject_noise


@st.composite
def noisy_cases(draw):
    k = draw(st.integers(2, 12))
    labels = np.array(draw(st.lists(st.integers(0, k - 1), max_size=300)), dtype=np.int64)
    rate = draw(st.floats(0.0, 0.999, allow_nan=False))
    kind = draw(st.sampled_from(NOISE_KINDS))
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
    with pytest.raises(ValueError, match="noise kind must be one of uniform, pairs"):
        inject_noise(np.zeros(10, np.int64), rate=0.1, kind=kind, n_classes=3, seed=0)


def test_one_class_cannot_be_noisy():
    with pytest.raises(ValueError, match="at least 2 classes"):
        inject_noise(np.zeros(10, np.int64), rate=0.1, kind="uniform", n_classes=1, seed=0)
    # Without noise one class is fine.
    out = inject_noise(np.zeros(10, np.int64), rate=0.0, kind="uniform", n_classes=1, seed=0)
    assert np.array_equal(out, np.zeros(10))
