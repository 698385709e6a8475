"""The records that say what a run folder is: the manifest it was made from, and finished.

``manifest.sha256`` names the manifest (its sha256 and its path relative to
the run folder); the completion record (``metrics.json``, written last) says the
merge finished. :func:`require_finished` refuses what is not a finished oof run
(a missing folder, an ensemble, a retrain folder, an unfinished run) before any
reader looks inside.
"""

from __future__ import annotations

import os
from pathlib import Path

from cleaner.core.errors import InputError, Problem
from cleaner.formats.run_files import RunFiles


def manifest_record(sha: str, manifest: Path, run_dir: Path) -> str:
    """``manifest.sha256``'s text: the sha256 and the manifest's path relative to the run
    folder, so that a project moved or copied as a whole keeps its runs readable."""
    try:
        stored = os.path.relpath(manifest.resolve(), run_dir.resolve())
    except ValueError:  # another drive (Windows): no relative path exists
        stored = str(manifest.resolve())
    return f"{sha}  {Path(stored).as_posix()}\n"


def read_manifest_record(run_dir: Path) -> tuple[str, Path]:
    """The sha256 and path ``manifest.sha256`` records. The path is relative to the run
    folder; older runs stored it relative to the working directory, the fallback."""
    path = RunFiles(run_dir).manifest_record
    if not path.is_file():
        raise InputError([Problem(str(path), "not found: the run folder is incomplete")])
    sha, _, stored = path.read_text().rstrip("\n").partition("  ")
    beside = Path(os.path.normpath(run_dir / stored))
    if not stored or beside.exists() or not Path(stored).exists():
        return sha.strip(), beside
    return sha.strip(), Path(stored)


def require_finished(run_dir: Path) -> None:
    """Refuse what is not a finished run folder: missing, an ensemble, unfinished."""
    files = RunFiles(run_dir)
    if not run_dir.is_dir():
        raise InputError([Problem(str(run_dir), "run folder not found")])
    if not files.oof.exists() and files.ensemble.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    "an ensemble folder (oof --repeats), not one run: give it to flag or "
                    "retrain --oof, which read its members, or name a member (repeat-K)",
                )
            ]
        )
    if not files.oof.exists() and files.train_weights.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    "a retrain folder (its final model and report), not an oof run: flag "
                    "reads the out-of-fold probabilities `cleaner oof` writes; for the next "
                    "round, run `cleaner oof PIPELINE --set data.manifest=NEWEST_VERSION "
                    "--out runs/NAME` and flag that folder",
                )
            ]
        )
    if not files.oof.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    f"no {files.oof.name}: the run is not finished; "
                    "run `cleaner oof` with the same arguments to finish it",
                )
            ]
        )
    require_complete(run_dir)


def require_complete(run_dir: Path) -> None:
    """Refuse a run whose merge stopped before its last file, the completion record
    (``metrics.json``, written last)."""
    record = RunFiles(run_dir).metrics
    if not record.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    f"no {record.name}: the run is not finished (its merge stopped "
                    "before the last file); run `cleaner oof` with the same arguments to "
                    "finish it",
                )
            ]
        )
