"""``oof`` says how long it should take, after its first epoch (#30: time before long work)."""

from __future__ import annotations

import io

from helpers import TinyProject, invoke
from rich.console import Console
from rich.progress import Progress

from cleaner.training.fold_train import RunClock


def _progress() -> tuple[Progress, io.StringIO]:
    out = io.StringIO()
    return Progress(console=Console(file=out, width=200)), out


def test_the_clock_speaks_once_at_the_first_epochs_rate() -> None:
    progress, out = _progress()
    clock = RunClock(12_000, progress)
    clock(1_000, 2.0)  # 500 img/s; 11,000 images left: 22 s
    clock(1_000, 0.5)  # a faster epoch changes nothing said
    assert out.getvalue().strip() == (
        "expected: about 22 s more for 11,000 images at 500 img/s (the first epoch's rate)"
    )
    progress, out = _progress()
    RunClock(601_000, progress)(1_000, 1.0)
    assert "about 10 min more for 600,000 images" in out.getvalue()


def test_a_quiet_run_says_nothing() -> None:
    progress = Progress(console=Console(file=io.StringIO()), disable=True)
    clock = RunClock(10, progress)
    clock(5, 1.0)
    assert not clock.said


def test_oof_prints_the_expected_time(tiny_project: TinyProject) -> None:
    out = invoke("oof", str(tiny_project.pipeline), "--out", str(tiny_project.root / "run"))
    assert out.count("expected: about") == 1, out
    # the folds' images after the first epoch, and the embedding model's
    assert "img/s (the first epoch's rate)" in out
