"""Shared fixtures: the tiny project written into ``tmp_path``, a CLI runner.

Fixtures only; the plain helpers they use, and every test imports, are in
``helpers.py``. No fixture changes the working directory, so a test that needs
relative paths asks for ``monkeypatch.chdir`` itself.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import (
    TINY_CLASSES,
    TINY_PER_CLASS,
    TinyProject,
    train_digits_project,
    write_csv,
    write_pipeline,
    write_png,
)
from typer.testing import CliRunner


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker's torch gets its share of the cores.

    Two torch processes that each start a thread per core oversubscribe the machine
    and each runs tens of times slower; one thread per worker (and per child process
    a test starts, through the environment) keeps ``-n auto`` faster than one process.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # read OMP_NUM_THREADS when it was imported
        sys.modules["torch"].set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of :func:`helpers.train_digits_project`, trained once per session.

    Read-only: a module takes its own copy with :func:`helpers.copy_trained_digits`.
    Under pytest-xdist the workers share one copy (the first to ask trains it, under a
    file lock); the folder is this session's own, so a cache never outlives its code.
    """
    shared = os.environ.get("PYTEST_XDIST_WORKER") is not None
    base = tmp_path_factory.getbasetemp()
    base = base.parent if shared else base
    folder = base / "trained-digits"
    with FileLock(str(base / "trained-digits.lock")):
        if not (folder / "run" / "oof.csv").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build cut short
            train_digits_project(folder)
    return folder


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
