"""Ranking and issue detection on arrays: which samples a person should see first.

Pure functions of ``labels`` (N,) int class indices, ``pred_probs`` (N, K)
out-of-fold probabilities and ``embeddings`` (N, D), named as in
``cleanlab.rank``; keyword-only options; no file I/O. Label issues and
quality scores come from cleanlab; outliers and near duplicates follow the
rules of cleanlab's Datalab on a kNN graph built by cleanlab's own helper
(Datalab itself needs the heavy ``datasets`` package).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cleanlab.count import compute_confident_joint, estimate_joint, num_label_issues
from cleanlab.filter import find_label_issues
from cleanlab.internal.neighbor.knn_graph import create_knn_graph_and_index
from cleanlab.rank import get_label_quality_ensemble_scores, get_label_quality_scores
from scipy.stats import binomtest
from sklearn.metrics import f1_score

from cleaner.core import choices
from cleaner.formats.issue_kinds import IMAGE_QUALITY, LABEL, NEAR_DUPLICATE, OUTLIER

RANK_METHODS = choices.RANK_METHODS.names
# When a sample has several issues, the queue names the first of these it has. A label
# row takes every decision (the others' findings go in its note); an image-quality kind
# (dark, blurry, ...) says why an image is odd, which "outlier" does not.
ISSUE_PRECEDENCE = (LABEL, NEAR_DUPLICATE, *IMAGE_QUALITY, OUTLIER)
# Datalab's defaults: a near duplicate lies closer than 0.13 x the median distance
# to a nearest neighbour; an outlier's mean kNN distance exceeds Q3 + (1/t - 1) IQR.
NEAR_DUPLICATE_THRESHOLD = 0.13
OUTLIER_THRESHOLD = 0.37037


def label_quality(
    labels: np.ndarray, pred_probs: np.ndarray, *, method: str = "self_confidence"
) -> np.ndarray:
    """cleanlab's label quality (N,) in [0, 1]; low means likely mislabeled."""
    return get_label_quality_scores(labels, pred_probs, method=method)


def ensemble_label_quality(
    labels: np.ndarray, pred_probs_list: Sequence[np.ndarray], *, method: str = "self_confidence"
) -> np.ndarray:
    """Label quality (N,) from several models' ``pred_probs``, by cleanlab's ensemble scoring."""
    if len(pred_probs_list) == 1:
        return label_quality(labels, pred_probs_list[0], method=method)
    # cleanlab weights members by their accuracy, which is 0/0 (NaN scores) when no
    # member gets a single argmax right; weigh them equally then.
    right = any((np.asarray(p).argmax(axis=1) == labels).any() for p in pred_probs_list)
    return get_label_quality_ensemble_scores(
        labels,
        list(pred_probs_list),
        method=method,
        weight_ensemble_members_by="accuracy" if right else "uniform",
        verbose=False,
    )


def suggest_labels(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most likely class other than the given one (N,), and its probability (N,)."""
    masked = np.array(pred_probs, dtype=np.float64, copy=True)
    masked[np.arange(len(labels)), labels] = -np.inf
    suggested = masked.argmax(axis=1)
    return suggested, np.asarray(pred_probs)[np.arange(len(labels)), suggested]


def find_label_errors(
    labels: np.ndarray, pred_probs: np.ndarray, *, confident_joint: np.ndarray | None = None
) -> np.ndarray:
    """cleanlab's ``find_label_issues`` (confident learning, prune by noise rate): (N,) bool.

    Pass the ``confident_joint`` of :func:`estimate_noise` to skip computing it again.
    """
    return find_label_issues(
        labels, pred_probs, filter_by="prune_by_noise_rate", confident_joint=confident_joint
    )


@dataclass(frozen=True)
class NoiseEstimate:
    """cleanlab's estimate of the noise: how many labels are wrong, and between which classes."""

    num_label_issues: int
    joint: np.ndarray  # (K, K): estimated P(given label = row, true label = column)
    confident_joint: np.ndarray  # (K, K) calibrated counts, as find_label_issues computes them
    # 95% bootstrap interval of num_label_issues (the rows resampled): its sampling spread.
    interval: tuple[int, int] = (0, 0)
    # Rows whose out-of-fold prediction (argmax) is not the given label: what a weak
    # model's estimate approaches, its own mistakes included.
    disagreements: int = 0

    def caveat(self, n: int) -> str:
        """What the count means, in one sentence for the person reading it."""
        return (
            f"cleanlab counts the labels its out-of-fold model cannot explain; the model's "
            f"own mistakes count too (it disagrees with {self.disagreements / max(1, n):.1%} "
            "of the given labels), so with a weak model read the estimate as an upper "
            "bound; the share of the first reviewed rows that get relabelled measures it"
        )

    def confused_pairs(self, *, top: int = 10) -> list[tuple[int, int, float]]:
        """Off-diagonal ``(given, true, fraction of all samples)``, largest first."""
        off = self.joint.copy()
        np.fill_diagonal(off, 0.0)
        order = np.argsort(-off, axis=None, kind="stable")[:top]
        pairs = [
            (int(i), int(j), float(off[i, j]))
            for i, j in zip(*np.unravel_index(order, off.shape), strict=True)
        ]
        return [p for p in pairs if p[2] > 0]


# The count's bootstrap: enough draws for a 95% interval's ends to settle within a few
# rows; each draw at most this many rows (the count scaled back to N), so a million-row
# manifest costs seconds, not minutes.
COUNT_DRAWS = 100
COUNT_ROWS = 20_000


def count_interval(
    labels: np.ndarray, pred_probs: np.ndarray, *, draws: int = COUNT_DRAWS, seed: int = 0
) -> tuple[int, int]:
    """A 95% percentile-bootstrap interval of cleanlab's ``num_label_issues``, rows resampled
    with replacement (deterministic for ``seed``)."""
    n = len(labels)
    size = min(n, COUNT_ROWS)
    rng = np.random.default_rng(seed)
    counts = []
    for _ in range(draws):
        rows = rng.integers(0, n, size)
        if len(np.unique(labels[rows])) < 2:
            continue
        counts.append(num_label_issues(labels[rows], pred_probs[rows]) * n / size)
    if not counts:
        return (0, 0)
    lo, hi = np.percentile(counts, [2.5, 97.5])
    return round(float(lo)), round(float(hi))


def estimate_noise(labels: np.ndarray, pred_probs: np.ndarray) -> NoiseEstimate:
    """Number of label issues (with its bootstrap interval and the model's disagreements)
    and the joint of given and true labels."""
    cj = compute_confident_joint(labels, pred_probs)
    return NoiseEstimate(
        num_label_issues=int(num_label_issues(labels, pred_probs)),
        joint=estimate_joint(labels, pred_probs, confident_joint=cj),
        confident_joint=cj,
        interval=count_interval(labels, pred_probs),
        disagreements=int((pred_probs.argmax(1) != labels).sum()),
    )


def knn(embeddings: np.ndarray, *, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Distances (N, k') and indices (N, k') of each row's nearest other rows, nearest first.

    cleanlab's kNN graph (cosine distance above 3 dimensions, exact duplicates at
    distance 0); ``k' = min(k, N - 1)``.
    """
    n = len(embeddings)
    graph, _ = create_knn_graph_and_index(
        np.asarray(embeddings, np.float32), n_neighbors=min(k, n - 1)
    )
    return graph.data.reshape(n, -1), graph.indices.reshape(n, -1)


@dataclass(frozen=True)
class EmbeddingIssues:
    outlier_score: np.ndarray  # (N,) in (0, 1]; low means atypical
    is_outlier: np.ndarray  # (N,) bool
    near_duplicate_of: np.ndarray  # (N,) index of the nearest neighbour, -1 if not a near duplicate
    pairs: np.ndarray  # (P, 2) index pairs i < j closer than the near-duplicate radius
    pair_distance: np.ndarray  # (P,)
    radius: float = 0.0  # the near-duplicate radius: threshold x median nearest-neighbour distance


def embedding_issues(
    embeddings: np.ndarray,
    *,
    k: int = 10,
    near_duplicate_threshold: float = NEAR_DUPLICATE_THRESHOLD,
    outlier_threshold: float = OUTLIER_THRESHOLD,
) -> EmbeddingIssues:
    """Outliers and near duplicates among ``embeddings`` (N, D), by Datalab's rules.

    The rows must lie in one feature space (one model embedded them all):
    distances between rows embedded by different models mean nothing.
    """
    n = len(embeddings)
    if n < 3:
        none = np.zeros((0, 2), np.int64)
        return EmbeddingIssues(np.ones(n), np.zeros(n, bool), np.full(n, -1), none, np.zeros(0))
    dist, idx = knn(embeddings, k=k)
    nearest = dist[:, 0]
    radius = near_duplicate_threshold * max(float(np.median(nearest)), 1e-12)
    near = nearest < radius
    # Every kNN edge inside the radius, once per unordered pair.
    rows, cols = np.nonzero(dist < radius)
    a, b = rows, idx[rows, cols]
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]].reshape(-1, 2)
    lookup = {(int(i), int(j)): float(d) for i, j, d in zip(a, b, dist[rows, cols], strict=True)}
    pair_distance = np.array(
        [lookup.get((int(i), int(j)), lookup.get((int(j), int(i)), 0.0)) for i, j in pairs]
    )
    mean_dist = dist.mean(axis=1)
    q1, q3 = np.percentile(mean_dist, [25, 75])
    limit = q3 + (1.0 / outlier_threshold - 1.0) * (q3 - q1)
    score = np.exp(-mean_dist / max(float(np.median(mean_dist)), 1e-12))
    return EmbeddingIssues(
        outlier_score=score,
        is_outlier=mean_dist > limit,
        near_duplicate_of=np.where(near, idx[:, 0], -1),
        pairs=pairs.astype(np.int64),
        pair_distance=pair_distance,
        radius=radius,
    )


def same_value_pairs(values: np.ndarray) -> np.ndarray:
    """(P, 2) index pairs i < j of rows with equal non-empty ``values`` (N,), e.g. file hashes."""
    values = np.asarray(values).astype(str)
    order = np.argsort(values, kind="stable")
    out: list[tuple[int, int]] = []
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    for s, e in zip(starts, np.r_[starts[1:], len(values)], strict=True):
        if e - s > 1 and sorted_values[s]:
            members = np.sort(order[s:e])
            out.extend((int(members[0]), int(m)) for m in members[1:])
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def own_group_neighbour_share(embeddings: np.ndarray, groups: np.ndarray, *, k: int = 10) -> float:
    """Share of each row's ``k`` nearest neighbours in ``embeddings`` (N, D) that share its group.

    With ``groups`` = the CV fold and one model embedding every row, this is about
    1/K; near 1, the rows were embedded by their fold's own model (K feature spaces).
    """
    if len(embeddings) < 2:
        return float("nan")
    _, idx = knn(embeddings, k=k)
    groups = np.asarray(groups)
    return float((groups[idx] == groups[:, None]).mean())


@dataclass(frozen=True)
class GroupReport:
    """Per group (G,): the groups whose rows disagree with each other or with the model."""

    groups: np.ndarray  # (G,) group ids
    given: np.ndarray  # (G,) the group's label: the most common given label (ties: lowest)
    predicted: np.ndarray  # (G,) argmax of the mean of its rows' pred_probs
    quality: np.ndarray  # (G,) mean probability of `given` over its rows
    mixed: np.ndarray  # (G,) bool: its rows carry different given labels
    inverse: np.ndarray  # (N,) group position of each sample

    @property
    def flagged(self) -> np.ndarray:
        """(G,) bool: mixed labels, or a group prediction that disagrees with its label."""
        return self.mixed | (self.predicted != self.given)


def group_consistency(
    labels: np.ndarray, pred_probs: np.ndarray, groups: np.ndarray
) -> GroupReport:
    """Check a label that must be the same on all rows of a group (a person's gender, say)."""
    labels = np.asarray(labels)
    ids, inverse = np.unique(np.asarray(groups), return_inverse=True)
    g, k = len(ids), pred_probs.shape[1]
    counts = np.zeros((g, k))
    np.add.at(counts, (inverse, labels), 1)
    sums = np.zeros((g, k))
    np.add.at(sums, inverse, pred_probs)
    mean = sums / counts.sum(axis=1, keepdims=True)
    given = counts.argmax(axis=1)
    return GroupReport(
        groups=ids,
        given=given,
        predicted=mean.argmax(axis=1),
        quality=mean[np.arange(g), given],
        mixed=(counts > 0).sum(axis=1) > 1,
        inverse=inverse,
    )


def mixed_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Group ids whose rows carry more than one distinct value (for a column without a model)."""
    pairs = np.unique(
        np.stack([np.asarray(groups).astype(str), np.asarray(values).astype(str)]), axis=1
    )
    ids, n = np.unique(pairs[0], return_counts=True)
    return ids[n > 1]


def primary_issue(
    is_label_issue: np.ndarray,
    is_near_duplicate: np.ndarray,
    is_outlier: np.ndarray,
    image_issue: np.ndarray | None = None,
) -> np.ndarray:
    """(N,) the first issue of ``ISSUE_PRECEDENCE`` each sample has, or ``""``.

    ``image_issue`` (N,): each sample's first image-quality kind, ``""`` for none.
    """
    issue = np.full(len(is_label_issue), "", dtype=object)
    issue[np.asarray(is_outlier, bool)] = OUTLIER
    if image_issue is not None:
        image = np.asarray(image_issue, dtype=object)
        issue[image != ""] = image[image != ""]
    for name, mask in ((NEAR_DUPLICATE, is_near_duplicate), (LABEL, is_label_issue)):
        issue[np.asarray(mask, bool)] = name
    return issue


def review_order(quality_scores: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """Indices of the flagged samples, lowest label quality first (ties: lower index)."""
    idx = np.flatnonzero(flagged)
    return idx[np.argsort(quality_scores[idx], kind="stable")]


# The gate: out-of-fold accuracy must beat always answering the majority class at
# this one-sided binomial significance before the queue is believed.
TRUST_ALPHA = 1e-3


@dataclass(frozen=True)
class ModelTrust:
    """How good the out-of-fold model is, measured against the given labels."""

    n: int
    accuracy: float  # argmax of pred_probs == given label
    macro_f1: float
    majority_rate: float  # accuracy of always answering the most common given label
    p_value: float  # one-sided binomial: P(accuracy this high | no better than the majority)
    ece: float  # expected calibration error of the top-class confidence, 15 equal-width bins

    @property
    def passed(self) -> bool:
        return self.p_value < TRUST_ALPHA


def expected_calibration_error(
    labels: np.ndarray, pred_probs: np.ndarray, *, n_bins: int = 15
) -> float:
    """Mean |confidence - accuracy| of the top class over equal-width bins, weighted by size."""
    conf = np.asarray(pred_probs).max(axis=1)
    right = np.asarray(pred_probs).argmax(axis=1) == np.asarray(labels)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    right_sum = np.bincount(bins, weights=right.astype(float), minlength=n_bins)
    return float(np.abs(conf_sum - right_sum).sum() / max(len(conf), 1))


def model_trust(labels: np.ndarray, pred_probs: np.ndarray) -> ModelTrust:
    """Accuracy, macro F1 and calibration of ``pred_probs`` (N, K) against ``labels`` (N,).

    Against the given (noisy) labels: a model that learned the true classes loses
    the noise rate from its accuracy, which still beats the majority rate by far
    unless the noise is worse than the model.
    """
    labels = np.asarray(labels)
    n, k = pred_probs.shape
    pred = np.asarray(pred_probs).argmax(axis=1)
    correct = int((pred == labels).sum())
    majority = float(np.bincount(labels, minlength=k).max() / max(n, 1))
    p = binomtest(correct, n, majority, alternative="greater").pvalue if n else 1.0
    return ModelTrust(
        n=n,
        accuracy=correct / max(n, 1),
        macro_f1=float(
            f1_score(labels, pred, average="macro", labels=np.arange(k), zero_division=0)
        ),
        majority_rate=majority,
        p_value=float(p),
        ece=expected_calibration_error(labels, pred_probs),
    )


def confident_examples(
    labels: np.ndarray, pred_probs: np.ndarray, *, per_class: int = 4
) -> dict[int, np.ndarray]:
    """Per class: up to ``per_class`` row indices labelled it that the model is surest of."""
    labels = np.asarray(labels)
    p_given = np.asarray(pred_probs)[np.arange(len(labels)), labels]
    agree = np.asarray(pred_probs).argmax(axis=1) == labels
    out = {}
    for c in range(pred_probs.shape[1]):
        rows = np.flatnonzero((labels == c) & agree)
        out[c] = rows[np.argsort(-p_given[rows], kind="stable")][:per_class]
    return out
