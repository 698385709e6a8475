"""``embeddings.npz``: every embedded row of one manifest version, in one feature space.

Written by the embedding step of ``oof`` (:mod:`cleaner.training.embed`) or brought by a
user (``flag --embeddings``); read with ``allow_pickle=False``. Arrays:
``sample_id`` (M,), ``split`` (M,), ``file_sha256`` (M,) of each image file
(exact copies; empty where unknown), ``embeddings`` (M, D) float32,
``source`` (which model embedded the rows), ``own_fold_share`` (the share of
each train row's 10 nearest train neighbours in its own fold; about 1/K when
the space is one). Only ``sample_id`` and ``embeddings`` are required.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cleaner.core.atomic import atomic_file
from cleaner.core.errors import InputError, Problem


@dataclass(frozen=True)
class Embeddings:
    """Every embedded row of one manifest version, in manifest order."""

    sample_ids: np.ndarray  # (M,) str
    split: np.ndarray  # (M,) str
    file_sha256: np.ndarray  # (M,) str; empty where unknown
    embeddings: np.ndarray  # (M, D) float32
    source: str  # which model embedded the rows
    own_fold_share: float  # NaN where unknown (embeddings brought from outside)


def write_embeddings(path: Path, e: Embeddings) -> None:
    with atomic_file(path) as f:
        np.savez(
            f,
            # Fixed-width text, never object arrays: the file loads without pickle.
            sample_id=np.asarray(e.sample_ids, dtype=str),
            split=np.asarray(e.split, dtype=str),
            file_sha256=np.asarray(e.file_sha256, dtype=str),
            embeddings=np.asarray(e.embeddings, dtype=np.float32),
            source=np.asarray(e.source),
            own_fold_share=np.asarray(e.own_fold_share, dtype=np.float64),
        )


def read_embeddings(path: str | Path) -> Embeddings:
    """Read ``embeddings.npz`` strictly: no pickle, every array present, shapes that agree."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            ids = z["sample_id"].astype(str)
            emb = z["embeddings"].astype(np.float32)
            n = len(ids)
            split = z["split"].astype(str) if "split" in z.files else np.full(n, "train")
            sha = z["file_sha256"].astype(str) if "file_sha256" in z.files else np.full(n, "")
            source = str(z["source"]) if "source" in z.files else "unknown"
            share = float(z["own_fold_share"]) if "own_fold_share" in z.files else float("nan")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise InputError(
            [
                Problem(
                    str(path),
                    "not a readable embeddings file (an .npz with arrays sample_id and "
                    f"embeddings, no pickled objects): {e}",
                )
            ]
        ) from None
    if emb.ndim != 2 or len(emb) != n or len(split) != n or len(sha) != n:
        raise InputError(
            [Problem(str(path), f"arrays disagree: {n} sample_id, embeddings {emb.shape}")]
        )
    if not np.isfinite(emb).all():
        raise InputError([Problem(str(path), "embeddings hold NaN or infinite values")])
    return Embeddings(ids, split, sha, emb, source, share)
