"""``cleaner repoint``: the next manifest version, its images looked for in a moved folder.

The images moved (a new disk, the project copied to another machine, a
dataset folder renamed): every command that reads them refuses, naming the
missing ones. ``repoint`` replaces the folder that held every image (or the
part given with ``--from``) by the new one, checks that each image is there,
and writes ``NAME.v{N+1}.csv`` with one audit-log line (:mod:`cleaner.formats.repoint`),
committed as ``apply`` commits a version. Labels, splits and weights are unchanged,
so ``flag`` and ``round`` still take a run of the version before.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cleaner.core.errors import InputError, Problem
from cleaner.core.project_lock import project_lock
from cleaner.formats.audit import append_records, audit_context, read_audit_log
from cleaner.formats.manifest import (
    audit_log_path,
    line_of,
    newest_version,
    next_version_path,
    read_manifest,
    resolve_paths,
    sha256_file,
)
from cleaner.formats.repoint import image_root, repoint_paths, repoint_record
from cleaner.ingest.output import relpath

SHOWN = 20  # missing images named one by one; the rest are counted


@dataclass(frozen=True)
class RepointResult:
    version: Path  # the version written
    old_root: str  # the folder replaced, as the manifest wrote it
    new_root: str  # its replacement, as the new version writes it
    rows: int


def repoint(
    manifest: str | Path, folder: str | Path, *, old_root: str | None = None
) -> RepointResult:
    """Write the next version of ``manifest`` with its images under ``folder``."""
    manifest = Path(manifest)
    newest = newest_version(manifest)
    if newest != manifest:
        raise InputError(
            [
                Problem(
                    str(manifest),
                    f"{newest.name} is newer: repoint the newest version, "
                    f"`cleaner repoint {newest} {folder}`",
                )
            ]
        )
    if not Path(folder).is_dir():
        raise InputError([Problem(str(folder), "not a folder")])
    with project_lock(manifest.parent, f"cleaner repoint {manifest}"):
        df = read_manifest(manifest)
        old = old_root if old_root is not None else image_root(list(df["path"]))
        new = (
            relpath(Path(folder), manifest)
            if not Path(old).is_absolute()
            else str(Path(folder).resolve().as_posix())
        )
        if new == old:
            raise InputError(
                [Problem(str(manifest), f"its images are under {old} already: nothing to do")]
            )
        moved = df.assign(path=repoint_paths(list(df["path"]), old, new, file=str(manifest)))
        _require_there(moved, manifest, folder)
        data = moved.to_csv(index=False, lineterminator="\n").encode("utf-8")
        target = next_version_path(manifest)
        if target.exists():
            raise InputError(
                [Problem(str(target), "already exists; versions are never overwritten")]
            )
        context = audit_context(reviewer="", manifest_sha256=sha256_file(manifest))
        log = audit_log_path(manifest)
        read_audit_log(log)  # a damaged log is refused, not extended
        append_records(
            log,
            [repoint_record(old, new, len(df), context)],
            version=target,
            version_sha256=hashlib.sha256(data).hexdigest(),
            version_data=data,
        )
    return RepointResult(target, old, new, len(df))


def _require_there(df: pd.DataFrame, manifest: Path, folder: str | Path) -> None:
    """Refuse unless every image (rows not excluded) is at its new place."""
    rows = [i for i, s in enumerate(df["split"]) if s != "excluded"]
    paths = resolve_paths(df.iloc[rows], manifest.parent)
    missing = [(i, p) for i, p in zip(rows, paths, strict=True) if not p.is_file()]
    if not missing:
        return
    head = Problem(
        str(folder),
        f"{len(missing):,} of the {len(rows):,} images are not there; nothing was written "
        "(pass --from FOLDER when only part of the paths changed)",
    )
    shown = [
        Problem(str(manifest), f"would be {os.path.normpath(p)}: not found", line_of(i))
        for i, p in missing[:SHOWN]
    ]
    more = (
        [Problem(str(manifest), f"and {len(missing) - SHOWN:,} more")]
        if len(missing) > SHOWN
        else []
    )
    raise InputError([head, *shown, *more])
