"""The queue's rows: every train row scored, ranked and turned into what a person decides.

:func:`build_queue` is the ranking at the heart of ``cleaner flag``: label
quality from :mod:`cleaner.ranking.flag` (one run or an ensemble), the embedding
findings (outliers, near duplicates, leakage), attribute and boundary rows,
groups, and the unlabeled rows worth a label (cleanlab's ActiveLab), ordered
best-first with what a person already decided left out. Pure on its inputs:
it reads no file and writes none (:mod:`cleaner.ranking.queue` does both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from cleanlab.multiannotator import get_active_learning_scores

from cleaner.core.errors import InputError, Problem
from cleaner.formats.attributes import SPEC_SEP, AttributeTable, attribute_table, just_under_edge
from cleaner.formats.embeddings import Embeddings
from cleaner.formats.issue_kinds import (
    AUDIT,
    GROUP_PREFIX,
    LEAKAGE,
    NO_SUGGESTION,
    UNLABELED,
)
from cleaner.formats.queue_file import (
    QUEUE_COLUMNS,
)
from cleaner.formats.run_files import RunFiles
from cleaner.formats.runs import (
    Run,
    manifest_problems,
    mean_probs,
)
from cleaner.ranking import flag
from cleaner.ranking.audit_slice import audit_sample, interleave
from cleaner.ranking.crowd import CrowdResult, crowd_of
from cleaner.ranking.embedding_findings import EmbeddingFindings, embedding_findings
from cleaner.ranking.image_findings import ImageFindings, with_image_findings
from cleaner.ranking.queue_groups import group_rows


@dataclass
class QueueSummary:
    """What ``cleaner flag`` prints besides the files."""

    n_train: int
    method: str
    runs: list[str]
    num_label_issues: int  # cleanlab's estimate
    noise_interval: tuple[int, int]  # its 95% bootstrap interval
    disagreements: int  # rows whose out-of-fold prediction is not the given label
    noise_caveat: str  # what the count means (flag.NoiseEstimate.caveat)
    flagged_label_issues: int  # find_label_issues
    confused_pairs: list[tuple[str, str, float, int]]  # given, likely true, fraction, count
    already_decided: int
    issue_counts: dict[str, int] = field(default_factory=dict)
    queue_csv: Path | None = None
    queue_html: Path | None = None
    attributes: AttributeTable | None = None  # flag.attributes, learned from the train rows
    trust: flag.ModelTrust | None = None  # how good the out-of-fold model is
    finding_counts: dict[str, int] = field(default_factory=dict)  # duplicate pairs by finding
    embedding_source: str = ""  # which model embedded the rows ("" without embeddings)
    own_fold_share: float = float("nan")  # kNN neighbours in the own fold; about 1/K is right
    legacy_embeddings: bool = False  # an older run's fold-local embeddings were ignored
    duplicates_csv: Path | None = None
    map_png: Path | None = None  # the map of the data (with embeddings)
    duplicate_pairs: pd.DataFrame | None = None  # duplicates.csv
    noise_joint: np.ndarray | None = None  # cleanlab's (K, K) estimate, for noise_matrix.png
    # Several labels per image: each annotator's quality, agreement and worst class (CROWDLAB).
    annotators: pd.DataFrame | None = None
    # The audit slice's sample ids: rows added for it, and drawn rows the ranking queued.
    audit_added: list[str] = field(default_factory=list)
    audit_ranked: list[str] = field(default_factory=list)
    # The train images' quality check: measured, flagged per kind, limits (queue.json's).
    image_quality: dict[str, Any] = field(default_factory=dict)


def _row_frame(
    df: pd.DataFrame,
    rows: np.ndarray,
    classes: Sequence[str],
    *,
    given: np.ndarray,
    suggested: np.ndarray,
    quality: np.ndarray,
    issue: np.ndarray,
    note: Sequence[str],
    group: str,
    partner: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Queue rows of manifest positions ``rows``; class index -1 writes an empty label."""
    names = np.asarray(classes, dtype=object)
    sub = df.iloc[rows]
    return pd.DataFrame(
        {
            "sample_id": sub["sample_id"].to_numpy(),
            "path": sub["path"].to_numpy(),
            "group": sub[group].to_numpy() if group else "",
            "given_label": np.where(given >= 0, names[np.maximum(given, 0)], ""),
            "suggested_label": np.where(suggested >= 0, names[np.maximum(suggested, 0)], ""),
            "label_quality": quality,
            "issue": issue,
            "note": list(note),
            "partner": list(partner) if partner is not None else "",
        }
    )


def attributes_of(df: pd.DataFrame, train_rows: np.ndarray, run: Run) -> AttributeTable | None:
    """The run's ``flag.attributes`` as a table learned from the train rows, or None."""
    names = run.cfg.flag.attributes
    if not names:
        return None
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise InputError(
            [
                Problem(
                    str(run.manifest_path),
                    "flag.attributes: column(s) not found: " + ", ".join(missing),
                    1,
                )
            ]
        )
    try:
        return attribute_table(
            run.labels, {c: df[c].to_numpy()[train_rows] for c in names}, len(run.classes)
        )
    except ValueError as e:
        raise InputError([Problem(str(run.manifest_path), f"flag.attributes: {e}")]) from None


def _attribute_issues(
    table: AttributeTable, labels: np.ndarray, pred_probs: np.ndarray, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample: the most doubtful flagged attribute (-1: none), its quality, the new class.

    Each attribute is checked on its own probabilities (summed over the other
    attributes), so a gender error is not diluted by a confident mask.
    """
    n = len(labels)
    best_attr = np.full(n, -1)
    best_q = np.full(n, np.inf)
    best_class = np.full(n, -1)
    for a in range(len(table.names)):
        la, pa = table.labels(labels, a), table.probs(pred_probs, a)
        if len(table.values[a]) < 2 or (la < 0).any():
            continue
        qa = flag.label_quality(la, pa, method=method)
        other, _ = flag.suggest_labels(la, pa)
        new_class = table.change(labels, a, other)
        better = flag.find_label_errors(la, pa) & (qa < best_q) & (new_class >= 0)
        best_attr[better], best_q[better], best_class[better] = a, qa[better], new_class[better]
    return best_attr, best_q, best_class


def _boundary_rows(
    df: pd.DataFrame,
    train_rows: np.ndarray,
    run: Run,
    table: AttributeTable,
    suggested: np.ndarray,
) -> np.ndarray:
    """(N,) bool: rows whose suggestion only moves them over a band edge they sit under."""
    f = run.cfg.flag
    if not (f.boundary_column and f.boundary_attribute in table.names and f.boundary_edges):
        return np.zeros(len(train_rows), dtype=bool)
    if f.boundary_column not in df.columns:
        raise InputError(
            [
                Problem(
                    str(run.manifest_path),
                    f"flag.boundary_column: column {f.boundary_column!r} not found",
                    1,
                )
            ]
        )
    values = pd.to_numeric(df[f.boundary_column].to_numpy()[train_rows], errors="coerce")
    a = table.names.index(f.boundary_attribute)
    names = np.asarray(table.values[a], dtype=object)
    band = pd.to_numeric(names[table.codes[suggested, a]], errors="coerce")
    return just_under_edge(
        np.nan_to_num(values, nan=-np.inf),
        np.nan_to_num(band, nan=-1),
        edges=f.boundary_edges,
        margin=f.boundary_margin,
    )


def build_queue(
    df: pd.DataFrame,
    runs: Sequence[Run],
    *,
    top: int,
    method: str,
    decided: set[str],
    include_unlabeled: bool = False,
    audit: int = 0,
    images: ImageFindings | None = None,
) -> tuple[pd.DataFrame, QueueSummary]:
    """The queue rows (leakage first, then best first, ``audit`` random rows among them)
    and the summary to print. ``images``: the train rows' image-quality findings."""
    run = runs[0]
    train_rows = _train_rows(df, runs)
    labels = run.labels
    pred_probs = mean_probs(runs)
    quality = flag.ensemble_label_quality(labels, [r.pred_probs for r in runs], method=method)
    suggested, _ = flag.suggest_labels(labels, pred_probs)
    crowd = crowd_of(df, run, pred_probs)
    if crowd is not None:  # several labels: CROWDLAB's consensus and its quality rank them
        several = ~crowd.single
        quality = np.where(several, crowd.consensus_quality, quality)
        other = several & (crowd.consensus_label != labels)
        suggested = np.where(other, crowd.consensus_label, suggested)
    noise = flag.estimate_noise(labels, pred_probs)
    is_label = flag.find_label_errors(labels, pred_probs, confident_joint=noise.confident_joint)
    emb = next((r.embeddings for r in runs if r.embeddings is not None), None)
    found = (
        embedding_findings(df, run, emb, quality)
        if emb is not None
        else EmbeddingFindings.none(len(labels))
    )
    issue, found = with_image_findings(is_label, found, images)
    table = attributes_of(df, train_rows, run)
    if table is not None:
        issue, quality, suggested = _attribute_rows(
            df, train_rows, run, table, pred_probs, method,
            issue=issue, quality=quality, suggested=suggested,
        )  # fmt: skip
    # An outlier, a near duplicate or a dark image says the image is odd, not which class it is.
    suggested = np.where(np.isin(issue, list(NO_SUGGESTION)), -1, suggested)
    not_decided = ~np.isin(run.sample_ids, list(decided))
    rows, leaks = _sample_rows(
        df, train_rows, run, found,
        issue=issue, quality=quality, suggested=suggested, not_decided=not_decided,
    )  # fmt: skip
    groups = group_rows(df, train_rows, run, pred_probs, quality, decided, table)
    queue = _ordered(rows, groups, leaks, top=top)
    queue, added, ranked = _with_audit(
        df, train_rows, run, queue, quality, not_decided, n=audit, first=len(leaks)
    )
    if include_unlabeled:
        queue = pd.concat(
            [queue, _unlabeled_rows(df, runs, top=top, decided=decided)], ignore_index=True
        )
    queue = _numbered(queue)
    summary = _summary(
        runs,
        queue,
        crowd=crowd,
        method=method,
        noise=noise,
        is_label=is_label,
        found=found,
        emb=emb,
        already_decided=int((~not_decided).sum()),
        attributes=table,
    )
    summary.audit_added, summary.audit_ranked = added, ranked
    return queue, summary


AUDIT_NOTE = "drawn at random to measure the labels: name its true class"


def _with_audit(
    df: pd.DataFrame,
    train_rows: np.ndarray,
    run: Run,
    queue: pd.DataFrame,
    quality: np.ndarray,
    not_decided: np.ndarray,
    *,
    n: int,
    first: int,
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The queue with up to ``n`` random undecided train rows (:mod:`audit_slice`): those
    it lacks join it as ``audit`` rows after its first ``first``. Also the ids of the
    rows added, and of the drawn rows the queue held already."""
    eligible = not_decided & (run.labels >= 0)
    group = run.cfg.data.group
    ids = queue["sample_id"].astype(str)
    grouped = ids[ids.str.startswith(GROUP_PREFIX)].str.removeprefix(GROUP_PREFIX)
    if group and len(grouped):  # a group row decides its members: they are not drawn apart
        eligible &= ~np.isin(df[group].to_numpy()[train_rows].astype(str), grouped.to_numpy())
    at = audit_sample(eligible, n)
    queued = np.isin(run.sample_ids[at], ids.to_numpy())
    new = at[~queued]
    frame = _row_frame(
        df,
        train_rows[new],
        run.classes,
        given=run.labels[new],
        suggested=np.full(len(new), -1),
        quality=quality[new],
        issue=np.full(len(new), AUDIT, dtype=object),
        note=[AUDIT_NOTE] * len(new),
        group=group,
    )
    added, ranked = (list(map(str, run.sample_ids[at[m]])) for m in (~queued, queued))
    return interleave(queue, frame, first=first), added, ranked


def _numbered(queue: pd.DataFrame) -> pd.DataFrame:
    """The rows ranked 1, 2, ... with blank decision cells, in :data:`QUEUE_COLUMNS`."""
    queue = queue.reset_index(drop=True)
    queue.insert(0, "rank", np.arange(1, len(queue) + 1))
    for col in ("decision", "new_label"):
        queue[col] = ""
    return queue.fillna({"partner": ""})[list(QUEUE_COLUMNS)]


def _summary(
    runs: Sequence[Run],
    queue: pd.DataFrame,
    *,
    method: str,
    noise: flag.NoiseEstimate,
    is_label: np.ndarray,
    found: EmbeddingFindings,
    emb: Embeddings | None,
    already_decided: int,
    attributes: AttributeTable | None,
    crowd: CrowdResult | None = None,
) -> QueueSummary:
    """What ``flag`` prints about the queue and the evidence behind it."""
    run = runs[0]
    n = len(run.labels)
    summary = QueueSummary(
        noise_joint=noise.joint,
        n_train=n,
        method=method,
        runs=[str(r.run_dir) for r in runs],
        num_label_issues=noise.num_label_issues,
        noise_interval=noise.interval,
        disagreements=noise.disagreements,
        noise_caveat=noise.caveat(n),
        flagged_label_issues=int(is_label.sum()),
        confused_pairs=[
            (run.classes[i], run.classes[j], f, round(f * n))
            for i, j, f in noise.confused_pairs(top=10)
        ],
        already_decided=already_decided,
        issue_counts={str(k): int(v) for k, v in queue["issue"].value_counts().items()},
        attributes=attributes,
        finding_counts={str(k): int(v) for k, v in found.pairs["finding"].value_counts().items()},
        embedding_source=emb.source if emb is not None else "",
        own_fold_share=emb.own_fold_share if emb is not None else float("nan"),
        legacy_embeddings=emb is None and any(r.legacy_embeddings for r in runs),
    )
    summary.duplicate_pairs = found.pairs
    if crowd is not None:
        summary.annotators = crowd.annotator_table(run.classes)
    return summary


def _train_rows(df: pd.DataFrame, runs: Sequence[Run]) -> np.ndarray:
    """(N,) the manifest position of each probability row, checked against the manifest."""
    run = runs[0]
    # Index lookups, not Python dicts: this runs on a million rows.
    train_rows = pd.Index(df["sample_id"]).get_indexer(run.sample_ids)
    source = str(run.probs_file or RunFiles(run.run_dir).oof)
    if (train_rows < 0).any() or (df["split"] == "train").sum() != len(run.sample_ids):
        raise InputError([Problem(source, "rows do not match the manifest's train rows")])
    # The readers' one check (cleaner.formats.runs): an oof.csv label edited by hand would make
    # the queue show one label while apply changes another.
    train = df[df["split"] == "train"]
    given = dict(zip(train["sample_id"], train["label"].astype(str).str.strip(), strict=True))
    for r in runs:
        names = np.asarray(r.classes, dtype=object)[r.labels]
        table = pd.DataFrame({"sample_id": r.sample_ids, "label": names})
        src = str(r.probs_file or RunFiles(r.run_dir).oof)
        if problems := manifest_problems(table, given, src, r.manifest_path):
            raise InputError(problems)
    return train_rows


def _attribute_rows(
    df: pd.DataFrame,
    train_rows: np.ndarray,
    run: Run,
    table: AttributeTable,
    pred_probs: np.ndarray,
    method: str,
    *,
    issue: np.ndarray,
    quality: np.ndarray,
    suggested: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(issue, quality, suggested) with rows whose most doubtful attribute is flagged.

    The row names the doubtful attribute and suggests changing only it; a row
    just under a band edge becomes ``COLUMN_boundary``.
    """
    attr, attr_q, attr_class = _attribute_issues(table, run.labels, pred_probs, method)
    hit = attr >= 0
    issue = issue.copy()
    issue[hit] = np.asarray(table.names, dtype=object)[attr[hit]]
    quality = np.where(hit, np.minimum(quality, attr_q), quality)
    suggested = np.where(hit, attr_class, suggested)
    boundary = _boundary_rows(df, train_rows, run, table, suggested)
    issue[boundary & (issue == run.cfg.flag.boundary_attribute)] = (
        f"{run.cfg.flag.boundary_column}_boundary"
    )
    return issue, quality, suggested


def _sample_rows(
    df: pd.DataFrame,
    train_rows: np.ndarray,
    run: Run,
    found: EmbeddingFindings,
    *,
    issue: np.ndarray,
    quality: np.ndarray,
    suggested: np.ndarray,
    not_decided: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The flagged train rows best first, and the leakage rows surest first."""
    leak = found.leak & not_decided
    order = flag.review_order(quality, (issue != "") & not_decided & ~leak)
    # Leakage is listed first and never cut by --top: each one inflates the test score.
    # The surest copies first: the same file, then the closest pairs.
    leak_order = flag.review_order(found.distance, leak)

    def frame(at: np.ndarray, kinds: np.ndarray, suggestions: np.ndarray) -> pd.DataFrame:
        return _row_frame(
            df,
            train_rows[at],
            run.classes,
            given=run.labels[at],
            suggested=suggestions,
            quality=quality[at],
            issue=kinds,
            note=found.notes[at],
            group=run.cfg.data.group,
            partner=found.partner[at],
        )

    n_leaks = len(leak_order)
    return (
        frame(order, issue[order], suggested[order]),
        frame(leak_order, np.full(n_leaks, LEAKAGE, dtype=object), np.full(n_leaks, -1)),
    )


def _ordered(
    rows: pd.DataFrame, groups: pd.DataFrame, leaks: pd.DataFrame, *, top: int
) -> pd.DataFrame:
    """Leakage rows, then the ``top`` sample and group rows best first, boundary cases last."""
    if len(groups) and len(rows):
        # A person flagged as a group row for an attribute is queued once, as that
        # group row: its photos' own rows for the same attribute would repeat it.
        covered = {
            (g, spec.split(SPEC_SEP)[0])
            for g, spec in zip(groups["group"], groups["given_label"], strict=True)
            if SPEC_SEP in spec
        }
        repeat = [(str(g), i) in covered for g, i in zip(rows["group"], rows["issue"], strict=True)]
        rows = rows[~np.asarray(repeat, dtype=bool)]
    queue = pd.concat([rows, groups], ignore_index=True) if len(groups) else rows
    # Boundary cases are reported, not taken for errors: they come after the rest.
    last = queue["issue"].astype(str).str.endswith("_boundary").to_numpy()
    queue = queue.assign(_last=last).sort_values(["_last", "label_quality"], kind="stable")
    queue = queue.drop(columns="_last").head(top)
    return pd.concat([leaks, queue], ignore_index=True)


def _unlabeled_rows(
    df: pd.DataFrame, runs: Sequence[Run], *, top: int, decided: set[str]
) -> pd.DataFrame:
    """Unlabeled rows most worth labeling, by cleanlab's active-learning score (low first)."""
    run = runs[0]
    if not len(run.unlabeled_ids):
        raise InputError(
            [
                Problem(
                    str(run.run_dir),
                    "--include-unlabeled: the run predicted no "
                    "unlabeled rows (the manifest has none with split=unlabeled)",
                )
            ]
        )
    probs = mean_probs(runs, unlabeled=True)
    _, scores = get_active_learning_scores(pred_probs_unlabeled=probs)
    keep = ~np.isin(run.unlabeled_ids, list(decided))
    idx = np.flatnonzero(keep)[np.argsort(scores[keep], kind="stable")][:top]
    rows = pd.Index(df["sample_id"]).get_indexer(run.unlabeled_ids[idx])
    return _row_frame(
        df,
        rows,
        run.classes,
        given=np.full(len(idx), -1),
        suggested=probs[idx].argmax(1),
        quality=scores[idx],
        issue=np.full(len(idx), UNLABELED, dtype=object),
        note=[""] * len(idx),
        group=run.cfg.data.group,
    )
