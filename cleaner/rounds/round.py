"""``cleaner round``: the next batch of an active-cleaning round, for a budget of labels.

From a finished run of the newest manifest version:

1. every train row's labels: the manifest's ``annotator:NAME`` columns when it has
   them (:mod:`cleaner.formats.annotations`), else its ``label`` as one annotator;
2. which rows a label is worth most on (:func:`cleaner.rounds.select.select_batch`:
   Bernhardt et al.'s relabel score, ActiveLab for rows with several labels and for
   unlabeled rows), never a row a person already decided (the audit log) nor one at
   ``max_labels``;
3. the wrong labels left, with a 95% interval, from cleanlab's flags corrected by
   what the reviews so far found (:func:`cleaner.rounds.estimate.errors_left`), and
   whether the batch is worth it (``stop_below``);
4. the batch as an ordinary relabel queue (``queue.csv``, ``queue.html``,
   ``queue.json``), so that ``cleaner review``, a spreadsheet or Label Studio answer
   it and ``cleaner apply`` folds the answers in, plus ``round.json`` and
   ``round.png`` (labels spent against errors found, round by round, and the
   estimate of errors left).

The rounds so far are read from the audit log: each ``apply`` is one round; its
labels spent are its decisions, its errors found the ones that changed a label or
dropped the row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleaner.core.errors import InputError
from cleaner.formats.audit import ACTIONS, decided_in_records, read_audit_log
from cleaner.formats.issue_kinds import LABEL, UNLABELED
from cleaner.formats.manifest import audit_log_path, read_manifest, require_images
from cleaner.formats.queue_file import QUEUE_COLUMNS
from cleaner.formats.round_record import (
    ErrorsLeftRecord,
    PastRound,
    RoundRecord,
    StopRecord,
    write_round_record,
)
from cleaner.formats.run_files import RunFiles
from cleaner.formats.runs import Run
from cleaner.ranking import flag
from cleaner.ranking.crowd import active_learning_scores, run_label_matrix
from cleaner.ranking.queue import (
    gallery_page,
    load_runs,
    on_newest_version,
    queue_meta,
    queue_targets,
    write_outputs,
)
from cleaner.ranking.trust import check_trust
from cleaner.rounds.estimate import ErrorsLeft, StopRule, errors_left, stop_rule
from cleaner.rounds.select import MORE_LABELS, RELABEL, Selection, label_counts, select_batch

# The errors a batch must be expected to find to be worth asking (``--stop-below``).
DEFAULT_STOP_BELOW = 1.0


@dataclass(frozen=True)
class RoundResult:
    """What ``cleaner round`` wrote and measured."""

    number: int  # this round's number: rounds applied so far + 1
    queue_csv: Path
    record: Path  # round.json
    figure: Path  # round.png
    budget: int
    by_kind: dict[str, int]  # rows offered: relabel, more_labels, unlabeled
    annotators: int  # labels per row come from this many annotator columns (1: the label)
    errors: ErrorsLeft
    stop: StopRule
    past: tuple[PastRound, ...]


def audit_records(manifest: Path) -> list[dict[str, Any]]:
    """The committed lines of the manifest's audit log (none without a log)."""
    log = audit_log_path(manifest)
    return read_audit_log(log) if log.exists() else []


def past_rounds(manifest: Path) -> tuple[PastRound, ...]:
    """The rounds applied so far, oldest first, from the manifest's audit log."""
    return _rounds_of(audit_records(manifest))


def _rounds_of(records: list[dict[str, Any]]) -> tuple[PastRound, ...]:
    """Each ``apply`` (one manifest version) of ``records``: labels spent, errors found."""
    spent: dict[str, list[int]] = {}
    for record in records:
        if record.get("action") not in ACTIONS:  # a repoint moved images: no round
            continue
        counts = spent.setdefault(str(record.get("version", "")), [0, 0])
        if record.get("action") in ("keep", "relabel", "drop"):  # unsure spends no label
            counts[0] += 1
        if record.get("action") in ("relabel", "drop"):
            counts[1] += 1
    return tuple(PastRound(v, n, found) for v, (n, found) in spent.items())


def _reviewed(
    df: pd.DataFrame, run: Run, records: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """(N,) bool each: rows a person decided, and of those the ones whose label was wrong."""
    decided = decided_in_records(df, records)
    reviewed = np.isin(run.sample_ids, list(decided))
    changed = {str(r["sample_id"]) for r in records if r.get("action") in ("relabel", "drop")}
    return reviewed, reviewed & np.isin(run.sample_ids, list(changed))


def _activelab(labels: np.ndarray, run: Run) -> np.ndarray:
    """ActiveLab's score of each train row (low = one more label is worth most); NaN where
    cleanlab cannot score (it needs a row with two labels)."""
    if not (np.sum(~np.isnan(labels), axis=1) >= 2).any():
        return np.full(len(labels), np.nan)
    scores, _ = active_learning_scores(labels, run.pred_probs)
    return np.asarray(scores, dtype=np.float64)


def _queue_rows(df: pd.DataFrame, run: Run, sel: Selection, quality: np.ndarray) -> pd.DataFrame:
    """The batch as queue rows, in :data:`QUEUE_COLUMNS`: the model's class as suggestion."""
    at = pd.Index(df["sample_id"]).get_indexer(run.sample_ids[sel.rows])
    sub = df.iloc[at]
    names = np.asarray(run.classes, dtype=object)
    group = run.cfg.data.group
    queue = pd.DataFrame(
        {
            "rank": np.arange(1, len(sel.rows) + 1),
            "sample_id": sub["sample_id"].to_numpy(),
            "path": sub["path"].to_numpy(),
            "group": sub[group].to_numpy() if group else "",
            "given_label": names[run.labels[sel.rows]],
            "suggested_label": names[run.pred_probs[sel.rows].argmax(1)],
            "label_quality": quality[sel.rows],
            "issue": [UNLABELED if k not in (RELABEL, MORE_LABELS) else LABEL for k in sel.kind],
            "decision": "",
            "new_label": "",
            "note": [f"round: {k.replace('_', ' ')}" for k in sel.kind],
            "partner": "",
        }
    )
    return queue[list(QUEUE_COLUMNS)]


def next_round(
    run_dir: str | Path,
    *,
    budget: int,
    max_labels: int | None = None,
    stop_below: float = DEFAULT_STOP_BELOW,
    out: str | Path | None = None,
    force: bool = False,
    on_image: Callable[[], None] | None = None,
) -> RoundResult:
    """``cleaner round RUN --budget B``: write the next batch (a queue folder, default
    ``RUN/round-N``) and its record; see the module docstring."""
    if budget < 1:
        raise InputError(f"--budget {budget}: ask about at least one row")
    runs = load_runs([run_dir])
    run = runs[0] = on_newest_version(runs[0])
    df = read_manifest(run.manifest_path)
    require_images(df, run.manifest_path)  # a person answers from the images
    labels, names = run_label_matrix(df, run)
    annotators = len(names)
    records = audit_records(run.manifest_path)  # read once: the rounds and the reviewed rows
    reviewed, found_wrong = _reviewed(df, run, records)
    trust = check_trust(run.labels, run.pred_probs, force=force, source=str(run.run_dir))
    sel = select_batch(
        run.pred_probs,
        label_counts=label_counts(labels, len(run.classes)),
        budget=budget,
        decided=reviewed,
        max_labels=max_labels,
        activelab_scores=_activelab(labels, run),
    )
    errors = errors_left(run.labels, run.pred_probs, reviewed=reviewed, found_wrong=found_wrong)
    stop = stop_rule(errors, min_errors=stop_below, rows=sel.rows)
    past = _rounds_of(records)
    number = len(past) + 1
    folder = Path(out) if out is not None else RunFiles(run.run_dir).round(number).dir
    # A round writes no duplicates.csv (flag does): its queue asks about labels only.
    targets = dataclasses.replace(queue_targets(folder, runs), with_duplicates=False)
    quality = flag.label_quality(run.labels, run.pred_probs, method=run.cfg.flag.method)
    queue = _queue_rows(df, run, sel, quality)
    noise = flag.estimate_noise(run.labels, run.pred_probs)
    meta = queue_meta(
        runs,
        method=run.cfg.flag.method,
        top=budget,
        table=None,
        trust=trust,
        mean_probs=run.pred_probs,
        noise=_noise_record(noise, len(run.labels)),
    )
    result = RoundResult(
        number=number,
        queue_csv=targets.csv,
        record=targets.round_record,
        figure=targets.round_png,
        budget=budget,
        by_kind={k: sel.kind.count(k) for k in dict.fromkeys(sel.kind)},
        annotators=annotators,
        errors=errors,
        stop=stop,
        past=past,
    )
    page = gallery_page(queue, df, run, on_image=on_image)
    write_outputs(
        targets,
        queue=queue,
        page=page,
        meta=meta,
        noise_joint=noise.joint,
        classes=run.classes,
        before_record=lambda: _write_round_files(result),
    )
    return result


def _noise_record(noise: flag.NoiseEstimate, n: int) -> dict[str, Any]:
    """``queue.json``'s ``noise``, as ``flag`` writes it: cleanlab's count over every train
    row; the round's estimate of the errors left (unreviewed rows only) is in round.json."""
    return {
        "estimated_wrong_labels": int(noise.num_label_issues),
        "interval_95": list(noise.interval),
        "model_disagrees": int(noise.disagreements),
        "train_rows": n,
        "note": f"{noise.caveat(n)} The wrong labels left among the rows not yet reviewed: "
        "round.json.",
    }


def round_record(result: RoundResult) -> RoundRecord:
    """``round.json``: the round's batch, the estimate of errors left and the rounds so far."""
    e = result.errors
    return RoundRecord(
        round=result.number,
        budget=result.budget,
        offered=result.by_kind,
        annotator_columns=result.annotators,
        errors_left=ErrorsLeftRecord(
            estimate=round(e.estimate, 1),
            interval_95=(round(e.interval[0], 1), round(e.interval[1], 1)),
            cleanlab_flags_unreviewed=e.cleanlab_estimate,
            errors_per_flag=round(e.ratio, 4),
            reviewed=e.num_reviewed,
            found_wrong=e.found_wrong,
        ),
        stop=StopRecord(
            expected_errors_in_batch=round(result.stop.expected, 1),
            stop_below=result.stop.min_errors,
            stop=result.stop.stop,
        ),
        past_rounds=list(result.past),
    )


def _write_round_files(result: RoundResult) -> list[Path]:
    """round.json and round.png, before queue.json (which marks the queue complete)."""
    from cleaner.core.figures import rounds_png  # matplotlib only where it draws

    write_round_record(result.record, round_record(result))
    spent = np.cumsum([0] + [p.labels_spent for p in result.past])
    found = np.cumsum([0] + [p.errors_found for p in result.past])
    rounds_png(
        spent,
        found,
        estimate=result.errors.estimate,
        interval=result.errors.interval,
        path=result.figure,
        title=f"active cleaning before round {result.number}",
    )
    return [result.record, result.figure]
