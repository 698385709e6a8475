"""Rich progress bars with rate and time left; ``quiet`` turns them off.

One convention for long work: a command's steps (``run_oof``, ``fit``,
``embed_run``, ``run_retrain``, ...) take the command's ``progress: Progress``
and add and remove their own tasks on it; the loops below them in modules
that know nothing of rich (``manifest.validate_manifest``, ``data.decode_all``,
the gallery's thumbnails, ``train``'s epoch) take a plain ``on_image`` /
``advance`` callback, which the step holding the bar passes in.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console()
err_console = Console(stderr=True)


def warn(message: str) -> None:
    """One warning line on stderr (rich markup in ``message`` is printed as written)."""
    # soft_wrap: one line, as promised; a wrapped path would break mid-word.
    err_console.print(
        Text.assemble(("warning: ", "bold yellow"), message), highlight=False, soft_wrap=True
    )


class RateColumn(ProgressColumn):
    """Items per second, with the task's unit (``fields['unit']``, default ``it``)."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "it")
        if task.speed is None:
            return Text(f"- {unit}/s", style="progress.data.speed")
        if task.speed < 1:  # slow items (folds): seconds per item reads better than 0/s
            return Text(f"{1 / task.speed:,.0f} s/{unit}", style="progress.data.speed")
        return Text(f"{task.speed:,.0f} {unit}/s", style="progress.data.speed")


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


QUARTER_AFTER_S = 5.0  # LogProgress: quarter lines for steps running at least this long


class LogProgress(Progress):
    """Progress for a log file (stderr not a terminal): no bars, which a file gets as cut,
    repainted text, but one line when a step starts, at each quarter of a step with a
    known total, and when it ends, with its count, time and rate."""

    def __init__(self, console: Console) -> None:
        # Not ``disable``: steps print their own lines ("resuming after epoch 3") unless
        # the progress is disabled (--quiet); the bars are never drawn instead.
        super().__init__(console=console, auto_refresh=False)
        self._quarter: dict[TaskID, int] = {}

    def start(self) -> None:
        """No live display: a file would get each repaint."""

    def stop(self) -> None:
        """Nothing was drawn, so nothing is left to print."""

    def refresh(self) -> None:
        """The lines are printed as steps move (:meth:`_report`), not repainted."""

    def _line(self, task: Task, what: str) -> None:
        unit = task.fields.get("unit", "it")
        done = f"{task.completed:,.0f}" + (f"/{task.total:,.0f}" if task.total else "")
        elapsed = task.finished_time if task.finished_time is not None else task.elapsed
        rate = f", {task.completed / elapsed:,.0f} {unit}/s" if elapsed and task.completed else ""
        self.console.print(
            f"{task.description}: {what} {done} {unit} in {_duration(elapsed or 0.0)}{rate}",
            highlight=False,
            soft_wrap=True,
        )

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kwargs)
        self._quarter[task_id] = 0
        total = self._tasks[task_id].total
        size = f" ({total:,.0f} {kwargs.get('unit', 'it')})" if total else ""
        self.console.print(f"{description}: started{size}", highlight=False, soft_wrap=True)
        return task_id

    def _report(self, task_id: TaskID) -> None:
        task = self._tasks.get(task_id)
        if task is None or not task.total:
            return
        quarter = min(4, int(4 * task.completed / task.total))
        if quarter < self._quarter.get(task_id, 0):  # the step started over (a new epoch)
            self._quarter[task_id] = 0
        if quarter > self._quarter.get(task_id, 0):
            self._quarter[task_id] = quarter
            # A step of a few seconds gets its start and end lines only.
            if quarter == 4 or (task.elapsed or 0.0) >= QUARTER_AFTER_S:
                self._line(task, "done" if quarter == 4 else f"{25 * quarter}%,")

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._report(task_id)

    def remove_task(self, task_id: TaskID) -> None:
        task = self._tasks.get(task_id)
        if task is not None and self._quarter.get(task_id, 0) < 4:
            self._line(task, "ended at")
        self._quarter.pop(task_id, None)
        super().remove_task(task_id)


def make_progress(*, quiet: bool = False) -> Progress:
    """The command's progress: bars on a terminal; plain lines in a log file (stderr
    redirected); nothing with ``quiet``."""
    if not quiet and not err_console.is_terminal:
        return LogProgress(err_console)
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
