"""The trust gate: refuse to rank with an out-of-fold model no better than chance.

cleanlab's estimates are only as good as the probabilities: a model that
learned nothing still "finds" label errors, as many as it gets wrong. Before a
queue (or a reweighting that uses the same probabilities) is made, the
out-of-fold accuracy against the given labels must beat always answering the
majority class at one-sided binomial p < :data:`cleaner.ranking.flag.TRUST_ALPHA`.
"""

from __future__ import annotations

import numpy as np

from cleaner.core.errors import InputError
from cleaner.ranking.flag import TRUST_ALPHA, ModelTrust, model_trust


def check_trust(
    labels: np.ndarray, pred_probs: np.ndarray, *, force: bool, source: str
) -> ModelTrust:
    """The model's trust figures for ``pred_probs`` (N, K); raise unless it passes or ``force``.

    ``source`` names the probabilities (run folders or a file) in the message.
    """
    trust = model_trust(labels, pred_probs)
    if trust.passed or force:
        return trust
    raise InputError(
        f"{source}: the out-of-fold model is no better than always answering the most common "
        f"class: accuracy {trust.accuracy:.3f} against the given labels, majority class "
        f"{trust.majority_rate:.3f}, one-sided binomial p = {trust.p_value:.2g} over {trust.n} "
        f"rows (needs p < {TRUST_ALPHA:g}). Its ranking of label errors would be noise. "
        "Train longer (train.epochs), start from pretrained weights (model.pretrained or "
        "model.weights) or use a bigger model, and run `cleaner oof` again; "
        "--force ranks anyway."
    )
