"""Every named set of choices, in one place.

The config's validation (:data:`cleaner.core.config.CHOICES`), the CLI's help
texts, the API's checks and the code that acts on a choice all read these
registries, so a new ranking method, loss or backend is added here once and
cannot reach one of them without the others. The code that implements a
choice keeps a table keyed by the same names and checks it against the
registry when it is imported (:mod:`cleaner.training.losses`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cleaner.core.errors import InputError


@dataclass(frozen=True)
class Choices:
    """The allowed values of one option, each with what it does in a few words."""

    option: str  # how a person names the option: "--backend", "train.loss"
    items: dict[str, str]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.items)

    def __contains__(self, value: object) -> bool:
        return value in self.items

    def help(self) -> str:
        """``a (what a does) | b (...)``: the CLI's help text."""
        return " | ".join(f"{n} ({d})" if d else n for n, d in self.items.items()) + "."

    def check(self, value: str, option: str | None = None) -> str:
        """``value``, or a clear error naming the option (``option`` where a command
        spells it otherwise, e.g. flag's ``--method``) and the choices."""
        if value not in self.items:
            name = option or self.option
            raise InputError(f"{name} {value!r}: choose one of {', '.join(self.items)}")
        return value


RANK_METHODS = Choices(
    "flag.method",
    {
        "self_confidence": "the probability of the given label",
        "normalized_margin": "that probability against the likeliest other class",
        "confidence_weighted_entropy": "self-confidence over the prediction's entropy",
    },
)
REWEIGHT_MODES = Choices(
    "--reweight",
    {
        "none": "the manifest's weights",
        "quality": "times the label quality the oof run gives each row",
        "prune": "0 for rows flagged as label errors that no person decided",
        "class": "balanced classes",
    },
)
RETRAIN_MODES = Choices(
    "--mode", {"full": "one model on every train row", "folds": "K fold models, averaged"}
)
BACKENDS = Choices("--backend", {"local": "folds in this process", "ray": "folds as Ray tasks"})
LOSSES = Choices(
    "train.loss",
    {
        "ce": "cross-entropy",
        "focal": "focal loss (train.focal_gamma)",
        "gce": "generalized cross-entropy (train.gce_q)",
        "sce": "symmetric cross-entropy (train.sce_alpha, train.sce_beta)",
    },
)
TRAIN_MODES = Choices(
    "train.mode",
    {"finetune": "train the network", "probe": "heads on a pretrained backbone's features"},
)
OPTIMIZERS = Choices("train.optimizer", {"adamw": "", "sgd": "Nesterov momentum"})
SCHEDULERS = Choices(
    "train.scheduler", dict.fromkeys(("cosine", "step", "plateau", "onecycle", "constant"), "")
)
SELECT = Choices("train.select", {"last": "the last epoch", "macro_f1": "the best validated"})
DAMAGED_IMAGES = Choices("data.damaged_images", {"error": "refuse", "warn": "decode and warn"})
LABEL_FORMATS = Choices("submission.label_format", {"name": "class names", "index": "indices"})

# The pipeline keys whose values are one of a registry's names.
CONFIG_KEYS: tuple[Choices, ...] = (
    DAMAGED_IMAGES,
    TRAIN_MODES,
    OPTIMIZERS,
    SCHEDULERS,
    LOSSES,
    SELECT,
    RANK_METHODS,
    LABEL_FORMATS,
)
