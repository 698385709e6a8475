"""Label Studio import: the answers of a Label Studio export written into the queue.

``import_export`` reads a Label Studio JSON *export* of the tasks
:mod:`cleaner.review.labelstudio_export` wrote and writes each task's chosen
answer into the queue's ``decision`` and ``new_label`` cells, so that
``cleaner apply`` takes it from there exactly as it takes a queue filled in a
spreadsheet or in ``cleaner review``.

The export file, as Label Studio documents it (its source is ``docs/source/...``
in github.com/HumanSignal/label-studio): a list of tasks with ``id``, ``data``
(as imported) and ``annotations``, each with ``id``, ``result`` (the same result
objects as the predictions), ``was_cancelled`` (skipped), ``created_at``,
``updated_at``, ``completed_by``:
https://labelstud.io/guide/task_format.html (``includes/task_format.md``).

The answers are the classes (from ``queue.json``), then ``keep``, ``drop`` and
``unsure``. Back in the queue a class is a ``relabel`` to it, or ``keep`` when
it is the given label. Of a task's annotations that were not cancelled, the
one saved last counts (``updated_at``, else ``created_at``; the export's order
breaks ties); a task without one is left undecided. Nothing is written unless
every task maps to a queue row and the queue with the new decisions passes
``cleaner apply``'s checks (checked on the new text before it replaces the file);
a decision already in the queue is only replaced by a different one with ``force``.
The queue is rewritten as ``cleaner review`` rewrites it: header, columns, row
order, blank lines, delimiter, BOM, line ending and file mode kept, only the two
decision cells of a decided row changed.
``cleaner import labelstudio --annotations`` reads every annotation instead, one
label per annotator (:mod:`cleaner.review.labelstudio_annotations`); both take the
tasks from :func:`parse_tasks`.

Heavy libraries stay out of this module's imports: ``cleaner.review.apply`` (the
queue's checks) is imported by the functions that need it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleaner.core.errors import InputError, Problem, not_utf8
from cleaner.core.project_lock import project_lock
from cleaner.formats.queue_file import QueueChanged, QueueText, queue_csv_path, replace_queue
from cleaner.review.labelstudio_config import CONTROL, DECISION_CHOICES, cell_text

if TYPE_CHECKING:
    import pandas as pd

    from cleaner.review.apply import CheckedQueue


@dataclass(frozen=True)
class TaskChoice:
    """What one task of a Label Studio export says: its answer, or None (not annotated)."""

    task: str  # how messages name it: "task 12" (Label Studio's id) or "task 3 in the file"
    sample_id: str
    queue_row: int | None
    choice: str | None


def _task_name(task: Mapping[str, Any], i: int) -> str:
    tid = task.get("id")
    if isinstance(tid, int | str) and not isinstance(tid, bool) and str(tid):
        return f"task {tid}"
    return f"task {i + 1} in the file"


def annotation_choice(annotation: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(the annotation's choice, None) or (None, why it has no readable one)."""
    result = annotation.get("result")
    if not isinstance(result, list):
        return None, "an annotation without a result list"
    picks = [r for r in result if isinstance(r, dict) and r.get("from_name") == CONTROL]
    if not picks:
        return None, f"its annotation chose nothing in {CONTROL!r}"
    if len(picks) > 1:
        return None, f"its annotation has {len(picks)} results for {CONTROL!r}; give one"
    pick = picks[0]
    value = pick.get("value")
    choices = value.get("choices") if isinstance(value, dict) else None
    if pick.get("type") != "choices" or not isinstance(choices, list):
        return None, f"its {CONTROL!r} result is not a choices result"
    if len(choices) != 1 or not isinstance(choices[0], str):
        return None, f"its annotation chose {len(choices)} answers; choose one"
    return choices[0], None


@dataclass(frozen=True)
class ExportTask:
    """One task of a Label Studio export, checked as far as every reader needs: its sample,
    the queue row it was exported from, and its annotations as Label Studio wrote them."""

    task: str  # how messages name it: "task 12" (Label Studio's id) or "task 3 in the file"
    sample_id: str
    queue_row: int | None
    annotations: tuple[Mapping[str, Any], ...]  # as the export holds them, cancelled ones too

    @property
    def done(self) -> tuple[Mapping[str, Any], ...]:
        """The annotations that were not cancelled (skipped), in the export's order."""
        return tuple(a for a in self.annotations if a.get("was_cancelled") is not True)

    @property
    def latest(self) -> Mapping[str, Any] | None:
        """The annotation that counts: the one saved last (``updated_at``, else
        ``created_at``, then ``id``). Label Studio does not sort an export's annotations
        (on PostgreSQL their order is not guaranteed), so the export's order is only the
        tie-break."""

        def saved(k: int) -> tuple[str, int, int]:
            a = self.done[k]
            when = a.get("updated_at") or a.get("created_at")
            ident = a.get("id")
            number = ident if isinstance(ident, int) and not isinstance(ident, bool) else -1
            return (when if isinstance(when, str) else "", number, k)

        return self.done[max(range(len(self.done)), key=saved)] if self.done else None


def parse_tasks(tasks: Any, *, file: str) -> list[ExportTask | Problem]:
    """Each task of a Label Studio JSON export (already parsed), or the problem that stops it.

    A task needs ``data.sample_id`` (every task ``cleaner export labelstudio``
    writes has it); ``queue_row`` tells two queue rows of one sample apart. Both
    readers of an export take it from here: :func:`parse_export` (one answer per
    task) and :mod:`cleaner.review.labelstudio_annotations` (every annotation).
    Raises :class:`InputError` when ``tasks`` is not a list of tasks at all.
    """
    if not isinstance(tasks, list):
        raise InputError(
            [Problem(file, "not a Label Studio JSON export: expected a list of tasks")]
        )
    out: list[ExportTask | Problem] = []
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            out.append(Problem(file, f"task {i + 1} in the file is not a JSON object"))
            continue
        name = _task_name(task, i)
        data = task.get("data")
        data = data if isinstance(data, dict) else {}
        sid = data.get("sample_id")
        if not isinstance(sid, str | int) or isinstance(sid, bool) or not str(sid).strip():
            out.append(
                Problem(
                    file,
                    f"{name}: no data.sample_id; import the tasks that "
                    "`cleaner export labelstudio` wrote",
                )
            )
            continue
        raw_row = data.get("queue_row")
        queue_row = raw_row if isinstance(raw_row, int) and not isinstance(raw_row, bool) else None
        annotations = task.get("annotations", [])
        if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
            out.append(Problem(file, f"{name}: annotations is not a list of objects"))
            continue
        out.append(ExportTask(name, str(sid), queue_row, tuple(annotations)))
    return out


def parse_export(tasks: Any, *, file: str) -> list[TaskChoice]:
    """The tasks of a Label Studio JSON export (already parsed), checked; pure.

    See :func:`parse_tasks`. Cancelled annotations are ignored; of the others the
    last counts. Raises :class:`InputError` listing every bad task.
    """
    problems: list[Problem] = []
    out: list[TaskChoice] = []
    for t in parse_tasks(tasks, file=file):
        if isinstance(t, Problem):
            problems.append(t)
            continue
        choice = None
        if t.latest is not None:
            choice, why = annotation_choice(t.latest)
            if why is not None:
                problems.append(Problem(file, f"{t.task} (sample_id {t.sample_id!r}): {why}"))
                continue
        out.append(TaskChoice(t.task, t.sample_id, t.queue_row, choice))
    if problems:
        raise InputError(problems)
    return out


def load_export(export_json: str | Path) -> Any:
    """The JSON of a Label Studio export file, not yet checked (see :func:`parse_tasks`)."""
    path = Path(export_json)
    if not path.is_file():
        raise InputError([Problem(str(path), "Label Studio export not found")])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError([not_utf8(path, "export", save_as="JSON (UTF-8)")]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(
            [Problem(str(path), f"not valid JSON: {e.msg} (column {e.colno})", e.lineno)]
        ) from None
    except RecursionError:  # thousands of nested brackets: malformed, not a crash
        raise InputError([Problem(str(path), "not valid JSON: nested too deeply")]) from None
    except ValueError as e:  # an integer of thousands of digits: Python's int limit
        raise InputError([Problem(str(path), f"not a Label Studio export: {e}")]) from None


def read_export(export_json: str | Path) -> list[TaskChoice]:
    """Read and check a Label Studio JSON export file (see :func:`parse_export`)."""
    return parse_export(load_export(export_json), file=str(Path(export_json)))


@dataclass
class ImportSummary:
    """What ``cleaner import labelstudio`` did to the queue."""

    queue: Path
    tasks: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # decisions written, per action
    unchanged: int = 0  # the queue held the same decision already
    not_annotated: int = 0  # no annotation, or only cancelled ones
    replaced: int = 0  # another decision replaced (with force)
    wrote: bool = False


def _decision(choice: str, given: str, classes: Sequence[str]) -> tuple[str, str] | None:
    """A Label Studio answer as the queue's (decision, new_label); None if it is neither."""
    if choice in DECISION_CHOICES:
        return choice, ""
    if choice in classes:
        return ("keep", "") if choice == given else ("relabel", choice)
    return None


def _current(row: Mapping[Any, Any]) -> tuple[str, str]:
    """The row's decision as apply reads it: a relabel with a blank new_label is the suggestion."""
    from cleaner.formats.issue_kinds import has_suggestion

    action = cell_text(row, "decision").lower()
    if action != "relabel":
        return action, ""
    label = cell_text(row, "new_label")
    if not label and has_suggestion(cell_text(row, "issue")):
        label = cell_text(row, "suggested_label")
    return action, label


def _words(decision: tuple[str, str]) -> str:
    action, label = decision
    return f"relabel to {label!r}" if action == "relabel" else action


def rows_of(
    choices: Sequence[TaskChoice | ExportTask], table: pd.DataFrame, *, export: str
) -> tuple[list[int], list[Problem]]:
    """The queue row (0-based) of each task, by sample_id (and queue_row where one id
    has several rows), and the tasks that match none."""
    from cleaner.formats.manifest import id_key

    by_id: dict[str, list[int]] = {}
    for i, sid in enumerate(table["sample_id"]):
        by_id.setdefault(id_key(str(sid)), []).append(i)  # the id rule of every reader
    ranks = [str(r).strip() for r in table["rank"]] if "rank" in table.columns else None
    rows, problems = [], []
    for t in choices:
        found = by_id.get(id_key(t.sample_id), [])
        if len(found) > 1:
            found = [
                i
                for i in found
                if t.queue_row is not None
                and (ranks[i] == str(t.queue_row) if ranks is not None else i + 1 == t.queue_row)
            ]
        if not found:
            problems.append(
                Problem(export, f"{t.task}: sample_id {t.sample_id!r} is not in the queue")
            )
        elif len(found) > 1:
            problems.append(
                Problem(
                    export,
                    f"{t.task}: sample_id {t.sample_id!r} is on {len(found)} queue rows "
                    "and its queue_row names none of them",
                )
            )
        rows.append(found[0] if len(found) == 1 else -1)
    return rows, problems


def import_export(
    export_json: str | Path, queue_csv: str | Path, *, force: bool = False
) -> ImportSummary:
    """``cleaner import labelstudio``: write a Label Studio export's answers into the queue.

    Raises :class:`InputError` (nothing written) for a bad export, a task whose
    sample is not in the queue, an answer that is no class and no decision,
    two tasks deciding one row differently, a queue decision that another one
    would replace (unless ``force``), and a result that ``cleaner apply`` would
    refuse (a leakage row relabelled, a test row, ...).
    """
    queue_csv = queue_csv_path(queue_csv)
    # The queue's folder lock from reading the queue to replacing it: a review page's
    # decision written meanwhile is neither lost nor written over.
    with project_lock(queue_csv.parent, f"cleaner import labelstudio {queue_csv}"):
        return _import_locked(export_json, queue_csv, force=force)


def _import_locked(export_json: str | Path, queue_csv: Path, *, force: bool) -> ImportSummary:
    """:func:`import_export` once it holds the lock of the queue's folder."""
    from cleaner.review.apply import check_queue

    checked = check_queue(queue_csv)  # the queue as it is must already be a valid one
    choices = read_export(export_json)
    raw = QueueText.read(queue_csv)
    raw.check_rows(checked.table, str(queue_csv))
    summary = ImportSummary(queue_csv, tasks=len(choices))
    wanted = _answers(choices, checked, export=str(export_json), summary=summary)
    changes = _changes(wanted, checked, file=str(queue_csv), force=force, summary=summary)
    for new, _ in changes.values():
        summary.counts[new[0]] = summary.counts.get(new[0], 0) + 1
    if not changes:
        return summary
    lines = _lines(checked.table)
    _write_checked(
        queue_csv,
        raw,
        raw.with_decisions({i: new for i, (new, _) in changes.items()}).render(),
        checked,
        task_of_line={lines[i]: t.task for i, (_, t) in changes.items()},
    )
    summary.wrote = True
    return summary


def _lines(table: pd.DataFrame) -> list[int]:
    """The file line of each queue row."""
    lines: list[int] = table.attrs.get("lines") or [i + 2 for i in range(len(table))]
    return lines


def _answers(
    choices: Sequence[TaskChoice], checked: CheckedQueue, *, export: str, summary: ImportSummary
) -> dict[int, tuple[tuple[str, str], TaskChoice]]:
    """Queue row (0-based) -> the (decision, new_label) its task answers, and the task.

    Counts the tasks without an answer in ``summary``; raises :class:`InputError`
    for tasks that match no row, answers that are no class, and rows two tasks
    decide differently.
    """
    table, lines = checked.table, _lines(checked.table)
    rows, problems = rows_of(choices, table, export=export)
    records = table.to_dict("records")
    wanted: dict[int, tuple[tuple[str, str], TaskChoice]] = {}
    for t, i in zip(choices, rows, strict=True):
        if i < 0:
            continue
        if t.choice is None:
            summary.not_annotated += 1
            continue
        new = _decision(t.choice, cell_text(records[i], "given_label"), checked.meta.classes)
        if new is None:
            problems.append(
                Problem(
                    export,
                    f"{t.task} (sample_id {t.sample_id!r}): answer {t.choice!r} is not a class "
                    f"of the queue nor one of {', '.join(DECISION_CHOICES)}",
                )
            )
            continue
        seen = wanted.get(i)
        if seen is not None and seen[0] != new:
            problems.append(
                Problem(
                    export,
                    f"{t.task} and {seen[1].task} decide queue line {lines[i]} "
                    f"({t.sample_id!r}) differently: {_words(new)} and {_words(seen[0])}",
                )
            )
            continue
        wanted[i] = (new, t)
    if problems:
        raise InputError(problems)
    return wanted


def _changes(
    wanted: Mapping[int, tuple[tuple[str, str], TaskChoice]],
    checked: CheckedQueue,
    *,
    file: str,
    force: bool,
    summary: ImportSummary,
) -> dict[int, tuple[tuple[str, str], TaskChoice]]:
    """The answers that change the queue; a decision it holds is replaced only with ``force``.

    Counts the unchanged and replaced rows in ``summary``.
    """
    records, lines = checked.table.to_dict("records"), _lines(checked.table)
    conflicts, changes = [], {}
    for i, (new, t) in sorted(wanted.items()):
        now = _current(records[i])
        if now == new:
            summary.unchanged += 1
            continue
        if now[0]:
            if not force:
                conflicts.append(
                    Problem(
                        file,
                        f"{cell_text(records[i], 'sample_id')!r} is decided {_words(now)} here; "
                        f"{t.task} says {_words(new)} (--force replaces it)",
                        lines[i],
                    )
                )
                continue
            summary.replaced += 1
        changes[i] = (new, t)
    if conflicts:
        raise InputError(conflicts)
    return changes


def _write_checked(
    queue_csv: Path,
    raw: QueueText,
    data: bytes,
    checked: CheckedQueue,
    *,
    task_of_line: Mapping[int, str],
) -> None:
    """Replace the queue with ``data`` once the new text passes ``cleaner apply``'s checks.

    The file keeps its mode; a queue another program changed meanwhile is not replaced.
    """
    from cleaner.review.apply import check_queue, expand_decisions

    file, meta = str(queue_csv), checked.meta

    def as_apply_would(tmp: Path) -> None:
        # Exactly what `cleaner apply` checks, on the new text, before it replaces the queue.
        try:
            new_check = check_queue(tmp)
            expand_decisions(
                new_check.decisions,
                new_check.manifest,
                file=str(tmp),
                group=meta.group_column,
                attributes=meta.attributes,
            )
        except InputError as e:
            raise InputError(
                [_as_queue_problem(p, tmp, file, task_of_line) for p in e.problems]
            ) from None

    changed = "changed by another program while importing; nothing written"
    try:
        replace_queue(queue_csv, data, expected=raw.sha256, changed=changed, check=as_apply_would)
    except QueueChanged:
        raise InputError([Problem(file, changed)]) from None


def _as_queue_problem(p: Problem, tmp: Path, file: str, task_of_line: Mapping[int, str]) -> Problem:
    """A problem found in the temporary copy, named as the queue's (and the task's) own."""
    reason = p.reason.replace(str(tmp), file)
    if p.row is not None and p.row in task_of_line:
        reason += f" (from Label Studio {task_of_line[p.row]})"
    return Problem(file if p.file == str(tmp) else p.file, reason, p.row)
