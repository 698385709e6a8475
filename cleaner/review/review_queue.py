"""The queue under review: a checked queue CSV, its decisions in memory, each written at once.

:class:`ReviewQueue` is what the ``cleaner review`` server serves: the rows as
the page shows them, the decisions checked by ``cleaner apply``'s own checks,
undo, and the images it may serve (only the manifest's).

A bulk action (:meth:`ReviewQueue.decide_many`: every suggestion above a
threshold, or one decision for the selected rows) is one step: every row is
checked first and any refusal writes nothing, then one write, and one undo
restores every row it changed.

Writing the CSV: the file is rewritten whole on every decision, to a
temporary file in the same folder that is then renamed over it
(``os.replace``). Header, columns (extra ones included), row order, blank
lines, the delimiter (``,``, ``;`` or tab), a UTF-8 BOM, the line ending and
the file mode are kept as read; only the ``decision`` and ``new_label``
cells of the decided rows change. Values are quoted where CSV needs it, so a
file quoted throughout comes back with minimal quoting. A CSV that another
program changed since it was read is not overwritten (HTTP 409). Each write
holds the project lock of the queue's folder (:mod:`cleaner.core.project_lock`)
from that check to its rename, so of two review pages of one queue deciding
at once, one writes and the other answers 409: no decision reported written
is lost. A lock held longer than the wait answers 503, nothing written.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from cleaner.core.errors import InputError
from cleaner.core.project_lock import project_lock
from cleaner.formats.issue_kinds import (
    GROUP_PREFIX,
    actions_text,
    allowed_decisions,
    has_suggestion,
)
from cleaner.formats.manifest import line_of, require_images
from cleaner.formats.queue_file import QueueText, queue_csv_path, replace_queue
from cleaner.review.apply import CheckedQueue, check_queue, expand_decisions, parse_decisions
from cleaner.review.gallery import thumbnail_data_uri
from cleaner.review.row_info import RowInfo, manifest_images, row_infos

IMAGE_SIDE = 1024  # longest side of a served image; tiny images are enlarged to it
EXAMPLES_PER_CLASS = 4  # example images shown per class beside the one under review

# One undoable step: the rows it changed, each with its (decision, new_label) cells before.
Step = dict[int, tuple[str, str]]


class RowsRefused(ValueError):
    """Rows of a bulk decision that apply's checks refuse: ``(row, why)`` for each.

    The message names every refused row; nothing was written.
    """

    def __init__(self, refused: Sequence[tuple[int, str]], total: int) -> None:
        self.refused = list(refused)
        named = "; ".join(f"row {i}: {why}" for i, why in self.refused)
        super().__init__(
            f"nothing was written: {len(self.refused)} of {total} rows refused: {named}"
        )


def _check_ids(checked: CheckedQueue, file: str) -> None:
    """Every row's sample or group must be in the manifest, decided or not.

    ``cleaner apply`` checks only decided rows; here every row is about to be
    decided, and a decision on an unknown id would only fail later, in apply.
    So every row goes through apply's own check as if kept (keep fits every kind).
    """
    parse_decisions(
        checked.table.assign(decision="keep", new_label=""),
        file=file,
        classes=checked.meta.classes,
        manifest=checked.manifest,
        group=checked.meta.group_column,
        attributes=checked.meta.attributes,
    )


class ReviewQueue:
    """A checked queue CSV, its decisions in memory, and every change written at once.

    Thread-safe: the HTTP server calls it from one thread per request.
    """

    def __init__(self, queue_csv: str | Path) -> None:
        self.path = queue_csv_path(queue_csv)
        checked = check_queue(self.path)  # refuses what `cleaner apply` would refuse
        # The one reader and writer of a person's queue (queue_file.QueueText): cells are
        # changed, the rest is written back as the spreadsheet saved it.
        self.text = QueueText.read(self.path)
        self.meta = checked.meta
        self._manifest = checked.manifest
        require_images(self._manifest, self.meta.manifest)  # the page shows them
        _check_ids(checked, str(self.path))
        self._table = checked.table.copy()
        self.text.check_rows(self._table, str(self.path))
        self.rows, self.warnings = row_infos(self._table, self.meta, self._manifest)
        # Per class (in class order), the images of queue.json's examples that the
        # manifest has; ids it lacks are skipped: examples only illustrate.
        by_id = manifest_images(self._manifest, self.meta.manifest.parent)
        self.examples = [
            [by_id[e] for e in self.meta.examples.get(c, ()) if e in by_id][:EXAMPLES_PER_CLASS]
            for c in self.meta.classes
        ]
        self._position = {sid: k for k, sid in enumerate(self._manifest["sample_id"])}
        group = self.meta.group_column
        if group and group in self._manifest.columns:
            for k, g in enumerate(self._manifest[group]):
                self._position.setdefault(f"{GROUP_PREFIX}{g}", k)
        self._lock = threading.Lock()
        self._history: list[Step] = []  # one entry per undoable step, single or bulk
        self._on_disk = self.text.sha256
        self._render_image = lru_cache(maxsize=64)(_image_bytes)

    def __len__(self) -> int:
        return len(self.rows)

    def decision(self, i: int) -> tuple[str, str]:
        """Row ``i``'s decision (lower case) and new_label, as ``cleaner apply`` reads them."""
        return (
            self.text.cell(i, "decision").strip().lower(),
            self.text.cell(i, "new_label").strip(),
        )

    @property
    def reviewed(self) -> int:
        return sum(bool(self.decision(i)[0]) for i in range(len(self.rows)))

    def conflicts(self) -> list[str]:
        """Samples that two queue rows decide differently (``cleaner apply`` refuses those)."""
        try:
            decisions, _ = parse_decisions(
                self._table,
                file=str(self.path),
                classes=self.meta.classes,
                manifest=self._manifest,
                group=self.meta.group_column,
                attributes=self.meta.attributes,
            )
            expand_decisions(
                decisions,
                self._manifest,
                file=str(self.path),
                group=self.meta.group_column,
                attributes=self.meta.attributes,
            )
        except InputError as e:
            return [str(p) for p in e.problems]
        return []

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the page shows it (JSON-ready)."""
        info = self.rows[i]
        decision, new_label = self.decision(i)
        suggests = has_suggestion(info.issue)
        return {
            "i": i,
            "rank": info.rank,
            "sample_id": info.sample_id,
            "path": info.path,
            "group": info.group,
            "given": info.given,
            "suggested": info.suggested,
            "quality": info.quality,
            "issue": info.issue,
            "note": info.note,
            "is_group": info.is_group,
            "members": info.members,
            "has_image": info.image is not None,
            "top": info.top,
            "probs_from": info.probs_from,
            "decision": decision,
            "new_label": new_label,
            # What the page offers for this row: the same table apply checks against.
            "suggests": suggests,
            # How sure the model is of the suggestion: what the bulk accept's threshold reads.
            "suggested_p": self._suggested_p(info) if suggests else None,
            "actions": list(allowed_decisions(info.issue)),
            "actions_text": actions_text(info.issue),
            "partner": info.partner,
            "has_partner_image": info.partner_image is not None,
        }

    def _suggested_p(self, info: RowInfo) -> float | None:
        """The model's probability of the row's suggested class (``None`` when the row has
        no probabilities, or the suggestion is not among the classes sent)."""
        classes = self.meta.classes
        c = classes.index(info.suggested) if info.suggested in classes else -1
        return next((p for k, p in info.top if k == c), None)

    def snapshot(self) -> dict[str, Any]:
        """Everything the page needs at start."""
        with self._lock:
            return {
                "title": f"relabel queue: {self.meta.manifest.name}",
                "file": str(self.path),
                "classes": list(self.meta.classes),
                "rows": [self.row(i) for i in range(len(self.rows))],
                "reviewed": self.reviewed,
                "total": len(self.rows),
                "warnings": self.warnings + self.conflicts(),
                "examples": [len(e) for e in self.examples],  # per class index
            }

    def _result(self, rows: Sequence[int]) -> dict[str, Any]:
        """The rows a step changed (``row`` the first, for the page's cursor) and the counts."""
        return {
            "row": self.row(rows[0]),
            "rows": [self.row(i) for i in rows],
            "reviewed": self.reviewed,
            "total": len(self.rows),
            "warnings": self.warnings + self.conflicts(),
        }

    def decide(self, i: int, decision: str, new_label: str = "") -> dict[str, Any]:
        """Set row ``i``'s decision and write the CSV; ``decision=""`` clears it.

        ``new_label`` counts only for ``relabel``, where it must be a class (or
        ``attribute=value`` with composite labels);
        blank means the suggested label, for kinds that have one. The checks are
        ``cleaner apply``'s own (:func:`cleaner.review.apply.parse_decisions`), so the
        page cannot write what apply would refuse. Raises ``ValueError`` for bad
        input, :class:`QueueChanged` if the file changed under us.
        """
        decision, new_label = decision.strip().lower(), new_label.strip()
        if not 0 <= i < len(self.rows):
            raise IndexError(f"no queue row {i}")
        with self._lock:
            new_label = self._checked(i, decision, new_label) if decision else ""
            if self.decision(i) != (decision, new_label):
                self._history.append(self._store({i: (decision, new_label)}))
            return self._result([i])

    def decide_many(self, decisions: Sequence[tuple[int, str, str]]) -> dict[str, Any]:
        """Set several rows' decisions as one step: all checked, then one write, one undo.

        ``decisions`` holds ``(row, decision, new_label)`` with :meth:`decide`'s
        meaning each. Every row goes through the same checks as :meth:`decide`
        before anything is written; if any is refused, :class:`RowsRefused` names
        each refused row and nothing is written. Rows already so decided are left
        alone; a step that changes no row writes nothing and adds no undo. Raises
        ``ValueError`` for an empty list or a row named twice, :class:`QueueChanged`
        if the file changed under us (nothing written).
        """
        if not decisions:
            raise ValueError("no rows to decide")
        rows = [i for i, _, _ in decisions]
        twice = sorted(i for i, n in Counter(rows).items() if n > 1)
        if twice:  # which of the two would count is anyone's guess: refused
            raise ValueError(f"rows named twice: {', '.join(map(str, twice))}")
        with self._lock:
            wanted: Step = {}
            refused: list[tuple[int, str]] = []
            for i, decision, new_label in decisions:
                decision, new_label = decision.strip().lower(), new_label.strip()
                if not 0 <= i < len(self.rows):
                    refused.append((i, "no such queue row"))
                    continue
                try:
                    new_label = self._checked(i, decision, new_label) if decision else ""
                except ValueError as e:
                    info = self.rows[i]
                    refused.append((i, f"#{info.rank} {info.sample_id!r}: {e}"))
                    continue
                wanted[i] = (decision, new_label)
            if refused:
                raise RowsRefused(refused, len(decisions))
            changes = {i: cells for i, cells in wanted.items() if self.decision(i) != cells}
            if changes:
                self._history.append(self._store(changes))
            return self._result(rows)

    def _checked(self, i: int, decision: str, new_label: str) -> str:
        """Row ``i`` with this decision, through apply's checks: the new_label to write."""
        one = self._table.iloc[[i]].assign(decision=decision, new_label=new_label)
        lines = self._table.attrs.get("lines") or [line_of(k) for k in range(len(self._table))]
        one.attrs["lines"] = [lines[i]]
        # The one manifest row the decision is about (a group's first): parse_decisions
        # then costs nothing on a manifest of a million rows.
        at = self._position.get(self.rows[i].sample_id)
        try:
            (checked,), _ = parse_decisions(
                one,
                file=str(self.path),
                classes=self.meta.classes,
                manifest=self._manifest.iloc[[] if at is None else [at]],
                group=self.meta.group_column,
                attributes=self.meta.attributes,
            )
        except InputError as e:
            raise ValueError("; ".join(p.reason for p in e.problems)) from None
        # Only a relabel keeps a new_label: apply ignores it otherwise, and a stale one misleads.
        return checked.new_label if checked.action == "relabel" else ""

    def undo(self) -> dict[str, Any]:
        """Restore the row changed last to what it was before, and write the CSV."""
        with self._lock:
            if not self._history:
                raise LookupError("nothing to undo")
            step = self._history[-1]
            self._store(step)  # a bulk step's rows all at once: one write
            self._history.pop()
            return self._result(sorted(step))

    def _store(self, changes: Step) -> Step:
        """Set each row's (decision, new_label) cells and write the CSV once; returns the
        cells as they were.

        A write that fails leaves every row as it was, in memory as on disk.
        """
        old = {i: (self.text.cell(i, "decision"), self.text.cell(i, "new_label")) for i in changes}
        before = self.text
        self.text = before.with_decisions(changes)
        try:
            self._write()
        except BaseException:
            self.text = before
            raise
        for i, cells in changes.items():
            self._table.loc[self._table.index[i], ["decision", "new_label"]] = list(cells)
        return old

    def render(self) -> bytes:
        """The CSV as it would be written now."""
        return self.text.render()

    def _write(self) -> None:
        # The folder's lock from the check to the rename: another writer of this queue
        # (a second review page, an import) either wrote before the check, which then
        # sees it, or waits for this write and then sees it itself.
        data = self.render()
        with project_lock(self.path.parent, f"cleaner review {self.path}"):
            replace_queue(
                self.path,
                data,
                expected=self._on_disk,
                changed=f"{self.path} was changed by another program since `cleaner review` "
                "read it; nothing was written. Stop `cleaner review` and start it again to "
                "go on from the file as it is now.",
            )
        self._on_disk = hashlib.sha256(data).digest()

    def image(self, i: int) -> tuple[str, bytes] | None:
        """Row ``i``'s image as ``(mime type, bytes)``, at most ``IMAGE_SIDE`` pixels;
        ``None`` when the row has none or it is missing or unreadable."""
        if not 0 <= i < len(self.rows) or self.rows[i].image is None:
            return None
        return self._render_image(self.rows[i].image)

    def partner_image(self, i: int) -> tuple[str, bytes] | None:
        """Like :meth:`image`, for the manifest's image of row ``i``'s partner."""
        if not 0 <= i < len(self.rows) or self.rows[i].partner_image is None:
            return None
        return self._render_image(self.rows[i].partner_image)

    def example_image(self, c: int, k: int) -> tuple[str, bytes] | None:
        """Like :meth:`image`, for example ``k`` of class ``c`` (queue.json's ``examples``)."""
        if not 0 <= c < len(self.examples) or not 0 <= k < len(self.examples[c]):
            return None
        return self._render_image(self.examples[c][k])


def _image_bytes(path: Path) -> tuple[str, bytes] | None:
    # Re-encoded, never sent as is: EXIF rotation, 16-bit and TIFF images then
    # show in any browser, and a huge photo costs the page only IMAGE_SIDE pixels.
    uri = thumbnail_data_uri(path, size=IMAGE_SIDE)
    if uri is None:
        return None
    head, payload = uri.split(",", 1)
    return head[len("data:") :].split(";", 1)[0], base64.b64decode(payload)
