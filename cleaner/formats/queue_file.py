"""The relabel queue's two files: ``queue.csv`` (the rows a person decides) and ``queue.json``.

Each has its one home here, with its writer and its reader:

- ``queue.csv``: :data:`QUEUE_COLUMNS` in order, written by :func:`write_queue_csv`;
  read by :func:`read_queue_table`, which takes what a spreadsheet makes of
  the file (a UTF-8 BOM, ``;`` or tab as delimiter, columns in any case and
  order, extra or deleted columns, blank lines) and refuses what is no queue
  (not UTF-8, not CSV, no ``sample_id`` or ``decision`` column). A person
  edits this file, so :class:`QueueText` rewrites its decision cells and keeps
  everything else as the spreadsheet saved it.
- ``queue.json``: :class:`QueueMeta`, what the queue was made from (the manifest
  version, runs or probability file, classes, flag settings), written by
  :func:`write_queue_meta` with paths relative to its own folder and read back
  strictly by :func:`read_queue_meta`.

Light on purpose (no model code): ``apply``, ``review`` and the Label Studio
round trip read these files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cleaner.core.atomic import atomic_path, write_text
from cleaner.core.errors import InputError, Problem, not_utf8
from cleaner.formats.attributes import AttributeTable
from cleaner.formats.manifest import line_of
from cleaner.formats.run_files import QueueFiles

QUEUE_COLUMNS = (
    "rank",
    "sample_id",
    "path",
    "group",
    "given_label",
    "suggested_label",
    "label_quality",
    "issue",
    "decision",
    "new_label",
    "note",
    "partner",  # the other image of a near_duplicate or leakage row
)
REQUIRED_COLUMNS = ("sample_id", "decision")
# Read as blank when missing: older queues have no ``partner``; a spreadsheet may delete any.
OPTIONAL_COLUMNS = ("new_label", "suggested_label", "label_quality", "issue", "partner")
FLOAT_FORMAT = "%.6g"  # label_quality as the queue writes it


# --- queue.csv ----------------------------------------------------------------------------


def _unreadable_csv(e: Exception) -> str:
    """pandas' parser error in the reader's words (its own text names C internals)."""
    found = re.search(r"line (\d+), saw (\d+)", str(e))
    if found:
        return (
            f"not a CSV the queue's reader can split: line {found[1]} has {found[2]} cells, "
            "more than the header; save it again as CSV from the spreadsheet"
        )
    if isinstance(e, pd.errors.EmptyDataError):
        return "empty file: no header line"
    return "not a CSV the queue's reader can split; save it again as CSV from the spreadsheet"


def write_queue_csv(queue: pd.DataFrame, path: str | Path) -> None:
    """Write the queue rows (columns :data:`QUEUE_COLUMNS`) to ``path``, atomically."""
    with atomic_path(path) as tmp:
        queue.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)


def sniff_delimiter(first_line: str) -> str:
    """The queue's delimiter as a spreadsheet saved it (``,``, ``;`` or tab; else ``,``).

    Every reader of a queue uses this one rule, so they agree on its rows.
    """
    try:
        return csv.Sniffer().sniff(first_line, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def queue_csv_path(path: str | Path) -> Path:
    """The queue CSV a command was given: a folder that holds ``queue.csv`` (a run folder
    ``flag`` wrote into, or ``flag --out``) means that file. A folder without one, and the
    gallery page ``queue.html``, are refused naming what to give instead."""
    path = Path(path)
    if path.is_dir():
        inside = QueueFiles(path).csv
        if inside.is_file():
            return inside
        raise InputError(
            [Problem(str(path), f"a folder without {inside.name}: make its queue with "
                     f"`cleaner flag {path}`, or give the queue CSV itself")]
        )  # fmt: skip
    if path.suffix.lower() in (".html", ".htm"):
        csv_file = QueueFiles.beside(path).csv
        raise InputError(
            [Problem(str(path), f"the queue's gallery page, not the queue: give {csv_file}")]
        )
    return path


def _read_queue_file(path: Path) -> tuple[bytes, str]:
    """The queue file's bytes and its text (a BOM removed, line endings as written)."""
    if not path.is_file():
        raise InputError([Problem(str(path), "queue file not found")])
    data = path.read_bytes()
    try:
        return data, data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError([not_utf8(path, "queue", save_as="CSV UTF-8")]) from None


def read_queue_table(queue_csv: str | Path) -> pd.DataFrame:
    """The queue as text, whatever delimiter and BOM a spreadsheet gave it.

    Column names are stripped and lower-cased; :data:`OPTIONAL_COLUMNS` that are
    missing read as blank; ``table.attrs["lines"]`` holds the file line of each row.
    """
    path = queue_csv_path(queue_csv)
    _, raw = _read_queue_file(path)
    text = raw.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as text mode
    sep = sniff_delimiter(text.split("\n", 1)[0])
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError([Problem(str(path), _unreadable_csv(e))]) from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    table.attrs["lines"] = _record_lines(text, sep, len(table))
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError([Problem(str(path), f"missing column(s): {', '.join(missing)}", 1)])
    for col in OPTIONAL_COLUMNS:
        if col not in table.columns:
            table[col] = ""
    return table


def _record_lines(text: str, sep: str, n: int) -> list[int]:
    """The file line each of the ``n`` data rows starts on.

    Blank lines (which pandas skips) and line breaks inside quoted cells (a
    spreadsheet note over several lines) push later rows down the file.
    """
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    starts, end = [], 0
    try:
        for record in reader:
            if record:
                starts.append(end + 1)
            end = reader.line_num
    except csv.Error:
        starts = []
    lines = starts[1:]  # the first record is the header
    return lines if len(lines) == n else [line_of(i) for i in range(n)]


@dataclass(frozen=True)
class QueueText:
    """A queue CSV as its records, and how it was written, so it is written back the same way.

    The reading rules of :func:`read_queue_table` (a UTF-8 BOM, the delimiter of
    the header line); also the line ending. Rewriting keeps the header, extra
    columns, row order and blank lines, and changes only the decision cells.
    """

    data: bytes  # the file as read
    header: list[str]
    records: list[list[str]]  # [] for a blank line, kept as one
    delimiter: str = ","
    lineterminator: str = "\n"
    bom: bool = False

    @classmethod
    def read(cls, path: Path) -> QueueText:
        path = queue_csv_path(path)
        data, text = _read_queue_file(path)
        first = text.split("\n", 1)[0]
        delimiter = sniff_delimiter(first)
        try:
            records = list(csv.reader(io.StringIO(text), delimiter=delimiter))
        except csv.Error as e:
            raise InputError([Problem(str(path), f"not a readable CSV: {e}")]) from None
        if not records:
            raise InputError([Problem(str(path), "empty file", 1)])
        return cls(
            data,
            records[0],
            records[1:],
            delimiter,
            "\r\n" if first.endswith("\r") else "\n",
            data.startswith(b"\xef\xbb\xbf"),
        )

    @property
    def names(self) -> list[str]:
        """The header as the readers name the columns: stripped, lower case."""
        return [h.strip().lower() for h in self.header]

    @property
    def sha256(self) -> bytes:
        """The digest of the bytes as read: :func:`replace_queue` compares the file with it."""
        return hashlib.sha256(self.data).digest()

    def cell(self, i: int, column: str) -> str:
        """Data row ``i``'s cell of ``column`` (a name of :attr:`names`), ``""`` where the
        row is short or the column was deleted."""
        names = self.names
        if column not in names:
            return ""
        record, col = self.records[self.data_rows[i]], names.index(column)
        return record[col] if col < len(record) else ""

    @property
    def data_rows(self) -> list[int]:
        """The record of each data row (blank lines are records too, and no row)."""
        return [k for k, r in enumerate(self.records) if r]

    def check_rows(self, table: pd.DataFrame, file: str) -> None:
        """Refuse a file whose rows this reader and :func:`read_queue_table` split differently."""
        col = self.names.index("sample_id")
        ids = [self.records[k][col] if col < len(self.records[k]) else "" for k in self.data_rows]
        if ids != [str(s) for s in table["sample_id"]]:
            raise InputError(
                [
                    Problem(
                        file,
                        "rows could not be read the same way twice (a quoting problem?): "
                        "save it again as CSV from the spreadsheet",
                    )
                ]
            )

    def with_decisions(self, decisions: Mapping[int, tuple[str, str]]) -> QueueText:
        """The queue with data row ``i``'s (decision, new_label) cells set, for each ``i``.

        A ``new_label`` column deleted in a spreadsheet is added back at the end.
        """
        header, names = list(self.header), self.names
        if "new_label" not in names:
            header.append("new_label")
            names.append("new_label")
        decision_col, label_col = names.index("decision"), names.index("new_label")
        records = [list(r) for r in self.records]
        rows = self.data_rows
        for i, (action, label) in decisions.items():
            record = records[rows[i]]
            record.extend([""] * (max(decision_col, label_col) + 1 - len(record)))
            record[decision_col], record[label_col] = action, label
        return QueueText(self.data, header, records, self.delimiter, self.lineterminator, self.bom)

    def render(self) -> bytes:
        """The file's bytes: minimal quoting, the delimiter, line ending and BOM as read."""
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self.delimiter, lineterminator=self.lineterminator)
        writer.writerow(self.header)
        writer.writerows(self.records)
        return ("\ufeff" if self.bom else "").encode() + out.getvalue().encode("utf-8")


class QueueChanged(RuntimeError):
    """The queue file on disk is not the one read or last written: another program wrote it."""


def replace_queue(
    path: Path,
    data: bytes,
    *,
    expected: bytes,
    changed: str,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Write ``data`` over the queue file ``path`` atomically, keeping the file's mode: the
    one way every writer of a person's queue (the review page, the Label Studio import,
    the demo's simulated reviewer) replaces it.

    ``expected`` is the sha256 of the bytes the caller read or last wrote: a file that
    holds anything else was written by another program meanwhile and is not replaced
    (:class:`QueueChanged` with the message ``changed``). ``check(tmp)`` sees the new file
    before it replaces the old one, and refuses it by raising. Callers hold the folder's
    lock (:mod:`cleaner.core.project_lock`), so the comparison and the rename are one step.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise QueueChanged(changed) from None
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_bytes(data)
        os.chmod(tmp, mode)  # mkstemp makes it 0600; keep the queue's own mode
        if check is not None:
            check(tmp)
        try:
            current = hashlib.sha256(path.read_bytes()).digest()
        except FileNotFoundError:
            current = b""
        if current != expected:
            raise QueueChanged(changed)


# --- queue.json ---------------------------------------------------------------------------


def queue_meta_path(queue_csv: str | Path) -> Path:
    """``queue.json`` beside the queue CSV."""
    return QueueFiles.beside(queue_csv).record


@dataclass(frozen=True)
class QueueMeta:
    """``queue.json``: which manifest version and runs a queue was made from.

    Paths are as this process names them; the file stores them relative to its
    folder (:func:`write_queue_meta`), and :func:`read_queue_meta` resolves them back.
    """

    manifest: Path
    manifest_sha256: str
    classes: tuple[str, ...]
    runs: tuple[str, ...]
    group_column: str  # the manifest column a group:ID row refers to
    attributes: AttributeTable | None = None  # for ``attribute=value`` relabels
    # Up to a few confidently labelled train sample ids per class, for the review page.
    examples: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # ``flag --probs FILE``: probabilities made outside cleaner (then ``runs`` is empty).
    probs: Path | None = None
    probs_sha256: str = ""
    flag: Mapping[str, Any] = field(default_factory=dict)  # the flag settings, informational
    method: str = ""  # the ranking method (also in ``flag``)
    top: int | None = None  # --top (also in ``flag``)
    # How good the out-of-fold model is: accuracy, macro_f1, majority_rate, p_value, ece.
    trust: Mapping[str, Any] = field(default_factory=dict)
    created: str = ""  # when the queue was made, ISO 8601 UTC
    # cleanlab's count of wrong labels, its 95% interval, the model's disagreements and
    # what the count means (flag.NoiseEstimate): informational, like ``trust``.
    noise: Mapping[str, Any] = field(default_factory=dict)
    # ``flag --audit N``: the train rows drawn at random, those added as ``audit`` rows
    # and those the ranking queued anyway; ``apply`` marks their decisions, with which
    # the retrain report measures the labels and the models.
    audit_added: tuple[str, ...] = ()
    audit_ranked: tuple[str, ...] = ()
    # The queue's rows per issue kind, and the image-quality check of the train rows
    # (images measured, flagged per kind, the limits used): informational, like ``noise``.
    issue_counts: Mapping[str, int] = field(default_factory=dict)
    image_quality: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self, folder: str | Path) -> dict[str, Any]:
        """The file's object, paths written relative to ``folder`` (queue.json's)."""
        return {
            # Relative to the queue's folder, so `apply` works from any directory and
            # after the project moves (read_queue_meta resolves them back).
            "manifest": relative_to_folder(self.manifest, folder),
            "manifest_sha256": self.manifest_sha256,
            "runs": [relative_to_folder(r, folder) for r in self.runs],
            "probs": relative_to_folder(self.probs, folder) if self.probs else None,
            "probs_sha256": self.probs_sha256 or None,
            "method": self.method,
            "top": self.top,
            "classes": list(self.classes),
            "group_column": self.group_column,
            # How each class decomposes into attributes, for attribute=value decisions.
            "attributes": self.attributes.to_json() if self.attributes is not None else None,
            # The flag settings used: the run's, --set's, and --top/--method.
            "flag": dict(self.flag),
            "trust": dict(self.trust),
            "noise": dict(self.noise),
            # Confidently labelled train rows of each class, for the review page to compare.
            "examples": {c: list(ids) for c, ids in self.examples.items()},
            "created": self.created,
            "audit": {"added": list(self.audit_added), "ranked": list(self.audit_ranked)},
            "issue_counts": dict(self.issue_counts),
            "image_quality": dict(self.image_quality),
        }


def relative_to_folder(path: str | Path, folder: str | Path) -> str:
    """``path`` written relative to ``folder`` (POSIX separators), as queue.json stores it."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def queue_meta_text(meta: QueueMeta, folder: str | Path) -> str:
    """queue.json's text, for a queue.json in ``folder``."""
    return json.dumps(meta.to_json(folder), indent=2)


def write_queue_meta(path: str | Path, meta: QueueMeta) -> None:
    """Write ``meta`` to ``path`` (a queue.json), atomically; an existing file is refused."""
    write_text(path, queue_meta_text(meta, Path(path).parent))


def _beside(meta_path: Path, stored: str) -> Path:
    """A path queue.json stores, relative to its folder; older files stored it
    relative to the working directory, which is the fallback (and what errors name)."""
    here = Path(os.path.normpath(meta_path.parent / stored))
    # os.path.exists, not Path.exists: a stored name too long for the file system is
    # simply not there (Path.exists raises OSError for it), and the reader refuses it.
    return here if os.path.exists(here) else Path(stored)


def read_queue_meta(queue_csv: str | Path) -> QueueMeta:
    """queue.json beside ``queue_csv``; raises :class:`InputError` naming it and why."""
    path = queue_meta_path(queue_csv_path(queue_csv))
    if not path.exists():
        raise InputError(
            [
                Problem(
                    str(path),
                    "not found: it records which manifest version the "
                    "queue was made from; keep it beside the queue CSV "
                    "(flag writes it last: if flag was interrupted, run it again to finish "
                    "the queue)",
                )
            ]
        )
    try:
        return _queue_meta(path, json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        reason = f"not valid JSON: {e.msg} (line {e.lineno})"
    except RecursionError:  # thousands of nested brackets: malformed, not a crash
        reason = "not valid JSON: nested too deeply"
    except UnicodeDecodeError:
        raise InputError([not_utf8(path, path.name)]) from None
    except ValueError as e:  # an integer of thousands of digits: Python's int limit
        reason = f"not a queue.json written by cleaner flag ({e})"
    except KeyError as e:
        reason = f"missing key {e.args[0]!r}"
    except (TypeError, AttributeError):
        reason = "not a queue.json written by cleaner flag"
    raise InputError([Problem(str(path), reason)])


def _queue_meta(path: Path, meta: Any) -> QueueMeta:
    """queue.json's object as the record; ``manifest``, its sha256 and ``classes`` are
    required, the rest (absent from older or hand-written files) has defaults."""
    top = meta.get("top")
    return QueueMeta(
        _beside(path, meta["manifest"]),
        meta["manifest_sha256"],
        tuple(meta["classes"]),
        tuple(str(_beside(path, r)) for r in meta.get("runs", ())),
        meta.get("group_column", ""),
        AttributeTable.from_json(meta["attributes"]) if meta.get("attributes") else None,
        _examples(meta.get("examples")),
        _beside(path, meta["probs"]) if meta.get("probs") else None,
        str(meta.get("probs_sha256") or ""),
        meta["flag"] if isinstance(meta.get("flag"), dict) else {},
        str(meta.get("method") or ""),
        top if isinstance(top, int) and not isinstance(top, bool) else None,
        meta["trust"] if isinstance(meta.get("trust"), dict) else {},
        str(meta.get("created") or ""),
        meta["noise"] if isinstance(meta.get("noise"), dict) else {},
        *_audit_ids(meta.get("audit")),
        issue_counts=_informational(meta.get("issue_counts")),
        image_quality=_informational(meta.get("image_quality")),
    )


def _informational(value: Any) -> dict[str, Any]:
    """An informational object of queue.json (counts, settings): anything but an object
    reads as none, so that a hand-edited or older file does not stop a review."""
    return value if isinstance(value, dict) else {}


def _audit_ids(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """queue.json's ``audit``: the sample ids added and ranked; absent (older files) is none."""
    if value is None:
        return (), ()
    lists = [value.get(k, []) if isinstance(value, dict) else None for k in ("added", "ranked")]
    if not all(isinstance(v, list) and all(isinstance(s, str) for s in v) for v in lists):
        raise ValueError("audit must hold the lists of sample ids 'added' and 'ranked'")
    return tuple(lists[0] or ()), tuple(lists[1] or ())


def _examples(value: Any) -> dict[str, tuple[str, ...]]:
    """queue.json's ``examples`` ({class: [sample_id, ...]}); anything else is no examples:
    they only illustrate, so a hand-edited or older file must not stop a review."""
    if not isinstance(value, dict):
        return {}
    return {
        str(c): tuple(str(s) for s in ids if isinstance(s, str | int))
        for c, ids in value.items()
        if isinstance(ids, list)
    }
