"""``round.json``: the reference bytes, read back as the record, a bad file refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from cleaner.core.errors import InputError
from cleaner.formats.round_record import (
    ErrorsLeftRecord,
    PastRound,
    RoundRecord,
    StopRecord,
    read_round_record,
    write_round_record,
)

REFERENCE = Path(__file__).parents[1] / "data" / "formats" / "round.json"
RECORD = RoundRecord(
    round=2,
    budget=200,
    offered={"relabel": 180, "more_labels": 20},
    annotator_columns=3,
    errors_left=ErrorsLeftRecord(
        estimate=412.5,
        interval_95=(371.0, 455.5),
        cleanlab_flags_unreviewed=530,
        errors_per_flag=0.7783,
        reviewed=200,
        found_wrong=151,
    ),
    stop=StopRecord(expected_errors_in_batch=96.4, stop_below=1.0, stop=False),
    past_rounds=[PastRound(version="pets.v2.csv", labels_spent=200, errors_found=151)],
)


def test_round_json_writes_the_reference_bytes(tmp_path: Path) -> None:
    write_round_record(tmp_path / "round.json", RECORD)
    assert (tmp_path / "round.json").read_bytes() == REFERENCE.read_bytes()


def test_round_json_reads_back_as_the_record() -> None:
    assert read_round_record(REFERENCE) == RECORD


@pytest.mark.parametrize("text", ["[1, 2", "{}", '{"round": 1}'])
def test_a_bad_round_json_is_refused_naming_the_file(text: str, tmp_path: Path) -> None:
    path = tmp_path / "round.json"
    path.write_text(text)
    with pytest.raises(InputError, match="not a round's record"):
        read_round_record(path)
