"""Adapters that turn raw images into a manifest.

``folder`` (one sub-folder per class), ``csv`` (an existing table), and two
bundled sources of real images for measuring: scikit-learn's 1,797 digits and
MNIST IDX files. The bundled sources can inject documented label noise
(:mod:`cleaner.noise`) into their train rows, keep the truth in a
``true_label`` column, and hold out a clean ``test`` split.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.model_selection import train_test_split

from cleaner.atomic import default_mode
from cleaner.errors import InputError, Problem
from cleaner.manifest import line_of, read_text_csv, trim_collisions, write_manifest
from cleaner.noise import inject_noise

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def default_manifest(name: str) -> Path:
    return Path("data_manifests") / f"{name}.csv"


def _relpath(path: Path, manifest: Path) -> str:
    """``path`` relative to the manifest's folder."""
    # abspath, not resolve: a symlinked image folder stays a symlink.
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(manifest.parent))).as_posix()


def _refuse_existing(manifest: Path) -> None:
    if manifest.exists():
        raise InputError(
            [Problem(str(manifest), "already exists; pass --manifest to write a new file")]
        )


def ingest_folder(src_dir: str | Path, manifest: str | Path | None = None) -> Path:
    """Manifest of ``SRC_DIR/<class>/<image>``: one sub-folder per class."""
    src = Path(src_dir)
    if not src.is_dir():
        raise InputError([Problem(str(src), "not a folder")])
    manifest = Path(manifest) if manifest else default_manifest(src.resolve().name)
    _refuse_existing(manifest)
    rows = []
    for class_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        for img in sorted(class_dir.rglob("*")):
            if img.is_file() and img.suffix.lower() in IMAGE_EXTENSIONS:
                rel = _relpath(img, manifest)
                rows.append({"sample_id": rel, "path": rel, "label": class_dir.name})
    if not rows:
        raise InputError([Problem(str(src), "no images found in class sub-folders")])
    return write_manifest(pd.DataFrame(rows), manifest)


def ingest_csv(
    table: str | Path,
    *,
    path_col: str,
    label_col: str,
    id_col: str = "",
    group_col: str = "",
    split_col: str = "",
    manifest: str | Path | None = None,
) -> Path:
    """Manifest from an existing table; its image paths are relative to the table's folder.

    The named columns become ``path``, ``label``, ``sample_id``, ``group`` and
    ``split``; every other column is kept unchanged.
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
        raise InputError([Problem(str(table), f"column(s) not found: {', '.join(missing)}", 1)])
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
    problems = [
        Problem(str(table), f"sample_id {ids.iat[int(i)]!r} repeats", line_of(int(i)))
        for i in np.flatnonzero(ids.duplicated().to_numpy())
    ]
    problems += trim_collisions(ids, str(table))
    if problems:
        raise InputError(problems)
    return write_manifest(df, manifest)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as uint8 images (N, 8, 8) and labels (N,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    # Pixel values are counts 0..16 of a 4x4 block; stretch them to 0..255.
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return images, d.target.astype(np.int64)


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
    train labels are flipped (:func:`cleaner.noise.inject_noise`). The truth
    stays in ``true_label`` for every row.
    """
    images_dir, manifest = Path(images_dir), Path(manifest)
    _refuse_existing(manifest)
    if images_dir.exists() and any(images_dir.iterdir()):
        raise InputError([Problem(str(images_dir), "image folder exists and is not empty")])
    if not 0.0 <= test_fraction < 1.0:
        raise InputError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    n = len(labels)
    classes = np.unique(labels)
    try:
        # Validate the noise arguments before anything is written.
        inject_noise(labels[:0], rate=noise, kind=noise_kind, n_classes=len(classes), seed=seed)
    except ValueError as e:
        raise InputError(str(e)) from None
    split = np.array(["train"] * n, dtype=object)
    if test_fraction > 0:
        try:
            _, test_idx = train_test_split(
                np.arange(n), test_size=test_fraction, stratify=labels, random_state=seed
            )
        except ValueError as e:  # too few rows of some class for a stratified split
            raise InputError(
                f"--test-fraction {test_fraction}: no stratified test split of {n} rows: {e}"
            ) from None
        split[test_idx] = "test"
    train = split == "train"
    given = labels.copy()
    # Noise is drawn in class-index space, then mapped back to class values.
    pos = np.searchsorted(classes, labels[train])
    noisy = inject_noise(pos, rate=noise, kind=noise_kind, n_classes=len(classes), seed=seed)
    given[train] = classes[noisy]

    images_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{images_dir.name}.", dir=images_dir.parent))
    os.chmod(tmp_dir, default_mode(folder=True))  # mkdtemp makes it 0700
    try:
        for sid, img in zip(sample_ids, images, strict=True):
            Image.fromarray(img).save(tmp_dir / f"{sid}.png")
        if images_dir.exists():
            images_dir.rmdir()  # empty, checked above
        os.replace(tmp_dir, images_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
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
