"""Shared by the benchmarks: the machine's description and BENCHMARKS.md sections."""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from rich.progress import Progress
from rich.table import Table

if TYPE_CHECKING:
    from cleaner.training.oof import OofResult

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"


def machine() -> str:
    """One line naming the CPU, cores, GPU and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md, dated."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = (
        f"{start}\n_Measured {date.today().isoformat()} on {machine()}._\n\n{body.strip()}\n{end}"
    )
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    BENCHMARKS_MD.write_text(text)


def measure_table(title: str, rows: list[tuple[str, str]]) -> tuple[Table, list[str]]:
    """A two-column ``measure | value`` table: for the console (rich) and as markdown lines.

    ``**bold**`` in a cell is kept in the markdown and dropped on the console.
    """
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*(c.replace("**", "") for c in row))
    lines = ["| measure | value |", "|---|---:|", *[f"| {a} | {b} |" for a, b in rows]]
    return table, lines


def result_table(
    title: str, cols: Sequence[str], rows: Sequence[Sequence[str]]
) -> tuple[Table, list[str]]:
    """A table of ``cols`` (numbers right-aligned): for the console (rich) and as markdown
    lines, header first."""
    table = Table(title=title)
    for c in cols:
        table.add_column(c, justify="right")
    for row in rows:
        table.add_row(*row)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return table, [*lines, *("| " + " | ".join(row) + " |" for row in rows)]


def oof_run(
    pipeline: Path, overrides: Sequence[str], *, out: Path, progress: Progress, **options: Any
) -> OofResult:
    """``cleaner oof PIPELINE --set ... --out OUT`` from Python (one run, not an ensemble)."""
    from cleaner.training.oof import OofResult, oof_command

    result = oof_command(pipeline, overrides, out=out, progress=progress, **options)
    assert isinstance(result, OofResult)
    return result
