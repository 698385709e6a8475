"""Every file of a run folder, a fold's folder and a queue folder, named in one place.

A run folder (``oof``'s, ``retrain``'s, an ensemble's) holds files whose names
are part of the product's interface (README, "File formats"). They are named
here only: a module that reads or writes one asks :class:`RunFiles` (or
:class:`FoldFiles`, :class:`QueueFiles`) for its path, so a name cannot drift
between the writer and its readers, and the folder's layout reads in one page.
Writing stays with the format's owner (``cleaner.formats.prob_table`` for the probability
tables, ``cleaner.formats.queue_file`` for the queue, ...), always through
:mod:`cleaner.core.atomic`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from cleaner.core.config import PipelineConfig, build_config


@dataclass(frozen=True)
class FoldFiles:
    """One trained model's folder: ``fold-K`` of an oof run, its ``embed`` model, or a
    retrain's ``full`` / ``baseline-*`` model."""

    dir: Path

    @property
    def checkpoint(self) -> Path:
        """The resumable training state, deleted once the model is saved."""
        return self.dir / "checkpoint.pt"

    @property
    def model(self) -> Path:
        """The trained weights (a ``state_dict``)."""
        return self.dir / "model.pt"

    @property
    def metrics(self) -> Path:
        """The fold's validation metrics and training history."""
        return self.dir / "metrics.json"

    @property
    def oof(self) -> Path:
        """The fold's held-out ids, probabilities and embeddings; written last: the fold is done."""
        return self.dir / "oof.npz"

    @property
    def unlabeled(self) -> Path:
        """The fold model's probabilities of the manifest's unlabeled rows."""
        return self.dir / "unlabeled.npz"

    @property
    def done(self) -> bool:
        return self.oof.exists()


@dataclass(frozen=True)
class QueueFiles:
    """A relabel queue's folder (the run folder, or ``flag --out``)."""

    dir: Path

    @property
    def csv(self) -> Path:
        """The queue: one row per sample to review, with its decision column."""
        return self.dir / "queue.csv"

    @property
    def html(self) -> Path:
        """The gallery of the queue's rows."""
        return self.dir / "queue.html"

    @property
    def record(self) -> Path:
        """What the queue was made from; written last: the queue is complete."""
        return self.dir / "queue.json"

    @property
    def noise_png(self) -> Path:
        """The estimated noise matrix; queue.html links it."""
        return self.dir / "noise_matrix.png"

    @property
    def duplicates(self) -> Path:
        """Every near-duplicate pair, with its finding (when the run has embeddings)."""
        return self.dir / "duplicates.csv"

    @property
    def map_png(self) -> Path:
        """The map of the data: the one embedding space by t-SNE, the queue's rows marked
        (when the run has embeddings); queue.html shows it."""
        return self.dir / "map.png"

    @property
    def annotators_png(self) -> Path:
        """Several labels per image: each annotator's quality and agreement (CROWDLAB)."""
        return self.dir / "annotators.png"

    @property
    def round_record(self) -> Path:
        """A round's batch, its estimate of the wrong labels left and the rounds so far."""
        return self.dir / "round.json"

    @property
    def round_png(self) -> Path:
        """Labels spent against errors found, round by round, and the errors left."""
        return self.dir / "round.png"

    @classmethod
    def beside(cls, queue_csv: str | Path) -> QueueFiles:
        """The folder of a queue CSV (which a person may have renamed)."""
        return cls(Path(queue_csv).parent)


@dataclass(frozen=True)
class RunFiles:
    """A run folder: ``oof``'s (folds, out-of-fold tables, embeddings), an ensemble's
    (``oof --repeats``) or ``retrain``'s (final model, predictions, report)."""

    dir: Path

    # What ``plan_run`` writes before any training, once; a later run must find the same text.
    @property
    def config(self) -> Path:
        """The resolved pipeline the run was made with."""
        return self.dir / "config.toml"

    @property
    def manifest_record(self) -> Path:
        """The manifest's sha256 and path."""
        return self.dir / "manifest.sha256"

    @property
    def folds(self) -> Path:
        """Each train row's fold."""
        return self.dir / "folds.csv"

    def read_config(self) -> PipelineConfig:
        """The run's resolved pipeline, checked like any pipeline file."""
        return build_config(tomllib.loads(self.config.read_text()), file=str(self.config))

    def start_files(self) -> tuple[Path, ...]:
        """The files above: a folder holding only these trained nothing yet."""
        return self.config, self.manifest_record, self.folds

    # oof's outputs.
    def fold(self, k: int) -> FoldFiles:
        return FoldFiles(self.dir / f"fold-{k}")

    @property
    def embed(self) -> FoldFiles:
        """The model trained on every train row for the one embedding space."""
        return FoldFiles(self.dir / "embed")

    @property
    def oof(self) -> Path:
        """Out-of-fold probabilities of every train row."""
        return self.dir / "oof.csv"

    @property
    def unlabeled(self) -> Path:
        """The fold models' mean probabilities of the unlabeled rows."""
        return self.dir / "unlabeled.csv"

    @property
    def embeddings(self) -> Path:
        """Every row in one feature space."""
        return self.dir / "embeddings.npz"

    @property
    def legacy_embeddings(self) -> Path:
        """An older run's fold-local embeddings (K spaces): recognised, not used."""
        return self.dir / "embeddings.npy"

    @property
    def metrics(self) -> Path:
        """The run's metrics; written last by ``oof`` and ``retrain``: the run is complete."""
        return self.dir / "metrics.json"

    @property
    def refresh(self) -> Path:
        """A refreshed run's origin: the run whose fold models it fine-tuned, and how
        (``cleaner.training.refresh``); written once, before any fold."""
        return self.dir / "refresh.json"

    @property
    def ensemble(self) -> Path:
        """An ensemble folder's list of member runs (``oof --repeats``)."""
        return self.dir / "ensemble.json"

    @property
    def queue(self) -> QueueFiles:
        """``flag``'s queue when it is written into the run folder."""
        return QueueFiles(self.dir)

    def round(self, number: int) -> QueueFiles:
        """``cleaner round``'s queue folder for round ``number`` of this run."""
        return QueueFiles(self.dir / f"round-{number}")

    # retrain's outputs.
    @property
    def final(self) -> FoldFiles:
        """The final model, trained on every cleaned train row (``--mode full``)."""
        return FoldFiles(self.dir / "full")

    @property
    def cv(self) -> RunFiles:
        """The K fold models of ``retrain --mode folds``: a run folder of its own."""
        return RunFiles(self.dir / "cv")

    def baseline(self, tag: str) -> FoldFiles:
        """The model of the same recipe on another version of the labels (``noisy``, ...)."""
        return FoldFiles(self.dir / f"baseline-{tag}")

    @property
    def train_weights(self) -> Path:
        """Each train row's loss weight."""
        return self.dir / "train_weights.csv"

    @property
    def predictions(self) -> Path:
        """Every class probability of every test row."""
        return self.dir / "predictions.csv"

    @property
    def submission(self) -> Path:
        """The file to submit: one predicted class per test row."""
        return self.dir / "submission.csv"

    @property
    def report(self) -> Path:
        """Did cleaning help: the before and after, in Markdown."""
        return self.dir / "report.md"

    @property
    def noise_matrix_png(self) -> Path:
        return self.dir / "noise_matrix.png"

    @property
    def per_class_f1_png(self) -> Path:
        return self.dir / "per_class_f1.png"

    @property
    def map_png(self) -> Path:
        """The oof run's map of the data (its queue folder's), copied beside report.md."""
        return self.queue.map_png
