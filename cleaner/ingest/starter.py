"""``cleaner init``: a starting pipeline for a manifest, chosen from its images and the machine.

What is chosen, and on what:

- classes: the train labels, sorted (the order of every probability column);
- channels: 1 when every sampled image is grayscale, else 3;
- image size: the median shorter side of a sample of images, rounded to a
  multiple of 16 and kept within 32..224 on the CPU; the backbone's own input
  size with a GPU;
- model: with a GPU, a pretrained ImageNet backbone (timm downloads its weights
  on first use); on the CPU, for colour photos up to 96 px, the model, training
  and flip-and-shift augmentation of the shipped ``photos.toml`` (an airbench
  net built for small photos, :mod:`cleaner.training.smallnets`), the shifts scaled to
  the image size; for other images on the CPU, timm's ``test_resnet``, the
  model of the shipped ``digits.toml`` and ``mnist.toml``, which trains 5 folds
  on 10,000 small images in minutes on 2 cores;
- normalisation: the backbone's pretrained statistics when pretrained, else
  the mean and standard deviation of the sampled images;
- folds: 5, fewer when a class has fewer train rows; ``data.group`` when the
  manifest has a ``group`` column.

These are starting points for any data set, not tuned on one; the file's
comments say what to change.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomli_w
from PIL import Image

from cleaner.core.atomic import write_text
from cleaner.core.errors import InputError, Problem
from cleaner.formats.manifest import read_manifest, resolve_paths

SAMPLE = 200  # images opened to choose size, channels and normalisation
GPU_MODEL = "convnext_tiny.fb_in22k_ft_in1k"  # strong ImageNet-22k features, 28M parameters
CPU_MODEL = "test_resnet"
# Colour photos up to this median shorter side get the shipped small-photo recipe on the
# CPU (photos.toml, measured at 32 px; its net keeps the resolution in its stem, and
# beyond about 96 px a CPU epoch of it gets slow).
SMALL_PHOTO_SIDE = 96
# What the small-photo recipe takes from photos.toml: model and training, not data.
SMALL_PHOTO_TRAIN = (
    "epochs", "batch_size", "optimizer", "momentum", "lr", "weight_decay", "scheduler",
    "label_smoothing", "prune_at", "ema", "tta", "tta_translate", "cpu_amp",
)  # fmt: skip
CACHE_BYTES = 2 << 30  # decoded images kept in memory below this total


@dataclass(frozen=True)
class ImageStats:
    """What a sample of the manifest's images looks like."""

    gray: bool  # every sampled image is grayscale
    short_side: int  # median shorter side, pixels
    mean: tuple[float, ...]  # per channel, in [0, 1]
    std: tuple[float, ...]
    n_sampled: int


def sample_stats(paths: list[Path], in_chans: int | None = None, seed: int = 0) -> ImageStats:
    """Size, channels and pixel statistics of up to ``SAMPLE`` of ``paths`` (a seeded draw)."""
    rng = np.random.default_rng(seed)
    picked = [paths[i] for i in rng.permutation(len(paths))[:SAMPLE]]
    modes, sides, pixels = [], [], []
    for path in picked:
        try:
            with Image.open(path) as im:
                modes.append(im.mode)
                sides.append(min(im.size))
        except (OSError, ValueError) as e:
            raise InputError([Problem(str(path), f"unreadable image: {e}")]) from None
    gray = all(m in ("1", "L", "I", "I;16", "F", "LA") for m in modes)
    chans = in_chans or (1 if gray else 3)
    for path in picked:
        with Image.open(path) as im:
            small = im.convert("L" if chans == 1 else "RGB")
        small.thumbnail((64, 64))  # statistics barely move with size; decoding is the cost
        pixels.append(np.asarray(small, np.float32).reshape(-1, chans) / 255.0)
    flat = np.concatenate(pixels)
    std = np.maximum(flat.std(axis=0), 1e-3)  # a blank channel must not divide by zero
    return ImageStats(
        gray,
        int(statistics.median(sides)),
        tuple(round(float(v), 4) for v in flat.mean(axis=0)),
        tuple(round(float(v), 4) for v in std),
        len(picked),
    )


def _size(short_side: int) -> int:
    return int(min(max(round(short_side / 16) * 16, 32), 224))


def starter_pipeline(manifest: str | Path, *, gpu: bool) -> str:
    """The text of a starting pipeline TOML for ``manifest`` (a path as the user gave it)."""
    manifest = Path(manifest)
    df = read_manifest(manifest)
    train = df[df["split"] == "train"]
    labels = train["label"].str.strip()
    labels = labels[labels != ""]
    if labels.empty:
        raise InputError([Problem(str(manifest), "no labeled train rows: nothing to learn")])
    classes = sorted(set(labels))
    rows = df[df["split"] != "excluded"]
    stats = sample_stats(resolve_paths(rows, manifest.parent))
    in_chans = 1 if stats.gray else 3
    smallest = int(labels.value_counts().min())
    folds = max(2, min(5, smallest))
    data: dict[str, object] = {"manifest": manifest.as_posix(), "classes": classes}
    if "group" in df.columns:
        data["group"] = "group"
    model: dict[str, object]
    train_cfg: dict[str, object] = {"folds": folds}
    augment: list[dict[str, object]] = []
    if gpu:
        data["image_size"] = 224
        model = {"name": GPU_MODEL, "pretrained": True, "in_chans": in_chans}
        train_cfg |= {"epochs": 10, "batch_size": 64, "lr": 1e-4, "label_smoothing": 0.1,
                      "workers": 8}  # fmt: skip
    else:
        size = _size(stats.short_side)
        data |= {"image_size": size, "mean": list(stats.mean), "std": list(stats.std)}
        data["cache"] = len(rows) * size * size * in_chans < CACHE_BYTES
        model = {"name": CPU_MODEL, "in_chans": in_chans}
        train_cfg |= {"epochs": 12, "batch_size": 64, "lr": 3e-3,
                      "workers": 0 if data["cache"] else 2}  # fmt: skip
        if not stats.gray and size <= SMALL_PHOTO_SIDE:
            model, recipe, augment = small_photo_recipe(size)
            train_cfg |= recipe | {"workers": train_cfg["workers"]}
    return _render(
        manifest, data, model, train_cfg, stats, gpu=gpu, smallest=smallest, augment=augment
    )


def small_photo_recipe(
    size: int,
) -> tuple[dict[str, object], dict[str, object], list[dict[str, object]]]:
    """Model, training keys and augmentation of the shipped ``photos.toml`` for photos of
    ``size`` px: a flip and a shift of up to 1/8 of the side (reflect-padded, cropped back)."""
    from cleaner.core.config import SHIPPED, load_config

    cfg = load_config(SHIPPED / "photos.toml")
    model = {"name": cfg.model.name, "in_chans": 3}
    train = {k: getattr(cfg.train, k) for k in SMALL_PHOTO_TRAIN}
    pad = size + 2 * max(1, size // 16)
    augment: list[dict[str, object]] = [
        {"name": "HorizontalFlip", "p": 0.5},
        {"name": "PadIfNeeded", "min_height": pad, "min_width": pad, "border_mode": 4},
        {"name": "RandomCrop", "height": size, "width": size},
    ]
    return model, train, augment


def _value(v: object) -> str:
    """One TOML value, lists on one line (tomli_w breaks every list over lines)."""
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return tomli_w.dumps({"v": v}).split(" = ", 1)[1].strip()


def _table(name: str, values: dict[str, object]) -> str:
    return "\n".join([f"[{name}]", *(f"{k} = {_value(v)}" for k, v in values.items())])


def _render(
    manifest: Path,
    data: dict[str, object],
    model: dict[str, object],
    train: dict[str, object],
    stats: ImageStats,
    *,
    gpu: bool,
    smallest: int,
    augment: list[dict[str, object]],
) -> str:
    """The TOML with comments saying what each choice rests on and what to change."""
    where = "a GPU" if gpu else "the CPU only"
    lines = [
        f"# Starting pipeline for {manifest}, written by `cleaner init` for {where}.",
        f"# Chosen from {stats.n_sampled} sampled images: median shorter side "
        f"{stats.short_side} px, {'grayscale' if stats.gray else 'colour'}.",
        "# Every key and its default: README, section 'Pipeline'. Override any key on the",
        "# command line without editing: `cleaner oof THIS.toml --set train.epochs=20`.",
        "",
        _table("data", data),
        "# classes: the order of every probability column; keep it once runs exist.",
        "# image_size: the model's input; larger helps fine detail and costs time.",
    ]
    if "mean" in data:
        lines.append("# mean/std: measured on the sampled images (no pretrained statistics).")
    if "group" in data:
        lines.append("# group: rows of one group (a person, a scene) stay in one fold.")
    lines += ["", _table("model", model)]
    if gpu:
        lines += [
            f"# {GPU_MODEL}: timm downloads its weights on first use; offline, set",
            "# model.weights to a local file instead. Any timm model name works.",
        ]
    elif augment:
        lines += [
            f"# {model['name']}: a small-photo net (cleaner.training.smallnets), with the",
            "# training of the shipped photos.toml (its comments give the measurements).",
        ]
    else:
        lines += [
            f"# {CPU_MODEL}: small enough for the CPU, as in the shipped CPU pipelines. With a",
            "# GPU, `cleaner init --gpu` picks a pretrained backbone, which finds far more.",
        ]
    lines += ["", _table("train", train)]
    if train["folds"] != 5:
        lines.append(f"# folds: the smallest class has {smallest} train rows; each fold needs one.")
    lines += [
        "# epochs: raise it when the out-of-fold accuracy is still climbing (`cleaner oof`",
        "# prints it per fold); `cleaner flag` refuses a model no better than chance.",
        "",
    ]
    if augment:
        lines.append("# Photos: mirrored, and shifted by up to 1/16 of the side each way.")
        for step in augment:
            lines += ["[[augment.train]]", *(f"{k} = {_value(v)}" for k, v in step.items())]
        return "\n".join([*lines, ""])
    lines += [
        "# Augmentation: none by default. Add albumentations transforms that keep the label,",
        "# e.g. a horizontal flip for photos (not for digits or text):",
        "# [[augment.train]]",
        '# name = "HorizontalFlip"',
        "# p = 0.5",
        "",
    ]
    return "\n".join(lines)


def write_starter(manifest: str | Path, out: str | Path, *, gpu: bool) -> Path:
    """Write :func:`starter_pipeline` to ``out``; an existing file is never replaced."""
    out = Path(out)
    if out.exists():
        raise InputError([Problem(str(out), "already exists; choose another --out")])
    write_text(out, starter_pipeline(manifest, gpu=gpu))
    return out


@dataclass(frozen=True)
class InitResult:
    """What ``cleaner init`` wrote: the pipeline, and the manifest it ingested first if any."""

    pipeline: Path
    manifest: Path
    ingested_from: Path | None  # the folder of class folders ingested first, if one was given
    gpu: bool


def init_project(
    source: str | Path, out: str | Path | None = None, *, gpu: bool | None
) -> InitResult:
    """``cleaner init``: a starting pipeline for a manifest, or for a folder of class folders
    (ingested first, as ``cleaner ingest folder``); ``gpu`` None: whether this machine has one."""
    manifest, folder = Path(source), None
    if manifest.is_dir():
        from cleaner.ingest.folder import ingest_folder
        from cleaner.ingest.output import manifest_for_init

        folder, manifest = manifest, ingest_folder(manifest, manifest_for_init(manifest))
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    path = write_starter(manifest, out or Path("pipelines") / f"{manifest.stem}.toml", gpu=gpu)
    return InitResult(path, manifest, folder, gpu)
