"""Frozen-feature heads (``train.mode = "probe"``): a pretrained backbone as it is, and a
linear classifier fitted on its features.

cleanlab's recommended route for images ("use a pretrained network's
embeddings and a simple classifier with cross-validation") and the cheapest
strong one on a CPU: every row goes through the backbone once
(:mod:`cleaner.training.embed`), then each fold's head is a scikit-learn
``LogisticRegression`` on standardised features of the other folds' rows,
weighted by the manifest's weights. The head is written into the model's
own classifier (the scaler folded into its weights), so a fold's
``model.pt`` is an ordinary model whose softmax is the logistic regression's
``predict_proba``: ``retrain --mode folds`` and everything else that loads a
fold model work unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from cleaner.core.errors import InputError

# A class that has no training row gets this bias: its probability is 0 to float precision.
ABSENT_BIAS = -1e4


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    n_classes: int,
    c: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A multinomial logistic regression on ``features`` (N, D) as one linear map.

    Returns ``W`` (K, D) and ``b`` (K,) with ``softmax(features @ W.T + b)``
    equal to scikit-learn's ``predict_proba`` after a ``StandardScaler``, for
    all ``n_classes`` classes (a class missing from ``labels`` gets
    probability 0). Deterministic (lbfgs).
    """
    scaler = StandardScaler().fit(features)
    lr = LogisticRegression(C=c, max_iter=2000)
    lr.fit(scaler.transform(features), labels, sample_weight=weights)
    coef, intercept = lr.coef_, lr.intercept_
    if len(lr.classes_) == 2:  # sklearn keeps one logit for two classes: softmax of +-z/2
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    # The scaler folded in: (x - mean) / scale @ coef.T + b = x @ (coef / scale).T + b'.
    w_present = coef / scaler.scale_
    b_present = intercept - w_present @ scaler.mean_
    w = np.zeros((n_classes, features.shape[1]))
    b = np.full(n_classes, ABSENT_BIAS)
    w[lr.classes_], b[lr.classes_] = w_present, b_present
    return w, b


def head_probs(features: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Softmax probabilities (N, K) of the head ``w`` (K, D), ``b`` (K,) on ``features``."""
    logits = features.astype(np.float64) @ w.T + b
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def linear_classifier(model: nn.Module) -> nn.Linear:
    """The model's classifier, when it is one linear layer with a bias (as timm's are)."""
    head = model.get_classifier()  # type: ignore[operator]
    if not isinstance(head, nn.Linear) or head.bias is None:
        raise InputError(
            f"train.mode = 'probe': the model's classifier is {type(head).__name__}, "
            "not one linear layer with a bias; use train.mode = 'finetune'"
        )
    return head


@torch.no_grad()
def set_head(model: nn.Module, w: np.ndarray, b: np.ndarray) -> None:
    """Write the head ``w`` (K, D), ``b`` (K,) into the model's classifier, so that the
    model's logits on an image are ``features @ w.T + b`` (``logit_scale`` undone)."""
    head = linear_classifier(model)
    scale = float(getattr(model, "logit_scale", 1.0))
    head.weight.copy_(torch.as_tensor(w / scale, dtype=head.weight.dtype))
    head.bias.copy_(torch.as_tensor(b / scale, dtype=head.bias.dtype))
