"""Re-pointing a manifest at a moved image folder: the path arithmetic and its log line.

A manifest names each image relative to its own folder (or absolutely). When the
images move, ``cleaner repoint`` (:mod:`cleaner.ingest.repoint`) writes the next
version with the folder that held them all replaced by the new one, and one
audit-log line that says so: ``action`` ``repoint``, an empty ``sample_id`` (it
decides no sample, so :func:`cleaner.formats.audit.decided_sample_ids` never
counts it), ``old_root``, ``new_root`` and ``rows``. The labels do not change, so
a run of the version before still scores this one: :func:`repoint_chain` lists
the versions that only repoints lie between.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cleaner.core.errors import InputError, Problem
from cleaner.formats.manifest import next_version_path

REPOINT = "repoint"


def _posix(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


def image_root(paths: Sequence[str]) -> str:
    """The deepest folder that holds every path, as the manifest writes them (POSIX)."""
    if not len(paths):
        raise InputError("the manifest lists no image")
    parents = [posixpath.dirname(_posix(p)) or "." for p in paths]
    if len({posixpath.isabs(p) for p in parents}) > 1:
        raise InputError(
            "the manifest mixes absolute and relative image paths: pass --from FOLDER, "
            "the part of the paths to replace"
        )
    return posixpath.commonpath(parents) or "."


def repoint_paths(
    paths: Sequence[str], old_root: str, new_root: str, *, file: str = "manifest"
) -> list[str]:
    """Each path with its leading ``old_root`` folder replaced by ``new_root``; a path
    not under ``old_root`` is refused (all of them listed, with their lines)."""
    old, new = _posix(old_root), _posix(new_root)
    out, problems = [], []
    for i, path in enumerate(paths):
        p = _posix(path)
        under = old == "." and not posixpath.isabs(p) and not p.startswith("../")
        if not under and posixpath.isabs(p) == posixpath.isabs(old):
            under = posixpath.commonpath([p, old]) == old
        if not under:
            problems.append(Problem(file, f"{path} is not under {old_root}", i + 2))
            continue
        out.append(_posix(posixpath.join(new, posixpath.relpath(p, old))))
    if problems:
        raise InputError(problems)
    return out


def repoint_record(
    old_root: str, new_root: str, rows: int, context: Mapping[str, Any]
) -> dict[str, Any]:
    """The audit-log line of one repoint (``context``: reviewer, time, manifest_sha256)."""
    return {
        "sample_id": "",
        "action": REPOINT,
        "old_root": old_root,
        "new_root": new_root,
        "rows": rows,
        **context,
    }


def repoint_chain(manifest: Path, records: Sequence[Mapping[str, Any]]) -> list[Path]:
    """``manifest`` and the versions after it that a repoint alone made, in order (their
    labels, splits and weights are ``manifest``'s)."""
    made: dict[str, set[str]] = {}
    for r in records:
        made.setdefault(str(r.get("version", "")), set()).add(str(r.get("action", "")))
    chain = [Path(manifest)]
    while (after := next_version_path(chain[-1])).exists() and made.get(after.name) == {REPOINT}:
        chain.append(after)
    return chain
