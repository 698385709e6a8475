"""Images held as arrays written as PNG files with a manifest: the bundled sources of
real images for measuring, scikit-learn's 1,797 digits and MNIST IDX files.

The images are written all at once (a folder renamed into place), with documented
label noise planted into their train rows (:mod:`cleaner.ingest.planting`), the
truth kept in ``true_label`` and a clean ``test`` split held out.
"""

from __future__ import annotations

import filecmp
import gzip
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cleaner.core.atomic import default_mode, naming_write_errors
from cleaner.core.errors import InputError, Problem
from cleaner.core.project_lock import project_lock
from cleaner.formats.manifest import write_manifest
from cleaner.ingest.output import default_manifest, refuse_existing, relpath
from cleaner.ingest.planting import check_noise_args, hold_out, plant_noise


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
    refuse_existing(manifest)
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
    check_noise_args(noise, noise_kind, test_fraction, len(classes))
    train = ~hold_out(labels, test_fraction, seed)
    split = np.where(train, "train", "test").astype(object)
    given = labels.copy()
    given[train] = plant_noise(
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
        refuse_existing(manifest)
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
            "path": [relpath(images_dir / f"{sid}.png", manifest) for sid in sample_ids],
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
