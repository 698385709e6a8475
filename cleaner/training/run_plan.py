"""The oof run folder: its name, its write-once records, and the plan of a run.

A run folder is named after what it computes: the pipeline's name and the
first 8 hex digits of :meth:`PipelineConfig.digest` salted with the
manifest's sha256, so the same command finds the same folder again. What it
holds before any training (``config.toml``, ``manifest.sha256``,
``folds.csv``) is written once; a later run must find the same text there.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.core.atomic import write_text
from cleaner.core.config import PipelineConfig, build_config
from cleaner.core.errors import InputError, Problem
from cleaner.formats.manifest import resolve_paths
from cleaner.formats.run_files import FoldFiles, RunFiles
from cleaner.formats.run_records import manifest_record, read_manifest_record
from cleaner.training.folds import make_folds
from cleaner.training.pipeline import PipelineData, preflight

KEY_DIGITS = 8  # hex digits of the digest in a run folder's name


@dataclass(frozen=True)
class RunPlan(PipelineData):
    """The pipeline's data, the run folder it trains into and each train row's fold."""

    run_dir: Path
    folds: np.ndarray  # (N,) fold of each train row

    @property
    def unlabeled_rows(self) -> np.ndarray:
        """Positions in df of the ``unlabeled`` rows."""
        return self.rows_of("unlabeled")

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.run_dir)

    def fold(self, k: int) -> FoldFiles:
        return self.files.fold(k)

    def fold_done(self, k: int) -> bool:
        return self.fold(k).done


def run_key(cfg: PipelineConfig, *salt: str) -> str:
    """The short hash that names a run folder: the resolved config and ``salt``."""
    return cfg.digest(*salt)[:KEY_DIGITS]


def default_run_dir(name: str, cfg: PipelineConfig, manifest_sha: str, suffix: str = "") -> Path:
    """``runs/NAME-HASH``: the folder ``oof`` trains into when ``--out`` is not given
    (``runs/NAME-HASH-xR`` for ``--repeats R``, ``suffix="xR"``: the hash is the
    single run's, so the names say which runs are alike)."""
    return Path("runs") / "-".join(filter(None, (name, run_key(cfg, manifest_sha), suffix)))


def init_file(path: Path, text: str, what: str) -> None:
    """Write ``text`` once; later runs must find the same text there."""
    try:
        write_text(path, text)
    except FileExistsError:
        if path.read_text() != text:
            raise InputError(
                [
                    Problem(
                        str(path),
                        f"this run folder was made with a different {what}; "
                        "pass --out for a new run folder",
                    )
                ]
            ) from None


def init_records(run_dir: Path, cfg: PipelineConfig, sha: str, manifest: Path) -> None:
    """Write ``config.toml`` and ``manifest.sha256`` once.

    A later run must name the same manifest, however its path was spelled
    (older runs stored it relative to the working directory).
    """
    files = RunFiles(run_dir)
    config = files.config
    if not (config.exists() and _same_config(config, cfg)):
        init_file(config, cfg.to_toml(), "config")
    record = files.manifest_record
    if record.exists():
        recorded, path = read_manifest_record(run_dir)
        if recorded == sha and path.exists() and path.resolve() == manifest.resolve():
            return
    init_file(record, manifest_record(sha, manifest, run_dir), "manifest")


def _same_config(path: Path, cfg: PipelineConfig) -> bool:
    """Whether ``path`` holds ``cfg``: an older run folder's config.toml lacks the keys
    added since (:data:`cleaner.core.config.LATER_KEYS`), which read back as defaults."""
    try:
        return build_config(tomllib.loads(path.read_text()), file=str(path)) == cfg
    except (InputError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def _records_of(run_dir: Path, cfg: PipelineConfig, sha: str, manifest: Path) -> bool:
    """Whether the folder's records are those this run writes (config and manifest)."""
    files = RunFiles(run_dir)
    if not _same_config(files.config, cfg):
        return False
    if not files.manifest_record.exists():
        return True
    try:
        recorded, path = read_manifest_record(run_dir)
    except (InputError, OSError):
        return False
    return recorded == sha and path.exists() and path.resolve() == manifest.resolve()


def _forget_refused_start(run_dir: Path, data: PipelineData) -> None:
    """Clear what a refused start of *another* configuration or manifest left. Records of
    this very run are kept: Ray tasks and ``--fold K`` processes set up one folder at the
    same moment, and one must not delete the files another is reading.

    A folder holding only what ``plan_run`` writes before any training was left by a
    command refused before it trained anything, and is set up afresh.
    """
    present = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
    if not present or not present <= {p.name for p in RunFiles(run_dir).start_files()}:
        return
    if not _records_of(run_dir, data.cfg, data.manifest_sha, data.manifest_path):
        for name in present:
            (run_dir / name).unlink(missing_ok=True)


def plan_run(
    data: PipelineData,
    *,
    name: str = "run",
    out: str | Path | None = None,
    fold: int | None = None,
) -> RunPlan:
    """Check ``fold`` and what would fail at the first batch; set up the run folder.

    ``name`` prefixes the folder's name when ``out`` is not given (the CLI
    passes the pipeline file's stem).
    """
    cfg, df = data.cfg, data.df
    if fold is not None and not 0 <= fold < cfg.train.folds:
        raise InputError(f"--fold {fold}: the pipeline has folds 0..{cfg.train.folds - 1}")
    groups = df[cfg.data.group].to_numpy()[data.train_rows] if cfg.data.group else None
    folds = make_folds(data.labels, n_splits=cfg.train.folds, seed=cfg.train.seed, groups=groups)
    preflight(cfg, resolve_paths(df.iloc[data.train_rows[:1]], data.root)[0])
    run_dir = Path(out) if out else default_run_dir(name, cfg, data.manifest_sha)
    run_dir.mkdir(parents=True, exist_ok=True)
    _forget_refused_start(run_dir, data)
    init_records(run_dir, cfg, data.manifest_sha, data.manifest_path)
    folds_csv = pd.DataFrame({"sample_id": data.sample_ids, "fold": folds}).to_csv(index=False)
    init_file(RunFiles(run_dir).folds, folds_csv, "fold split")
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(PipelineData)}
    return RunPlan(**fields, run_dir=run_dir, folds=folds)
