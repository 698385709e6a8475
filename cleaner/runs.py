"""The run folder's tables: ``oof.csv`` written, and read back checked against the manifest.

``load_run`` is where later steps (``flag``, ``retrain``) meet a run: it
refuses a run without ``oof.csv``, one whose manifest changed since (sha256),
and probabilities that are not probability vectors.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.config import PipelineConfig, build_config
from cleaner.errors import InputError, Problem
from cleaner.flag import bad_probability_rows
from cleaner.manifest import line_of, sha256_file

OOF_COLUMNS = ("sample_id", "fold", "label", "pred")
PROB_PREFIX = "p:"  # oof.csv names its probability columns p:CLASS


@dataclass(frozen=True)
class Run:
    run_dir: Path
    cfg: PipelineConfig
    manifest_path: Path
    manifest_sha: str
    sample_ids: np.ndarray  # (N,) train rows, in manifest order
    labels: np.ndarray  # (N,) class index of the given label
    pred_probs: np.ndarray  # (N, K) out-of-fold probabilities
    embeddings: np.ndarray | None  # (N, D), when the run saved them
    unlabeled_ids: np.ndarray  # (U,) unlabeled rows, when the run predicted them
    unlabeled_probs: np.ndarray  # (U, K), averaged over the fold models

    @property
    def classes(self) -> tuple[str, ...]:
        return self.cfg.data.classes


def oof_table(
    sample_ids: np.ndarray,
    folds: np.ndarray,
    labels: np.ndarray,
    pred_probs: np.ndarray,
    classes: Sequence[str],
) -> pd.DataFrame:
    """``sample_id, fold, label, pred, p:CLASS...`` with labels as class names."""
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame(
        {
            "sample_id": sample_ids,
            "fold": folds,
            "label": names[labels],
            "pred": names[pred_probs.argmax(1)],
        }
    )
    probs = pd.DataFrame(pred_probs, columns=[f"{PROB_PREFIX}{c}" for c in classes])
    return pd.concat([table, probs], axis=1)


def _prob_table(
    path: Path, classes: tuple[str, ...], first: tuple[str, ...]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The leading columns of a probability table, and its probabilities (N, K), checked."""
    try:
        table = pd.read_csv(
            path, dtype={c: str for c in ("sample_id", "label", "pred")}, keep_default_na=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError([Problem(str(path), f"not a readable CSV: {e}")]) from None
    expected = [*first, *(f"{PROB_PREFIX}{c}" for c in classes)]
    if list(table.columns) != expected:
        raise InputError(
            [
                Problem(
                    str(path),
                    f"columns do not match the run's classes: expected {', '.join(expected)}",
                    1,
                )
            ]
        )
    probs = table[expected[len(first) :]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = bad_probability_rows(probs)
    if bad:
        raise InputError([Problem(str(path), reason, line_of(i)) for i, reason in bad])
    return table[list(first)], probs


def load_run(run_dir: str | Path) -> Run:
    """Read and check a run folder made by ``cleaner oof``."""
    run_dir = Path(run_dir)
    oof_csv = run_dir / "oof.csv"
    if not run_dir.is_dir():
        raise InputError([Problem(str(run_dir), "run folder not found")])
    if not oof_csv.exists():
        raise InputError(
            [
                Problem(
                    str(run_dir),
                    "no oof.csv: the run is not finished; "
                    "run `cleaner oof` with the same arguments to finish it",
                )
            ]
        )
    cfg = build_config(
        tomllib.loads((run_dir / "config.toml").read_text()), file=str(run_dir / "config.toml")
    )
    recorded = (run_dir / "manifest.sha256").read_text().split()[0]
    manifest = Path(cfg.data.manifest)
    if not manifest.is_file():
        raise InputError(
            [
                Problem(
                    str(manifest),
                    f"manifest of run {run_dir} not found "
                    "(paths are relative to the working directory)",
                )
            ]
        )
    current = sha256_file(manifest)
    if current != recorded:
        raise InputError(
            [
                Problem(
                    str(oof_csv),
                    f"made from manifest sha256 {recorded[:12]}..., "
                    f"but {manifest} is now {current[:12]}...: the manifest changed "
                    "since this run; run `cleaner oof` on it again",
                )
            ]
        )
    classes = cfg.data.classes
    table, pred_probs = _prob_table(oof_csv, classes, OOF_COLUMNS)
    index = {c: i for i, c in enumerate(classes)}
    unknown = np.flatnonzero(~table["label"].isin(list(index)).to_numpy()).tolist()
    if unknown:
        raise InputError(
            [
                Problem(str(oof_csv), f"label {table['label'][i]!r} is not a class", line_of(i))
                for i in unknown
            ]
        )
    embeddings = None
    if (run_dir / "embeddings.npy").exists():
        embeddings = np.load(run_dir / "embeddings.npy")
        if embeddings.shape[0] != len(table):
            raise InputError(
                [
                    Problem(
                        str(run_dir / "embeddings.npy"),
                        f"{embeddings.shape[0]} rows, but oof.csv has {len(table)}",
                    )
                ]
            )
    u_ids, u_probs = np.array([], dtype=object), np.zeros((0, len(classes)))
    if (run_dir / "unlabeled.csv").exists():
        u, u_probs = _prob_table(run_dir / "unlabeled.csv", classes, ("sample_id", "pred"))
        u_ids = u["sample_id"].to_numpy()
    return Run(
        run_dir=run_dir,
        cfg=cfg,
        manifest_path=manifest,
        manifest_sha=current,
        sample_ids=table["sample_id"].to_numpy(),
        labels=table["label"].map(index).to_numpy(np.int64),
        pred_probs=pred_probs,
        embeddings=embeddings,
        unlabeled_ids=u_ids,
        unlabeled_probs=u_probs,
    )
