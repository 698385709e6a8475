"""The paired difference interval: zero for one model against itself, and on the side of
the better model when one is right wherever the other is, plus more."""

from __future__ import annotations

import numpy as np

from cleaner.core.intervals import difference_interval


def test_same_model_difference_is_zero() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    pred = np.where(rng.random(400) < 0.7, y, (y + 1) % 3)
    assert difference_interval(y, pred, pred) == (0.0, 0.0)


def test_better_model_interval_is_positive_and_holds_the_difference() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 1000)
    base = np.where(rng.random(1000) < 0.6, y, (y + 1) % 4)
    # Right wherever base is right, and on about a quarter of base's mistakes too.
    fix = (base != y) & (rng.random(1000) < 0.25)
    other = np.where(fix, y, base)
    low, high = difference_interval(y, base, other)
    diff = (other == y).mean() - (base == y).mean()
    assert 0 < low <= diff <= high
    # Swapping the models mirrors the interval.
    low2, high2 = difference_interval(y, other, base)
    assert low2 < 0 and high2 < 0
