"""The exceptions the CLI turns into a clear message and a non-zero exit.

Every check of a file a person wrote (manifest, pipeline, queue) raises
``InputError``: the CLI prints it as one clear message and exits non-zero,
while real bugs keep their traceback. ``WriteError`` names a file that could
not be written and why. ``FoldsFailed`` reports folds that
failed on a cluster after the others finished.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Long lists of bad rows are cut here: the first rows show the pattern.
MAX_LISTED = 20


@dataclass(frozen=True)
class Problem:
    """One bad spot in an input file: ``row`` is the 1-based line in the file."""

    file: str
    reason: str
    row: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}, line {self.row}" if self.row is not None else self.file
        return f"{where}: {self.reason}"


class InputError(ValueError):
    """Bad user input; ``problems`` lists each bad spot (file, row, reason)."""

    def __init__(self, problems: Sequence[Problem] | str):
        if isinstance(problems, str):
            problems = [Problem(file="", reason=problems)]
        self.problems = list(problems)
        lines = [str(p) if p.file else p.reason for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            lines.append(f"... and {len(self.problems) - MAX_LISTED} more")
        super().__init__("\n".join(lines))


class WriteError(OSError):
    """A file could not be written (a full disk, a read-only folder): it names the file
    itself, never its temporary name, and the operating system's reason.

    An ``OSError`` (with the cause's ``errno``), so the CLI prints it as one line
    and exits 2, as for every error of the environment, and code that handles
    ``OSError`` handles it.
    """

    @classmethod
    def of(cls, path: str | os.PathLike[str], cause: OSError) -> WriteError:
        """The error of writing ``path`` that ``cause`` stopped."""
        reason = cause.strerror or str(cause) or type(cause).__name__
        return cls(cause.errno or 0, f"could not write ({reason})", str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


# The embedding step of a run (:mod:`cleaner.training.embed`), when it runs as a task
# beside the folds.
EMBED_TASK = -1


def task_name(k: int) -> str:
    """``fold K``, or ``embedding`` for :data:`EMBED_TASK`."""
    return "embedding" if k == EMBED_TASK else f"fold {k}"


class FoldsFailed(RuntimeError):
    """Some folds of a run failed (after their retry); the finished ones are kept."""

    def __init__(self, run_dir: str, failed: dict[int, str]):
        self.run_dir, self.failed = run_dir, dict(sorted(failed.items()))
        lines = [f"{task_name(k)}: {reason}" for k, reason in self.failed.items()]
        super().__init__(
            f"{len(failed)} fold(s) of {run_dir} failed; the finished folds are kept and the "
            "same command trains only what is missing:\n" + "\n".join(lines)
        )


def not_utf8(path: str | Path, what: str = "CSV", *, save_as: str = "UTF-8") -> Problem:
    """The problem of a text file that is not UTF-8, naming the line of its first bad byte.

    The hint reads "save the WHAT as SAVE_AS" (``save_as="CSV UTF-8"``: the
    spreadsheet's name for the format). The file is decoded again here: a
    reader's own error (pandas') counts bytes from the start of its buffer,
    not of the file.
    """
    data = Path(path).read_bytes()
    hint = f"save the {what} as {save_as}"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        bad = data[e.start : e.start + 1]
        return Problem(str(path), f"not UTF-8 text (byte {bad!r}); {hint}", line)
    return Problem(str(path), f"not UTF-8 text; {hint}")
