"""The audit log: one JSON line per reviewer decision, for every version of a manifest.

``NAME.audit.jsonl`` sits beside ``NAME.csv`` and its versions. Each line has
``sample_id, old_label, new_label, action, reviewer, time, label_quality,
run, manifest_sha256`` (the manifest version the decision was applied to),
and from ``apply`` also ``version`` and ``version_sha256``: the file name and
sha256 of the version the decision produced (the version it was applied to,
when nothing changed).

One commit point: ``apply`` writes the log first, naming the new version, and
renames the version into place last. A reader counts a line only when the
version it names exists beside the log with that sha256, so a kill between
the two writes leaves the old state (the lines are ignored) and a finished
apply the complete new one. Lines without ``version`` (older logs) count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cleaner.errors import InputError, Problem
from cleaner.manifest import sha256_file

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
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(str(path), f"not valid JSON: {e.msg}", n))
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
    records = read_audit_log(log)
    logged = manifest[manifest["sample_id"].isin({str(r["sample_id"]) for r in records})]
    current = dict(zip(logged["sample_id"], logged["label"].str.strip(), strict=True))
    return decided_sample_ids(records, current)
