"""Progress in a log file: one readable line per step and quarter, no cut bars."""

from __future__ import annotations

import io

from rich.console import Console

import cleaner.core.progress as progress_module
from cleaner.core.progress import LogProgress


def test_a_log_gets_start_quarter_and_end_lines(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(progress_module, "QUARTER_AFTER_S", 0.0)
    with LogProgress(Console(file=out, width=200)) as progress:
        task = progress.add_task("fold 1/5", total=8, unit="img")
        for _ in range(8):
            progress.advance(task)
        other = progress.add_task("thumbnails", total=None, unit="img")
        progress.advance(other, 3)
        progress.remove_task(other)
    lines = out.getvalue().splitlines()
    assert lines[0] == "fold 1/5: started (8 img)"
    assert [line.split(":")[1].split(",")[0].strip() for line in lines[1:5]] == [
        "25%", "50%", "75%", "done 8/8 img in 0"]  # fmt: skip
    assert lines[5] == "thumbnails: started"
    assert lines[6].startswith("thumbnails: ended at 3 img in 0:00")
    assert "━" not in out.getvalue() and "eta" not in out.getvalue()


def test_make_progress_writes_lines_when_stderr_is_not_a_terminal() -> None:
    # Under pytest stderr is captured, not a terminal: a log, as a redirected command's.
    assert isinstance(progress_module.make_progress(), LogProgress)
    assert not isinstance(progress_module.make_progress(quiet=True), LogProgress)
