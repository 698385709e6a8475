"""Did cleaning help? Measured on the audit slice, without a test split of true labels.

``flag --audit N`` draws N train rows at random and queues them beside the
ranked rows; ``apply`` marks their decisions in the audit log (``audit``:
``added`` when the row was queued only because it was drawn, ``ranked`` when
the ranking queued it too). A row decided ``keep`` or ``relabel`` gives its
true class; ``drop`` and ``unsure`` give none and are left out.

Because the rows are a uniform sample, their figures hold for the whole train
set, with a 95% paired bootstrap interval (:mod:`cleaner.core.intervals`):

- **labels right**, before: the share of their labels, as they were when drawn,
  that the reviewer confirmed; after: the same rows as the cleaning left them,
  the audit's own decisions aside (a ``ranked`` row was fixed by the queue
  anyway, an ``added`` one would have kept its label);
- **model accuracy against the reviewer**, out of fold on both sides: before,
  the run that flagged each row; after, the fold models of ``retrain --mode
  folds`` on the cleaned labels (a full model has seen every row, so it has no
  honest figure here).

The ranked rows alone would not do: the model doubts them, so a model's
accuracy on them says nothing of the rest (on digits, the noisy-label model
was right on 90% of random rows but on 26% of the decided queue rows).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleaner.core.errors import InputError
from cleaner.core.intervals import difference_interval, metric_intervals
from cleaner.formats.metrics_file import AuditScores
from cleaner.formats.scores import read_scores

TRUTH_ACTIONS = ("keep", "relabel")  # decisions that name the row's class


def audit_rows(records: Sequence[Mapping[str, Any]], current: pd.DataFrame) -> pd.DataFrame:
    """The audit slice's decisions still in effect in the manifest version ``current``:
    one row per sample (its last decision), with ``sample_id, old_label, truth, audit,
    action, run``; ``truth`` is blank for ``drop`` and ``unsure``."""
    last: dict[str, Mapping[str, Any]] = {}
    for r in records:
        last[str(r["sample_id"])] = r
    labels = dict(zip(current["sample_id"], current["label"].astype(str), strict=True))
    rows = []
    for sid, r in last.items():
        if r.get("audit") not in ("added", "ranked") or sid not in labels:
            continue
        if r["action"] in TRUTH_ACTIONS and labels[sid] != str(r.get("new_label", "")):
            continue  # relabelled since, by hand or a new ingest: that decision is not in effect
        truth = str(r.get("new_label", "")) if r["action"] in TRUTH_ACTIONS else ""
        rows.append(
            {
                "sample_id": sid,
                "old_label": str(r.get("old_label", "")),
                "truth": truth,
                "audit": r["audit"],
                "action": r["action"],
                "run": str(r.get("run", "")),
            }
        )
    columns = ["sample_id", "old_label", "truth", "audit", "action", "run"]
    return pd.DataFrame(rows, columns=columns)


def _run_dir(run: str, project: Path) -> Path | None:
    """The run folder a record names (as ``apply`` named it), from here or the project."""
    for path in (Path(run), project / run):
        if run and path.is_dir():
            return path
    return None


def _predictions(
    sample_ids: np.ndarray, run_of: Sequence[Path | None], classes: Sequence[str]
) -> np.ndarray:
    """Each row's out-of-fold prediction (class index) by its run; -1 where there is none."""
    out = np.full(len(sample_ids), -1)
    for run in {r for r in run_of if r is not None}:
        try:
            scores = read_scores(run)
        except InputError:
            continue  # a run that is gone or unfinished measures nothing; the report says so
        at = np.flatnonzero([r == run for r in run_of])
        found = pd.Index(scores.sample_ids).get_indexer(sample_ids[at])
        names = np.asarray(scores.classes or classes)[scores.probs.argmax(1)]
        index = pd.Index(classes).get_indexer(names)
        out[at[found >= 0]] = index[found[found >= 0]]
    return out


def audit_scores(
    rows: pd.DataFrame,
    classes: Sequence[str],
    *,
    project: Path,
    cv_run: Path | None = None,
) -> AuditScores | None:
    """The figures of the module docstring for :func:`audit_rows`' rows; ``None`` without
    any row that names its class. ``cv_run`` is ``--mode folds``' oof run on the cleaned
    labels; ``project`` is where relative run folders in the log are looked up."""
    with_truth = rows[rows["truth"] != ""]
    index = pd.Index(classes)
    truth = index.get_indexer(pd.Index(with_truth["truth"]))
    before = index.get_indexer(pd.Index(with_truth["old_label"]))
    keep = truth >= 0
    if not keep.any():
        return None
    with_truth, truth, before = with_truth[keep], truth[keep], before[keep]
    # An added row kept its label but for the audit; the queue fixed a ranked one anyway.
    after = np.where(with_truth["audit"].to_numpy() == "ranked", truth, before)
    figures: dict[str, Any] = {
        "rows": len(truth),
        "left_out": int(len(rows) - len(truth)),
        "ranked": int((with_truth["audit"] == "ranked").sum()),
    }
    figures |= _scored("labels_before", "labels_after", truth, before, after, len(classes))
    ids = with_truth["sample_id"].to_numpy()
    runs = [_run_dir(r, project) for r in with_truth["run"]]
    flagged = _predictions(ids, runs, classes)
    figures["before_runs"] = sorted({str(r) for r in runs if r is not None})
    folds = _predictions(ids, [cv_run] * len(ids), classes) if cv_run else None
    both = (flagged >= 0) & (folds >= 0) if folds is not None else flagged >= 0
    figures["model_rows"] = int(both.sum())
    if both.any():
        pair = (flagged[both], folds[both] if folds is not None else None)
        figures |= _scored("model_before", "model_after", truth[both], *pair, len(classes))
    return AuditScores(**figures)


def _scored(
    name_a: str,
    name_b: str,
    truth: np.ndarray,
    a: np.ndarray,
    b: np.ndarray | None,
    n_classes: int,
) -> dict[str, Any]:
    """Accuracy of ``a`` (and ``b``) against ``truth`` with 95% intervals, and the paired
    interval of ``b - a``."""
    predicted = {name_a: a} if b is None else {name_a: a, name_b: b}
    intervals = metric_intervals(truth, predicted, n_classes)
    out: dict[str, Any] = {}
    for name, pred in predicted.items():
        out[name] = float((pred == truth).mean())
        out[f"{name}_ci"] = intervals[name]["accuracy"]
    if b is not None:
        out[f"{name_b.rsplit('_', 1)[0]}_gain_ci"] = difference_interval(truth, a, b)
    return out


def measure_plan(
    audit: pd.DataFrame, *, mode: str, test_rows: int, test_truth: bool, baselines: bool
) -> list[str]:
    """What this retrain will be able to measure, said before it trains (one line each)."""
    decided = int((audit["truth"] != "").sum()) if len(audit) else 0
    if not decided:
        lines = [
            "did cleaning help: no audit rows decided. `cleaner flag RUN --audit 100` queues "
            "100 rows drawn at random; once decided, retrain measures the labels and the "
            "models on them"
        ]
    elif mode == "folds":
        lines = [
            f"did cleaning help: {decided:,} audit rows (drawn at random, decided) measure "
            "the labels and the models before and after, out of fold"
        ]
    else:
        lines = [
            f"did cleaning help: {decided:,} audit rows (drawn at random, decided) measure "
            "the labels before and after and the model before; the model after needs "
            "`--mode folds` (a full model has seen every row)"
        ]
    if test_truth and test_rows:
        what = "the cleaned model against models on the noisy and true labels"
        lines.append(
            f"test rows: {test_rows:,} with true_label: "
            + (what if baselines else "the cleaned model (--no-baselines)")
        )
    else:
        lines.append(
            "test rows: " + ("none with true_label" if test_rows else "none")
            + ": no test-set figure"
        )  # fmt: skip
    if mode == "folds":
        lines.append("cross-validation on the cleaned labels: --mode folds")
    return lines
