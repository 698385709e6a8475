"""Classification metrics: accuracy, macro F1, per-class F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def classification_metrics(
    labels: np.ndarray, preds: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Metrics of integer ``preds`` (N,) against ``labels`` (N,), JSON-ready."""
    k = range(len(classes))
    per_class = f1_score(labels, preds, labels=list(k), average=None, zero_division=0)
    return {
        "n": len(labels),
        "accuracy": float(np.mean(labels == preds)) if len(labels) else float("nan"),
        "macro_f1": float(np.mean(per_class)),
        "per_class_f1": {c: float(f) for c, f in zip(classes, per_class, strict=True)},
        # rows: given label, columns: prediction
        "confusion": confusion_matrix(labels, preds, labels=list(k)).tolist(),
    }
