"""Shared fixtures: tiny real images, manifests and pipelines written into ``tmp_path``.

Everything here is explicit: no fixture changes the working directory, so a
test that needs relative paths asks for ``monkeypatch.chdir`` itself. The
helpers are served as fixtures (``write_csv``, ``write_pipeline``, ...) so any
test file can use them without importing this module.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import numpy as np
import pytest
import tomli_w
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app

# The classes of the tiny data set; the pipeline lists them in this order.
TINY_CLASSES = ("a", "b")
TINY_PER_CLASS = 3  # enough train rows per class for folds = 2


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


@pytest.fixture
def tiny_images(tmp_path: Path) -> list[Path]:
    """``TINY_PER_CLASS`` real 16x16 grayscale PNGs per class in ``tmp_path/images``."""
    return [
        write_png(tmp_path / "images" / f"{c}{i}.png", value=40 * j + 7 * i)
        for j, c in enumerate(TINY_CLASSES)
        for i in range(TINY_PER_CLASS)
    ]


@pytest.fixture
def tiny_rows(tiny_images: list[Path], tmp_path: Path) -> list[dict[str, str]]:
    """Manifest rows for ``tiny_images``: path relative to ``tmp_path``, label from the name."""
    return [{"path": p.relative_to(tmp_path).as_posix(), "label": p.stem[0]} for p in tiny_images]


@pytest.fixture
def tiny_project(
    tmp_path: Path, tiny_images: list[Path], tiny_rows: list[dict[str, str]]
) -> TinyProject:
    """A valid project: ``tmp_path/{images/, manifest.csv, pipeline.toml}``."""
    manifest = write_csv(tmp_path / "manifest.csv", tiny_rows)
    pipeline = write_pipeline(tmp_path, manifest=manifest)
    return TinyProject(tmp_path, tiny_images, tiny_rows, manifest, pipeline)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


# Helpers as fixtures, for test files that prefer not to import conftest.
@pytest.fixture(name="write_csv")
def write_csv_fixture() -> Callable[..., Path]:
    return write_csv


@pytest.fixture(name="write_pipeline")
def write_pipeline_fixture() -> Callable[..., Path]:
    return write_pipeline


@pytest.fixture(name="write_png")
def write_png_fixture() -> Callable[..., Path]:
    return write_png


@pytest.fixture(name="snapshot")
def snapshot_fixture() -> Callable[[Path], dict[str, str]]:
    return snapshot


@pytest.fixture(name="assert_says")
def assert_says_fixture() -> Callable[..., None]:
    return assert_says


@pytest.fixture(name="assert_not_says")
def assert_not_says_fixture() -> Callable[..., None]:
    return assert_not_says
