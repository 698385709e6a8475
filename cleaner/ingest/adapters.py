"""Adapters that turn raw images into a manifest.

``folder`` (one sub-folder per class, optionally under split folders
``train/``, ``val/``, ``test/``, ``unlabeled/``), ``csv`` (an existing
table), and two bundled sources of real images for measuring: scikit-learn's
1,797 digits and MNIST IDX files. Folders and the bundled sources can inject
documented label noise (:mod:`cleaner.ingest.noise`) into their train rows, keep the
truth in a ``true_label`` column, and hold out a clean ``test`` split.
"""

from __future__ import annotations

import filecmp
import gzip
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.model_selection import train_test_split

from cleaner.core.atomic import atomic_path, default_mode, naming_write_errors
from cleaner.core.config import MAX_IMAGE_PIXELS
from cleaner.core.errors import InputError, Problem
from cleaner.core.project_lock import project_lock
from cleaner.formats.manifest import id_problems, read_text_csv, resolve_paths, write_manifest
from cleaner.ingest.noise import (
    REFERENCE_KINDS,
    REFERENCE_SIZE,
    check_noise,
    inject_noise,
    reference_probs,
    shrink,
)

if TYPE_CHECKING:
    from rich.progress import Progress

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def default_manifest(name: str) -> Path:
    return Path("data_manifests") / f"{name}.csv"


def _relpath(path: Path, manifest: Path) -> str:
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


def _refuse_existing(manifest: Path) -> None:
    if manifest.exists():
        raise InputError(
            [Problem(str(manifest), "already exists; pass --manifest to write a new file")]
        )


# Split folders that ``ingest folder`` recognises above the class folders (names compared
# case-insensitively), and the manifest split of each. val rows join train (and so
# cross-validation); the folder they came from stays in the ``origin`` column.
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "unlabeled": "unlabeled",
}
SPLIT_ORDER = ("train", "val", "test", "unlabeled")
# The values of ``ingest folder --split`` for a folder of class folders.
FOLDER_SPLITS = ("train", "test", "unlabeled")


def _visible(folder: Path) -> list[Path]:
    """The entries of ``folder``, sorted, without hidden ones (``.ipynb_checkpoints``, ``._x``)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _images_under(folder: Path) -> list[Path]:
    """Every image below ``folder``, at any depth, sorted; hidden files and folders skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if _is_image(p) and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _names(paths: Sequence[Path] | Sequence[str]) -> str:
    return ", ".join(p.name if isinstance(p, Path) else p for p in paths)


def _strays(folder: Path, images: list[Path], where: str, fix: str) -> Problem:
    return Problem(
        str(folder),
        f"{len(images)} image(s) directly in the folder (e.g. {images[0].name}) {where}: {fix}",
    )


@dataclass
class _Classes:
    """The class folders of one folder: class name -> its images (at any depth)."""

    folder: Path
    images: dict[str, list[Path]]
    strays: list[Path]  # images directly in ``folder``, in no class folder


def _class_folders(folder: Path) -> _Classes:
    entries = _visible(folder)
    images = {}
    for d in (p for p in entries if p.is_dir()):
        found = _images_under(d)
        if found:  # an empty class folder makes no class
            images[d.name] = found
    return _Classes(folder, images, [p for p in entries if _is_image(p)])


def _labelled(classes: _Classes, problems: list[Problem]) -> None:
    """A train or val folder: class folders only."""
    if not classes.images:
        reason = "no images found in class sub-folders"
        if classes.strays:
            reason += (
                f" ({len(classes.strays)} image(s) directly in the folder are in no class "
                "folder; images without labels go in an unlabeled split)"
            )
        problems.append(Problem(str(classes.folder), reason))
    elif classes.strays:
        problems.append(
            _strays(
                classes.folder,
                classes.strays,
                f"next to class folders {_names(list(classes.images))}",
                "move each into its class folder, or out of this folder",
            )
        )


def _test(classes: _Classes, problems: list[Problem]) -> None:
    """A test folder: class folders (their names become ``true_label``) or images only."""
    if classes.images and classes.strays:
        problems.append(
            _strays(
                classes.folder,
                classes.strays,
                f"next to class folders {_names(list(classes.images))}",
                "put every test image in a class folder (its name becomes true_label) or none",
            )
        )
    elif not classes.images and not classes.strays:
        problems.append(Problem(str(classes.folder), "no images found"))


def _unknown_classes(
    classes: _Classes, train: Sequence[str], split: str, problems: list[Problem]
) -> None:
    """A val or test class that is not a train class could never be predicted."""
    for name in classes.images:
        if name not in train:
            problems.append(
                Problem(
                    str(classes.folder / name),
                    f"{split} class {name!r} is not a train class (train has {_names(train)})",
                )
            )


def _rows(
    images: Sequence[Path], manifest: Path, *, label: str, split: str, **extra: str
) -> list[dict[str, str]]:
    rows = []
    for img in images:
        rel = _relpath(img, manifest)
        rows.append({"sample_id": rel, "path": rel, "label": label, "split": split, **extra})
    return rows


def _split_rows(
    kind: str, folder: Path, manifest: Path, problems: list[Problem], train: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The rows of one split folder (``kind`` is its canonical name, val included)."""
    if kind == "unlabeled":
        # Sub-folders only organise the files: an unlabeled image has no label to take.
        found = _images_under(folder)
        if not found:
            problems.append(Problem(str(folder), "no images found"))
        return _rows(found, manifest, label="", split="unlabeled")
    classes = _class_folders(folder)
    if kind == "test":
        _test(classes, problems)
    else:
        _labelled(classes, problems)
    if kind in ("val", "test") and train:
        _unknown_classes(classes, train, kind, problems)
    rows = []
    for name, found in classes.images.items():
        if kind == "test":
            rows += _rows(found, manifest, label="", split="test", true_label=name)
        else:
            rows += _rows(found, manifest, label=name, split="train")
    if kind == "test" and not classes.images:
        rows += _rows(classes.strays, manifest, label="", split="test")
    return rows


def _split_layout(src: Path) -> dict[str, Path]:
    """The split folders of ``src`` by canonical name; ``{}`` when it holds none."""
    found: dict[str, list[Path]] = {}
    others = []
    for d in (p for p in _visible(src) if p.is_dir()):
        kind = SPLIT_FOLDERS.get(d.name.lower())
        if kind is None:
            others.append(d)
        else:
            found.setdefault(kind, []).append(d)
    if not found:
        return {}
    seen = sorted((d for ds in found.values() for d in ds), key=lambda d: d.name)
    problems = []
    if others:
        problems.append(
            Problem(
                str(src),
                f"found split folders {_names(seen)} and other folders {_names(others)}: "
                "put every class folder under a split folder (train/, val/, test/, unlabeled/), "
                "or ingest the split folders and the class folders separately",
            )
        )
    for kind, ds in found.items():
        if len(ds) > 1:
            problems.append(
                Problem(str(src), f"found {len(ds)} {kind} folders ({_names(ds)}): keep one")
            )
    strays = [p for p in _visible(src) if _is_image(p)]
    if strays:
        problems.append(
            _strays(
                src,
                strays,
                f"next to split folders {_names(seen)}",
                "move each into a split folder",
            )
        )
    if "train" not in found:
        problems.append(
            Problem(
                str(src),
                f"found split folders {_names(seen)} but no train folder: a val or test split "
                "needs one; a test or unlabeled folder alone is ingested with "
                "`cleaner ingest folder DIR --split test` (or unlabeled)",
            )
        )
    if problems:
        raise InputError(problems)
    return {kind: ds[0] for kind, ds in found.items()}


def _folder_rows(
    src: Path, manifest: Path, split: str | None, follow_links: bool
) -> tuple[list[dict[str, str]], list[str], dict[str, Path]]:
    """The rows of ``src``, the manifest's columns, and its split folders (``{}`` if none);
    images behind links are refused as :func:`_link_problems` says."""
    layout = _split_layout(src)
    problems: list[Problem] = []
    if not layout:
        rows = _split_rows(split or "train", src, manifest, problems)
        columns = ["sample_id", "path", "label"] + (["split"] if split else [])
    elif split is not None:
        raise InputError(
            [
                Problem(
                    str(src),
                    f"--split {split} is for a folder without split folders, but this one holds "
                    f"split folders {_names([layout[k] for k in SPLIT_ORDER if k in layout])}: "
                    "leave out --split (each split folder gives its rows their split)",
                )
            ]
        )
    else:
        rows = []
        train: list[str] = []
        for kind in (k for k in SPLIT_ORDER if k in layout):  # train first: its classes
            found = _split_rows(kind, layout[kind], manifest, problems, train)
            if kind == "train":
                train = list(dict.fromkeys(r["label"] for r in found))
            rows += [r | {"origin": kind} for r in found]
        columns = ["sample_id", "path", "label", "split", "origin"]
    if not problems:
        images = [Path(os.path.abspath(manifest.parent / r["path"])) for r in rows]
        problems = _link_problems(images, src, follow_links)
    if problems:
        raise InputError(problems)
    return rows, columns, layout


def _first_link(path: Path, top: Path) -> Path | None:
    """The first symbolic link on the way from ``top`` down to ``path`` (itself included)."""
    here = top
    for part in path.relative_to(top).parts:
        here = here / part
        if here.is_symlink():
            return here
    return None


def _link_problems(images: Sequence[Path], src: Path, follow_links: bool) -> list[Problem]:
    """Images (absolute, as found under ``src``) reached through a link out of the folder
    (unless ``follow_links``), and files reached twice; one problem per link."""
    top, real_top = Path(os.path.abspath(src)), src.resolve()
    first_path: dict[Path, Path] = {}
    problems: dict[str, Problem] = {}
    for image in images:
        real = image.resolve()
        if not follow_links and not real.is_relative_to(real_top):
            out = _first_link(image, top) or image
            problems.setdefault(
                str(out),
                Problem(
                    str(out),
                    f"is a symbolic link to {out.resolve()}, outside {src}: refused; "
                    "pass --follow-links to ingest files outside the folder",
                ),
            )
            continue
        seen = first_path.setdefault(real, image)
        if seen == image:
            continue
        link = _first_link(image, top)
        if link is not None and link != image:  # a linked folder: one problem for all of it
            reason = (
                f"is a symbolic link to {link.resolve()}, whose images are ingested already "
                f"(e.g. {image} is {seen}): each image is ingested once; remove the link"
            )
            problems.setdefault(str(link), Problem(str(link), reason))
        else:
            reason = (
                f"is the same file as {seen} (through a symbolic link): each image is "
                "ingested once; remove the link or the copy"
            )
            problems.setdefault(str(image), Problem(str(image), reason))
    return list(problems.values())


@dataclass(frozen=True)
class _NoiseArgs:
    rate: float
    kind: str
    seed: int
    test_fraction: float


def _decode_small(paths: Sequence[Path], progress: Progress | None) -> np.ndarray:
    """The images at ``paths`` decoded as training does (RGB), shrunk for the reference model.

    A damaged JPEG (cut short, corrupt data: OpenCV fills the rest with grey) or an
    image above the pixel limit is refused, as ``oof`` would refuse it, before any
    is decoded.
    """
    from cleaner.formats.images import damaged_jpeg, load_image, too_large

    problems = []
    for path in paths:
        reason = too_large(path, MAX_IMAGE_PIXELS)
        damage = damaged_jpeg(path) if reason is None else None
        if damage is not None:
            reason = f"damaged JPEG ({damage}): the reference model would learn from grey pixels"
        if reason is not None:
            problems.append(Problem(str(path), reason))
    if problems:
        raise InputError(problems)
    out = np.empty((len(paths), REFERENCE_SIZE, REFERENCE_SIZE, 3), dtype=np.uint8)
    task = None
    if progress is not None:
        task = progress.add_task("decoding for the reference model", total=len(paths), unit="img")
    for i, path in enumerate(paths):
        out[i] = shrink(load_image(path, 3))  # keep only the small copy: memory stays small
        if progress is not None and task is not None:
            progress.advance(task)
    if progress is not None and task is not None:
        progress.remove_task(task)
    return out


def _plant_folder(
    rows: list[dict[str, str]], manifest: Path, args: _NoiseArgs, progress: Progress | None
) -> None:
    """Hold out test rows and flip labels among the train rows of ``rows``, in place."""
    train = [r for r in rows if r["split"] == "train"]
    truth = np.array([r["label"] for r in train])
    classes = np.unique(truth)
    _check_noise_args(args.rate, args.kind, args.test_fraction, len(classes))
    test = _hold_out(truth, args.test_fraction, args.seed)
    kept = [r for r, t in zip(train, test, strict=True) if not t]
    given = _plant_noise(
        truth[~test],
        classes,
        noise=args.rate,
        noise_kind=args.kind,
        seed=args.seed,
        # Lexically, as the path was made: the manifest's folder need not exist yet.
        images=lambda: _decode_small(
            [Path(os.path.abspath(manifest.parent / r["path"])) for r in kept], progress
        ),
    )
    for r, t, held_out in zip(train, truth, test, strict=True):
        r["true_label"] = str(t)
        if held_out:
            r.update(split="test", label="")
    for r, g in zip(kept, given, strict=True):
        r["label"] = str(g)


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


def _write_checked(
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
    mean for :func:`ingest_arrays`, over the train rows (val rows included):
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
    _check_noise_args(noise, noise_kind, test_fraction, n_classes=2)
    plant = noise > 0 or test_fraction > 0
    if plant and split in ("test", "unlabeled"):
        raise InputError(
            f"--noise and --test-fraction act on train rows, and --split {split} makes none"
        )
    manifest = Path(manifest) if manifest else default_manifest(src.resolve().name)
    _refuse_existing(manifest)
    rows, columns, layout = _folder_rows(src, manifest, split, follow_links)
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
        _plant_folder(rows, manifest, _NoiseArgs(noise, noise_kind, seed, test_fraction), progress)
        if test_fraction > 0 and "split" not in columns:
            columns.insert(3, "split")
    if any("true_label" in r for r in rows):
        columns.append("true_label")
    df = _with_ids(pd.DataFrame(rows, columns=columns).fillna(""), manifest, src)
    return _write_checked(
        df, manifest, source=src, skip_bad_images=skip_bad_images, progress=progress
    )


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
    :func:`ingest_folder` checks them (``skip_bad_images`` likewise).
    """
    table = Path(table)
    if not table.is_file():
        raise InputError([Problem(str(table), "table not found")])
    manifest = Path(manifest) if manifest else default_manifest(table.stem)
    _refuse_existing(manifest)
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
        p if os.path.isabs(p) else _relpath(table.parent / p, manifest) for p in df["path"]
    ]
    if "sample_id" not in df.columns:
        df.insert(0, "sample_id", df["path"])
    # Ids are the manifest's keys: refuse repeats now, not at the first oof.
    ids = df["sample_id"].where(df["sample_id"] != "", df["path"])
    problems = id_problems(ids, str(table))
    if problems:
        raise InputError(problems)
    return _write_checked(
        df, manifest, source=table, skip_bad_images=skip_bad_images, progress=progress
    )


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as uint8 images (N, 8, 8) and labels (N,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel values are counts 0..16 of a 4x4 block; stretch them to 0..255.
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return images, d.target.astype(np.int64)


def ingest_digits(
    images_dir: str | Path,
    manifest: str | Path | None = None,
    *,
    noise: float = 0.0,
    noise_kind: str = "uniform",
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Path:
    """scikit-learn's 1,797 digits as PNGs (ids ``digit-0000`` ...) and their manifest
    (default ``data_manifests/digits.csv``), as :func:`ingest_arrays` writes them."""
    images, labels = load_digits_arrays()
    ids = [f"digit-{i:04d}" for i in range(len(labels))]
    return ingest_arrays(
        images, labels, ids, images_dir, manifest or default_manifest("digits"), noise=noise,
        noise_kind=noise_kind, seed=seed, test_fraction=test_fraction,
    )  # fmt: skip


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array of its stored shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise InputError([Problem(str(path), "not an IDX file of unsigned bytes")])
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise InputError([Problem(str(path), f"IDX size does not match its header {dims}")])
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def load_mnist_arrays(idx_dir: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every ``PREFIX-images-idx3-ubyte[.gz]`` with its labels file, concatenated.

    Returns images (N, 28, 28), labels (N,) and sample ids ``PREFIX-00000``.
    """
    idx_dir = Path(idx_dir)
    found = sorted(idx_dir.glob("*-images-idx3-ubyte*"))
    if not found:
        raise InputError([Problem(str(idx_dir), "no *-images-idx3-ubyte[.gz] files")])
    images, labels, ids = [], [], []
    for img_file in found:
        prefix = img_file.name.split("-images-")[0]
        label_files = sorted(idx_dir.glob(f"{prefix}-labels-idx1-ubyte*"))
        if not label_files:
            raise InputError([Problem(str(img_file), "no matching labels file")])
        x, y = read_idx(img_file), read_idx(label_files[0])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise InputError([Problem(str(img_file), "images and labels do not match")])
        images.append(x)
        labels.append(y.astype(np.int64))
        ids += [f"{prefix}-{i:05d}" for i in range(len(y))]
    return np.concatenate(images), np.concatenate(labels), ids


def _check_noise_args(noise: float, noise_kind: str, test_fraction: float, n_classes: int) -> None:
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    try:
        check_noise(rate=noise, kind=noise_kind, n_classes=n_classes)
    except ValueError as e:
        raise InputError(str(e)) from None


def _hold_out(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """A stratified ``test_fraction`` of the rows of ``labels`` (N,), as a boolean mask."""
    n = len(labels)
    test = np.zeros(n, dtype=bool)
    if test_fraction > 0:
        try:
            _, test_idx = train_test_split(
                np.arange(n), test_size=test_fraction, stratify=labels, random_state=seed
            )
        except ValueError as e:  # too few rows of some class for a stratified split
            raise InputError(
                f"--test-fraction {test_fraction}: no stratified test split of {n} rows: {e}"
            ) from None
        test[test_idx] = True
    return test


def _plant_noise(
    labels: np.ndarray,
    classes: np.ndarray,
    *,
    noise: float,
    noise_kind: str,
    seed: int,
    images: Callable[[], np.ndarray],
) -> np.ndarray:
    """``labels`` (N,), values of ``classes`` (sorted), with ``noise`` of them flipped.

    ``images()`` gives the rows' images (N, H, W[, C]); only the kinds that need a
    reference model ask for them, which is fitted on these images and labels.
    """
    # Noise is drawn in class-index space, then mapped back to class values.
    pos = np.searchsorted(classes, labels)
    probs = None
    if noise > 0 and noise_kind in REFERENCE_KINDS:
        counts = np.bincount(pos, minlength=len(classes))
        if np.any(counts == 1):
            raise InputError(
                f"--noise-kind {noise_kind} fits a reference model on two halves of the train "
                f"images and needs at least 2 of every class; class {classes[counts == 1][0]} "
                "has 1"
            )
        pixels = images()
        try:
            probs = reference_probs(pixels, pos, seed=seed, n_classes=len(classes))
        except ValueError as e:
            raise InputError(f"--noise-kind {noise_kind}: {e}") from None
    noisy = inject_noise(
        pos, rate=noise, kind=noise_kind, n_classes=len(classes), seed=seed, pred_probs=probs
    )
    return classes[noisy]


def _write_pngs(images: np.ndarray, names: Sequence[str], images_dir: Path, *, reuse: bool) -> None:
    """``images`` (N, H, W) as PNGs ``names`` in ``images_dir``, all at once (a folder
    renamed into place). ``reuse``: the folder holds these names already, the images of an
    earlier run killed before it wrote its manifest; the same bytes are taken as they are
    (the run then finishes), other ones are refused."""
    images_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{images_dir.name}.", dir=images_dir.parent))
    os.chmod(tmp_dir, default_mode(folder=True))  # mkdtemp makes it 0700
    try:
        for name, img in zip(names, images, strict=True):
            # A full disk names the image, not its temporary folder.
            with naming_write_errors(images_dir / name, tmp_dir):
                Image.fromarray(img).save(tmp_dir / name)
        if reuse:
            other = [n for n in names if not filecmp.cmp(tmp_dir / n, images_dir / n, False)]
            if other:
                raise InputError(
                    [
                        Problem(
                            str(images_dir / other[0]),
                            f"differs from the image this ingest writes ({len(other)} file(s) "
                            "do): the folder is not from an earlier run of the same command",
                        )
                    ]
                )
        else:
            if images_dir.exists():
                images_dir.rmdir()  # empty, checked by the caller
            os.replace(tmp_dir, images_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)


def ingest_arrays(
    images: np.ndarray,
    labels: np.ndarray,
    sample_ids: Sequence[str],
    images_dir: str | Path,
    manifest: str | Path,
    *,
    noise: float = 0.0,
    noise_kind: str = "uniform",
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Path:
    """Write images (N, H, W) as PNG files and a manifest with measured label noise.

    A stratified ``test_fraction`` of rows becomes the clean ``test`` split
    (label empty, as for a competition's test set); ``noise`` of the remaining
    train labels are flipped (:func:`cleaner.ingest.noise.inject_noise`; for the kinds
    that need a reference model, one fitted on the train images). The truth
    stays in ``true_label`` for every row.
    """
    images_dir, manifest = Path(images_dir), Path(manifest)
    _refuse_existing(manifest)
    names = [f"{sid}.png" for sid in sample_ids]
    found = {p.name for p in images_dir.iterdir()} if images_dir.is_dir() else set()
    if found and found != set(names):
        raise InputError(
            [
                Problem(
                    str(images_dir),
                    "image folder exists and is not empty (it holds files this ingest does "
                    "not write); choose another",
                )
            ]
        )
    classes = np.unique(labels)
    # Validate the noise arguments before anything is written.
    _check_noise_args(noise, noise_kind, test_fraction, len(classes))
    train = ~_hold_out(labels, test_fraction, seed)
    split = np.where(train, "train", "test").astype(object)
    given = labels.copy()
    given[train] = _plant_noise(
        labels[train],
        classes,
        noise=noise,
        noise_kind=noise_kind,
        seed=seed,
        images=lambda: images[train],
    )

    manifest.parent.mkdir(parents=True, exist_ok=True)
    with project_lock(manifest.parent, f"cleaner ingest {manifest}"):
        # Checked again under the lock: another ingest may have written it meanwhile.
        _refuse_existing(manifest)
        _write_pngs(images, names, images_dir, reuse=bool(found))
        return _write_arrays_manifest(sample_ids, images_dir, manifest, given, split, labels)


def _write_arrays_manifest(
    sample_ids: Sequence[str],
    images_dir: Path,
    manifest: Path,
    given: np.ndarray,
    split: np.ndarray,
    labels: np.ndarray,
) -> Path:
    """The manifest of :func:`ingest_arrays`' images; the images go if it cannot be written."""
    df = pd.DataFrame(
        {
            "sample_id": list(sample_ids),
            "path": [_relpath(images_dir / f"{sid}.png", manifest) for sid in sample_ids],
            "label": [str(g) if s == "train" else "" for g, s in zip(given, split, strict=True)],
            "split": split,
            "true_label": [str(t) for t in labels],
        }
    )
    try:
        return write_manifest(df, manifest)
    except BaseException:
        shutil.rmtree(images_dir, ignore_errors=True)
        raise
