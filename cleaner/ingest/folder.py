"""``cleaner ingest folder``: the manifest of an image folder.

The folder's layout is read by :mod:`cleaner.ingest.folder_layout`; label noise
and a held-out test split are planted on request (:mod:`cleaner.ingest.planting`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cleaner.core.errors import InputError, Problem
from cleaner.ingest.folder_layout import FOLDER_SPLITS, folder_rows
from cleaner.ingest.output import default_manifest, refuse_existing, write_checked
from cleaner.ingest.planting import NoiseArgs, check_noise_args, plant_folder

if TYPE_CHECKING:
    from rich.progress import Progress


def _with_ids(df: pd.DataFrame, manifest: Path, src: Path) -> pd.DataFrame:
    """Ids name the image inside SRC_DIR ("train/cat/1.jpg"): stable wherever the manifest
    is written, unlike its path, which is relative to the manifest's folder. As found
    (a link's own name), so an id never leads out of the folder."""
    df["sample_id"] = [
        Path(os.path.relpath(os.path.abspath(manifest.parent / p), os.path.abspath(src))).as_posix()
        for p in df["path"]
    ]
    return df


def ingest_folder(
    src_dir: str | Path,
    manifest: str | Path | None = None,
    *,
    split: str | None = None,
    noise: float = 0.0,
    noise_kind: str = "uniform",
    seed: int = 0,
    test_fraction: float = 0.0,
    follow_links: bool = False,
    skip_bad_images: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Manifest of ``SRC_DIR/<class>/<image>``, or of split folders above the class folders.

    Split layout: ``SRC_DIR/{train,val,test,unlabeled}/...`` (``valid`` and
    ``validation`` for val, names in any case). train and val hold class
    folders; val rows become ``train`` rows (they join cross-validation) and
    every row's folder is kept in ``origin``. test holds class folders, whose
    names go to ``true_label`` (``label`` stays empty), or images directly
    (no ``true_label``). unlabeled holds images at any depth; sub-folder names
    are not labels. A val or test class must be a train class.

    ``split`` (``train``, ``test`` or ``unlabeled``) reads a folder without
    split folders as that one split folder; without it, the folder is
    ``SRC_DIR/<class>/<image>`` and the manifest has no ``split`` column.
    Hidden files and folders are skipped. An ambiguous layout raises
    :class:`InputError` naming what was found, before anything is written.

    Symbolic links are followed only to files inside ``SRC_DIR`` (the real
    folder); a link out of it is refused unless ``follow_links``. Each file is
    ingested once: one reached by two paths (a link beside its target) is refused.

    ``test_fraction``, ``noise``, ``noise_kind`` and ``seed`` mean what they
    mean for :func:`cleaner.ingest.arrays.ingest_arrays`, over the train rows (val rows included):
    a stratified ``test_fraction`` of them becomes ``test`` rows (label
    empty), then ``noise`` of the rest are flipped; every train and held-out
    row keeps its folder's class in ``true_label``. A folder that has its own
    test split takes no ``test_fraction``. The reference kinds decode the
    train images (``progress`` shows it).

    Every image is decoded once with training's decoder before anything is written: the
    unreadable, empty, truncated or not-an-image files are refused in one error, or left
    out with ``skip_bad_images`` (listed in ``NAME.skipped.csv``).
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise InputError([Problem(str(src), "not a folder")])
    if split is not None and split not in FOLDER_SPLITS:
        raise InputError(f"--split must be one of {', '.join(FOLDER_SPLITS)}, got {split!r}")
    check_noise_args(noise, noise_kind, test_fraction, n_classes=2)
    plant = noise > 0 or test_fraction > 0
    if plant and split in ("test", "unlabeled"):
        raise InputError(
            f"--noise and --test-fraction act on train rows, and --split {split} makes none"
        )
    manifest = Path(manifest) if manifest else default_manifest(src.resolve().name)
    refuse_existing(manifest)
    rows, columns, layout = folder_rows(src, manifest, split, follow_links)
    if plant:
        if test_fraction > 0 and "test" in layout:
            raise InputError(
                [
                    Problem(
                        str(layout["test"]),
                        "--test-fraction holds out test rows, but this folder has its own test "
                        "split: leave out --test-fraction (or move the test folder away)",
                    )
                ]
            )
        plant_folder(rows, manifest, NoiseArgs(noise, noise_kind, seed, test_fraction), progress)
        if test_fraction > 0 and "split" not in columns:
            columns.insert(3, "split")
    if any("true_label" in r for r in rows):
        columns.append("true_label")
    df = _with_ids(pd.DataFrame(rows, columns=columns).fillna(""), manifest, src)
    return write_checked(
        df, manifest, source=src, skip_bad_images=skip_bad_images, progress=progress
    )
