"""What the review page shows about each queue row besides its decision.

Per row (:class:`RowInfo`): the queue's cells, the image it shows (always a
manifest image, never a path from the queue), a near duplicate's or leakage
row's partner image, and the model's most likely classes, averaged over the
queue's runs (or from the ``flag --probs`` file) as ``flag`` ranked by them; a
``group:ID`` row gets its group's mean. Probabilities that cannot be read cost
their rows the classes, with a warning, never the page.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleaner.formats.issue_kinds import GROUP_PREFIX, has_suggestion
from cleaner.formats.manifest import id_matcher, resolve_paths, sha256_file
from cleaner.formats.prob_table import read_prob_columns
from cleaner.formats.queue_file import QueueMeta
from cleaner.formats.run_files import RunFiles

# Classes per row sent to the page: all of them up to 10 (digits 0-9 get a key
# each), else the most likely ones, which are all that 1-9 can pick. Keeps the
# page's JSON small with a thousand classes.
TOP_CLASSES = 10


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


@dataclass(frozen=True)
class RowInfo:
    """What the page shows about one queue row besides its decision."""

    rank: str
    sample_id: str
    path: str
    group: str
    given: str
    suggested: str
    quality: str
    issue: str
    note: str
    is_group: bool
    members: int | None  # train rows of the group, for group:ID rows
    image: Path | None
    top: tuple[tuple[int, float], ...]  # (class index, probability), most likely first
    probs_from: str  # where the probabilities come from, in words
    partner: str = ""  # the other image of a near_duplicate or leakage row
    partner_image: Path | None = None  # the manifest's image of ``partner``


def _file_probs(
    path: Path, sha256: str, classes: Sequence[str], wanted: set[str]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The probabilities of ``flag --probs FILE`` (the oof.csv layout), unless the file
    changed since the queue was made: then they are not the ones it was ranked by."""
    if not path.is_file():
        return {}, [f"{path} not found: no model probabilities"]
    if sha256 and sha256_file(path) != sha256:
        return {}, [f"{path} changed since the queue was made (sha256): no model probabilities"]
    found, warning = read_prob_columns(path, classes, wanted)
    return found, [warning] if warning else []


def _run_probs(
    meta: QueueMeta, wanted: set[str]
) -> tuple[dict[str, np.ndarray], dict[str, int], list[str]]:
    """Probabilities averaged over the queue's runs (as ``flag`` does), how many runs
    each id had, and warnings for runs that could not be read. A queue made from a
    probabilities file (``runs`` empty, ``probs`` set) has that file's."""
    if not meta.runs and meta.probs is not None:
        found, warnings = _file_probs(meta.probs, meta.probs_sha256, meta.classes, wanted)
        return found, dict.fromkeys(found, 1), warnings
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = defaultdict(int)
    warnings = []
    for run in meta.runs:
        run_dir = Path(run)
        tables = [RunFiles(run_dir).oof, RunFiles(run_dir).unlabeled]
        if not tables[0].is_file():
            warnings.append(f"{tables[0]} not found: no model probabilities from run {run}")
            continue
        for table in tables:
            if not table.is_file():
                continue
            found, warning = read_prob_columns(table, meta.classes, wanted)
            if warning:
                warnings.append(warning)
            for sid, p in found.items():
                sums[sid] = sums[sid] + p if sid in sums else p.copy()
                counts[sid] += 1
    return {sid: s / counts[sid] for sid, s in sums.items()}, dict(counts), warnings


def _top(p: np.ndarray) -> tuple[tuple[int, float], ...]:
    order = np.argsort(-p, kind="stable")[:TOP_CLASSES]
    return tuple((int(k), round(float(p[k]), 5)) for k in order)


def manifest_images(manifest: pd.DataFrame, root: Path) -> dict[str, Path]:
    """sample_id -> the manifest's image: what partners and examples are served from."""
    return dict(zip(manifest["sample_id"], resolve_paths(manifest, root), strict=True))


def _group_members(manifest: pd.DataFrame, group_col: str) -> dict[str, list[str]]:
    """Group value -> its train sample ids: what a ``group:ID`` row's decision covers."""
    if not group_col or group_col not in manifest.columns:
        return {}
    train = manifest[manifest["split"] == "train"]
    return {str(g): list(ids) for g, ids in train.groupby(group_col)["sample_id"]}


def _row_image(
    sid: str,
    cell: str,
    members: list[str] | None,
    by_id: dict[str, Path],
    match: Callable[[str], str | None],
    root: Path,
) -> Path | None:
    """The image a row shows: only ever a manifest image, never a path the queue's
    cell names (a tampered queue could name any file). A sample's own image, or for a
    group row (``members`` its train ids) the member the cell names, else its first."""
    if members is None:
        return by_id.get(match(sid) or "")
    member_paths = [by_id[m] for m in members]
    named = (Path(cell) if os.path.isabs(cell) else root / cell) if cell else None
    return named if named in member_paths else (member_paths[0] if member_paths else None)


def _row_probs(
    sid: str,
    members: list[str] | None,
    probs: dict[str, np.ndarray],
    n_runs: dict[str, int],
    origin: str,
) -> tuple[np.ndarray | None, str]:
    """A row's ``(K,)`` probabilities and where they come from, in words: a sample's
    own (mean of the runs that have it), or a group row's mean over its train images."""
    if members is not None:
        have = [probs[m] for m in members if m in probs]
        if not have:
            return None, ""
        source = f"mean over {len(have)} of the group's {len(members)} train images"
        return np.mean(have, axis=0), source
    if sid not in probs:
        return None, ""
    runs = n_runs.get(sid, 1)
    return probs[sid], origin + (f", mean of {runs} runs" if runs > 1 else "")


def row_infos(
    table: pd.DataFrame, meta: QueueMeta, manifest: pd.DataFrame
) -> tuple[list[RowInfo], list[str]]:
    """Per queue row of ``table``, what the page shows of it, and warnings about
    probabilities that could not be read."""
    root = meta.manifest.parent
    by_id = manifest_images(manifest, root)
    match = id_matcher(by_id)  # the queue's ids as a spreadsheet left them
    members = _group_members(manifest, meta.group_column)
    ids = [_text(s) for s in table["sample_id"]]
    group_of = {
        s: members.get(s[len(GROUP_PREFIX) :], []) for s in ids if s.startswith(GROUP_PREFIX)
    }
    # The manifest's id of each sample row, by the id rule (a spreadsheet trims cells).
    own = {s: match(s) or s for s in ids if not s.startswith(GROUP_PREFIX)}
    wanted = set(own.values()).union(*group_of.values())
    probs, n_runs, warnings = _run_probs(meta, wanted)
    origin = "out-of-fold" if meta.runs else f"from {meta.probs.name}" if meta.probs else ""
    columns = {c: table[c].tolist() for c in table.columns}
    infos = []
    for i, sid in enumerate(ids):
        cell = {c: _text(values[i]) for c, values in columns.items()}  # missing ones: blank
        mine = group_of.get(sid)  # None for a sample's row
        p, source = _row_probs(own.get(sid, sid), mine, probs, n_runs, origin)
        issue = cell.get("issue", "")
        partner = cell.get("partner", "")  # older queues have no such column
        infos.append(
            RowInfo(
                rank=cell.get("rank", ""),
                sample_id=sid,
                path=cell.get("path", ""),
                group=cell.get("group", ""),
                given=cell.get("given_label", ""),
                # By the kind: an older queue may still carry one on an outlier row.
                suggested=cell.get("suggested_label", "") if has_suggestion(issue) else "",
                quality=cell.get("label_quality", ""),
                issue=issue,
                note=cell.get("note", ""),
                is_group=mine is not None,
                members=None if mine is None else len(mine),
                image=_row_image(sid, cell.get("path", ""), mine, by_id, match, root),
                top=() if p is None else _top(p),
                probs_from=source,
                partner=partner,
                partner_image=by_id.get(match(partner) or "") if partner else None,
            )
        )
    return infos, warnings
