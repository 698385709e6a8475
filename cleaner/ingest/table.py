"""``cleaner ingest csv``: a manifest from an existing table of image paths and labels."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cleaner.core.errors import InputError, Problem
from cleaner.formats.annotations import ANNOTATOR_PREFIX, majority_labels, parse_wide, read_long
from cleaner.formats.manifest import id_problems, read_text_csv
from cleaner.ingest.output import default_manifest, refuse_existing, relpath, write_checked

if TYPE_CHECKING:
    from rich.progress import Progress


def ingest_csv(
    table: str | Path,
    *,
    path_col: str,
    label_col: str = "",
    annotator_col: Sequence[str] = (),
    annotations: str | Path | None = None,
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

    ``annotator_col`` names columns that each hold one annotator's labels (several
    labels per image): each becomes ``annotator:NAME``, every train row needs a label
    from one of them, and without ``label_col`` the label is their majority
    (:func:`cleaner.formats.annotations.majority_labels`). ``annotations`` is the
    long form of the same (``sample_id,annotator,label[,time]``, one line per sample and
    annotator), merged in as ``annotator:NAME`` columns.
    """
    table = Path(table)
    if not table.is_file():
        raise InputError([Problem(str(table), "table not found")])
    manifest = Path(manifest) if manifest else default_manifest(table.stem)
    refuse_existing(manifest)
    df = read_text_csv(table)
    if not label_col and not annotator_col and annotations is None:
        raise InputError(
            [Problem(str(table), "give --label-col, --annotator-col or --annotations")]
        )
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
    mapping |= {c: f"{ANNOTATOR_PREFIX}{c}" for c in annotator_col}
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
    if annotations is not None:
        df = _merge_long(df, Path(annotations), needs_label=not label_col and not annotator_col)
    if annotator_col or annotations is not None:
        columns = [c for c in df.columns if str(c).startswith(ANNOTATOR_PREFIX)]
        _check_annotations(df, table, label_col, columns)
    return write_checked(
        df, manifest, source=table, skip_bad_images=skip_bad_images, progress=progress
    )


def _check_annotations(df: pd.DataFrame, table: Path, label_col: str, columns: list[str]) -> None:
    """Every annotator label checked (a train row with none is refused, naming its line);
    without a label column, ``label`` becomes the annotators' majority."""
    if not label_col:
        df["label"] = majority_labels(df, columns)
    kept = ["sample_id", "path", "split", *columns]
    wide = df[[c for c in kept if c in df.columns]]
    # With a label column a row needs no annotation; without, every train row needs one.
    needs = [False] * len(wide) if label_col else None
    parse_wide(wide, file=table, needs_label=needs)  # InputError listing every bad cell


def _merge_long(df: pd.DataFrame, path: Path, *, needs_label: bool) -> pd.DataFrame:
    """The long form's annotations as ``annotator:NAME`` columns of the table's rows (every
    line checked: an unknown sample, an empty cell, one annotator twice on one image)."""
    ids = df["sample_id"].where(df["sample_id"] != "", df["path"]).tolist()
    train = (df["split"] == "train") if "split" in df.columns else pd.Series(True, index=df.index)
    notes = read_long(path, sample_ids=ids, needs_label=train.to_numpy() & needs_label)
    wide = notes.to_wide().drop(columns="sample_id")
    clash = [c for c in wide.columns if c in df.columns]
    if clash:
        raise InputError([Problem(str(path), f"annotator(s) also given as columns: {clash}")])
    return pd.concat([df.reset_index(drop=True), wide.reset_index(drop=True)], axis=1)
