"""The audit slice's draw and its places in the queue (``flag --audit``), on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cleaner.ranking.audit_slice import audit_sample, interleave


def test_the_draw_is_uniform_over_the_eligible_rows_and_repeats() -> None:
    eligible = np.zeros(1000, dtype=bool)
    eligible[::2] = True
    at = audit_sample(eligible, 100)
    assert len(at) == len(set(at)) == 100
    assert eligible[at].all() and (np.diff(at) > 0).all()
    np.testing.assert_array_equal(at, audit_sample(eligible, 100))  # seeded: a rebuild agrees
    # Uniform: over many seeds every eligible row is drawn about as often (100 of 500).
    counts = np.bincount(
        np.concatenate([audit_sample(eligible, 100, seed=s) for s in range(400)]), minlength=1000
    )[::2]
    assert abs(counts.mean() - 80) < 1e-9 and counts.min() > 50 and counts.max() < 115


def test_the_draw_takes_what_there_is() -> None:
    eligible = np.array([True, False, True])
    np.testing.assert_array_equal(audit_sample(eligible, 10), [0, 2])
    assert len(audit_sample(eligible, 0)) == 0
    assert len(audit_sample(np.zeros(3, dtype=bool), 5)) == 0


def test_interleave_keeps_the_first_rows_and_both_orders() -> None:
    queue = pd.DataFrame({"sample_id": [f"q{i}" for i in range(50)]})
    extra = pd.DataFrame({"sample_id": [f"x{i}" for i in range(20)]})
    out = interleave(queue, extra, first=3)
    ids = list(out["sample_id"])
    assert len(ids) == 70 and ids[:3] == ["q0", "q1", "q2"]
    assert [s for s in ids if s.startswith("q")] == list(queue["sample_id"])
    assert [s for s in ids if s.startswith("x")] == list(extra["sample_id"])
    # Spread through the queue, not appended: a reviewer who stops early meets some.
    first_half = sum(s.startswith("x") for s in ids[:35])
    assert 3 <= first_half <= 17
    assert interleave(queue, extra.iloc[:0], first=3).equals(queue)
