"""The loss weight of every train row: ``retrain --reweight`` and ``train_weights.csv``.

``none`` keeps the manifest's ``weight``; ``class`` balances the classes;
``quality`` scales each row by the out-of-fold quality of its label (the run's
own ranking method, what ``flag`` ranked by); ``prune`` sets the rows cleanlab
flags to 0. A row a person decided (the audit log) keeps its manifest weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.core.atomic import atomic_path
from cleaner.core.config import PipelineConfig
from cleaner.core.errors import InputError
from cleaner.formats.audit import decided_in_manifest
from cleaner.formats.manifest import audit_log_path, id_matcher
from cleaner.formats.run_files import RunFiles
from cleaner.formats.scores import read_ensemble_scores
from cleaner.ranking import flag
from cleaner.ranking.trust import check_trust
from cleaner.training.pipeline import PipelineData


def quality_weights(
    weights: np.ndarray, quality_scores: np.ndarray, reviewed: np.ndarray
) -> np.ndarray:
    """Loss weights (N,) scaled by out-of-fold label quality, except where a person decided.

    ``w_i = weights_i * quality_scores_i`` for unreviewed rows and ``weights_i``
    for reviewed ones (kept, relabeled or marked unsure by a person): a label a
    person confirmed gets its full say, a doubtful one the model's confidence in it.
    ``quality_scores`` is NaN for rows the run did not score; they keep ``weights_i``.
    """
    q = np.where(np.isnan(quality_scores), 1.0, np.clip(quality_scores, 0.0, 1.0))
    return np.where(reviewed, weights, weights * q)


def prune_weights(
    weights: np.ndarray, is_label_issue: np.ndarray, reviewed: np.ndarray
) -> np.ndarray:
    """Loss weights (N,) with the flagged label issues nobody reviewed set to 0.

    cleanlab's ``CleanLearning`` recipe: train on the rows ``find_label_issues``
    does not flag. A row a person decided keeps ``weights_i`` whatever the flag.
    """
    return np.where(np.asarray(is_label_issue, bool) & ~np.asarray(reviewed, bool), 0.0, weights)


def class_balance_weights(weights: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Loss weights (N,) times ``N / (K * n_c)``: every class contributes the same total."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    return weights * (len(labels) / (present * counts[labels]))


def ranking_method(cfg: PipelineConfig, oof_runs: Sequence[Path]) -> str:
    """The ranking method of the first oof run (its ``flag.method``, what ``flag`` ranked
    its queue by); the pipeline's for a probability file."""
    for run in oof_runs:
        files = RunFiles(Path(run))
        if files.dir.is_dir() and files.config.is_file():
            return files.read_config().flag.method
    return cfg.flag.method


def train_weights(
    data: PipelineData, reweight: str, oof_runs: Sequence[Path], *, force: bool = False
) -> tuple[np.ndarray, str]:
    """The loss weight of every train row under ``--reweight``, and how it was made."""
    sub = data.df.iloc[data.train_rows]
    weights = pd.to_numeric(sub["weight"]).to_numpy(np.float64)
    ids = sub["sample_id"].to_numpy()
    if reweight == "class":
        return class_balance_weights(weights, data.labels, len(data.cfg.data.classes)), (
            "manifest weight x N / (K x rows of the class)"
        )
    if reweight in ("quality", "prune"):
        if not oof_runs:
            raise InputError(
                f"--reweight {reweight} needs the oof run that scored the labels: "
                "pass --oof RUN or --probs FILE (or --queue, whose runs are used)"
            )
        run = read_ensemble_scores(oof_runs)
        named = ", ".join(str(r) for r in oof_runs)
        # The same gate as `flag`: weights from a model no better than chance are noise.
        known = run.labels >= 0
        check_trust(run.labels[known], run.probs[known], force=force, source=named)
        match = id_matcher(ids)  # the id rule: a probability file's padded id is the row's
        position = pd.Index([match(s) or s for s in run.sample_ids]).get_indexer(pd.Index(ids))
        found = position >= 0
        decided = decided_in_manifest(data.df, audit_log_path(data.manifest_path))
        reviewed = np.isin(ids, list(decided))
        if reweight == "prune":
            # Flagged on the labels the runs scored and their mean probabilities, as
            # `flag` on the same runs (without flag.attributes) lists its `label` rows.
            flagged = flag.find_label_errors(run.labels, run.probs)
            is_issue = np.zeros(len(ids), bool)
            is_issue[found] = flagged[position[found]]
            return prune_weights(weights, is_issue, reviewed), (
                "manifest weight; 0 for the rows cleanlab's find_label_issues flags in "
                f"run {named} that no person decided"
            )
        quality = np.full(len(ids), np.nan)
        # The label quality `flag` ranked the run by, of each row's current label.
        method = ranking_method(data.cfg, oof_runs)
        quality[found] = flag.label_quality(
            data.labels[found], run.probs[position[found]], method=method
        )
        what = (
            "out-of-fold probability of the label"
            if method == "self_confidence"
            else f"{method} label quality"
        )
        return quality_weights(weights, quality, reviewed), (
            f"manifest weight x {what} (run {named}); "
            "rows a person decided keep their manifest weight"
        )
    return weights, "manifest weight"


def write_weights(run_dir: Path, data: PipelineData, weights: np.ndarray) -> Path:
    """``train_weights.csv``: the loss weight of every train row (written once)."""
    path = RunFiles(run_dir).train_weights
    if not path.exists():
        with atomic_path(path) as tmp:
            pd.DataFrame({"sample_id": data.sample_ids, "weight": weights}).to_csv(
                tmp, index=False, float_format="%.6g"
            )
    return path
