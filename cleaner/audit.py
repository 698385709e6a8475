"""The audit log: one JSON line per reviewer decision, for every version of a manifest.

``NAME.audit.jsonl`` sits beside ``NAME.csv`` and its versions. Each line has
``sample_id, old_label, new_label, action, reviewer, time, label_quality,
run, manifest_sha256`` (the manifest version the decision was applied to).
Lines are only ever appended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cleaner.errors import InputError, Problem

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


def read_audit_log(path: str | Path) -> list[dict[str, Any]]:
    """Every record of an audit log, oldest first; a missing log has none."""
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
    return records


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
