"""One feature space for every row: the embeddings outliers, near duplicates and leakage use.

Each fold model is trained on other rows, so the fold models' embeddings lie
in K unrelated spaces and a distance between rows of two folds means nothing.
After the folds, one model embeds every row of the manifest (train, test and
unlabeled) once:

- with ``model.pretrained`` or ``model.weights``, the pretrained backbone as it
  is: features learned on other data, blind to these labels and so to their noise;
- otherwise a model of the same pipeline trained on every train row (a fold
  model's settings, one more fit of N rows: about 1/(K-1) of the folds' time).

The result is ``embeddings.npz`` in the run folder (:mod:`cleaner.formats.embeddings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.progress import Progress

from cleaner.core.atomic import atomic_file
from cleaner.formats.embeddings import Embeddings, read_embeddings, write_embeddings
from cleaner.formats.manifest import resolve_paths, sha256_file
from cleaner.ranking.flag import own_group_neighbour_share
from cleaner.training.data import decode_all, seed_for
from cleaner.training.device import resolve_device
from cleaner.training.distributed import SINGLE, Dist
from cleaner.training.pipeline import make_dataset, model_and_normalize, predict_outputs
from cleaner.training.train import fit

if TYPE_CHECKING:
    from cleaner.training.run_plan import RunPlan

# Seed stream of the embedding model: apart from the folds' (0..K-1) and retrain's (1000).
EMBED_SEED = 1001
SPLITS_EMBEDDED = ("train", "test", "unlabeled")  # excluded rows were dropped by a person


def embed_run(plan: RunPlan, *, progress: Progress, dist: Dist = SINGLE) -> Embeddings:
    """Embed every row of ``plan``'s manifest with one model; write ``embeddings.npz`` once.

    Resumable: the embedding model keeps a checkpoint in ``embed/`` until the
    file is written. Under torchrun every process calls this; rank 0 writes.
    """
    path = plan.files.embeddings
    if path.exists():
        return read_embeddings(path)
    cfg, df = plan.cfg, plan.df
    root = plan.manifest_path.parent
    device = resolve_device(cfg.train.device, dist)
    seed = seed_for(cfg.train.seed, EMBED_SEED)
    model, norm = model_and_normalize(cfg, seed)
    if cfg.model.pretrained or cfg.model.weights:
        source = f"pretrained {cfg.model.name} backbone, not trained on these labels"
        model.to(device)
    else:
        cache = None
        if cfg.data.cache:
            cache = decode_all(
                resolve_paths(df.iloc[plan.train_rows], root),
                cfg.model.in_chans,
                max_pixels=cfg.data.max_image_pixels,
            )
        ds = make_dataset(
            cfg, df, root, plan.train_rows, plan.labels, train=True, normalize=norm, seed=seed,
            cache=cache,
        )  # fmt: skip
        fit(
            model,
            ds,
            None,
            cfg.train,
            classes=plan.classes,
            checkpoint=plan.files.embed.checkpoint,
            seed=seed,
            device=device,
            progress=progress,
            desc="embedding model (all train rows)",
            dist=dist,
        )
        source = f"{cfg.model.name} trained on all {len(plan.train_rows)} train rows"
    rows = np.flatnonzero(df["split"].isin(SPLITS_EMBEDDED).to_numpy())
    _, emb = predict_outputs(model, norm, cfg, df, root, rows, dist=dist)
    paths = resolve_paths(df.iloc[rows], root)
    hashes = file_hashes(paths, progress)
    split = df["split"].to_numpy()[rows].astype(str)
    train = split == "train"
    result = Embeddings(
        sample_ids=df["sample_id"].to_numpy()[rows].astype(str),
        split=split,
        file_sha256=np.asarray(hashes, dtype=str),
        embeddings=emb.astype(np.float32),
        source=source,
        # Train rows are in manifest order in both ``rows`` and ``plan.train_rows``.
        own_fold_share=own_group_neighbour_share(emb[train], plan.folds),
    )
    if dist.main:
        if not (cfg.model.pretrained or cfg.model.weights):
            # Kept, like the fold models: it can embed new images into the same space.
            with atomic_file(plan.files.embed.model, overwrite=True) as f:
                torch.save(model.state_dict(), f)
        write_embeddings(path, result)
        plan.files.embed.checkpoint.unlink(missing_ok=True)
    dist.barrier()
    return result


def file_hashes(paths: Sequence[Path], progress: Progress) -> list[str]:
    """The sha256 of each file, with a bar: what ties an embedding to its image's bytes."""
    task = progress.add_task("hashing image files", total=len(paths), unit="img")
    hashes = []
    for p in paths:
        hashes.append(sha256_file(p))
        progress.advance(task)
    progress.remove_task(task)
    return hashes
