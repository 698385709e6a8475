"""Rich progress bars with rate and time left; ``quiet`` turns them off.

One convention for long work: a command's steps (``run_oof``, ``fit``,
``embed_run``, ``run_retrain``, ...) take the command's ``progress: Progress``
and add and remove their own tasks on it; the loops below them in modules
that know nothing of rich (``manifest.validate_manifest``, ``data.decode_all``,
the gallery's thumbnails, ``train``'s epoch) take a plain ``on_image`` /
``advance`` callback, which the step holding the bar passes in.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def warn(message: str) -> None:
    """One warning line on stderr (rich markup in ``message`` is printed as written)."""
    err_console.print(Text.assemble(("warning: ", "bold yellow"), message), highlight=False)


class RateColumn(ProgressColumn):
    """Items per second, with the task's unit (``fields['unit']``, default ``it``)."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "it")
        if task.speed is None:
            return Text(f"- {unit}/s", style="progress.data.speed")
        if task.speed < 1:  # slow items (folds): seconds per item reads better than 0/s
            return Text(f"{1 / task.speed:,.0f} s/{unit}", style="progress.data.speed")
        return Text(f"{task.speed:,.0f} {unit}/s", style="progress.data.speed")


def make_progress(*, quiet: bool = False) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
        transient=False,
    )
