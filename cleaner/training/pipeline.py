"""The pipeline's data and building blocks, shared by ``oof``, ``retrain``, Ray and ``demo``.

The resolved config and its manifest loaded and validated once
(:class:`PipelineData`), what would fail at the first batch checked before
anything is written (:func:`preflight`), a dataset over manifest rows with
the pipeline's transforms, a fresh model with the normalisation its inputs
need, and prediction of any manifest rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from rich.progress import Progress

from cleaner.core.config import PipelineConfig
from cleaner.core.errors import InputError, Problem
from cleaner.core.progress import warn
from cleaner.formats.images import load_image
from cleaner.formats.manifest import (
    apply_weights_file,
    check_classes,
    read_manifest,
    resolve_paths,
    sha256_file,
    validate_manifest,
)
from cleaner.formats.run_files import FoldFiles
from cleaner.training.data import ImageDataset, Normalize, build_transform, transform_problems
from cleaner.training.device import device_problem, resolve_device, uses_amp, uses_channels_last
from cleaner.training.distributed import SINGLE, Dist
from cleaner.training.models import create_model, default_mean_std
from cleaner.training.train import eval_batch_size, predict


def resolve_classes(cfg: PipelineConfig, df: pd.DataFrame) -> PipelineConfig:
    """Fill an empty ``data.classes`` with the sorted labels of the train rows."""
    if cfg.data.classes:
        return cfg
    labels = df.loc[df["split"] == "train", "label"].str.strip()
    return cfg.replace("data", classes=tuple(sorted(set(labels) - {""})))


@dataclass(frozen=True)
class PipelineData:
    """A pipeline and its manifest, loaded and validated once, before any training."""

    cfg: PipelineConfig  # resolved: data.classes filled in
    manifest_path: Path
    manifest_sha: str
    df: pd.DataFrame  # the whole manifest
    train_rows: np.ndarray  # (N,) positions in df of the train rows
    labels: np.ndarray  # (N,) class index of each train row

    @property
    def classes(self) -> tuple[str, ...]:
        return self.cfg.data.classes

    @property
    def root(self) -> Path:
        """The folder the manifest's image paths are relative to."""
        return self.manifest_path.parent

    @property
    def sample_ids(self) -> np.ndarray:
        """(N,) ids of the train rows."""
        return self.df["sample_id"].to_numpy()[self.train_rows]

    def rows_of(self, split: str) -> np.ndarray:
        """Positions in df of the rows of one split (``test``, ``unlabeled``)."""
        return np.flatnonzero((self.df["split"] == split).to_numpy())

    def with_weights(self, weights_csv: Path) -> PipelineData:
        """The same data with ``data.weights`` set to ``weights_csv`` and applied."""
        cfg = self.cfg.replace("data", weights=weights_csv.as_posix())
        df = apply_weights_file(self.df, weights_csv)
        return dataclasses.replace(self, cfg=cfg, df=df)


def load_pipeline_data(
    cfg: PipelineConfig, *, progress: Progress, source: str | Path = "the pipeline"
) -> PipelineData:
    """Read and validate the manifest of ``cfg`` once, before any training.

    Every bad row is listed at once and nothing is written; ``data.classes``
    left empty is filled with the train rows' labels.
    """
    if not cfg.data.manifest:
        raise InputError([Problem(str(source), "data.manifest is not set")])
    manifest_path = Path(cfg.data.manifest)
    df = read_manifest(manifest_path, check=False)  # validate_manifest lists every bad row
    if cfg.data.weights:
        df = apply_weights_file(df, cfg.data.weights)
    cfg = resolve_classes(cfg, df)
    check_classes(df, cfg.data.classes, manifest_path)
    task = progress.add_task(
        "checking images", total=len(df), unit="img", visible=cfg.data.check_images
    )
    warnings = validate_manifest(
        df,
        file=manifest_path,
        classes=cfg.data.classes,
        folds=cfg.train.folds,
        group=cfg.data.group,
        check_images=cfg.data.check_images,
        in_chans=cfg.model.in_chans,
        damaged_images=cfg.data.damaged_images,
        max_pixels=cfg.data.max_image_pixels,
        on_image=lambda: progress.advance(task),
    )
    for warning in warnings:
        warn(warning)
    progress.remove_task(task)
    train_rows = np.flatnonzero((df["split"] == "train").to_numpy())
    index = {c: i for i, c in enumerate(cfg.data.classes)}
    labels = np.array(
        [index[v.strip()] for v in df["label"].to_numpy()[train_rows]], dtype=np.int64
    )
    return PipelineData(cfg, manifest_path, sha256_file(manifest_path), df, train_rows, labels)


def preflight(cfg: PipelineConfig, first_image: Path) -> None:
    """What would fail at the first model or batch, checked before the run folder is made.

    A model name timm does not know, a device this machine lacks, a weights file
    that does not load into the model, transforms that do not run on an input
    image (a blank of data.image_size after the resize, else ``first_image``)
    and a normalisation that cannot apply: every one listed in one error. The
    model is built only from a local weights file (a hub one may download).
    """
    problems: list[str] = []
    if not timm.is_model(cfg.model.name):
        problems.append(f"model.name: timm has no model named {cfg.model.name!r}")
    elif cfg.model.weights:
        problems.extend(_weights_problems(cfg))
    device = device_problem(cfg.train.device)
    if device:
        problems.append(device)
    if cfg.augment.resize:
        image = np.zeros((*cfg.data.hw, cfg.model.in_chans), np.uint8)
        blank = "a blank {}x{} image".format(*cfg.data.hw)
        problems.extend(transform_problems(cfg.augment, image, blank))
    else:  # the transforms see the images as they are: try the first one
        image = load_image(first_image, cfg.model.in_chans, max_pixels=cfg.data.max_image_pixels)
        problems.extend(transform_problems(cfg.augment, image, f"the first image ({first_image})"))
    if cfg.data.mean:
        try:
            Normalize(cfg.data.mean, cfg.data.std)
        except InputError as e:
            problems.append(str(e))
        if len(cfg.data.mean) != cfg.model.in_chans:
            problems.append(
                f"data.mean has {len(cfg.data.mean)} values but model.in_chans is "
                f"{cfg.model.in_chans}"
            )
    if problems:
        raise InputError([Problem("", reason) for reason in dict.fromkeys(problems)])


def _weights_problems(cfg: PipelineConfig) -> list[str]:
    """Why ``model.weights`` does not load into the model (timm reads it weights-only)."""
    weights = Path(cfg.model.weights)
    if not weights.is_file():
        return [f"model.weights: file not found: {weights}"]
    try:
        create_model(cfg.model, max(len(cfg.data.classes), 1))
    except Exception as e:  # torch and timm raise many types for a file that is not weights
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return [
            f"model.weights: {weights} does not load into {cfg.model.name} "
            f"({type(e).__name__}: {reason[:300]})"
        ]
    return []


def make_dataset(
    cfg: PipelineConfig,
    df: pd.DataFrame,
    root: Path,
    rows: np.ndarray,
    labels: np.ndarray,
    *,
    train: bool,
    normalize: Normalize,
    seed: int,
    weights: np.ndarray | None = None,
    cache: list[np.ndarray] | None = None,
) -> ImageDataset:
    """A dataset over manifest positions ``rows`` (paths relative to ``root``).

    ``weights`` (default: the manifest's) and ``cache`` are indexed like ``rows``.
    """
    sub = df.iloc[rows]
    if weights is None:
        weights = pd.to_numeric(sub["weight"]).to_numpy(np.float32)
    return ImageDataset(
        resolve_paths(sub, root),
        labels,
        weights,
        build_transform(cfg.augment, train=train, image_size=cfg.data.hw),
        normalize=normalize,
        in_chans=cfg.model.in_chans,
        seed=seed,
        images=cache,
        max_pixels=cfg.data.max_image_pixels,
    )


def model_and_normalize(cfg: PipelineConfig, seed: int) -> tuple[torch.nn.Module, Normalize]:
    """A fresh model initialised from ``seed``, and the normalisation its inputs need."""
    torch.manual_seed(seed)
    model = create_model(cfg.model, len(cfg.data.classes))
    if cfg.data.mean:
        return model, Normalize(cfg.data.mean, cfg.data.std)
    return model, Normalize(*default_mean_std(model, cfg.model.in_chans))


def load_fold_model(cfg: PipelineConfig, fold: FoldFiles) -> tuple[torch.nn.Module, Normalize]:
    """The model ``oof`` kept in a fold's ``model.pt``, on the pipeline's device."""
    model, norm = model_and_normalize(cfg, 0)
    model.load_state_dict(torch.load(fold.model, weights_only=True))
    return model.to(resolve_device(cfg.train.device)), norm


def predict_outputs(
    model: torch.nn.Module,
    normalize: Normalize,
    cfg: PipelineConfig,
    df: pd.DataFrame,
    root: Path,
    rows: np.ndarray,
    *,
    tta: bool = False,
    dist: Dist = SINGLE,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (R, K) and penultimate embeddings (R, D) of manifest positions ``rows``.

    No rows (a manifest without test rows, say) is no prediction, and D is then 0.
    """
    if not len(rows):
        return np.zeros((0, len(cfg.data.classes)), np.float32), np.zeros((0, 0), np.float32)
    ds = make_dataset(
        cfg, df, root, rows, np.full(len(rows), -1), train=False, normalize=normalize, seed=0
    )
    device = resolve_device(cfg.train.device, dist)
    return predict(
        model,
        ds,
        batch_size=eval_batch_size(cfg.train),
        workers=cfg.train.workers,
        device=device,
        amp=uses_amp(cfg.train, device),
        channels_last=uses_channels_last(cfg.train, device),
        tta=tta,
        translate=cfg.train.tta_translate if tta else 0,
        dist=dist,
    )
