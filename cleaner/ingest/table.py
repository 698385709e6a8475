"""``cleaner ingest csv``: a manifest from an existing table of image paths and labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cleaner.core.errors import InputError, Problem
from cleaner.formats.manifest import id_problems, read_text_csv
from cleaner.ingest.output import default_manifest, refuse_existing, relpath, write_checked

if TYPE_CHECKING:
    from rich.progress import Progress


def ingest_csv(
    table: str | Path,
    *,
    path_col: str,
    label_col: str,
    id_col: str = "",
    group_col: str = "",
    split_col: str = "",
    manifest: str | Path | None = None,
    skip_bad_images: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Manifest from an existing table; its image paths are relative to the table's folder.

    The named columns become ``path``, ``label``, ``sample_id``, ``group`` and
    ``split``; every other column is kept unchanged. The images are checked as
    :func:`cleaner.ingest.folder.ingest_folder` checks them (``skip_bad_images`` likewise).
    """
    table = Path(table)
    if not table.is_file():
        raise InputError([Problem(str(table), "table not found")])
    manifest = Path(manifest) if manifest else default_manifest(table.stem)
    refuse_existing(manifest)
    df = read_text_csv(table)
    mapping = {
        c: std
        for c, std in (
            (path_col, "path"),
            (label_col, "label"),
            (id_col, "sample_id"),
            (group_col, "group"),
            (split_col, "split"),
        )
        if c
    }
    missing = [c for c in mapping if c not in df.columns]
    if missing:
        have = ", ".join(map(str, df.columns))
        raise InputError(
            [Problem(str(table), f"column(s) not found: {', '.join(missing)} (it has: {have})", 1)]
        )
    clash = [c for c in df.columns if c in mapping.values() and c not in mapping]
    if clash:
        raise InputError(
            [Problem(str(table), f"column(s) {', '.join(clash)} would be overwritten", 1)]
        )
    df = df.rename(columns=mapping)
    # Absolute paths stay absolute; relative ones move from the table's folder to the manifest's.
    df["path"] = [
        p if os.path.isabs(p) else relpath(table.parent / p, manifest) for p in df["path"]
    ]
    if "sample_id" not in df.columns:
        df.insert(0, "sample_id", df["path"])
    # Ids are the manifest's keys: refuse repeats now, not at the first oof.
    ids = df["sample_id"].where(df["sample_id"] != "", df["path"])
    problems = id_problems(ids, str(table))
    if problems:
        raise InputError(problems)
    return write_checked(
        df, manifest, source=table, skip_bad_images=skip_bad_images, progress=progress
    )
