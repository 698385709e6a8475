"""Reviewer decisions: read a filled queue, check it, fold it into a new manifest version.

The queue may have been through a spreadsheet: a UTF-8 BOM, ``;`` or tab as
delimiter, decisions in any case with stray spaces, rows reordered or deleted
and extra columns are all fine. Unknown decision words, a ``new_label`` that
is not a class, a decision that does not fit the row's issue kind (a leakage
row is only kept or dropped; an outlier has no suggestion to accept), a
``sample_id`` not in the manifest, one sample with two
different decisions, and a queue made from another manifest version are
errors, all listed at once; nothing is written unless the whole queue is valid.

``apply_decisions`` and ``replay_audit`` are pure: the audit records that
``apply_decisions`` returns, replayed on the old version, give the new version.
The files have their own homes: the queue's in :mod:`cleaner.formats.queue_file`, the
audit log's (records, append and commit, read, replay) in :mod:`cleaner.formats.audit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleaner.core.errors import InputError, Problem
from cleaner.core.project_lock import project_lock
from cleaner.formats.attributes import SPEC_SEP, SPECS_SEP, AttributeTable
from cleaner.formats.audit import (
    ACTIONS,
    append_records,
    audit_context,
    audit_record,
    read_audit_log,
)
from cleaner.formats.audit import (
    replay_audit as replay_audit,  # re-exported: apply_decisions' inverse
)
from cleaner.formats.issue_kinds import GROUP_PREFIX, refusal
from cleaner.formats.manifest import (
    audit_log_path,
    id_matcher,
    line_of,
    next_version_path,
    read_manifest,
    sha256_file,
)
from cleaner.formats.queue_file import QueueMeta, queue_csv_path, read_queue_meta, read_queue_table
from cleaner.formats.repoint import repoint_chain
from cleaner.review.answers import annotator_columns, answer_column, record_answer

DEFAULT_UNSURE_FACTOR = 0.5  # an unsure row still trains, at half weight


@dataclass(frozen=True)
class Decision:
    """One reviewed queue row, checked; ``new_label`` is resolved for ``relabel``."""

    line: int
    queue_id: str  # the queue's sample_id: a sample, or group:ID for a whole group
    action: str
    new_label: str = ""
    label_quality: float | None = None


@dataclass
class ApplySummary:
    counts: dict[str, int] = field(default_factory=dict)  # per action, plus "not reviewed"
    rows_changed: int = 0
    new_manifest: Path | None = None  # the version written, or the same one when none was
    audit_log: Path | None = None
    wrote_version: bool = True  # False: every decision kept its row as it was
    already_applied: bool = False  # ``reuse_applied``: the version was there, identical


def parse_decisions(
    table: pd.DataFrame,
    *,
    file: str,
    classes: Sequence[str],
    manifest: pd.DataFrame,
    group: str = "",
    attributes: AttributeTable | None = None,
) -> tuple[list[Decision], int]:
    """Checked decisions of the reviewed rows, and how many rows were not reviewed.

    A decision must fit the row's ``issue`` kind (:func:`cleaner.formats.issue_kinds.refusal`);
    ``cleaner review`` checks each decision through here too, so both refuse alike.
    """
    queue_id = _id_resolver(manifest, group)
    known = set(classes)
    problems: list[Problem] = []
    decisions: list[Decision] = []
    blank = 0
    lines = table.attrs.get("lines") or [line_of(i) for i in range(len(table))]
    for line, r in zip(lines, table.to_dict("records"), strict=True):
        action = r["decision"].strip().lower()
        if not action:
            blank += 1
            continue
        found = _row_decision(r, action, line, queue_id, known, attributes)
        if isinstance(found, str):
            problems.append(Problem(file, found, line))
        else:
            decisions.append(found)
    if problems:
        raise InputError(problems)
    return decisions, blank


def _id_resolver(manifest: pd.DataFrame, group: str) -> Callable[[str], tuple[str, str | None]]:
    """A queue row's ``sample_id`` cell -> (the queue id it names, or why it names none).

    A ``group:ID`` names a group of the manifest's ``group`` column; any other id
    the manifest's one id it trims to, which must not be a test row.
    """
    split_of = dict(zip(manifest["sample_id"], manifest["split"], strict=True))
    match = id_matcher(split_of)
    groups = set(manifest[group]) if group and group in manifest.columns else set()

    def resolve(cell: str) -> tuple[str, str | None]:
        if cell.strip().startswith(GROUP_PREFIX):
            queue_id = cell.strip()
            if queue_id[len(GROUP_PREFIX) :] not in groups:
                return queue_id, f"group {queue_id[len(GROUP_PREFIX) :]!r} is not in the manifest"
            return queue_id, None
        found = match(cell)
        if found is None:
            return cell, f"sample_id {cell.strip()!r} is not in the manifest"
        sid = str(found)
        if split_of[sid] == "test":
            return sid, f"sample_id {sid!r} is a test row: test rows are predicted, never cleaned"
        return sid, None

    return resolve


def _row_decision(
    r: Mapping[Any, Any],
    action: str,
    line: int,
    queue_id: Callable[[str], tuple[str, str | None]],
    known: set[str],
    attributes: AttributeTable | None,
) -> Decision | str:
    """One reviewed row's decision, or why it is refused."""
    if action not in ACTIONS:
        return (
            f"unknown decision {r['decision']!r}; use one of "
            f"{', '.join(ACTIONS)} (or leave it blank)"
        )
    sid, why = queue_id(r["sample_id"])
    if why is not None:
        return why
    # Which decisions fit depends on the row's kind: a leakage row is only kept or
    # dropped, and a kind without a suggestion needs its class written out (an older
    # queue may still carry a suggested_label on such a row: it is not one).
    why = refusal(str(r.get("issue", "")), action, r["new_label"])
    if why is not None:
        return why
    new_label = ""
    if action == "relabel":
        new_label = r["new_label"].strip() or r["suggested_label"].strip()
        if not new_label:
            return "relabel needs new_label (or a suggested_label)"
        if new_label not in known and not (attributes and attributes.parse_specs(new_label)):
            return f"new_label {new_label!r} is not a class"
    return Decision(line, sid, action, new_label, _label_quality(r["label_quality"]))


def _label_quality(cell: str) -> float | None:
    """The row's label quality, or None when blank or not a number."""
    try:
        # A spreadsheet that writes ``;`` as delimiter writes ``,`` as decimal mark.
        text = cell.strip().replace(",", ".")
        return float(text) if text else None
    except ValueError:
        return None


def expand_decisions(
    decisions: Iterable[Decision],
    manifest: pd.DataFrame,
    *,
    file: str,
    group: str = "",
    attributes: AttributeTable | None = None,
) -> dict[int, Decision]:
    """Manifest position -> decision; a group row covers the group's train rows.

    The same sample reached twice with different decisions is an error, except
    two relabels of different attributes (``gender=female`` for a person's
    group row, ``mask=incorrect`` for one of the photos), which compose into one.
    """
    position = {sid: i for i, sid in enumerate(manifest["sample_id"])}
    train = (manifest["split"] == "train").to_numpy()
    out: dict[int, Decision] = {}
    problems = []
    for d in decisions:
        if d.queue_id.startswith(GROUP_PREFIX):
            gid = d.queue_id[len(GROUP_PREFIX) :]
            rows = np.flatnonzero((manifest[group] == gid).to_numpy() & train).tolist()
        else:
            rows = [position[d.queue_id]]
        for p in rows:
            seen = out.get(p)
            both = compose_attribute_relabels(seen, d, attributes) if seen is not None else None
            if both is not None:
                out[p] = both
            elif seen is not None and (seen.action, seen.new_label) != (d.action, d.new_label):
                sid = manifest["sample_id"].iat[p]
                problems.append(
                    Problem(
                        file,
                        f"sample {sid!r} gets two decisions: "
                        f"{_words(seen)} on line {seen.line} and {_words(d)}",
                        d.line,
                    )
                )
            elif seen is None:
                out[p] = d
    if problems:
        raise InputError(problems)
    return out


def compose_attribute_relabels(
    first: Decision, second: Decision, attributes: AttributeTable | None
) -> Decision | None:
    """One relabel doing both, when both set attributes and none to two values; else None."""
    if attributes is None or first.action != "relabel" or second.action != "relabel":
        return None
    one, two = attributes.parse_specs(first.new_label), attributes.parse_specs(second.new_label)
    if one is None or two is None:
        return None  # a whole class: nothing to compose
    merged = dict(one)
    for a, v in two:
        if merged.setdefault(a, v) != v:
            return None  # one attribute set to two values
    if len(merged) == len(one):
        return first  # the second adds nothing
    return Decision(
        first.line,
        f"{first.queue_id} {SPECS_SEP} {second.queue_id}",  # the audit log names both rows
        "relabel",
        SPECS_SEP.join(
            f"{attributes.names[a]}{SPEC_SEP}{attributes.values[a][v]}" for a, v in merged.items()
        ),
        min(
            (q for q in (first.label_quality, second.label_quality) if q is not None),
            default=None,
        ),
    )


def _words(d: Decision) -> str:
    return f"relabel to {d.new_label!r}" if d.action == "relabel" else d.action


def apply_decisions(
    manifest: pd.DataFrame,
    decided: Mapping[int, Decision],
    *,
    unsure_factor: float = DEFAULT_UNSURE_FACTOR,
    context: Mapping[str, Any] | None = None,
    classes: Sequence[str] = (),
    attributes: AttributeTable | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The next manifest version and one audit record per decided row (in manifest order).

    ``relabel`` sets ``label`` (an ``unlabeled`` row becomes ``train``);
    ``drop`` sets ``split = excluded`` (the row
    stays); ``unsure`` multiplies ``weight`` by ``unsure_factor``; ``keep``
    changes nothing but is recorded. Rows without a decision are untouched. A
    ``new_label`` of the form ``attribute=value`` (composite labels, with
    ``attributes`` and ``classes``) changes only that attribute of each row's class.
    """
    cols = {c: manifest[c].to_numpy(dtype=object, copy=True) for c in ("label", "split", "weight")}
    # Attribute columns follow the label: a gender relabel rewrites the gender column too.
    attr_cols = [c for c in (attributes.names if attributes else ()) if c in manifest.columns]
    for c in attr_cols:
        cols[c] = manifest[c].to_numpy(dtype=object, copy=True)
    ids = manifest["sample_id"].to_numpy(dtype=object)
    # Several labels per row: an answer is one more annotation, the label their consensus.
    annotated = bool(annotator_columns(manifest)) and attributes is None
    reviewer = str((context or {}).get("reviewer", ""))
    records = []
    for p in sorted(decided):
        d = decided[p]
        old_label = str(cols["label"][p])
        changed: dict[str, str] = {}
        if annotated and d.action in ("keep", "relabel"):
            answer = d.new_label if d.action == "relabel" else old_label
            cols["label"][p] = record_answer(cols, manifest, p, answer, reviewer)
            changed[answer_column(reviewer)] = answer  # the audit log replays it
        if d.action == "relabel" and not annotated:
            cols["label"][p] = _relabel(old_label, d.new_label, classes, attributes, str(ids[p]))
            if attributes is not None and cols["label"][p] in classes:
                k = list(classes).index(cols["label"][p])
                for c in attr_cols:
                    v = attributes.codes[k, attributes.names.index(c)]
                    value = attributes.values[attributes.names.index(c)][v] if v >= 0 else ""
                    if v >= 0 and cols[c][p] != value:
                        cols[c][p] = changed[c] = value
        if d.action == "relabel" and cols["split"][p] == "unlabeled":
            cols["split"][p] = "train"  # a labeled row trains from now on
        if d.action == "drop":
            cols["split"][p] = "excluded"
        elif d.action == "unsure":
            cols["weight"][p] = format(float(cols["weight"][p]) * unsure_factor, ".6g")
        records.append(
            audit_record(
                str(ids[p]),
                old_label=old_label,
                new_label=str(cols["label"][p]),
                action=d.action,
                context=context,
                label_quality=d.label_quality,
                queue_row=d.queue_id,
                split=str(cols["split"][p]),
                weight=str(cols["weight"][p]),
                columns=changed,
            )
        )
    return manifest.assign(**cols), records


def _relabel(
    old: str, new: str, classes: Sequence[str], attributes: AttributeTable | None, sid: str
) -> str:
    """The row's new class: ``new`` itself, or ``old`` with the attributes it names changed."""
    specs = attributes.parse_specs(new) if attributes is not None and new not in classes else None
    if specs is None:
        return new
    assert attributes is not None
    if old not in classes:
        raise InputError(f"{sid}: {new} needs a current class, not {old!r}")
    k = attributes.change_many(np.array([list(classes).index(old)]), specs)[0]
    if k < 0:
        raise InputError(f"{sid}: no class is {old!r} with {new}")
    return classes[int(k)]


@dataclass(frozen=True)
class CheckedQueue:
    """A queue that passed the checks of ``cleaner apply``, and what they read."""

    meta: QueueMeta
    table: pd.DataFrame  # the queue as text, lower-case column names
    manifest: pd.DataFrame  # the manifest version the queue was made from
    decisions: list[Decision]  # the reviewed rows, checked
    blank: int  # rows not reviewed yet


def check_queue(queue_csv: str | Path) -> CheckedQueue:
    """Read a queue and run ``cleaner apply``'s checks on it, writing nothing.

    Raises :class:`InputError` naming file, line and reason: ``queue.json``
    missing, the manifest missing or changed since the queue was made
    (sha256), unknown decisions, a bad ``new_label``, unknown sample ids or
    groups. One sample reached by two different decisions is left to
    :func:`expand_decisions`, since a reviewer can still resolve it.
    """
    queue_csv = queue_csv_path(queue_csv)
    meta = read_queue_meta(queue_csv)
    table = read_queue_table(queue_csv)
    if not meta.manifest.is_file():
        raise InputError([Problem(str(meta.manifest), "manifest of the queue not found")])
    current = sha256_file(meta.manifest)
    if current != meta.manifest_sha256:
        raise InputError(
            [
                Problem(
                    str(queue_csv),
                    f"made from manifest version sha256 "
                    f"{meta.manifest_sha256[:12]}..., but {meta.manifest} is now "
                    f"{current[:12]}...: a queue from another manifest version",
                )
            ]
        )
    meta = after_repoints(meta)
    manifest = read_manifest(meta.manifest)
    decisions, blank = parse_decisions(
        table,
        file=str(queue_csv),
        classes=meta.classes,
        manifest=manifest,
        group=meta.group_column,
        attributes=meta.attributes,
    )
    return CheckedQueue(meta, table, manifest, decisions, blank)


def after_repoints(meta: QueueMeta) -> QueueMeta:
    """``meta`` moved on to the newest version of its manifest when ``cleaner repoint``
    alone made the versions since (the labels are the same; the images moved): the
    decisions then apply there, and the review page finds the images."""
    if next_version_path(meta.manifest).exists():
        end = repoint_chain(meta.manifest, read_audit_log(audit_log_path(meta.manifest)))[-1]
        if end != meta.manifest:
            return dataclasses.replace(meta, manifest=end, manifest_sha256=sha256_file(end))
    return meta


def apply_queue(
    queue_csv: str | Path,
    *,
    reviewer: str = "",
    unsure_factor: float = DEFAULT_UNSURE_FACTOR,
    reuse_applied: bool = False,
) -> ApplySummary:
    """``cleaner apply``: check the whole queue, then write ``NAME.vN.csv`` and the audit log.

    ``reuse_applied`` (``retrain --queue``, so that it resumes): when the next
    version already exists with exactly what this queue makes, it is taken as it
    is and nothing is written.
    """
    queue_csv = queue_csv_path(queue_csv)
    _check_unsure_factor(unsure_factor)
    # From the manifest's hash check to the commit, no other apply of this folder runs:
    # a second queue of the same version then finds the version the first one made.
    folder = read_queue_meta(queue_csv).manifest.parent
    with project_lock(folder, f"cleaner apply {queue_csv}"):
        return _apply_locked(
            queue_csv, reviewer=reviewer, unsure_factor=unsure_factor, reuse_applied=reuse_applied
        )


def _apply_locked(
    queue_csv: Path, *, reviewer: str, unsure_factor: float, reuse_applied: bool
) -> ApplySummary:
    """:func:`apply_queue` once it holds the lock of the manifest's folder."""
    checked = check_queue(queue_csv)
    meta, manifest, file = checked.meta, checked.manifest, str(queue_csv)
    log = audit_log_path(meta.manifest)
    logged = read_audit_log(log)  # the check flag makes: a damaged log is refused, not extended
    if not checked.decisions:
        raise InputError(
            [
                Problem(
                    file,
                    f"no decision is filled in ({checked.blank} rows blank): nothing to apply",
                )
            ]
        )
    decided = expand_decisions(
        checked.decisions, manifest, file=file, group=meta.group_column, attributes=meta.attributes
    )
    target = next_version_path(meta.manifest)
    new, records = apply_decisions(
        manifest,
        decided,
        unsure_factor=unsure_factor,
        context=_audit_context(meta, reviewer),
        classes=meta.classes,
        attributes=meta.attributes,
    )
    records = mark_audit_slice(records, meta)
    # All keeps change no row: their lines go to the log (so those rows are not
    # queued again) and name the version they were applied to; no new version.
    changed = not new.equals(manifest)
    data = new.to_csv(index=False, lineterminator="\n").encode("utf-8")
    version, version_sha = (
        (target, hashlib.sha256(data).hexdigest())
        if changed
        else (meta.manifest, meta.manifest_sha256)
    )
    summary = _apply_summary(checked, records, version, wrote_version=changed)
    if not changed and _already_logged(records, logged, version.name, version_sha):
        # The same keeps applied again: the log holds them for this version already.
        return dataclasses.replace(summary, already_applied=True)
    if changed and target.exists():
        if reuse_applied and target.read_bytes() == data:
            # This queue made this version before (a retrain killed after the apply):
            # take it as it is, and log nothing twice.
            return dataclasses.replace(summary, wrote_version=False, already_applied=True)
        raise InputError(
            [
                Problem(
                    str(target),
                    "already exists: was this queue applied before? "
                    "flag the newest version for the next round "
                    f"(or another queue of {meta.manifest.name} was applied first: "
                    "review this one's rows again in a queue of the newest version)",
                )
            ]
        )
    append_records(
        log,
        records,
        version=version,
        version_sha256=version_sha,
        version_data=data if changed else None,
    )
    return summary


# What makes two audit records the same decision (``reviewer`` and ``time`` do not).
_DECISION_FIELDS = ("sample_id", "action", "old_label", "new_label", "queue_row", "split", "weight")


def _already_logged(
    records: Sequence[Mapping[str, Any]],
    logged: Sequence[Mapping[str, Any]],
    version: str,
    version_sha256: str,
) -> bool:
    """Whether every record is in the log already, as a decision on the same version."""

    def key(r: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(str(r.get(f, "")) for f in _DECISION_FIELDS)

    done = {
        key(r)
        for r in logged
        if r.get("version") == version and r.get("version_sha256") == version_sha256
    }
    return bool(records) and all(key(r) in done for r in records)


def _check_unsure_factor(unsure_factor: float) -> None:
    if not unsure_factor > 0:  # NaN fails too
        raise InputError(f"--unsure-factor must be positive, got {unsure_factor}")
    if unsure_factor > 1:
        raise InputError(
            f"--unsure-factor must be at most 1: it lowers an unsure row's weight, "
            f"got {unsure_factor}"
        )


def mark_audit_slice(records: list[dict[str, Any]], meta: QueueMeta) -> list[dict[str, Any]]:
    """The records of the rows ``flag --audit`` drew at random, marked ``audit``: ``added``
    (queued only because it was drawn) or ``ranked`` (the ranking queued it too). The
    retrain report measures the labels and the models on them (final.audit_scores)."""
    kind = {s: "added" for s in meta.audit_added} | {s: "ranked" for s in meta.audit_ranked}
    return [{**r, "audit": kind[r["sample_id"]]} if r["sample_id"] in kind else r for r in records]


def _audit_context(meta: QueueMeta, reviewer: str) -> dict[str, Any]:
    """The audit fields every record of this apply shares."""
    # manifest_sha256: queue.json's, checked equal to the file's.
    run = meta.runs[0] if meta.runs else ""
    return audit_context(reviewer=reviewer, manifest_sha256=meta.manifest_sha256, run=run)


def _apply_summary(
    checked: CheckedQueue,
    records: Sequence[Mapping[str, Any]],
    version: Path,
    *,
    wrote_version: bool,
) -> ApplySummary:
    """What ``cleaner apply`` prints: queue rows per decision, manifest rows changed."""
    counts = Counter(d.action for d in checked.decisions)
    return ApplySummary(
        counts={a: counts.get(a, 0) for a in ACTIONS} | {"not reviewed": checked.blank},
        rows_changed=sum(
            r["old_label"] != r["new_label"] or r["action"] in ("drop", "unsure") for r in records
        ),
        new_manifest=version,
        audit_log=audit_log_path(checked.meta.manifest),
        wrote_version=wrote_version,
    )
