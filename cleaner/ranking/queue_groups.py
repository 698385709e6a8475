"""Group rows of the relabel queue: one row per inconsistent ``data.group`` (a person).

Three checks look at each group: its labels (mixed, or the mean prediction is another
class), its shared attributes against the model (a person whose photos all say male
while the model says female, written ``gender=female``), and shared manifest columns
that differ inside it. :func:`group_rows` merges their findings into one queue row per
group; :mod:`cleaner.ranking.queue` puts those rows among the sample rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cleaner.core.errors import InputError, Problem
from cleaner.formats.attributes import SPEC_SEP, AttributeTable
from cleaner.formats.issue_kinds import GROUP_PREFIX
from cleaner.formats.runs import Run
from cleaner.ranking import flag


@dataclass(frozen=True)
class _GroupFinding:
    """What one check says about one group: a note, and maybe the labels it proposes."""

    group: str
    note: str
    given: str | None = None  # None: this check proposes no labels
    suggested: str = ""
    score: float | None = None  # its label quality; None: the mean of its rows'


def group_rows(
    df: pd.DataFrame,
    train_rows: np.ndarray,
    run: Run,
    pred_probs: np.ndarray,
    quality: np.ndarray,
    decided: set[str],
    table: AttributeTable | None = None,
) -> pd.DataFrame:
    """One queue row per inconsistent group (label shared in a group, or shared columns).

    A shared column that is also an attribute is checked against the model too:
    a person whose photos all say male while the model says female is flagged,
    with the change written as ``gender=female`` so a decision changes only that.
    """
    cfg = run.cfg
    group_col = cfg.data.group
    if not group_col or not (cfg.flag.group_label or cfg.flag.group_columns):
        return pd.DataFrame()
    groups = df[group_col].to_numpy()[train_rows].astype(str)
    model_checked = set(table.names) & set(cfg.flag.group_columns) if table else set()
    findings = [
        *(_group_label_findings(run, pred_probs, quality, groups) if cfg.flag.group_label else []),
        *_group_attribute_findings(run, table, pred_probs, groups, sorted(model_checked)),
        *_group_column_findings(
            df,
            train_rows,
            run,
            groups,
            [c for c in cfg.flag.group_columns if c not in model_checked],
        ),
    ]
    # The notes of every check, in order; the labels of the first check that proposes some.
    notes: dict[str, list[str]] = {}
    first: dict[str, _GroupFinding] = {}
    for f in findings:
        notes.setdefault(f.group, []).append(f.note)
        if f.given is not None:
            first.setdefault(f.group, f)
    ids = df["sample_id"].to_numpy()[train_rows]
    rows = []
    for gid, why in notes.items():
        member = groups == gid
        if set(ids[member]) <= decided:
            continue
        labels = first.get(gid) or _GroupFinding(gid, "", given="")
        rows.append(
            {
                "sample_id": f"{GROUP_PREFIX}{gid}",
                "path": df["path"].iat[train_rows[int(np.flatnonzero(member)[0])]],
                "group": gid,
                "given_label": labels.given,
                "suggested_label": labels.suggested,
                # Groups found by a column alone rank by how doubtful their rows' labels are.
                "label_quality": (
                    labels.score if labels.score is not None else float(quality[member].mean())
                ),
                "issue": "group_inconsistent",
                "note": "; ".join(why),
            }
        )
    return pd.DataFrame(rows)


def _group_label_findings(
    run: Run, pred_probs: np.ndarray, quality: np.ndarray, groups: np.ndarray
) -> list[_GroupFinding]:
    """Groups whose rows carry different labels, or whose mean prediction is another class."""
    names = np.asarray(run.classes, dtype=object)
    rep = flag.group_consistency(run.labels, pred_probs, groups)
    out = []
    for g in np.flatnonzero(rep.flagged):
        members = rep.inverse == g
        score = float(rep.quality[g])
        if rep.mixed[g]:
            counts = pd.Series(names[run.labels[members]]).value_counts()
            note = "mixed labels: " + ", ".join(f"{c} x{n}" for c, n in counts.items())
            # Mixed labels are a certain error somewhere in the group: rank the
            # group by its most doubtful row.
            score = min(score, float(quality[members].min()))
        else:
            note = f"model says {names[rep.predicted[g]]}"
        given, suggested = names[rep.given[g]], names[rep.predicted[g]]
        out.append(_GroupFinding(str(rep.groups[g]), note, given, suggested, score))
    return out


def _group_attribute_findings(
    run: Run,
    table: AttributeTable | None,
    pred_probs: np.ndarray,
    groups: np.ndarray,
    columns: Sequence[str],
) -> list[_GroupFinding]:
    """Groups whose shared attribute ``columns`` are mixed, or that the model sees otherwise."""
    out = []
    for col in columns:
        assert table is not None  # columns are attributes
        a = table.names.index(col)
        values = table.values[a]
        rep = flag.group_consistency(
            table.labels(run.labels, a), table.probs(pred_probs, a), groups
        )
        for g in np.flatnonzero(rep.flagged):
            given_v, pred_v = values[rep.given[g]], values[rep.predicted[g]]
            note = (
                f"mixed {col}" if rep.mixed[g] else f"{col}: given {given_v}, model says {pred_v}"
            )
            out.append(
                _GroupFinding(
                    str(rep.groups[g]),
                    note,
                    f"{col}{SPEC_SEP}{given_v}",
                    f"{col}{SPEC_SEP}{pred_v}" if pred_v != given_v else "",
                    float(rep.quality[g]),
                )
            )
    return out


def _group_column_findings(
    df: pd.DataFrame,
    train_rows: np.ndarray,
    run: Run,
    groups: np.ndarray,
    columns: Sequence[str],
) -> list[_GroupFinding]:
    """Groups whose rows differ in one of the manifest ``columns`` (no model involved)."""
    out = []
    for col in columns:
        if col not in df.columns:
            raise InputError(
                [
                    Problem(
                        str(run.manifest_path), f"flag.group_columns: column {col!r} not found", 1
                    )
                ]
            )
        values = df[col].to_numpy()[train_rows]
        for gid in flag.mixed_groups(values, groups):
            counts = pd.Series(values[groups == gid]).value_counts()
            note = f"mixed {col}: " + ", ".join(f"{v} x{n}" for v, n in counts.items())
            out.append(_GroupFinding(str(gid), note))
    return out
