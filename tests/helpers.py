"""Plain helpers of the tests: tiny real images, manifests, pipelines and projects written by hand.

Test files import what they use (``from helpers import write_csv``); fixtures
live in ``conftest.py``. Nothing here changes the working directory, so a test
that needs relative paths asks for ``monkeypatch.chdir`` itself.

Three kinds of project:

- :class:`TinyProject` (the ``tiny_project`` fixture): two classes of tiny
  PNGs, a manifest and a pipeline, small enough to train in seconds;
- :func:`digits_project`: sklearn's digits ingested through the CLI and a
  pipeline for them, for the end-to-end tests that train real models;
- :func:`make_project`: a project as ``cleaner flag`` leaves it, built without
  a model (images, a manifest, ``queue.csv`` and ``queue.json`` written by the
  queue's own writers, optionally the run folder with ``oof.csv``), for
  ``apply`` and ``review``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import numpy as np
import pandas as pd
import tomli_w
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.config import PipelineConfig
from cleaner.formats.manifest import sha256_file
from cleaner.formats.prob_table import write_table
from cleaner.formats.queue_file import (
    QUEUE_COLUMNS,
    QueueMeta,
    queue_meta_path,
    read_queue_meta,
    write_queue_csv,
    write_queue_meta,
)
from cleaner.formats.run_files import RunFiles
from cleaner.formats.run_records import manifest_record

# The checkout, and the test data files: test modules live in folders of their layer.
REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"

# The classes of the tiny data set; the pipeline lists them in this order.
TINY_CLASSES = ("a", "b")
TINY_PER_CLASS = 3  # enough train rows per class for folds = 2


# --- files --------------------------------------------------------------------------------


def write_png(path: Path, *, value: int = 0, size: tuple[int, int] = (16, 16)) -> Path:
    """A real grayscale PNG of ``size`` (width, height) with a small gradient from ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    pixels = (value + np.arange(w * h).reshape(h, w)) % 256
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def write_csv(
    path: Path, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> Path:
    """Write ``rows`` as CSV; columns default to the keys in first-seen order."""
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c, "") for c in columns})
    return path


def write_pipeline(
    directory: Path,
    *,
    manifest: Path | str = "manifest.csv",
    name: str = "pipeline.toml",
    **sections: Mapping[str, Any],
) -> Path:
    """A small pipeline TOML (test_resnet, 1 channel, 16 px, 2 folds, 1 epoch, no workers).

    ``manifest`` is made absolute against ``directory`` so the run does not depend
    on the working directory. Each keyword names a section whose keys are merged
    over the defaults, e.g. ``train={"folds": 3}``; a key set to ``None`` is removed.
    """
    manifest = Path(manifest)
    if not manifest.is_absolute():
        manifest = directory / manifest
    raw: dict[str, dict[str, Any]] = {
        "data": {
            "manifest": str(manifest),
            "classes": list(TINY_CLASSES),
            "image_size": 16,
            "mean": [0.5],
            "std": [0.5],
        },
        "model": {"name": "test_resnet", "in_chans": 1, "pretrained": False},
        "train": {
            "folds": 2,
            "epochs": 1,
            "batch_size": 4,
            "workers": 0,
            "device": "cpu",
            "amp": False,
        },
    }
    for section, keys in sections.items():
        table = raw.setdefault(section, {})
        for key, value in keys.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(raw))
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256 of its bytes): proves nothing changed."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- the CLI and what it prints -----------------------------------------------------------


def invoke(*args: str) -> str:
    """Run the CLI in-process; it must succeed. Returns what it printed."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def flat(text: str) -> str:
    """``text`` without any whitespace: rich wraps long messages at the console width."""
    return "".join(text.split())


def assert_says(output: str, *fragments: str) -> None:
    """Assert that each fragment appears in ``output``, ignoring line wrapping."""
    for fragment in fragments:
        assert flat(fragment) in flat(output), f"{fragment!r} not in output:\n{output}"


def assert_not_says(output: str, *fragments: str) -> None:
    """Assert that no fragment appears in ``output``, ignoring line wrapping."""
    for fragment in fragments:
        assert flat(fragment) not in flat(output), f"{fragment!r} in output:\n{output}"


# --- the tiny project ---------------------------------------------------------------------


@dataclass(frozen=True)
class TinyProject:
    """A valid tiny project in ``root``: images, a manifest and a pipeline pointing at it."""

    root: Path
    images: list[Path]  # root/images/<class><i>.png
    rows: list[dict[str, str]]  # the manifest rows (path relative to root)
    manifest: Path  # root/manifest.csv
    pipeline: Path  # root/pipeline.toml

    def rewrite_manifest(self, rows: Iterable[Mapping[str, Any]], columns=None) -> Path:
        """Replace the manifest with ``rows`` (the pipeline keeps pointing at it)."""
        self.manifest.unlink()
        return write_csv(self.manifest, rows, columns)

    def set_cells(self, row: int, **cells: str) -> Path:
        """Rewrite the manifest with ``cells`` set in row ``row`` (0-based), the rest kept."""
        rows = [dict(r) for r in self.rows]
        rows[row].update(cells)
        return self.rewrite_manifest(rows)

    def pipeline_with(self, name: str = "p3.toml", **sections: Mapping[str, Any]) -> Path:
        """Another pipeline ``root/NAME`` for the manifest: :func:`write_pipeline`'s sections."""
        return write_pipeline(self.root, manifest=self.manifest, name=name, **sections)


# --- digits, for the tests that train real models -----------------------------------------


def ingest_digits(manifest: Path, *args: str) -> Path:
    """``cleaner ingest digits``: images in ``manifest``'s folder / images; ``args`` such as
    ``--noise 0.1 --seed 3``. Returns the manifest."""
    invoke("ingest", "digits", str(manifest.parent / "images"), "--manifest", str(manifest), *args)
    return manifest


# The augmentation of the digits pipelines: a small rotation.
DIGITS_AUGMENT = [{"name": "Affine", "rotate": [-10, 10], "p": 0.5}]
# The flag tests': a rotation and a small shift, more often.
FLAG_AUGMENT = [
    {"name": "Affine", "rotate": [-10, 10], "translate_percent": [-0.08, 0.08], "p": 0.7}
]


def write_digits_pipeline(
    directory: Path,
    manifest: Path,
    *,
    epochs: int,
    image_size: int = 16,
    name: str = "p.toml",
    **sections: Mapping[str, Any],
) -> Path:
    """The digits pipeline: :func:`write_pipeline`'s with the classes from the manifest,
    3 folds of ``epochs`` in batches of 64, ``DIGITS_AUGMENT``; ``sections`` merged over it."""
    merged: dict[str, dict[str, Any]] = {
        "data": {"classes": None, "image_size": image_size},
        "train": {"folds": 3, "epochs": epochs, "batch_size": 64, "lr": 3e-3},
        "augment": {"train": DIGITS_AUGMENT},
    }
    for section, keys in sections.items():
        merged[section] = {**merged.get(section, {}), **keys}
    return write_pipeline(directory, manifest=manifest, name=name, **merged)


def digits_project(
    root: Path, *ingest_args: str, epochs: int, **pipeline: Any
) -> tuple[Path, Path]:
    """Digits ingested into ``root`` (``root/digits.csv``, ``root/images``) and
    ``root/p.toml`` for them (:func:`write_digits_pipeline`'s options). Returns both."""
    manifest = ingest_digits(root / "digits.csv", *ingest_args)
    return manifest, write_digits_pipeline(root, manifest, epochs=epochs, **pipeline)


def write_flag_pipeline(
    directory: Path, manifest: Path, *, top: int, data: Any = None, flag: Any = None
) -> Path:
    """``directory/p.toml``: the digits pipeline of the flag tests (6 epochs, cached)."""
    return write_digits_pipeline(
        directory,
        manifest,
        epochs=6,
        data={"cache": True, **(data or {})},
        flag={"top": top, **(flag or {})},
        augment={"train": FLAG_AUGMENT},
    )


@dataclass(frozen=True)
class TrainedDigits:
    """A digits project with a trained run: ``root/{digits.csv, images/, p.toml, run/}``."""

    root: Path
    manifest: Path
    pipeline: Path
    run: Path


def train_digits_project(root: Path) -> TrainedDigits:
    """The suite's shared trained run: digits with 10% uniform noise (seed 1), the flag
    tests' pipeline (3 folds x 6 epochs, cached, ``FLAG_AUGMENT``, ``flag.top`` 300), and
    its ``oof`` run."""
    manifest = ingest_digits(root / "digits.csv", "--noise", "0.1", "--seed", "1")
    pipeline = write_flag_pipeline(root, manifest, top=300)
    invoke("oof", str(pipeline), "--out", str(root / "run"), "--quiet")
    return TrainedDigits(root, manifest, pipeline, root / "run")


# The files of a trained project that name it by its absolute path (the manifest names its
# images relative to itself, and no binary file holds a path).
ABSOLUTE_PATH_FILES = ("p.toml", "run/config.toml", "run/metrics.json")


def copy_trained_digits(template: Path, dest: Path) -> TrainedDigits:
    """A copy of :func:`train_digits_project`'s folder at ``dest``, the paths in it
    pointing at the copy: a test may write anything there (a queue, a new version)."""
    shutil.copytree(template, dest)
    for name in ABSOLUTE_PATH_FILES:
        path = dest / name
        path.write_text(path.read_text().replace(str(template), str(dest)))
    return TrainedDigits(dest, dest / "digits.csv", dest / "p.toml", dest / "run")


# --- a project as flag leaves it, without a model -----------------------------------------


@dataclass(frozen=True)
class Project:
    """Images, a manifest, and a queue made from that manifest version (``queue.csv``,
    ``queue.json`` beside it); the run folder the queue names, when it was built."""

    root: Path
    manifest: Path
    queue: Path  # queue.csv
    images: dict[str, Path]  # sample_id -> its image
    run: Path | None = None  # the first run queue.json names
    oof: pd.DataFrame | None = None  # the run's oof.csv, when it was written

    def version(self, n: int) -> Path:
        """The manifest's version ``n`` as ``cleaner apply`` names it (faces.csv: faces.v2.csv)."""
        return self.manifest.with_name(f"{self.manifest.stem}.v{n}{self.manifest.suffix}")

    @property
    def v2(self) -> Path:
        return self.version(2)

    @property
    def v3(self) -> Path:
        return self.version(3)

    @property
    def log(self) -> Path:
        """The manifest's audit log (faces.csv: faces.audit.jsonl)."""
        return self.manifest.with_name(f"{self.manifest.stem}.audit.jsonl")


def queue_frame(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = QUEUE_COLUMNS
) -> pd.DataFrame:
    """Queue rows as the table :func:`write_queue_csv` writes: ``columns`` in order, a
    missing cell blank, a cell of another column left out."""
    return pd.DataFrame([{c: r.get(c, "") for c in columns} for r in rows], columns=list(columns))


def write_queue_json(
    queue: Path,
    manifest: Path,
    *,
    classes: Sequence[str],
    runs: Sequence[str] = (),
    group_column: str = "group",
    **fields: Any,
) -> Path:
    """queue.json beside ``queue`` for ``manifest`` as it is now, through the queue's writer.

    ``runs`` are named relative to the queue's folder, as queue.json stores them;
    ``fields`` are other :class:`QueueMeta` fields (``top``, ``examples``, ...).
    """
    fields = {"method": "self_confidence", "created": "2026-01-01T00:00:00+00:00", **fields}
    meta = QueueMeta(
        manifest=manifest,
        manifest_sha256=sha256_file(manifest),
        classes=tuple(classes),
        runs=tuple(str(queue.parent / r) for r in runs),
        group_column=group_column,
        **fields,
    )
    path = queue_meta_path(queue)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_queue_meta(path, meta)
    return path


def edit_queue_json(queue: Path, **changes: Any) -> None:
    """Rewrite the queue.json beside ``queue`` with ``changes`` to its :class:`QueueMeta`."""
    meta = dataclasses.replace(read_queue_meta(queue), **changes)
    queue_meta_path(queue).unlink()
    write_queue_meta(queue_meta_path(queue), meta)


def rewrite_queue(queue: Path, table: pd.DataFrame) -> None:
    """Replace ``queue`` (a queue.csv) with ``table``, through the queue's writer."""
    queue.unlink()
    write_queue_csv(table, queue)


def make_project(
    root: Path,
    manifest_rows: Sequence[Mapping[str, str]],
    queue: Iterable[Mapping[str, Any]] | str,
    *,
    classes: Sequence[str],
    manifest: str = "manifest.csv",
    columns: Sequence[str] | None = None,
    queue_dir: str = "queue",
    queue_columns: Sequence[str] = QUEUE_COLUMNS,
    runs: Sequence[str] = (),
    oof: pd.DataFrame | None = None,
    image_size: tuple[int, int] = (16, 16),
    shade: int = 9,
    group_column: str = "group",
    **meta: Any,
) -> Project:
    """A project as ``cleaner flag`` leaves it, built by hand: no model is trained.

    - ``root/MANIFEST``: ``manifest_rows`` (``columns`` in order, default their keys), and
      a real PNG for each at its ``path`` (relative to the manifest's folder), row ``i``
      shaded from ``shade * i``, ``image_size`` (width, height);
    - ``root/QUEUE_DIR/queue.csv``: the ``queue`` rows (:func:`queue_frame` of
      ``queue_columns``) through ``write_queue_csv``; a ``str`` is written as is (a queue
      as a spreadsheet saved it);
    - ``queue.json`` beside it, made from the manifest as written (:func:`write_queue_json`:
      ``runs`` relative to the queue's folder, ``meta`` its other fields);
    - with ``oof``: the first run's folder holds ``config.toml`` (``classes``,
      ``group_column``), ``manifest.sha256`` and ``oof.csv`` (the run folder's writer).
    """
    manifest_path = root / manifest
    images = {
        r["sample_id"]: write_png(
            manifest_path.parent / r["path"], value=shade * i, size=image_size
        )
        for i, r in enumerate(manifest_rows)
    }
    write_csv(manifest_path, manifest_rows, columns)
    queue_path = root / queue_dir / "queue.csv"
    queue_path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(queue, str):
        queue_path.write_text(queue, encoding="utf-8")
    else:
        write_queue_csv(queue_frame(queue, queue_columns), queue_path)
    write_queue_json(
        queue_path, manifest_path, classes=classes, runs=runs, group_column=group_column, **meta
    )
    run = queue_path.parent / runs[0] if runs else None
    if oof is not None:
        assert run is not None, "an oof table needs a run to go in"
        write_run(run, manifest_path, oof, classes=classes, group_column=group_column)
    return Project(root, manifest_path, queue_path, images, run, oof)


def write_run(
    run: Path, manifest: Path, oof: pd.DataFrame, *, classes: Sequence[str], group_column: str
) -> None:
    """A run folder as far as the review page reads it: config, manifest record, oof.csv."""
    run.mkdir(parents=True, exist_ok=True)
    cfg = PipelineConfig().replace(
        "data", manifest=str(manifest), classes=tuple(classes), group=group_column
    )
    (run / "config.toml").write_text(cfg.to_toml())
    RunFiles(run).manifest_record.write_text(manifest_record(sha256_file(manifest), manifest, run))
    write_table(run / "oof.csv", oof)
