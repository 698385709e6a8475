"""Shared fixtures: the tiny project written into ``tmp_path``, a CLI runner.

Fixtures only; the plain helpers they use, and every test imports, are in
``helpers.py``. No fixture changes the working directory, so a test that needs
relative paths asks for ``monkeypatch.chdir`` itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    TINY_CLASSES,
    TINY_PER_CLASS,
    TinyProject,
    write_csv,
    write_pipeline,
    write_png,
)
from typer.testing import CliRunner


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
