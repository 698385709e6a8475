"""The manifest an ingest writes: its default name, image paths relative to it, and the
checks before it is written.

Every adapter refuses to overwrite a manifest, stores image paths relative to
the manifest's folder, and writes the manifest only once every image passed
training's decoder (or, with ``--skip-bad-images``, without the bad ones, listed
in ``NAME.skipped.csv``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cleaner.core.atomic import atomic_path
from cleaner.core.errors import InputError, Problem
from cleaner.formats.manifest import resolve_paths, write_manifest

if TYPE_CHECKING:
    from rich.progress import Progress


def default_manifest(name: str) -> Path:
    return Path("data_manifests") / f"{name}.csv"


def relpath(path: Path, manifest: Path) -> str:
    """``path`` relative to the manifest's folder."""
    # abspath, not resolve: a symlinked image folder stays a symlink.
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(manifest.parent))).as_posix()


def manifest_for_init(src: Path) -> Path:
    """The manifest ``cleaner init FOLDER`` ingests the folder into; refused when it
    exists (init has no --manifest: the hint names the commands that go on)."""
    manifest = default_manifest(src.resolve().name)
    if manifest.exists():
        raise InputError(
            [
                Problem(
                    str(manifest),
                    f"already exists (an earlier ingest of {src}?): start from it with "
                    f"`cleaner init {manifest}`, or ingest the folder under another name "
                    f"with `cleaner ingest folder {src} --manifest data_manifests/NEW.csv`",
                )
            ]
        )
    return manifest


def refuse_existing(manifest: Path) -> None:
    if manifest.exists():
        raise InputError(
            [Problem(str(manifest), "already exists; pass --manifest to write a new file")]
        )


def skipped_path(manifest: Path) -> Path:
    """``NAME.skipped.csv`` beside the manifest: the image files ``--skip-bad-images`` left out."""
    return manifest.with_name(f"{manifest.stem}.skipped.csv")


def _bad_images(df: pd.DataFrame, manifest: Path, progress: Progress | None) -> pd.DataFrame:
    """``path, sample_id, reason`` of every row whose image training could not use, each
    file decoded once with training's decoder (:func:`cleaner.formats.images.bad_images`)."""
    from cleaner.formats.images import bad_images  # OpenCV loads only here

    # The manifest's folder may not exist yet: its ".." is then resolved as text.
    paths = [Path(os.path.normpath(os.path.abspath(p))) for p in resolve_paths(df, manifest.parent)]
    task = progress.add_task("checking images", total=len(paths), unit="img") if progress else None
    found = bad_images(
        paths, advance=(lambda: progress.advance(task)) if progress and task is not None else None
    )
    if progress and task is not None:
        progress.remove_task(task)
    rows = [i for i, _ in found]
    return pd.DataFrame(
        {
            "path": [str(paths[i]) for i in rows],
            "sample_id": df["sample_id"].to_numpy()[rows] if "sample_id" in df else "",
            "reason": [reason for _, reason in found],
            "row": rows,
        }
    )


def write_checked(
    df: pd.DataFrame,
    manifest: Path,
    *,
    source: Path,
    skip_bad_images: bool,
    progress: Progress | None,
) -> Path:
    """Write the manifest once every image passed training's decoder: the bad files are
    refused all at once, naming each and why (nothing written), or with
    ``skip_bad_images`` left out of the manifest and listed in ``NAME.skipped.csv``."""
    bad = _bad_images(df, manifest, progress)
    if bad.empty:
        return write_manifest(df, manifest)
    skipped = skipped_path(manifest)
    if not skip_bad_images:
        problems = [
            Problem(p, reason) for p, reason in zip(bad["path"], bad["reason"], strict=True)
        ]
        problems.append(
            Problem(
                str(source),
                f"{len(bad)} of {len(df)} image files cannot be used for training; nothing "
                "written. Replace or delete them, or pass --skip-bad-images to write the "
                f"manifest without them (listed in {skipped})",
            )
        )
        raise InputError(problems)
    if skipped.exists():
        raise InputError([Problem(str(skipped), "already exists: move it away first")])
    out = write_manifest(df.drop(index=df.index[bad["row"]]).reset_index(drop=True), manifest)
    with atomic_path(skipped) as tmp:
        bad.drop(columns="row").to_csv(tmp, index=False)
    return out
