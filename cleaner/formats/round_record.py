"""``round.json``: a round's batch, the estimate of the wrong labels left, the stop rule.

Written by ``cleaner round`` into its queue folder (before ``queue.json``, which marks
the queue complete) and read back by :func:`read_round_record`. One frozen dataclass
per part, one writer and one reader; ``tests/data/formats/round.json`` is the
reference file.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.core.atomic import write_text
from cleaner.core.errors import InputError, Problem


@dataclass(frozen=True)
class PastRound:
    """One ``apply`` of the project so far: the labels it spent and the errors it found."""

    version: str  # the manifest version it produced
    labels_spent: int  # its keep, relabel and drop decisions (unsure spends no label)
    errors_found: int  # its relabel and drop decisions


@dataclass(frozen=True)
class ErrorsLeftRecord:
    """The wrong labels still among the rows not yet reviewed (cleaner.rounds.estimate)."""

    estimate: float
    interval_95: tuple[float, float]
    cleanlab_flags_unreviewed: int  # cleanlab's flags among them, uncorrected
    errors_per_flag: float  # what the reviews so far found per flag, at the frontier
    reviewed: int
    found_wrong: int


@dataclass(frozen=True)
class StopRecord:
    """Whether the batch is worth it: its expected wrong labels against ``--stop-below``."""

    expected_errors_in_batch: float
    stop_below: float
    stop: bool


@dataclass(frozen=True)
class RoundRecord:
    """``round.json``."""

    round: int
    budget: int
    offered: dict[str, int]  # rows by kind: relabel, more_labels, unlabeled
    annotator_columns: int  # labels per row came from this many columns (1: the label)
    errors_left: ErrorsLeftRecord
    stop: StopRecord
    past_rounds: list[PastRound] = field(default_factory=list)


def write_round_record(path: Path, record: RoundRecord) -> None:
    """Write ``round.json`` (never over an existing file)."""
    write_text(path, json.dumps(dataclasses.asdict(record), indent=2))


def read_round_record(path: Path) -> RoundRecord:
    """``round.json``, refused (naming the file) unless it is one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return _record(data)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise InputError([Problem(str(path), f"not a round's record ({e})")]) from None


def _record(data: Mapping[str, Any]) -> RoundRecord:
    e, s = data["errors_left"], data["stop"]
    return RoundRecord(
        round=int(data["round"]),
        budget=int(data["budget"]),
        offered={str(k): int(v) for k, v in data["offered"].items()},
        annotator_columns=int(data["annotator_columns"]),
        errors_left=ErrorsLeftRecord(
            estimate=float(e["estimate"]),
            interval_95=(float(e["interval_95"][0]), float(e["interval_95"][1])),
            cleanlab_flags_unreviewed=int(e["cleanlab_flags_unreviewed"]),
            errors_per_flag=float(e["errors_per_flag"]),
            reviewed=int(e["reviewed"]),
            found_wrong=int(e["found_wrong"]),
        ),
        stop=StopRecord(
            expected_errors_in_batch=float(s["expected_errors_in_batch"]),
            stop_below=float(s["stop_below"]),
            stop=bool(s["stop"]),
        ),
        past_rounds=[PastRound(**p) for p in data.get("past_rounds", [])],
    )
