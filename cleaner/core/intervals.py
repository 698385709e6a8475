"""95% intervals of test-set figures: a paired percentile bootstrap over the test rows.

One resample of the rows scores every model at once (paired), so differences
between models, such as the share of the gap that cleaning recovered, get an
interval too. scipy's ``bootstrap`` does the resampling; scikit-learn the
metrics. Seeded, so a report repeats exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from scipy.stats import bootstrap
from sklearn.metrics import accuracy_score, f1_score

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


def _interval(statistic: Callable[..., float], data: tuple[np.ndarray, ...]) -> tuple[float, float]:
    res = bootstrap(
        data, statistic, paired=True, vectorized=False, n_resamples=RESAMPLES,
        confidence_level=LEVEL, method="percentile", random_state=SEED,
    )  # fmt: skip
    low, high = res.confidence_interval
    return float(low), float(high)


def metric_intervals(
    y_true: np.ndarray, predictions: Mapping[str, np.ndarray], n_classes: int
) -> dict[str, dict[str, tuple[float, float]]]:
    """``{model: {"accuracy": (low, high), "macro_f1": (low, high)}}`` over the test rows."""
    labels = list(range(n_classes))
    out = {}
    for name, pred in predictions.items():
        out[name] = {
            "accuracy": _interval(lambda t, p: accuracy_score(t, p), (y_true, pred)),
            "macro_f1": _interval(
                lambda t, p: f1_score(t, p, labels=labels, average="macro", zero_division=0),
                (y_true, pred),
            ),
        }
    return out


def difference_interval(
    y_true: np.ndarray, base: np.ndarray, other: np.ndarray
) -> tuple[float, float]:
    """Interval of ``accuracy(other) - accuracy(base)`` on the same test rows (paired), the
    figure that says whether one model beats another, where two overlapping intervals of
    their accuracies cannot."""
    ok_base, ok_other = (y_true == base), (y_true == other)
    return _interval(lambda b, o: float(o.mean() - b.mean()), (ok_base, ok_other))


def gap_intervals(
    y_true: np.ndarray, noisy: np.ndarray, cleaned: np.ndarray, true: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Intervals of the noisy-to-true accuracy gap and of the share of it cleaning recovered.

    The share is computed on resamples whose gap is positive (elsewhere it is undefined).
    """
    ok_noisy, ok_cleaned, ok_true = (y_true == noisy), (y_true == cleaned), (y_true == true)

    def gap(n: np.ndarray, t: np.ndarray) -> float:
        return float(t.mean() - n.mean())

    def share(n: np.ndarray, c: np.ndarray, t: np.ndarray) -> float:
        g = t.mean() - n.mean()
        return float((c.mean() - n.mean()) / g) if g > 0 else float("nan")

    result = {"gap": _interval(gap, (ok_noisy, ok_true))}
    rng = np.random.default_rng(SEED)
    n = len(y_true)
    shares = []
    for _ in range(RESAMPLES):
        i = rng.integers(0, n, n)
        shares.append(share(ok_noisy[i], ok_cleaned[i], ok_true[i]))
    kept = np.array([s for s in shares if np.isfinite(s)])
    if len(kept):
        tail = (1 - LEVEL) / 2 * 100
        result["recovered"] = (
            float(np.percentile(kept, tail)),
            float(np.percentile(kept, 100 - tail)),
        )
    return result
