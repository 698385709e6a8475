"""Files the tool writes get the user's umask, as any file a program writes does.

Temporary files (``mkstemp``, ``mkdtemp``) are 0600/0700; what is renamed into
place must be readable by the team on a shared file system.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import TinyProject, invoke


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ingest_writes_with_the_umask(tmp_path: Path, umask_022: None) -> None:
    manifest = tmp_path / "digits.csv"
    invoke("ingest", "digits", str(tmp_path / "images"), "--manifest", str(manifest))
    assert _mode(manifest) == 0o644
    assert _mode(tmp_path / "images") == 0o755
    assert _mode(next((tmp_path / "images").iterdir())) == 0o644


@pytest.mark.slow
def test_run_files_are_written_with_the_umask(tiny_project: TinyProject, umask_022: None) -> None:
    run = tiny_project.root / "run"
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "-q")
    invoke("flag", str(run), "--out", str(run / "q"), "--force", "-q")
    files = [p for p in run.rglob("*") if p.is_file()]
    assert files and {p.name: _mode(p) for p in files} == {p.name: 0o644 for p in files}
