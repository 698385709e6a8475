"""The audit log: one JSON line per reviewer decision, for every version of a manifest.

``NAME.audit.jsonl`` sits beside ``NAME.csv`` and its versions. Each line has
``sample_id, old_label, new_label, action, reviewer, time, label_quality,
run, manifest_sha256`` (the manifest version the decision was applied to),
``queue_row, split, weight`` (and ``columns`` when attribute columns changed, ``audit``
when ``flag --audit`` drew the row at random: ``added`` or ``ranked``),
and from ``apply`` also ``version`` and ``version_sha256``: the file name and
sha256 of the version the decision produced (the version it was applied to,
when nothing changed).

One commit point: ``apply`` writes the log first, naming the new version, and
renames the version into place last. A reader counts a line only when the
version it names exists beside the log with that sha256, so a kill between
the two writes leaves the old state (the lines are ignored) and a finished
apply the complete new one. Lines without ``version`` (older logs) count.

This module is the log's one home: :func:`audit_record` builds a record,
:func:`append_records` appends records (and commits the version they made),
:func:`read_audit_log` reads the committed ones and :func:`replay_audit`
applies them to a manifest version.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleaner.core.atomic import atomic_path, write_text
from cleaner.core.errors import InputError, Problem, not_utf8
from cleaner.core.faults import fault_point
from cleaner.formats.manifest import sha256_file
from cleaner.formats.repoint import REPOINT, repoint_paths

AUDIT_FIELDS = (
    "sample_id",
    "old_label",
    "new_label",
    "action",
    "reviewer",
    "time",
    "label_quality",
    "run",
    "manifest_sha256",
)
ACTIONS = ("keep", "relabel", "drop", "unsure")
COMMIT_FIELDS = ("version", "version_sha256")


def audit_record(
    sample_id: str,
    *,
    old_label: str,
    new_label: str,
    action: str,
    context: Mapping[str, Any] | None,
    label_quality: float | None,
    queue_row: str,
    split: str,
    weight: str,
    columns: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One decided manifest row's record, in the log's field order.

    ``context`` holds ``reviewer, time, run, manifest_sha256`` (the same for
    every record of one apply); ``split`` and ``weight`` are the row's after
    the decision and ``columns`` the attribute columns it changed, so that the
    log replays exactly.
    """
    return {
        "sample_id": sample_id,
        "old_label": old_label,
        "new_label": new_label,
        "action": action,
        **(context or {}),
        "label_quality": label_quality,
        "queue_row": queue_row,
        "split": split,
        "weight": weight,
        **({"columns": dict(columns)} if columns else {}),
    }


def login_name() -> str:
    """The login name: the log's reviewer when a command is given none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def audit_context(*, reviewer: str, manifest_sha256: str, run: str | None = None) -> dict[str, Any]:
    """The fields every record of one write shares: who (``reviewer``, else the login
    name), when (UTC), the run the decisions came from (``apply``) and the version's sha256."""
    context: dict[str, Any] = {
        "reviewer": reviewer or login_name(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if run is not None:
        context["run"] = run
    return context | {"manifest_sha256": manifest_sha256}


def log_lines(records: Iterable[Mapping[str, Any]], *, version: str, version_sha256: str) -> str:
    """The log's lines of ``records``, each naming the version they produced (the commit)."""
    commit = {"version": version, "version_sha256": version_sha256}
    return "".join(json.dumps({**r, **commit}, ensure_ascii=False) + "\n" for r in records)


def append_records(
    log: Path,
    records: Iterable[Mapping[str, Any]],
    *,
    version: Path,
    version_sha256: str,
    version_data: bytes | None = None,
) -> None:
    """Append ``records`` to ``log``, with the commit of the version they produced.

    With ``version_data``, ``version`` is the new version and is written with
    those bytes, renamed into place after the log (the commit point); without,
    it names the version the records were applied to (no row changed). Lines of
    a version that was never committed are left out of the log written.
    """
    text = committed_lines(log) + log_lines(
        records, version=version.name, version_sha256=version_sha256
    )
    _commit(log, text, version if version_data is not None else None, version_data or b"")


def _before_commit() -> None:
    """Called between the log's write and the version's rename: tests stop a run here."""


def _commit(log: Path, log_text: str, target: Path | None, data: bytes) -> None:
    """Write the log naming the new version, then rename the version into place.

    The rename is the commit point: killed before it, the new lines name a
    version that does not exist and every reader ignores them; the next apply
    leaves them out of the log it writes. ``apply`` holds the project lock
    (:mod:`cleaner.core.project_lock`), so no other apply writes the log meanwhile.
    """
    if target is None:
        write_text(log, log_text, overwrite=True)
        return
    old = log.read_bytes() if log.exists() else None
    wrote: bytes | None = None  # the log as this apply wrote it
    try:
        with atomic_path(target) as tmp_manifest:
            tmp_manifest.write_bytes(data)
            write_text(log, log_text, overwrite=True)
            wrote = log.read_bytes()
            _before_commit()
            fault_point("commit")
    except FileExistsError:
        # Another writer made this version first (one that does not take the lock).
        # Take back only what this apply wrote: a log that is no longer exactly that
        # is another writer's, and is never removed or written over.
        if wrote is not None and log.exists() and log.read_bytes() == wrote:
            if old is None:
                log.unlink()
            else:
                with atomic_path(log, overwrite=True) as tmp:
                    tmp.write_bytes(old)
        raise


def _committed(record: Mapping[str, Any], folder: Path, seen: dict[str, str | None]) -> bool:
    """Whether the version ``record`` names exists beside the log with its sha256."""
    version = record.get("version")
    if not version:
        return True  # written before the commit point existed
    name = Path(str(version)).name  # a name beside the log, never a path elsewhere
    if name not in seen:
        path = folder / name
        seen[name] = sha256_file(path) if path.is_file() else None
    return seen[name] == record.get("version_sha256")


def committed_lines(path: str | Path) -> str:
    """The log's text without the lines of a version that was never committed."""
    path = Path(path)
    if not path.exists():
        return ""
    seen: dict[str, str | None] = {}
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            record = None  # kept as it is: read_audit_log reports it
        if not isinstance(record, dict) or _committed(record, path.parent, seen):
            kept.append(line)
    return "".join(kept)


def read_audit_log(path: str | Path) -> list[dict[str, Any]]:
    """Every committed record of an audit log, oldest first; a missing log has none."""
    path = Path(path)
    if not path.exists():
        return []
    records, problems = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError([not_utf8(path, "audit log")]) from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(str(path), f"not valid JSON: {e.msg}", n))
            continue
        except RecursionError:  # thousands of nested brackets: malformed, not a crash
            problems.append(Problem(str(path), "not valid JSON: nested too deeply", n))
            continue
        except ValueError as e:  # an integer of thousands of digits: Python's int limit
            problems.append(Problem(str(path), f"not a record: {e}", n))
            continue
        if not isinstance(record, dict) or "sample_id" not in record or "action" not in record:
            problems.append(Problem(str(path), "a record needs sample_id and action", n))
            continue
        records.append(record)
    if problems:
        raise InputError(problems)
    seen: dict[str, str | None] = {}
    return [r for r in records if _committed(r, path.parent, seen)]


def decided_sample_ids(
    records: Iterable[Mapping[str, Any]], current_labels: Mapping[str, str]
) -> set[str]:
    """Samples a person already decided whose label has not changed since.

    The last decision on a sample counts. A sample whose label in the current
    manifest differs from the label that decision left (someone changed it
    later, by hand or by a new ingest) is no longer decided.
    """
    last: dict[str, Mapping[str, Any]] = {}
    for r in records:
        last[str(r["sample_id"])] = r
    return {
        sid
        for sid, r in last.items()
        if sid in current_labels and str(r.get("new_label", "")) == current_labels[sid]
    }


def decided_in_manifest(manifest: pd.DataFrame, log: str | Path) -> set[str]:
    """:func:`decided_sample_ids` for a manifest version and its audit log file."""
    return decided_in_records(manifest, read_audit_log(log))


def decided_in_records(manifest: pd.DataFrame, records: Sequence[Mapping[str, Any]]) -> set[str]:
    """:func:`decided_sample_ids` for a manifest version and its log's records, read once."""
    logged = manifest[manifest["sample_id"].isin({str(r["sample_id"]) for r in records})]
    current = dict(zip(logged["sample_id"], logged["label"].str.strip(), strict=True))
    return decided_sample_ids(records, current)


def replay_audit(manifest: pd.DataFrame, records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Apply audit records to a manifest version: the next version, rebuilt from the log."""
    cols = {c: manifest[c].to_numpy(dtype=object, copy=True) for c in ("label", "split", "weight")}
    position = {sid: i for i, sid in enumerate(manifest["sample_id"])}
    for r in records:
        if r.get("action") == REPOINT:  # a moved image folder: every path, no decision
            paths = manifest["path"] if "path" not in cols else cols["path"]
            cols["path"] = np.asarray(
                repoint_paths(list(paths), r["old_root"], r["new_root"]), dtype=object
            )
            continue
        p = position[r["sample_id"]]
        cols["label"][p], cols["split"][p], cols["weight"][p] = (
            r["new_label"],
            r["split"],
            r["weight"],
        )
        for c, value in r.get("columns", {}).items():
            if c not in cols:  # a reviewer's annotator column is new in the version it made
                old = manifest[c] if c in manifest.columns else pd.Series([""] * len(manifest))
                cols[c] = old.to_numpy(dtype=object, copy=True)
            cols[c][p] = value
    return manifest.assign(**cols)
