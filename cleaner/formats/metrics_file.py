"""``metrics.json``: a fold's, an oof run's and a retrain's figures, as typed records.

One frozen dataclass per record, one writer (:func:`write_metrics`) and one reader
per kind (:func:`read_fold_metrics`, :func:`read_oof_metrics`,
:func:`read_retrain_metrics`). The JSON layout is the one earlier versions wrote,
so their run folders still read: keys are the field names, nested records are
objects, and an optional figure that was not measured is left out (not ``null``).

- :class:`ClassScores`: accuracy, macro F1, per-class F1 and the confusion matrix
  of predictions against labels (:func:`cleaner.core.metrics.classification_metrics`),
  with 95% intervals where a test set was bootstrapped.
- :class:`FoldMetrics`: a fold's scores on the rows it never saw, and how it trained.
- :class:`OofMetrics`: an oof run's completion record (written last, see
  :mod:`cleaner.formats.run_records`): the manifest it scored, the split, the
  scores over every train row and per fold.
- :class:`RetrainMetrics`: what ``cleaner retrain`` trained on and measured; its
  :class:`ScoresOnTest` compares the models on the test rows' true labels.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cleaner.core.atomic import write_text
from cleaner.core.errors import InputError, Problem

Interval = tuple[float, float]


@dataclass(frozen=True, kw_only=True)
class ClassScores:
    """Predictions against labels: ``confusion[i][j]`` counts rows of label i predicted j."""

    n: int
    accuracy: float
    macro_f1: float
    per_class_f1: dict[str, float]
    confusion: list[list[int]]
    accuracy_ci: Interval | None = None  # 95%, paired bootstrap over the test rows
    macro_f1_ci: Interval | None = None
    rows_weight_0_left_out: int | None = None  # retrain --mode folds: rows it did not train on


@dataclass(frozen=True, kw_only=True)
class FoldMetrics(ClassScores):
    """Fold ``fold``'s scores on its own rows, and how its model was trained."""

    fold: int
    n_train: int
    seconds: float
    mode: str | None = None  # "probe" for a head on frozen features; absent: fine-tuned
    train_images_per_s: float | None = None  # a probe trains no network: absent
    device: str | None = None
    processes: int | None = None  # > 1 under torchrun
    history: list[dict[str, Any]] | None = None  # one entry per epoch
    selected_epoch: int | None = None


@dataclass(frozen=True, kw_only=True)
class OofMetrics:
    """An oof run's completion record: every train row scored out of fold."""

    manifest: str
    manifest_sha256: str
    split: str  # the folds in words (StratifiedGroupKFold, seed, group column)
    classes: list[str]
    overall: ClassScores
    folds: list[FoldMetrics]


@dataclass(frozen=True, kw_only=True)
class ScoresOnTest:
    """Models trained on the noisy, the cleaned and the true labels, on the test rows."""

    cleaned: ClassScores
    noisy: ClassScores | None = None
    true: ClassScores | None = None
    gap_recovered: float | None = None  # (cleaned - noisy) / (true - noisy) accuracy
    gap_ci: Interval | None = None
    gap_measurable: bool | None = None  # the gap's interval excludes 0
    gap_recovered_ci: Interval | None = None

    def models(self) -> dict[str, ClassScores]:
        """The models that were trained, in the order a report lists them."""
        found = {"noisy": self.noisy, "cleaned": self.cleaned, "true": self.true}
        return {tag: s for tag, s in found.items() if s is not None}


@dataclass(frozen=True, kw_only=True)
class AuditScores:
    """The audit slice (``flag --audit``: rows drawn at random, decided by a person) as the
    truth: the labels and the models before and after cleaning
    (:mod:`cleaner.final.audit_scores`). Intervals are 95%, paired bootstrap."""

    rows: int  # decided keep or relabel: the reviewer's class is the truth
    left_out: int  # decided drop or unsure: no class
    ranked: int  # of ``rows``, those the ranking queued too
    labels_before: float  # share of the labels, as drawn, that were right
    labels_before_ci: Interval
    labels_after: float  # the same after the cleaning, the audit's own decisions aside
    labels_after_ci: Interval
    labels_gain_ci: Interval  # labels_after - labels_before
    model_rows: int = 0  # rows both models predicted out of fold
    before_runs: list[str] = dataclasses.field(default_factory=list)
    model_before: float | None = None  # the run that flagged them, against the reviewer
    model_before_ci: Interval | None = None
    model_after: float | None = None  # --mode folds on the cleaned labels
    model_after_ci: Interval | None = None
    model_gain_ci: Interval | None = None


@dataclass(frozen=True, kw_only=True)
class RetrainMetrics:
    """What ``cleaner retrain`` trained on, and every figure it measured."""

    manifest: str
    manifest_sha256: str
    mode: str
    reweight: str
    weight_rule: str
    tta: bool
    train_rows: int
    test_rows: int
    classes: list[str]
    cv_cleaned: ClassScores | None = None  # --mode folds: cross-validated on cleaned labels
    cv_before: ClassScores | None = None  # the oof run's, before cleaning
    cv_before_run: str | None = None
    first_version: str | None = None  # the manifest's first version, when this is a later one
    labels_changed: int | None = None
    rows_excluded: int | None = None
    test: ScoresOnTest | None = None
    audit: AuditScores | None = None  # the audit slice's rows as the truth
    figures: list[str] = dataclasses.field(default_factory=list)


Record = AuditScores | ClassScores | OofMetrics | RetrainMetrics | ScoresOnTest
R = TypeVar("R", AuditScores, ClassScores, FoldMetrics, OofMetrics, RetrainMetrics, ScoresOnTest)

# Fields that hold records: how to build each from its JSON object.
_NESTED: dict[str, type] = {
    "overall": ClassScores,
    "cv_cleaned": ClassScores,
    "cv_before": ClassScores,
    "cleaned": ClassScores,
    "noisy": ClassScores,
    "true": ClassScores,
    "test": ScoresOnTest,
    "audit": AuditScores,
}


def to_json(record: Record) -> dict[str, Any]:
    """The record as the JSON object ``metrics.json`` holds: unmeasured figures left out."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if value is None and f.default is None:
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = to_json(value)  # type: ignore[arg-type]
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            value = [to_json(v) for v in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def write_metrics(path: Path, record: Record, *, overwrite: bool = False) -> None:
    """Write ``record`` to ``path`` atomically (never over an existing file unless asked)."""
    write_text(path, json.dumps(to_json(record), indent=2), overwrite=overwrite)


def from_json(cls: type[R], data: Any, *, where: str) -> R:
    """Build ``cls`` from a JSON object; a missing key or a non-object names ``where``."""
    if not isinstance(data, Mapping):
        raise InputError([Problem(where, "not a JSON object")])
    values: dict[str, Any] = {}
    missing = []
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                missing.append(f.name)
            continue
        value = data[f.name]
        if f.name == "folds":
            value = [from_json(FoldMetrics, v, where=f"{where}: folds") for v in value]
        elif f.name in _NESTED and value is not None:
            value = from_json(_NESTED[f.name], value, where=f"{where}: {f.name}")
        elif f.name.endswith("_ci") and value is not None:
            value = (float(value[0]), float(value[1]))
        values[f.name] = value
    if missing:
        raise InputError([Problem(where, f"no {', '.join(missing)}")])
    return cls(**values)


def _read(cls: type[R], path: Path, what: str, hint: str = "") -> R:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return from_json(cls, data, where=str(path))
    except InputError as e:
        reason = "; ".join(p.reason for p in e.problems) if e.problems else str(e)
    except (OSError, ValueError, TypeError, IndexError) as e:
        # Not JSON (UnicodeDecodeError and JSONDecodeError are ValueErrors), or a value of
        # the wrong shape.
        reason = str(e)
    raise InputError([Problem(str(path), f"not {what} ({reason}){hint}")])


def read_fold_metrics(path: Path) -> FoldMetrics:
    """A fold's ``metrics.json``, refused (naming it) unless it is one."""
    return _read(
        FoldMetrics, path, "a fold's metrics", "; delete the fold's folder to train it again"
    )


def read_oof_metrics(path: Path) -> OofMetrics:
    """An oof run's ``metrics.json``, refused (naming it) unless it is one."""
    return _read(OofMetrics, path, "an oof run's metrics")


def read_retrain_metrics(path: Path) -> RetrainMetrics:
    """A retrain's ``metrics.json``, refused (naming it) unless it is one."""
    return _read(RetrainMetrics, path, "a retrain's metrics")
