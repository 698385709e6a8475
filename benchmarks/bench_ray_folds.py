"""5 folds in sequence against 5 folds on Ray, 2 at a time: wall time as a ratio.

Run: ``.venv/bin/python -m benchmarks.bench_ray_folds`` (or ``make bench``).

Both runs train the same 5-fold ``oof`` on the 10,000 MNIST digits, one
after the other in this process: first ``--backend local`` (one process,
torch using every core), then ``--backend ray`` on a local Ray instance with
one CPU per fold, so as many folds run at once as there are cores. The ratio
is sequential wall time over Ray wall time (above 1: Ray is faster). Ray's
start-up (a few seconds) is inside the Ray figure. Throughput per fold is
each fold's training images/s; overall is every fold's training images over
the wall time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch
from rich.console import Console

from benchmarks.common import MNIST_DIR, ROOT, measure_table, oof_run, write_section
from cleaner.core.progress import make_progress
from cleaner.formats.metrics_file import to_json
from cleaner.ingest.arrays import ingest_arrays, load_mnist_arrays
from cleaner.ingest.output import default_manifest
from cleaner.training.ray_folds import RayOptions

PIPELINE = ROOT / "pipelines" / "mnist.toml"


def timed_run(
    overrides: list[str], out: Path, backend: str, options: RayOptions | None
) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    with make_progress() as progress:
        result = oof_run(
            PIPELINE, overrides, out=out, progress=progress, backend=backend, ray_options=options
        )
    assert result.metrics is not None
    return time.perf_counter() - t0, to_json(result.metrics)  # the metrics.json layout


def rates(metrics: dict[str, Any], wall: float) -> tuple[float, float]:
    """(mean training images/s of a fold, every fold's training images / wall time)."""
    folds = metrics["folds"]
    per_fold = sum(f["train_images_per_s"] for f in folds) / len(folds)
    images = sum(f["n_train"] * len(f["history"]) for f in folds)
    return per_fold, images / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", type=Path, default=MNIST_DIR)
    parser.add_argument("--set", action="append", default=[], help="pipeline override")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count()
    # One fold per GPU when there are GPUs, else one fold per core with one thread each.
    options = RayOptions(cpus_per_fold=1, gpus_per_fold=1 if gpus else 0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images, labels, ids = load_mnist_arrays(args.mnist)
        manifest = work / default_manifest("mnist")
        ingest_arrays(images, labels, ids, work / "images", manifest, test_fraction=0.0)
        overrides = [f'data.manifest="{manifest}"', *args.set]
        seq_wall, seq = timed_run(overrides, work / "sequential", "local", None)
        ray_wall, par = timed_run(overrides, work / "ray", "ray", options)
    concurrent = min(5, gpus or cores)
    seq_fold, seq_all = rates(seq, seq_wall)
    ray_fold, ray_all = rates(par, ray_wall)
    epochs = len(seq["folds"][0]["history"])
    rows = [
        ("folds x epochs", f"5 x {epochs}"),
        (
            "sequential: wall time, accuracy",
            f"{seq_wall:.0f} s, {seq['overall']['accuracy']:.4f}",
        ),
        (
            f"Ray, {concurrent} folds at a time: wall time, accuracy",
            f"{ray_wall:.0f} s, {par['overall']['accuracy']:.4f}",
        ),
        ("**speed-up (sequential / Ray wall time)**", f"**{seq_wall / ray_wall:.2f}**"),
        ("images/s per fold: sequential, Ray", f"{seq_fold:,.0f}, {ray_fold:,.0f}"),
        ("images/s overall: sequential, Ray", f"{seq_all:,.0f}, {ray_all:,.0f}"),
    ]
    table, lines = measure_table("5 folds of cleaner oof on MNIST: in sequence and on Ray", rows)
    Console().print(table)
    if not args.no_write:
        where = f"{gpus} GPU(s), one fold per GPU" if gpus else f"{cores} cores, 1 CPU per fold"
        command = " ".join(
            ["python -m benchmarks.bench_ray_folds", *(f"--set {s}" for s in args.set)]
        )
        waves = " + ".join(str(min(concurrent, 5 - i)) for i in range(0, 5, concurrent))
        body = "\n".join(
            [
                f"## Folds on Ray ({where})",
                "",
                f"`{command}`: the 5-fold `oof` of",
                "`pipelines/mnist.toml` on the 10,000 MNIST digits, first in sequence in one",
                "process (torch using every core), then as Ray tasks on a local Ray instance,",
                "in the same run. Ray's start-up is inside its wall time. Accuracy differs",
                "slightly because CPU float sums depend on the thread count.",
                f"A fold on Ray trains at {ray_fold / seq_fold:.2f} of the sequential fold's",
                f"images/s (fewer threads each), but {concurrent} run at once, as {waves}.",
                "",
                *lines,
            ]
        )
        write_section("ray-folds-gpu" if gpus else "ray-folds", body)


if __name__ == "__main__":
    main()
