"""The GPU paths, checked in one command (under 8 minutes on one GPU): ``oof`` with mixed
precision and channels_last on the small-photo net and on a big timm backbone (random
weights), ``--backend ray`` with GPUs, and torchrun DDP on one node.

Run on a machine with an NVIDIA GPU::

    .venv/bin/python -m benchmarks.gpu_check            # writes BENCHMARKS.md "gpu-check"

and without one, the same code paths on the CPU (bfloat16 autocast and
channels_last forced on by ``CLEANER_GPU_PATHS_ON_CPU=1``; small sizes; prints only)::

    .venv/bin/python -m benchmarks.gpu_check --dry-run

Each check runs the real CLI in a subprocess and checks its ``oof.csv`` (every
row once, probabilities summing to 1). Training speed is
the folds' own images/s (``fold-K/metrics.json``) against the same model's
training steps on synthetic tensors of the batch's shape, with the same
autocast and memory format, measured in the same run: 1.0 means the data path
costs nothing. Photos: ``../shared/data/cifar10/train`` when it is there, else
coloured synthetic PNGs (class = hue), written once under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
import torch
from PIL import Image
from rich.console import Console

from benchmarks.bench_oof_mnist import synthetic_images_per_s
from benchmarks.common import ROOT, result_table, write_section
from cleaner.formats.metrics_file import read_oof_metrics
from cleaner.formats.run_files import RunFiles
from cleaner.formats.runs import load_run
from cleaner.training.device import GPU_PATHS_ON_CPU

CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "train"
SMALL = ROOT / "pipelines" / "photos.toml"


@dataclass(frozen=True)
class Check:
    """One ``oof`` to run: a pipeline with overrides, a launcher, and what it shows."""

    name: str
    overrides: tuple[str, ...]
    launcher: tuple[str, ...] = ()  # e.g. torchrun's; empty: ``python -m cleaner``
    extra: tuple[str, ...] = ()  # CLI options after the pipeline


def checks(gpu: bool, device: str) -> list[Check]:
    common = (f"train.device={json.dumps(device)}", "train.amp=true", "train.channels_last=true")
    small = ("train.folds=2", "train.epochs=2", "train.workers=4" if gpu else "train.workers=0")
    # A big ImageNet backbone with random weights: the GPU-sized path (at 128 px on the GPU;
    # a small one at 64 px on the CPU, where only the code path matters).
    big = (
        ('model.name="convnext_tiny"', "data.image_size=128", "train.batch_size=128")
        if gpu
        else ('model.name="resnet18"', "data.image_size=64", "train.batch_size=32")
    )
    big_aug = (
        "augment.train=[]", 'train.optimizer="adamw"', "train.lr=1e-3",
        "data.mean=[0.485,0.456,0.406]", "data.std=[0.229,0.224,0.225]",
    )  # fmt: skip
    torchrun = (
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={1 if gpu else 2}", "-m", "cleaner",
    )  # fmt: skip
    ray = ("--backend", "ray", "--gpus-per-fold", "0.5") if gpu else ("--backend", "ray")
    return [
        Check("small-photo net, AMP + channels_last", (*common, *small)),
        Check("big timm backbone, random weights", (*common, *small, *big, *big_aug)),
        Check("small-photo net, --backend ray", (*common, *small), extra=ray),
        Check("small-photo net, torchrun DDP", (*common, *small), launcher=torchrun),
    ]


def make_photos(work: Path, n: int) -> Path:
    """A manifest of ``n`` photos: the shared CIFAR-10 ones, else synthetic (class = hue)."""
    manifest = work / f"photos-{n}.csv"
    if manifest.exists():
        return manifest
    rows: list[dict[str, str]] = []
    if CIFAR.is_dir():
        classes = sorted(p.name for p in CIFAR.iterdir() if p.is_dir())
        for name in classes:
            for p in sorted((CIFAR / name).glob("*.jpg"))[: n // len(classes)]:
                rows.append({"sample_id": f"{name}/{p.name}", "path": str(p), "label": name})
    else:
        rng = np.random.default_rng(0)
        folder = work / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            c = i % 10  # class index: its hue
            hue = np.array([np.cos(c), np.sin(c), np.cos(2 * c)]) * 60 + 128
            img = np.clip(rng.normal(hue, 40, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{i:05d}.png"
            Image.fromarray(img).save(path)
            rows.append({"sample_id": path.name, "path": str(path), "label": f"c{i % 10}"})
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def check_oof(run: Path, n: int) -> tuple[float, float]:
    """Accuracy of ``oof.csv`` and the folds' mean training images/s; refuses a bad run
    (``load_run``: every train row once, probability rows, the manifest's labels)."""
    loaded = load_run(run)
    if len(loaded.labels) != n:
        raise SystemExit(f"{RunFiles(run).oof}: {len(loaded.labels)} rows for {n} train rows")
    accuracy = float(np.mean(loaded.pred_probs.argmax(1) == loaded.labels))
    folds = read_oof_metrics(RunFiles(run).metrics).folds
    return accuracy, float(np.mean([f.train_images_per_s or 0.0 for f in folds]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="the GPU code paths on the CPU")
    ap.add_argument("--images", type=int, default=0, help="photos (default 5,000; dry run 200)")
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / ".work" / "gpu_check")
    ap.add_argument(
        "--checks", type=int, nargs="*", default=None,
        help="which checks (0: AMP, 1: big backbone, 2: Ray, 3: torchrun; default all)",
    )  # fmt: skip
    args = ap.parse_args()
    gpu = torch.cuda.is_available() and not args.dry_run
    if not gpu and not args.dry_run:
        raise SystemExit("no CUDA GPU here: pass --dry-run to check the same paths on the CPU")
    n = args.images or (5000 if gpu else 200)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    if not gpu:
        env[GPU_PATHS_ON_CPU] = "1"
        os.environ[GPU_PATHS_ON_CPU] = "1"
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = make_photos(args.work, n)
    n_rows = len(pd.read_csv(manifest))
    console = Console()
    rows = []
    for i, check in enumerate(checks(gpu, "cuda" if gpu else "cpu")):
        if args.checks is not None and i not in args.checks:
            continue
        run = args.work / f"run-{i}"
        shutil.rmtree(run, ignore_errors=True)
        overrides = [f"data.manifest={json.dumps(str(manifest))}", *check.overrides]
        sets = [a for o in overrides for a in ("--set", o)]
        launcher = list(check.launcher) or [sys.executable, "-m", "cleaner"]
        cmd = [*launcher, "oof", str(SMALL), *sets, "--out", str(run), "--quiet", *check.extra]
        console.print(f"[bold]{check.name}[/]: {' '.join(cmd[-12:])}")
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            console.print(done.stdout[-3000:], done.stderr[-3000:])
            raise SystemExit(f"{check.name}: exit {done.returncode}")
        accuracy, img_s = check_oof(run, n_rows)
        synthetic = synthetic_images_per_s(SMALL, overrides, seconds=5.0 if gpu else 0.5)
        rows.append(
            [check.name, f"{accuracy:.3f}", f"{img_s:,.0f}", f"{synthetic:,.0f}",
             f"{img_s / synthetic:.2f}", f"{seconds:.0f}"]
        )  # fmt: skip
    title = f"GPU paths ({'GPU' if gpu else 'CPU dry run'}, {n_rows} photos, 2 folds x 2 epochs)"
    cols = ["check", "oof accuracy", "train img/s", "synthetic img/s", "ratio", "seconds"]
    table, lines = result_table(title, cols, rows)
    console.print(table)
    if gpu:
        write_section("gpu-check", "\n".join([f"### {title}", "", *lines]))


if __name__ == "__main__":
    main()
