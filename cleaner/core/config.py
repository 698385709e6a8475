"""Pipeline configuration: one frozen dataclass per section, TOML overrides.

A pipeline file (``pipelines/*.toml``) holds only what differs from the
defaults below; ``--set section.key=value`` overrides any key on the command
line. The resolved configuration (every key, defaults included) is what a run
saves as ``config.toml``, so a run can always be repeated exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from cleaner.core.choices import CONFIG_KEYS
from cleaner.core.errors import InputError, Problem, not_utf8

# Pillow's default ``Image.MAX_IMAGE_PIXELS`` (about 89 Mpx, 1 GiB of 24-bit RGB / 3):
# generous for photos (a 50 Mpx camera), far below what fills memory.
MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3
# The model input side: larger would allocate gigabytes per batch (1,000,000 asked for 931 GiB).
MAX_IMAGE_SIDE = 4096


@dataclass(frozen=True)
class DataConfig:
    manifest: str = ""  # manifest CSV, relative to the working directory
    classes: tuple[str, ...] = ()  # class order of every probability column; empty: sorted labels
    image_size: int | tuple[int, int] = 224  # model input, int or (height, width)
    group: str = ""  # manifest column whose rows must stay in one fold (e.g. a person id)
    mean: tuple[float, ...] = ()  # normalisation; empty: the model's pretrained config
    std: tuple[float, ...] = ()
    cache: bool = False  # keep decoded images in memory: worth it when they fit (MNIST-sized)
    check_images: bool = True  # decode every image once before training, to fail early
    # A JPEG cut short or with corrupt data decodes as partly grey: error | warn (train on it)
    damaged_images: str = "error"
    weights: str = ""  # CSV of sample_id, weight replacing the manifest's weights of those rows
    # Images with more pixels are refused before they are decoded (a decompression bomb:
    # a 1 MB PNG of 30000x30000 decodes to 2.7 GB). Pillow's own default limit.
    max_image_pixels: int = MAX_IMAGE_PIXELS

    @property
    def hw(self) -> tuple[int, int]:
        """Image size as ``(height, width)``."""
        if isinstance(self.image_size, int):
            return (self.image_size, self.image_size)
        return (int(self.image_size[0]), int(self.image_size[1]))


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet18"  # any timm model name
    pretrained: bool = False  # load pretrained weights through timm's hub
    weights: str = ""  # local weights file (works offline); implies pretrained loading
    in_chans: int = 3  # 1 reads images as grayscale, 3 as RGB
    drop_rate: float = 0.0  # dropout before the classifier
    # The model's own arguments, passed to timm.create_model (timm's --model-kwargs), e.g.
    # {widths = [32, 128, 128], whiten = false} for an airbench net (cleaner.training.smallnets).
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    folds: int = 5  # K of K-fold cross-validation
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.05
    optimizer: str = "adamw"  # adamw | sgd (timm's: Nesterov momentum, as small-photo recipes use)
    momentum: float = 0.9  # sgd only
    scheduler: str = "cosine"  # cosine (with warmup) | step | plateau | onecycle | constant
    warmup_epochs: float = 1.0  # cosine: linear warmup length
    min_lr_ratio: float = 0.01  # cosine: final lr as a fraction of lr
    step_epochs: int = 3  # step: decay every this many epochs
    gamma: float = 0.1  # step and plateau: decay factor
    patience: int = 2  # plateau: epochs without improvement of validation loss
    loss: str = "ce"  # ce | focal | gce | sce (the last two are robust to label noise)
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    gce_q: float = 0.7  # gce: (1 - p_y^q) / q; q -> 0 is ce, q = 1 is MAE (Zhang & Sabuncu 2018)
    sce_alpha: float = 0.1  # sce: alpha * ce + beta * reverse ce (Wang et al. 2019, CIFAR-10)
    sce_beta: float = 1.0
    # timm's Mixup/CutMix per batch: alpha of each Beta(alpha, alpha); 0 is off. They make
    # soft targets, so they need loss = ce, gce or sce.
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0  # share of batches mixed
    mix_switch_prob: float = 0.5  # both on: share of mixed batches that use cutmix
    ema: float = 0.0  # decay of an EMA of the weights (timm's ModelEmaV3); 0 is off
    ema_warmup: bool = False  # ramp the decay up over the first steps (timm's warmup)
    tta: bool = False  # out-of-fold and unlabeled probabilities: mean with the mirrored image
    # With tta: also mean with the image shifted by this many pixels both ways
    # (reflect-padded), at half the weight, as airbench's flip + translate TTA; 0 is off.
    tta_translate: int = 0
    # Wrap the optimizer in timm's Lookahead (Zhang et al. 2019: slow weights pulled
    # towards the fast ones every 6 steps), the weight averaging of airbench's recipe.
    lookahead: bool = False
    # At this fraction of the epochs, the training rows that cleanlab finds mislabeled on
    # the model's own predictions of them get weight 0 for the rest of the fit: the
    # small-loss selection of Co-teaching (Han et al. 2018), with confident learning's
    # per-class thresholds instead of a known noise rate. Held-out rows are never looked
    # at, so out-of-fold stays out-of-fold. 0 is off.
    prune_at: float = 0.0
    grad_accum: int = 1  # micro-batches per optimizer step
    amp: bool = True  # mixed precision; used on CUDA only (and on the CPU with cpu_amp)
    channels_last: bool = True  # memory format on CUDA only (and on the CPU with cpu_amp)
    # The two above on the CPU too: channels_last, and bfloat16 autocast where the CPU
    # computes in bfloat16 natively (AVX512-BF16 or AMX; float32 elsewhere). On 2
    # AVX512-BF16 cores it trained airbench_s 2.3-2.5x, resnet10_cifar 3.0-3.2x and timm's
    # test_resnet 1.6-2.0x faster (two runs; BENCHMARKS.md, "cpu_amp"). Off by default so that a run
    # folder made in float32 resumes in float32 (a later key at its default is left out
    # of the run's name).
    cpu_amp: bool = False
    workers: int = 2  # DataLoader worker processes
    seed: int = 42  # folds, initialisation, shuffling and augmentation
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_batch_size: int = 0  # 0: twice batch_size
    # last | macro_f1: keep the epoch with the best validation macro F1 (when there is a
    # validation fold). It makes out-of-fold scores a little optimistic: the fold picks
    # its own epoch.
    select: str = "last"
    # finetune: train the whole model per fold. probe: the pretrained backbone (model.pretrained
    # or model.weights) as it is, one forward pass over every row, then a logistic-regression
    # head per fold on its features (cleaner.training.probe); the keys above about training unused.
    mode: str = "finetune"
    probe_c: float = 1.0  # probe: inverse L2 strength of the logistic regression (sklearn's C)


@dataclass(frozen=True)
class AugmentConfig:
    resize: bool = True  # resize to data.image_size before the transforms below
    # albumentations transforms by class name with their arguments, e.g.
    # [{name = "Affine", rotate = [-10, 10], p = 0.5}]
    train: tuple[dict[str, Any], ...] = ()
    eval: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class FlagConfig:
    method: str = "self_confidence"  # cleanlab ranking method
    top: int = 200  # rows in the relabel queue
    # Train rows drawn at random and added to the queue (issue "audit"): their decisions
    # measure the labels and the models without the ranking's bias (retrain's report).
    audit: int = 0
    # Train rows drawn in map.png (t-SNE of the embeddings; its time grows faster than the
    # rows); every queue row is drawn. 0: no map.
    map_points: int = 5_000
    group_label: bool = False  # the class label is the same on every row of a data.group
    group_columns: tuple[str, ...] = ()  # manifest columns that are the same within a group
    attributes: tuple[str, ...] = ()  # manifest columns the class determines (mask, gender, ...)
    # A band attribute cut from a number (age_band from age): rows just under an edge
    # that the model puts in the next band are reported as COLUMN_boundary, after the errors.
    boundary_column: str = ""  # the number, e.g. "age"
    boundary_attribute: str = ""  # the band, e.g. "age_band", with values 0, 1, 2, ...
    boundary_edges: tuple[float, ...] = ()  # where each band starts, e.g. [30, 60]
    boundary_margin: float = 0.0  # how far under an edge counts, e.g. 3 (ages 27-29, 57-59)


@dataclass(frozen=True)
class SubmissionConfig:
    id_column: str = "id"
    label_column: str = "label"
    label_format: str = "name"  # name | index (position in data.classes)


@dataclass(frozen=True)
class PipelineConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    flag: FlagConfig = field(default_factory=FlagConfig)
    submission: SubmissionConfig = field(default_factory=SubmissionConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self, *, canonical: bool = False) -> str:
        """The resolved config as TOML, every key included (a run folder's ``config.toml``).

        ``canonical`` leaves out the keys of :data:`LATER_KEYS` that hold their
        default: the text a run folder's name hashes (:meth:`digest`).
        """
        tree = self.to_dict()
        for key in LATER_KEYS if canonical else ():
            section, name = key.split(".")
            if tree[section][name] == _DEFAULTS[section][name]:
                del tree[section][name]
        return tomli_w.dumps(_tomlable(tree))

    def digest(self, *salt: str) -> str:
        """sha256 of the canonical TOML followed by ``salt`` (the manifest's sha256, say):
        two runs with equal digests are the same run."""
        text = self.to_toml(canonical=True) + "".join(salt)
        return hashlib.sha256(text.encode()).hexdigest()

    def replace(self, section: str, **changes: Any) -> PipelineConfig:
        """A copy with keys of one section changed."""
        return dataclasses.replace(
            self, **{section: dataclasses.replace(getattr(self, section), **changes)}
        )


SECTIONS: dict[str, type] = typing.get_type_hints(PipelineConfig)

# Keys added after run folders were first named. At their default they are left out
# of the text a run folder's name hashes (``to_toml(canonical=True)``), so a pipeline
# that does not use them keeps its run folder's name, and an older run folder (whose
# config.toml lacks them) resumes. A key added later belongs here.
LATER_KEYS: frozenset[str] = frozenset(
    f"train.{k}"
    for k in (
        "gce_q", "sce_alpha", "sce_beta", "mixup", "cutmix", "mix_prob", "mix_switch_prob",
        "ema", "ema_warmup", "tta", "tta_translate", "lookahead", "prune_at", "mode", "probe_c",
        "cpu_amp",
    )
) | {"model.kwargs", "data.max_image_pixels", "flag.audit", "flag.map_points"}  # fmt: skip
_DEFAULTS: dict[str, Any] = PipelineConfig().to_dict()

# The keys whose values are a registry's names (cleaner.core.choices).
CHOICES: dict[str, tuple[str, ...]] = {c.option: c.names for c in CONFIG_KEYS}
POSITIVE = ("train.folds", "train.epochs", "train.batch_size", "train.grad_accum", "flag.top")

# Numeric ranges: key -> (low, high, low included, high included); None is unbounded.
# What torch, timm and the schedulers accept, checked here so that a bad value
# is one clear error before any file is written, not a traceback mid-training.
RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "data.max_image_pixels": (1, None, True, False),
    "flag.audit": (0, None, True, False),
    "flag.map_points": (0, None, True, False),
    "model.in_chans": (1, None, True, False),
    "model.drop_rate": (0, 1, True, False),
    "train.lr": (0, None, False, False),
    "train.weight_decay": (0, None, True, False),
    "train.momentum": (0, 1, True, False),
    "train.warmup_epochs": (0, None, True, False),
    "train.min_lr_ratio": (0, 1, True, True),
    "train.step_epochs": (1, None, True, False),
    "train.gamma": (0, 1, False, True),
    "train.patience": (0, None, True, False),
    "train.label_smoothing": (0, 1, True, False),
    "train.focal_gamma": (0, None, True, False),
    "train.gce_q": (0, 1, False, True),
    "train.sce_alpha": (0, None, True, False),
    "train.sce_beta": (0, None, True, False),
    "train.mixup": (0, None, True, False),
    "train.cutmix": (0, None, True, False),
    "train.mix_prob": (0, 1, True, True),
    "train.mix_switch_prob": (0, 1, True, True),
    "train.ema": (0, 1, True, False),
    "train.workers": (0, None, True, False),
    "train.seed": (0, 2**32 - 1, True, True),
    "train.eval_batch_size": (0, None, True, False),
    "train.tta_translate": (0, 16, True, True),
    "train.prune_at": (0, 1, True, False),
    "train.probe_c": (0, None, False, False),
    "flag.boundary_margin": (0, None, True, False),
}
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _tomlable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _tomlable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tomlable(v) for v in value]
    return value


def text_override(key: str, value: str) -> str:
    """``--set`` text giving ``key`` the string ``value`` whatever it holds (quotes, ``\\``).

    JSON's string escapes are TOML's, so the value reads back exactly.
    """
    return f"{key}={json.dumps(value)}"


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse ``section.key=value``; the value is read as TOML, else taken as a string.

    A key whose type is text takes the value as written (``model.name=inf``,
    ``data.group=1990``) unless it is quoted; a float key also takes ``.01``.
    """
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    name, raw = name.strip(), raw.strip()
    if not sep or not dot or not name:
        raise InputError(f"--set {text!r}: expected section.key=value, e.g. train.epochs=3")
    hint = typing.get_type_hints(SECTIONS[section]).get(name) if section in SECTIONS else None
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except ValueError:  # not TOML (TOMLDecodeError), or an integer of thousands of digits
        value = raw
    except RecursionError:  # thousands of nested brackets: no value a key takes
        raise InputError(f"--set {key.strip()}: the value is nested too deeply") from None
    if hint is str and not isinstance(value, str):
        value = raw
    elif hint is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(raw)
    return section, name, value


def _coerce(value: Any, hint: Any, where: str, file: str) -> Any:
    """Check ``value`` against a field's type hint; ints become floats where floats are due."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        for arm in typing.get_args(hint):
            try:
                return _coerce(value, arm, where, file)
            except InputError:
                continue
        raise InputError([Problem(file, f"{where}: {value!r} is not a valid {hint}")])
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise InputError([Problem(file, f"{where}: expected a list, got {value!r}")])
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where, file) for v in value)
        if len(args) != len(value):
            raise InputError([Problem(file, f"{where}: expected {len(args)} values")])
        return tuple(_coerce(v, a, where, file) for v, a in zip(value, args, strict=True))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise InputError([Problem(file, f"{where}: expected a table, got {value!r}")])
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise InputError(
        [Problem(file, f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")]
    )


def build_config(raw: Mapping[str, Any], *, file: str = "<config>") -> PipelineConfig:
    """Build and validate a :class:`PipelineConfig` from nested TOML tables."""
    problems: list[Problem] = []
    sections: dict[str, Any] = {}
    for section, table in raw.items():
        if section not in SECTIONS:
            problems.append(
                Problem(file, f"unknown section [{section}]; known: {', '.join(SECTIONS)}")
            )
            continue
        if not isinstance(table, Mapping):
            problems.append(Problem(file, f"[{section}] must be a table"))
            continue
        cls = SECTIONS[section]
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key, value in table.items():
            where = f"{section}.{key}"
            if key not in hints:
                problems.append(Problem(file, f"unknown key {where}; known: {', '.join(hints)}"))
                continue
            try:
                values[key] = _coerce(value, hints[key], where, file)
            except InputError as e:
                problems.extend(e.problems)
        sections[section] = values
    if problems:
        raise InputError(problems)
    cfg = PipelineConfig(**{s: SECTIONS[s](**v) for s, v in sections.items()})
    _check_values(cfg, file)
    return cfg


def _range_text(low: float | None, high: float | None, low_in: bool, high_in: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_in else '>'} {low}")
    if high is not None:
        parts.append(f"{'<=' if high_in else '<'} {high}")
    return " and ".join(parts)


def _in_range(
    value: float, low: float | None, high: float | None, low_in: bool, high_in: bool
) -> bool:
    if low is not None and (value < low or (value == low and not low_in)):
        return False
    return high is None or value < high or (value == high and high_in)


def _numbers(cfg: PipelineConfig) -> Iterable[tuple[str, float]]:
    """Every number of the config, lists included, as ``(section.key, value)``."""
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            for v in value if isinstance(value, list | tuple) else [value]:
                if isinstance(v, int | float) and not isinstance(v, bool):
                    yield f"{section}.{key}", v


def _check_numbers(cfg: PipelineConfig, file: str) -> list[Problem]:
    nonfinite = [(key, value) for key, value in _numbers(cfg) if not math.isfinite(value)]
    problems = [Problem(file, f"{k} = {v!r}: must be a finite number") for k, v in nonfinite]
    for key, bounds in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if key not in dict(nonfinite) and not _in_range(value, *bounds):
            problems.append(Problem(file, f"{key} = {value!r}: must be {_range_text(*bounds)}"))
    if not DEVICE.match(cfg.train.device):
        problems.append(
            Problem(
                file, f"train.device = {cfg.train.device!r}; choose auto, cpu, cuda, cuda:N or mps"
            )
        )
    return problems


def _train_problems(train: TrainConfig, file: str) -> list[Problem]:
    """Train keys that are valid alone but not together."""
    problems = []
    if train.loss == "focal" and (train.mixup > 0 or train.cutmix > 0):
        problems.append(
            Problem(
                file,
                "train.loss = 'focal' takes class labels, but train.mixup and train.cutmix "
                "make soft targets: use ce, gce or sce with them",
            )
        )
    if train.loss == "sce" and train.sce_alpha == 0 and train.sce_beta == 0:
        problems.append(Problem(file, "train.sce_alpha and train.sce_beta cannot both be 0"))
    return problems


def _check_values(cfg: PipelineConfig, file: str) -> None:
    problems = _check_numbers(cfg, file)
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            problems.append(Problem(file, f"{key} = {value!r}; choose one of {', '.join(choices)}"))
    for key in POSITIVE:
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) < 1:
            problems.append(Problem(file, f"{key} must be at least 1"))
    if cfg.train.folds < 2:
        problems.append(Problem(file, "train.folds must be at least 2 for out-of-fold predictions"))
    problems.extend(_train_problems(cfg.train, file))
    if cfg.train.mode == "probe" and not (cfg.model.pretrained or cfg.model.weights):
        problems.append(
            Problem(
                file,
                "train.mode = 'probe' fits heads on a pretrained backbone's features, but "
                f"{cfg.model.name} would have random weights: set model.pretrained = true "
                "(timm's hub) or model.weights = FILE, or use train.mode = 'finetune'",
            )
        )
    if any(s < 1 for s in cfg.data.hw):
        problems.append(Problem(file, "data.image_size must be positive"))
    elif any(s > MAX_IMAGE_SIDE for s in cfg.data.hw):
        problems.append(
            Problem(
                file,
                f"data.image_size = {cfg.data.image_size!r}: at most {MAX_IMAGE_SIDE} pixels a "
                "side (a larger model input needs gigabytes per image)",
            )
        )
    if len(cfg.data.mean) != len(cfg.data.std):
        problems.append(Problem(file, "data.mean and data.std must have the same length"))
    if len(set(cfg.data.classes)) != len(cfg.data.classes):
        problems.append(Problem(file, "data.classes has duplicates"))
    for key in ("train", "eval"):
        for i, t in enumerate(getattr(cfg.augment, key)):
            if "name" not in t:
                problems.append(Problem(file, f"augment.{key}[{i}] needs a name"))
    if problems:
        raise InputError(problems)


def check_overrides(overrides: Iterable[str], *, keys: Iterable[str]) -> None:
    """Refuse ``--set`` text that names a key not in ``keys`` or gives it a bad value.

    Cheap (no model code loads), so a command checks its ``--set`` first.
    """
    apply_overrides(PipelineConfig(), overrides, keys=keys)


def apply_overrides(
    cfg: PipelineConfig, overrides: Iterable[str], *, keys: Iterable[str], file: str = "--set"
) -> PipelineConfig:
    """``cfg`` with ``section.key=value`` overrides of a later step (``flag.*``, say).

    ``keys`` lists what the step may change: a section (``"flag"``) or one key
    (``"data.group"``); anything else is refused, since it would need a new run.
    """
    allowed = set(keys)
    raw = cfg.to_dict()
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in allowed and f"{section}.{key}" not in allowed:
            raise InputError(
                f"--set {text!r}: this step takes only {', '.join(sorted(allowed))}; "
                "other settings belong to `cleaner oof`"
            )
        raw.setdefault(section, {})[key] = value
    return build_config(raw, file=file)


# The pipelines that ship inside the package (a checkout's pipelines/ links here).
SHIPPED = Path(__file__).resolve().parents[1] / "pipelines"


def shipped_pipelines() -> list[str]:
    """Names of the pipelines an installed cleaner has, e.g. ``photos``."""
    return sorted(p.stem for p in SHIPPED.glob("*.toml"))


def resolve_pipeline(path: str | Path) -> Path:
    """``path`` itself, or for a bare name with no file of that name (``photos``, as
    timm takes a model name) the shipped pipeline: an installed cleaner has no
    ``pipelines/`` folder to point at. A local file of that name wins (a folder of
    that name, the user's photos say, cannot be a pipeline and does not). A name with a
    suffix or a folder part is always a path, so a typo in a local file name is never
    answered with a shipped file."""
    path = Path(path)
    if not path.is_file() and path.name == str(path) and not path.suffix:
        shipped = SHIPPED / f"{path.name}.toml"
        if shipped.is_file():
            return shipped
    return path


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> PipelineConfig:
    """Read a pipeline TOML file (or a shipped one by name, see :func:`resolve_pipeline`)
    and apply ``section.key=value`` overrides."""
    path = resolve_pipeline(path)
    if path.is_dir():
        raise InputError([Problem(str(path), "is a folder, not a pipeline file")])
    try:
        # A byte-order mark (Notepad's "UTF-8 with BOM") is not TOML, but says only "UTF-8".
        raw: dict[str, Any] = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        shipped = ", ".join(shipped_pipelines())
        reason = f"pipeline file not found (shipped, by name: {shipped})"
        raise InputError([Problem(str(path), reason)]) from None
    except UnicodeDecodeError:
        raise InputError([not_utf8(path, "pipeline")]) from None
    except ValueError as e:  # TOMLDecodeError, and an integer of thousands of digits
        raise InputError([Problem(str(path), f"not valid TOML: {e}")]) from None
    except RecursionError:  # thousands of nested tables or arrays: malformed, not a crash
        raise InputError([Problem(str(path), "not valid TOML: nested too deeply")]) from None
    for text in overrides:
        section, key, value = parse_override(text)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise InputError([Problem(str(path), f"[{section}] must be a table")])
        raw[section][key] = value
    return build_config(raw, file=str(path))
