"""``cleaner oof`` on the 10,000 real MNIST digits, 5 folds: accuracy, time, data-path overhead.

Run: ``.venv/bin/python -m benchmarks.bench_oof_mnist`` (or ``make bench``).

Reports out-of-fold accuracy and macro F1 (clean labels), the wall time of the
whole command (image checks, decoding, 5 trainings, predictions, merge), and
the training throughput of ``oof`` as a ratio against the same model's
forward, backward and optimizer step on synthetic tensors of the same shape,
measured in the same run (the data path's overhead; 1.0 means none).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import torch
from rich.console import Console
from timm.optim import create_optimizer_v2

from benchmarks.common import MNIST_DIR, ROOT, measure_table, oof_run, write_section
from cleaner.core.config import load_config
from cleaner.core.progress import make_progress
from cleaner.formats.metrics_file import to_json
from cleaner.ingest.arrays import ingest_arrays, load_mnist_arrays
from cleaner.ingest.output import default_manifest
from cleaner.training.data import (
    EpochSampler,
    ImageDataset,
    Normalize,
    build_transform,
    make_loader,
)
from cleaner.training.device import autocast, resolve_device, uses_amp, uses_channels_last
from cleaner.training.losses import build_loss
from cleaner.training.models import create_model, init_from_data

PIPELINE = ROOT / "pipelines" / "mnist.toml"


def synthetic_images_per_s(pipeline: Path, overrides: list[str], seconds: float = 20.0) -> float:
    """Training steps of the pipeline's model on random tensors, with the trainer's own
    autocast and memory format (on the CPU only with train.cpu_amp): the no-data-path ceiling."""
    cfg = load_config(pipeline, overrides)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(0)
    model = create_model(cfg.model, len(cfg.data.classes) or 10).to(device)
    bs = cfg.train.batch_size
    x = torch.randn(bs, cfg.model.in_chans, *cfg.data.hw, device=device)
    init_from_data(model, x)  # a data-dependent first layer (airbench's whitening)
    model.train()
    if uses_channels_last(cfg.train, device):
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = create_optimizer_v2(
        model, opt=cfg.train.optimizer, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay
    )
    loss_fn = build_loss(cfg.train)
    y = torch.randint(0, len(cfg.data.classes) or 10, (bs,), device=device)
    w = torch.ones(bs, device=device)

    def step() -> None:
        with autocast(device, uses_amp(cfg.train, device)):
            loss = loss_fn(model(x), y, w)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # the trainer syncs once per step too

    for _ in range(5):
        step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += bs
    return n / (time.perf_counter() - t0)


def loader_images_per_s(images: list, pipeline: Path, overrides: list[str]) -> float:
    """One epoch of the train data path alone (augment, collate, normalise), no model."""
    cfg = load_config(pipeline, overrides)
    labels = np.zeros(len(images), dtype=np.int64)
    ds = ImageDataset(
        [""] * len(images),
        labels,
        np.ones(len(images), np.float32),
        build_transform(cfg.augment, train=True, image_size=cfg.data.hw),
        normalize=Normalize(cfg.data.mean, cfg.data.std),
        in_chans=cfg.model.in_chans,
        images=images,
    )
    loader = make_loader(
        ds,
        batch_size=cfg.train.batch_size,
        workers=cfg.train.workers,
        device=torch.device("cpu"),
        sampler=EpochSampler(len(ds), seed=0),
    )
    n, t0 = 0, time.perf_counter()
    for x, _, _, _ in loader:
        ds.normalize(x)
        n += len(x)
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", type=Path, default=MNIST_DIR)
    parser.add_argument("--set", action="append", default=[], help="pipeline override")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images, labels, ids = load_mnist_arrays(args.mnist)
        manifest = work / default_manifest("mnist")
        ingest_arrays(images, labels, ids, work / "images", manifest, test_fraction=0.0)
        overrides = [f'data.manifest="{manifest}"', *args.set]
        before = synthetic_images_per_s(PIPELINE, overrides)
        t0 = time.perf_counter()
        with make_progress() as progress:
            result = oof_run(PIPELINE, overrides, out=work / "run", progress=progress)
        wall = time.perf_counter() - t0
        after = synthetic_images_per_s(PIPELINE, overrides)
        loader_rate = loader_images_per_s([im[:, :, None] for im in images], PIPELINE, overrides)
    assert result.metrics is not None
    metrics = to_json(result.metrics)  # the metrics.json layout
    folds = metrics["folds"]
    train_rate = sum(f["train_images_per_s"] for f in folds) / len(folds)
    synthetic = (before + after) / 2
    cfg = load_config(PIPELINE, overrides)
    rows = [
        ("rows x folds", f"{metrics['overall']['n']:,} x {len(folds)}"),
        (
            "model, input",
            f"{cfg.model.name}, {cfg.data.hw[0]}x{cfg.data.hw[1]}x{cfg.model.in_chans}",
        ),
        ("epochs, batch", f"{cfg.train.epochs}, {cfg.train.batch_size}"),
        ("out-of-fold accuracy", f"{metrics['overall']['accuracy']:.4f}"),
        ("out-of-fold macro F1", f"{metrics['overall']['macro_f1']:.4f}"),
        ("wall time of oof", f"{wall:.0f} s"),
        ("oof training images/s", f"{train_rate:,.0f}"),
        ("synthetic-tensor images/s (same model)", f"{synthetic:,.0f}"),
        ("data-path ratio (oof / synthetic)", f"{train_rate / synthetic:.2f}"),
        ("data path alone, images/s (no model)", f"{loader_rate:,.0f}"),
    ]
    table, lines = measure_table("cleaner oof on MNIST (10,000 real digits, clean labels)", rows)
    console.print(table)
    console.print(json.dumps({"synthetic_before": before, "synthetic_after": after}))
    if not args.no_write:
        body = "\n".join(
            [
                "## `cleaner oof` on MNIST",
                "",
                "`python -m benchmarks.bench_oof_mnist`: 5-fold `oof` with `pipelines/mnist.toml`",
                "on the 10,000 MNIST test digits (labels as given). The ratio compares the",
                "training throughput inside `oof` with the same model's forward, backward and",
                "optimizer step on random tensors of the same shape, measured before and after",
                "in the same run.",
                "Targets: accuracy >= 0.985, wall time < 6 min on 2 cores, ratio >= 0.8.",
                "On 2 cores the loader and the model take turns on the same cores (worker",
                "processes only add contention there, so the pipeline loads in-process): the",
                "ratio is the data path's whole cost, mostly the albumentations Affine. The",
                "last row shows the data path alone is several times faster than the model,",
                "so with workers on more cores it overlaps with training.",
                "",
                *lines,
            ]
        )
        write_section("oof-mnist", body)


if __name__ == "__main__":
    main()
