"""Label Studio import, several annotators: every annotation of an export as one label.

``write_annotations`` (``cleaner import labelstudio EXPORT QUEUE --annotations OUT.csv``)
reads a Label Studio JSON export of the tasks :mod:`cleaner.review.labelstudio_export`
wrote and writes each annotation that was not cancelled as one line of the long form
of :mod:`cleaner.formats.annotations` (``sample_id,annotator,label,time``), which
``cleaner ingest csv --annotations`` merges into a manifest as ``annotator:NAME``
columns for CROWDLAB to weigh. The queue is read (checked as ``cleaner apply``
checks it), never written.

The annotation's fields, as Label Studio documents its JSON export
(https://labelstud.io/guide/task_format.html, ``includes/task_format.md`` in
github.com/HumanSignal/label-studio): ``completed_by`` is the "User ID of the user
that created the annotation" (an integer, ``"completed_by": 10`` in its example),
``created_at`` and ``updated_at`` are ISO 8601 times, ``was_cancelled`` marks a
skipped task. Some versions write ``completed_by`` as the user object instead
(``label_studio/data_export/serializers.py``: ``completed_by = UserSerializer()``
with the fields ``id, email, first_name, last_name``). The annotator's name is the
email where the export gives one, else ``labelstudio-user-ID``; the time is
``created_at`` (else ``updated_at``) as given, empty when neither is there.

The label is the class chosen; ``keep`` is the queue row's given label (for a
``group:ID`` row, each train member's own label, as ``cleaner apply`` keeps them).
A class chosen on a ``group:ID`` row labels each train member of the group, as
``apply`` relabels them. ``drop`` and ``unsure`` are no labels: they are counted,
not written. Refused with nothing written, every problem listed: what the decision
import refuses in a task, an annotation without a readable answer, annotator or
time, one annotator twice on one task (a cancelled annotation does not count), and
one annotator giving one sample two labels through two tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleaner.core.errors import InputError, Problem
from cleaner.formats.annotations import Annotation, write_long
from cleaner.formats.manifest import id_key, id_matcher
from cleaner.formats.queue_file import queue_csv_path
from cleaner.review.labelstudio_config import DECISION_CHOICES, cell_text
from cleaner.review.labelstudio_import import (
    ExportTask,
    annotation_choice,
    load_export,
    parse_tasks,
    rows_of,
)

if TYPE_CHECKING:
    from cleaner.review.apply import CheckedQueue

USER_PREFIX = "labelstudio-user-"  # the annotator's name when the export gives no email
NOT_LABELS = ("drop", "unsure")  # answers that say nothing about the class


@dataclass(frozen=True)
class TaskAnnotation:
    """One annotation of a task that was not cancelled, checked."""

    task: int  # index into the tasks :func:`parse_annotations` returns
    name: str  # how messages name it: "annotation 2001", or "annotation 2 of the task"
    annotator: str
    choice: str
    time: str  # ISO 8601 as the export gives it, or ""


@dataclass
class AnnotationsSummary:
    """What ``cleaner import labelstudio --annotations`` wrote."""

    out: Path
    tasks: int = 0
    written: int = 0
    per_annotator: dict[str, int] = field(default_factory=dict)  # lines written, per annotator
    skipped: dict[str, int] = field(default_factory=dict)  # answers that are no label


def annotator_name(completed_by: Any) -> str | None:
    """The annotator of an annotation's ``completed_by``: the user's email, else
    ``labelstudio-user-ID``; None when it names no user."""
    if isinstance(completed_by, dict):
        email = completed_by.get("email")
        if isinstance(email, str) and email.strip():
            return email.strip()
        completed_by = completed_by.get("id")
    if isinstance(completed_by, str) and completed_by.strip().isdigit():
        completed_by = int(completed_by)
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        return f"{USER_PREFIX}{completed_by}"
    return None


def _annotation_name(annotation: Any, j: int) -> str:
    aid = annotation.get("id")
    if isinstance(aid, int | str) and not isinstance(aid, bool) and str(aid):
        return f"annotation {aid}"
    return f"annotation {j + 1} of the task"


def _time(annotation: Any) -> tuple[str, str | None]:
    """(the annotation's time as given, None) or ("", why it is no time)."""
    for key in ("created_at", "updated_at"):
        value = annotation.get(key)
        if value is None or value == "":
            continue
        try:
            datetime.fromisoformat(str(value))
        except ValueError:
            return "", f"{key} {value!r} is not an ISO 8601 time"
        return str(value), None
    return "", None


def parse_annotations(
    tasks: Any, *, file: str
) -> tuple[list[ExportTask], list[TaskAnnotation], list[Problem]]:
    """The tasks of a Label Studio JSON export (already parsed), every annotation of them
    that was not cancelled and passes the checks, and every problem found; pure.

    The problems: a bad task (as :func:`~cleaner.review.labelstudio_import.parse_tasks`
    finds it), an annotation without one readable answer, without a user or with a
    time that is no ISO 8601 time, and one annotator twice on one task (naming both
    annotations). Raises :class:`InputError` only for JSON that is no list of tasks.
    """
    problems: list[Problem] = []
    found: list[ExportTask] = []
    out: list[TaskAnnotation] = []
    for t in parse_tasks(tasks, file=file):
        if isinstance(t, Problem):
            problems.append(t)
            continue
        k = len(found)
        found.append(t)
        seen: dict[str, str] = {}  # annotator (id rule) -> its first annotation of the task
        for j, a in enumerate(t.annotations):
            if a.get("was_cancelled") is True:
                continue  # skipped in Label Studio: no answer
            name = _annotation_name(a, j)
            where = f"{t.task} (sample_id {t.sample_id!r}), {name}"
            choice, why = annotation_choice(a)
            who = annotator_name(a.get("completed_by"))
            time, bad_time = _time(a)
            no_user = None if who is not None else "completed_by names no user (an id or an email)"
            whys = [w for w in (why, no_user, bad_time) if w is not None]
            problems += [Problem(file, f"{where}: {w}") for w in whys]
            if who is not None and (first := seen.setdefault(id_key(who), name)) != name:
                problems.append(
                    Problem(
                        file,
                        f"{t.task} (sample_id {t.sample_id!r}): {who!r} annotated it twice, "
                        f"{first} and {name}; delete or cancel one in Label Studio",
                    )
                )
            elif not whys and choice is not None and who is not None:
                out.append(TaskAnnotation(k, name, who, choice, time))
    return found, out, problems


def write_annotations(
    export_json: str | Path, queue_csv: str | Path, out: str | Path
) -> AnnotationsSummary:
    """``cleaner import labelstudio --annotations OUT``: every annotation, one long-form line.

    The queue (the tasks' rows, their given labels, its classes) must pass ``cleaner
    apply``'s checks; it is not changed. ``out`` is written once everything is
    checked, and never over an existing file. Raises :class:`InputError`, listing
    every problem (see :func:`parse_annotations` and :func:`annotation_lines`).
    """
    from cleaner.review.apply import check_queue

    out = Path(out)
    if out.exists():
        raise InputError([Problem(str(out), "already exists; pass another --annotations")])
    checked = check_queue(queue_csv_path(queue_csv))
    export = str(Path(export_json))
    tasks, annotations, problems = parse_annotations(load_export(export_json), file=export)
    summary = AnnotationsSummary(out, tasks=len(tasks))
    lines = annotation_lines(
        tasks, annotations, checked, export=export, summary=summary, problems=problems
    )
    write_long(out, lines)
    return summary


def annotation_lines(
    tasks: Sequence[ExportTask],
    annotations: Sequence[TaskAnnotation],
    checked: CheckedQueue,
    *,
    export: str,
    summary: AnnotationsSummary,
    problems: Sequence[Problem] = (),
) -> list[Annotation]:
    """The long form's lines of ``annotations``, in the export's order; counted in ``summary``.

    Raises :class:`InputError` listing ``problems`` (those :func:`parse_annotations`
    found) and these: a task whose sample is not in the queue, an answer that is no
    class and no decision, and one annotator giving one sample two labels in two
    tasks (the same label twice is written once).
    """
    rows, not_in_queue = rows_of(tasks, checked.table, export=export)
    problems = [*problems, *not_in_queue]
    samples = _SampleLabels(checked)
    lines: dict[tuple[str, str], tuple[Annotation, TaskAnnotation]] = {}
    for a in annotations:
        t, row = tasks[a.task], rows[a.task]
        if row < 0:
            continue  # not in the queue: named by rows_of
        if a.choice in NOT_LABELS:
            summary.skipped[a.choice] = summary.skipped.get(a.choice, 0) + 1
            continue
        if a.choice != "keep" and a.choice not in checked.meta.classes:
            problems.append(
                Problem(
                    export,
                    f"{t.task} (sample_id {t.sample_id!r}), {a.name}: answer {a.choice!r} is "
                    f"not a class of the queue nor one of {', '.join(DECISION_CHOICES)}",
                )
            )
            continue
        for sid, given in samples.of(row):
            label = given if a.choice == "keep" else a.choice
            if not label:
                summary.skipped["keep (no given label)"] = (
                    summary.skipped.get("keep (no given label)", 0) + 1
                )
                continue
            key = (id_key(sid), id_key(a.annotator))
            seen = lines.get(key)
            if seen is None:
                lines[key] = (Annotation(sid, a.annotator, label, a.time), a)
            elif seen[0].label != label:
                other = tasks[seen[1].task]
                problems.append(
                    Problem(
                        export,
                        f"{a.annotator!r} labels sample {sid!r} {seen[0].label!r} in "
                        f"{other.task} ({seen[1].name}) and {label!r} in {t.task} ({a.name})",
                    )
                )
    if problems:
        raise InputError(problems)
    for line, _ in lines.values():
        summary.per_annotator[line.annotator] = summary.per_annotator.get(line.annotator, 0) + 1
    summary.written = len(lines)
    return [line for line, _ in lines.values()]


class _SampleLabels:
    """The samples a queue row stands for, each with its given label: a sample row its
    own sample (the manifest's spelling of the id) and the row's ``given_label``; a
    ``group:ID`` row the group's train members, each with its own label."""

    def __init__(self, checked: CheckedQueue):
        from cleaner.formats.issue_kinds import GROUP_PREFIX

        self.prefix = GROUP_PREFIX
        self.records = checked.table.to_dict("records")
        manifest = checked.manifest
        self.match = id_matcher(manifest["sample_id"].astype(str).tolist())
        self.members: dict[str, list[tuple[str, str]]] = {}
        group = checked.meta.group_column
        if group and group in manifest.columns:
            for sid, label, g, split in zip(
                manifest["sample_id"], manifest["label"], manifest[group], manifest["split"],
                strict=True,
            ):  # fmt: skip
                if split == "train":
                    self.members.setdefault(str(g), []).append((str(sid), str(label).strip()))

    def of(self, row: int) -> list[tuple[str, str]]:
        """(sample_id, given label) of each sample queue row ``row`` (0-based) stands for."""
        record = self.records[row]
        sid = cell_text(record, "sample_id")
        if sid.startswith(self.prefix):
            return self.members.get(sid[len(self.prefix) :], [])
        return [(self.match(sid) or sid, cell_text(record, "given_label"))]
