"""The layout of an image folder read into manifest rows: class folders, split folders, links.

``SRC_DIR/<class>/<image>``, or split folders (``train/``, ``val/``, ``test/``,
``unlabeled/``) above the class folders; hidden files and folders skipped. An
ambiguous layout (split folders beside other folders, images beside class
folders, a val or test class that is not a train class) and images reached
through a link out of the folder or twice are refused, every problem named,
before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cleaner.core.errors import InputError, Problem
from cleaner.ingest.output import relpath

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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
        rel = relpath(img, manifest)
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


def folder_rows(
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
