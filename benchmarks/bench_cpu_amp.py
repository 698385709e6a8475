"""``train.cpu_amp``: training steps on the CPU in float32, channels_last alone, and
bfloat16 autocast with channels_last, each model against its own float32 in the same run.

``python -m benchmarks.bench_cpu_amp [--seconds S]``: the trainer's own step (its loss,
optimizer, autocast and memory format; ``bench_oof_mnist.synthetic_images_per_s``) on
random tensors of each pipeline's image size and batch size, so only the arithmetic
differs. The models: ``photos.toml``'s ``airbench_s`` (32 px), ``resnet10_cifar`` at
32 px, and timm's ``test_resnet`` as the MNIST pipeline trains it (28 px, 1 channel).
Where the CPU has no native bfloat16, ``cpu_amp`` stays in float32 (channels_last only).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from rich.console import Console

from benchmarks.bench_oof_mnist import synthetic_images_per_s
from benchmarks.common import ROOT, result_table, write_section
from cleaner.training.device import cpu_has_bf16

PIPELINES = ROOT / "pipelines"
# (label, pipeline, overrides that make it that model and shape)
MODELS = [
    ("airbench_s, 32 px (photos.toml)", "photos.toml", ["data.classes=[\"a\",\"b\"]"]),
    ("resnet10_cifar, 32 px", "photos.toml",
     ["data.classes=[\"a\",\"b\"]", 'model.name="resnet10_cifar"']),
    ("test_resnet, 28 px gray (mnist.toml)", "mnist.toml", []),
]  # fmt: skip
MODES = [
    ("float32", ["train.cpu_amp=false"]),
    ("channels_last", ["train.cpu_amp=true", "train.amp=false"]),
    ("cpu_amp (bfloat16 + channels_last)", ["train.cpu_amp=true"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    console = Console()
    rows = []
    for label, pipeline, shape in MODELS:
        rates = [
            synthetic_images_per_s(PIPELINES / pipeline, [*shape, *mode], args.seconds)
            for _, mode in MODES
        ]
        rows.append([label, *(f"{r:,.0f} ({r / rates[0]:.2f}x)" for r in rates)])
    cols = ["model", *(name for name, _ in MODES)]
    table, lines = result_table("training images/s on the CPU, against float32", cols, rows)
    console.print(table)
    body = [
        "## `train.cpu_amp`: bfloat16 and channels_last on the CPU",
        "",
        "`python -m benchmarks.bench_cpu_amp`: the trainer's own training step on random",
        "tensors (each pipeline's batch and image size), images/s and the ratio against the",
        "same model in float32, measured in the same run. "
        + (
            "This CPU computes bfloat16 natively (oneDNN: AVX512-BF16 or AMX)."
            if cpu_has_bf16()
            else "This CPU has no native bfloat16: `cpu_amp` stays in float32 here."
        ),
        "`photos.toml` turns `cpu_amp` on; the default stays off so that a run folder",
        "made in float32 resumes in float32.",
        "",
        *lines,
    ]
    if not args.no_write:
        write_section("cpu-amp", "\n".join(body))


if __name__ == "__main__":
    main()
