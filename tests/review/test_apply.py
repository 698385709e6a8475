"""``cleaner apply``: a reviewed queue -> the next manifest version and the audit log.

No model is trained here: the manifest, ``queue.csv`` and ``queue.json`` are
made by hand (``helpers.make_project``, through the queue's own writers; the
variants a spreadsheet makes of ``queue.csv`` as text), and the real CLI is
run on them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import (
    Project,
    assert_says,
    queue_frame,
    rewrite_queue,
    write_csv,
    write_queue_json,
)
from helpers import make_project as make_queue_project
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.formats.attributes import AttributeTable, attribute_table
from cleaner.formats.audit import AUDIT_FIELDS, COMMIT_FIELDS, read_audit_log, replay_audit
from cleaner.formats.manifest import read_manifest, sha256_file
from cleaner.formats.queue_file import QUEUE_COLUMNS, write_queue_csv
from cleaner.review.apply import Decision, apply_decisions, expand_decisions, parse_decisions

runner = CliRunner()

CLASSES = ("a", "b", "c")
RUN = "runs/convnext-seed0"
# Every record carries the audit fields, plus what replays it exactly.
RECORD_FIELDS = {*AUDIT_FIELDS, "queue_row", "split", "weight"}

# The manifest: extra columns in the middle and at the end, values that a careless
# writer would change (leading zeros, spaces, commas, quotes, empty).
MANIFEST_COLUMNS = ("sample_id", "path", "note_extra", "label", "group", "weight", "split", "src")
MANIFEST_ROWS: list[dict[str, str]] = [
    # sample_id, note_extra, label, group, weight, split, src
    dict(
        zip(("sample_id", "note_extra", "label", "group", "weight", "split", "src"), r, strict=True)
    )
    for r in [
        ("s01", "007", "a", "g1", "1.0", "train", "cam1"),
        ("s02", " spaced ", "b", "g2", "1.0", "train", "cam1"),
        ("s03", "x,y", "c", "g3", "1.0", "train", "cam2"),
        ("s04", 'say "hi"', "a", "g4", "2.0", "train", "cam2"),
        ("s05", "", "b", "g5", "3", "train", "cam1"),
        ("s06", "1e5", "a", "g6", "1.0", "train", "cam1"),
        ("s07", "NA", "a", "g7", "1.0", "train", "cam2"),
        ("s08", "ü", "b", "g8", "1.0", "train", "cam1"),
        ("s09", "-", "c", "g8", "1.0", "train", "cam1"),
        ("s10", "0", "b", "g8", "0.5", "train", "cam2"),
        ("s11", "test of g8", "", "g8", "1.0", "test", "cam1"),
        ("s12", "", "a", "g9", "1.0", "excluded", "cam2"),
        ("s13", "", "", "g10", "1.0", "unlabeled", "cam1"),
    ]
]
for _r in MANIFEST_ROWS:
    _r["path"] = f"images/{_r['sample_id']}.png"

# The columns of queues written before ``partner`` (the last column) was added.
OLD_QUEUE_COLUMNS = tuple(c for c in QUEUE_COLUMNS if c != "partner")
# The reviewed queue, best first as flag writes it. Line N of queue.csv is rank N - 1.
QUEUE_ROWS: list[dict[str, str]] = [
    dict(zip(OLD_QUEUE_COLUMNS, r, strict=True))
    for r in [
        # rank, sample_id, path, group, given, suggested, quality, issue, decision, new_label, note
        ("1", "group:g8", "images/s08.png", "g8", "b", "c", "0.01", "group_inconsistent",
         "relabel", "a", "mixed labels: b x2, c x1"),
        ("2", "s02", "images/s02.png", "g2", "b", "a", "0.02", "label", "relabel", "c", ""),
        ("3", "s03", "images/s03.png", "g3", "c", "a", "0.03", "label", "relabel", "", ""),
        ("4", "s04", "images/s04.png", "g4", "a", "b", "0.04", "near_duplicate", "drop", "",
         "near duplicate of s01 (labelled a)"),
        ("5", "s05", "images/s05.png", "g5", "b", "c", "0.05", "outlier", "unsure", "",
         "atypical image (outlier score 0.912)"),
        ("6", "s01", "images/s01.png", "g1", "a", "b", "0.06", "label", "keep", "", ""),
        ("7", "s07", "images/s07.png", "g7", "a", "c", "0.07", "label", "", "", ""),
    ]
]  # fmt: skip

# What the queue above does to the manifest with --unsure-factor 0.25 (by hand).
EXPECTED_CHANGES = {
    "s02": {"label": "c"},  # relabel to the explicit new_label, not the suggested one
    "s03": {"label": "a"},  # relabel, new_label blank: the suggested label
    "s04": {"split": "excluded"},  # drop: the row stays
    "s05": {"weight": "0.75"},  # unsure: 3 x 0.25
    "s08": {"label": "a"},  # group:g8, the group's train rows ...
    "s09": {"label": "a"},
    "s10": {"label": "a"},  # ... (s11 is g8's test row: untouched)
}
# sample_id, old_label, new_label, action, label_quality, queue_row, split, weight
EXPECTED_RECORDS = [
    ("s01", "a", "a", "keep", 0.06, "s01", "train", "1.0"),
    ("s02", "b", "c", "relabel", 0.02, "s02", "train", "1.0"),
    ("s03", "c", "a", "relabel", 0.03, "s03", "train", "1.0"),
    ("s04", "a", "a", "drop", 0.04, "s04", "excluded", "2.0"),
    ("s05", "b", "b", "unsure", 0.05, "s05", "train", "0.75"),
    ("s08", "b", "a", "relabel", 0.01, "group:g8", "train", "1.0"),
    ("s09", "c", "a", "relabel", 0.01, "group:g8", "train", "1.0"),
    ("s10", "b", "a", "relabel", 0.01, "group:g8", "train", "0.5"),
]
EXPECTED_COUNTS = {"keep": 1, "relabel": 3, "drop": 1, "unsure": 1, "not reviewed": 1}


def render(
    rows: Sequence[dict[str, str]],
    columns: Sequence[str] = QUEUE_COLUMNS,
    *,
    delimiter: str = ",",
    lineterminator: str = "\n",
) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=list(columns), delimiter=delimiter, lineterminator=lineterminator
    )
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue()


# queue.json's flag settings and time, in every queue.json here.
META: dict[str, Any] = {"top": 50, "created": "2026-01-02T03:04:05+00:00"}


def write_queue_meta(queue_dir: Path, manifest: Path, *, runs: Sequence[str] = (RUN,)) -> Path:
    """queue.json as make_queue writes it, for the manifest version as it is now.

    ``runs`` are named relative to the queue's folder, as queue.json stores them.
    """
    return write_queue_json(queue_dir / "queue.csv", manifest, classes=CLASSES, runs=runs, **META)


def make_project(
    root: Path,
    queue_rows: Sequence[dict[str, str]] = QUEUE_ROWS,
    *,
    queue_text: str | None = None,
) -> Project:
    """Images, data/faces.csv, and queue/queue.csv + queue.json made from that version."""
    return make_queue_project(
        root,
        MANIFEST_ROWS,
        queue_rows if queue_text is None else queue_text,
        classes=CLASSES,
        manifest="data/faces.csv",
        columns=MANIFEST_COLUMNS,
        runs=(RUN,),
        **META,
    )


def raw_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV as the text it holds: header and rows, no interpretation."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def files_under(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root, hidden ones too: relative path -> (sha256, mtime_ns)."""
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def apply_ok(queue: Path, *args: str) -> str:
    result = runner.invoke(app, ["apply", str(queue), *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def apply_refused(root: Path, queue: Path, *args: str) -> str:
    """Run apply on a bad input: exit code 2 and not one file under root changed or appeared."""
    before = files_under(root)
    result = runner.invoke(app, ["apply", str(queue), *args])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert files_under(root) == before
    assert "Traceback" not in result.output
    return result.output


def printed_counts(output: str) -> dict[str, int]:
    """The summary table's rows: decision -> queue rows."""
    found = re.findall(r"│\s*(keep|relabel|drop|unsure|not reviewed)\s*│\s*([\d,]+)\s*│", output)
    return {name: int(n.replace(",", "")) for name, n in found}


def check_time(value: str, start: datetime, end: datetime) -> None:
    t = datetime.fromisoformat(value)
    assert t.utcoffset() == timedelta(0), value  # UTC, with the offset written out
    assert start - timedelta(seconds=1) <= t <= end + timedelta(seconds=1)


def without_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


# -- 1. round trip ---------------------------------------------------------------------


def test_round_trip_every_decision_kind_then_a_second_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(tmp_path)
    records = _first_round(p)
    _second_round(tmp_path, p, records, monkeypatch)


def _first_round(p: Project) -> list[dict[str, Any]]:
    """Every decision kind applied to v1 -> v2; the audit records it wrote."""
    v1_bytes = p.manifest.read_bytes()
    v1_sha = sha256_file(p.manifest)
    v1_header, v1_rows = raw_rows(p.manifest)

    start = datetime.now(UTC)
    out = apply_ok(p.queue, "--reviewer", "ana", "--unsure-factor", "0.25")
    end = datetime.now(UTC)

    # The summary: queue rows per decision (a group row counts once) and rows changed.
    assert printed_counts(out) == EXPECTED_COUNTS
    assert_says(out, f"7 manifest rows changed; wrote {p.v2} and appended to {p.log}")

    # The old version is untouched; the new one is the old one plus the decisions.
    assert p.manifest.read_bytes() == v1_bytes
    v2_header, v2_rows = raw_rows(p.v2)
    assert v2_header == v1_header
    assert [r["sample_id"] for r in v2_rows] == [r["sample_id"] for r in v1_rows]
    for old, new in zip(v1_rows, v2_rows, strict=True):
        assert new == old | EXPECTED_CHANGES.get(old["sample_id"], {}), old["sample_id"]

    # One audit line per changed or kept manifest row, in manifest order, every field.
    records = jsonl(p.log)
    # apply adds the commit fields: the version each decision produced, and its sha256.
    assert [set(r) for r in records] == [RECORD_FIELDS | set(COMMIT_FIELDS)] * len(EXPECTED_RECORDS)
    assert {(r["version"], r["version_sha256"]) for r in records} == {
        (p.v2.name, sha256_file(p.v2))
    }
    for r, (sid, old, new, action, quality, queue_row, split, weight) in zip(
        records, EXPECTED_RECORDS, strict=True
    ):
        check_time(r["time"], start, end)
        assert {k: v for k, v in r.items() if k not in ("time", *COMMIT_FIELDS)} == {
            "sample_id": sid,
            "old_label": old,
            "new_label": new,
            "action": action,
            "reviewer": "ana",
            "label_quality": quality,
            "run": RUN,
            "manifest_sha256": v1_sha,
            "queue_row": queue_row,
            "split": split,
            "weight": weight,
        }
    assert read_audit_log(p.log) == records

    # The CLI's whole path is replayable: v1 + the log read back from disk == v2.
    pd.testing.assert_frame_equal(
        replay_audit(read_manifest(p.manifest), read_audit_log(p.log)),
        read_manifest(p.v2),
        check_dtype=False,  # str columns read from disk vs object columns rebuilt
    )

    return records


def _round_two_queue(folder: Path, v2: Path) -> Path:
    """The reviewed queue of a second round, flagged from ``v2`` by run ``runs/round2``."""
    write_queue_meta(folder, v2, runs=["runs/round2", RUN])
    queue = folder / "queue.csv"
    rows = [
        {"rank": "1", "sample_id": "s06", "suggested_label": "b", "decision": "relabel"},
        {"rank": "2", "sample_id": "s05", "label_quality": "0.5", "decision": "unsure"},
        {"rank": "3", "sample_id": "s03", "label_quality": "0.9", "decision": "keep"},
        {"rank": "4", "sample_id": "s01", "label_quality": "", "decision": "drop"},
        {"rank": "5", "sample_id": "s09", "decision": ""},
    ]
    write_queue_csv(queue_frame(rows), queue)
    return queue


def _second_round(
    tmp_path: Path, p: Project, records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queue flagged from v2, applied -> v3; the log grows, nothing else moves."""
    v1_bytes = p.manifest.read_bytes()
    v1_header, _ = raw_rows(p.manifest)
    v2_bytes = p.v2.read_bytes()
    v2_sha = sha256_file(p.v2)
    log_bytes = p.log.read_bytes()
    queue2 = _round_two_queue(tmp_path / "runs" / "round2", p.v2)
    monkeypatch.setenv("USER", "bob")  # no --reviewer: the login name
    start = datetime.now(UTC)
    out = apply_ok(queue2)  # default --unsure-factor 0.5
    end = datetime.now(UTC)
    assert printed_counts(out) == {
        "keep": 1,
        "relabel": 1,
        "drop": 1,
        "unsure": 1,
        "not reviewed": 1,
    }
    assert_says(out, f"3 manifest rows changed; wrote {p.v3} and appended to {p.log}")
    assert p.manifest.read_bytes() == v1_bytes
    assert p.v2.read_bytes() == v2_bytes
    round2 = {
        "s06": {"label": "b"},
        "s05": {"weight": "0.375"},  # 0.75 x 0.5
        "s01": {"split": "excluded"},
    }
    _, v2_rows = raw_rows(p.v2)
    v3_header, v3_rows = raw_rows(p.v3)
    assert v3_header == v1_header
    for old, new in zip(v2_rows, v3_rows, strict=True):
        assert new == old | round2.get(old["sample_id"], {}), old["sample_id"]

    text = p.log.read_bytes()
    assert text.startswith(log_bytes)  # appended: the first round's lines are kept as they were
    new_records = jsonl(p.log)[len(records) :]
    for r in new_records:
        check_time(r.pop("time"), start, end)
        assert (r.pop("version"), r.pop("version_sha256")) == (p.v3.name, sha256_file(p.v3))
    assert new_records == [
        {
            "sample_id": sid,
            "old_label": old,
            "new_label": new,
            "action": action,
            "reviewer": "bob",
            "label_quality": quality,
            "run": "runs/round2",
            "manifest_sha256": v2_sha,  # the version this round was applied to
            "queue_row": sid,
            "split": split,
            "weight": weight,
        }
        for sid, old, new, action, quality, split, weight in [
            ("s01", "a", "a", "drop", None, "excluded", "1.0"),
            ("s03", "a", "a", "keep", 0.9, "train", "1.0"),
            ("s05", "b", "b", "unsure", 0.5, "train", "0.375"),
            ("s06", "a", "b", "relabel", None, "train", "1.0"),
        ]
    ]
    # Replaying the whole log from the first version gives the newest one.
    pd.testing.assert_frame_equal(
        replay_audit(read_manifest(p.manifest), read_audit_log(p.log)),
        read_manifest(p.v3),
        check_dtype=False,
    )
    pd.testing.assert_frame_equal(
        replay_audit(read_manifest(p.v2), read_audit_log(p.log)[len(records) :]),
        read_manifest(p.v3),
        check_dtype=False,
    )


def test_apply_from_another_directory_and_after_a_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # queue.json names the manifest relative to the queue's folder: neither the
    # working directory nor where the project lies matters
    make_project(tmp_path / "before")
    (tmp_path / "before").rename(tmp_path / "after")
    monkeypatch.chdir(tmp_path)
    apply_ok(tmp_path / "after" / "queue" / "queue.csv", "--reviewer", "ana")
    assert (tmp_path / "after" / "data" / "faces.v2.csv").is_file()


def test_apply_reads_an_older_queue_json_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = make_project(tmp_path)
    meta_path = p.queue.parent / "queue.json"
    meta = json.loads(meta_path.read_text())
    meta["manifest"] = "data/faces.csv"  # as older versions of flag wrote it
    meta_path.write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path)
    apply_ok(p.queue, "--reviewer", "ana")
    assert p.v2.is_file()


def test_the_same_decision_twice_is_not_a_conflict(tmp_path: Path) -> None:
    rows = [
        *QUEUE_ROWS,
        QUEUE_ROWS[5] | {"rank": "8"},  # s01 keep again
        {"rank": "9", "sample_id": "s09", "decision": "relabel", "new_label": "a"},  # as g8
    ]
    p = make_project(tmp_path, rows)
    apply_ok(p.queue, "--unsure-factor", "0.25")
    _, v2_rows = raw_rows(p.v2)
    _, v1_rows = raw_rows(p.manifest)
    for old, new in zip(v1_rows, v2_rows, strict=True):
        assert new == old | EXPECTED_CHANGES.get(old["sample_id"], {})
    # One record per manifest row, however many queue rows reached it.
    assert [r["sample_id"] for r in jsonl(p.log)] == [r[0] for r in EXPECTED_RECORDS]


def test_a_queue_with_nothing_decided_writes_nothing(tmp_path: Path) -> None:
    """An unreviewed queue applied by mistake must not use up the next version (#17)."""
    p = make_project(tmp_path, [r | {"decision": ""} for r in QUEUE_ROWS])
    out = apply_refused(tmp_path, p.queue)
    assert_says(out, "no decision is filled in (7 rows blank): nothing to apply")
    assert not p.v2.exists() and not p.log.exists()
    # The reviewed queue can still be applied afterwards.
    rewrite_queue(p.queue, queue_frame(QUEUE_ROWS))
    apply_ok(p.queue)
    assert p.v2.exists()


def test_all_keep_writes_the_log_and_no_version(tmp_path: Path) -> None:
    """Keeps change no row: their lines are logged (not queued again), no new version."""
    rows = [r | {"decision": "keep"} for r in QUEUE_ROWS if not r["sample_id"].startswith("g")]
    p = make_project(tmp_path, rows)
    out = apply_ok(p.queue)
    assert_says(out, "no manifest row changed, so no new version")
    assert not p.v2.exists()
    records = read_audit_log(p.log)
    assert records and {r["action"] for r in records} == {"keep"}
    assert {(r["version"], r["version_sha256"]) for r in records} == {
        (p.manifest.name, sha256_file(p.manifest))
    }


def test_a_kill_between_the_log_and_the_version_leaves_the_old_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version's rename is the commit point: stopped just before it, nothing counts."""
    from cleaner.formats import audit

    p = make_project(tmp_path)

    def killed() -> None:
        raise KeyboardInterrupt  # as a kill would: no clean-up code after this point runs

    monkeypatch.setattr(audit, "_before_commit", killed)
    result = runner.invoke(app, ["apply", str(p.queue)])
    assert result.exit_code != 0 and not p.v2.exists()
    assert p.log.exists() and read_audit_log(p.log) == []  # its lines name no version
    monkeypatch.undo()
    # The same command again completes, and the log holds each decision once.
    apply_ok(p.queue)
    logged = read_audit_log(p.log)
    assert len(logged) == len(EXPECTED_RECORDS) == len(jsonl(p.log))
    pd.testing.assert_frame_equal(
        replay_audit(read_manifest(p.manifest), logged), read_manifest(p.v2), check_dtype=False
    )


# -- 2. forgiving parsing ----------------------------------------------------------------

SPREADSHEET_DECISIONS = {
    "relabel": ["RELABEL", " Relabel", "reLabel "],
    "drop": ["  DROP"],
    "unsure": ["Unsure\t"],
    "keep": [" Keep "],
}


def _messy(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    seen: dict[str, int] = {}
    out = []
    for r in rows:
        d = r["decision"]
        if d:
            variants = SPREADSHEET_DECISIONS[d]
            d = variants[seen.get(d, 0) % len(variants)]
            seen[r["decision"]] = seen.get(r["decision"], 0) + 1
        out.append(r | {"decision": d, "sample_id": f" {r['sample_id']} "})
    return out


def _decimal_comma(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    return [r | {"label_quality": r["label_quality"].replace(".", ",")} for r in rows]


DELETED = {"s07"}  # the row nobody reviewed
EXTRA = ("reviewer comment", "")
REORDERED_COLUMNS = tuple(reversed(QUEUE_COLUMNS))

VARIANTS: dict[str, Callable[[], str]] = {
    "mixed_case_and_spaces": lambda: render(_messy(QUEUE_ROWS)),
    "utf8_bom": lambda: "\ufeff" + render(QUEUE_ROWS),
    "semicolon": lambda: render(QUEUE_ROWS, delimiter=";"),
    "semicolon_decimal_comma": lambda: render(_decimal_comma(QUEUE_ROWS), delimiter=";"),
    "tab": lambda: render(QUEUE_ROWS, delimiter="\t"),
    "crlf": lambda: render(QUEUE_ROWS, lineterminator="\r\n"),
    "reordered_rows": lambda: render(QUEUE_ROWS[::-1]),
    "deleted_rows": lambda: render([r for r in QUEUE_ROWS if r["sample_id"] not in DELETED]),
    "reordered_columns": lambda: render(QUEUE_ROWS, REORDERED_COLUMNS),
    "extra_columns": lambda: render(
        [r | {"reviewer comment": "looked twice"} for r in QUEUE_ROWS], (*QUEUE_COLUMNS, *EXTRA)
    ),
    "uppercase_header": lambda: (
        render(QUEUE_ROWS)
        .replace("sample_id,", "Sample_ID,", 1)
        .replace(",decision,", ",Decision ,", 1)
    ),
    "blank_lines_and_multiline_note": lambda: render(
        [r | {"note": "first line\nsecond line"} for r in QUEUE_ROWS]
    ).replace("\n", "\n\n", 3),
    "all_at_once": lambda: (
        "\ufeff"
        + render(
            [
                r | {"reviewer comment": "x"}
                for r in _decimal_comma(_messy(QUEUE_ROWS[::-1]))
                if r["sample_id"].strip() not in DELETED
            ],
            (*REORDERED_COLUMNS, *EXTRA),
            delimiter=";",
            lineterminator="\r\n",
        )
    ),
}


@pytest.fixture(scope="module")
def clean_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[dict[str, Any]]]:
    """The new version and audit records (without time) that the clean queue gives."""
    p = make_project(tmp_path_factory.mktemp("clean"))
    apply_ok(p.queue, "--reviewer", "ana")
    return p.v2.read_bytes(), without_time(jsonl(p.log))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_queue_through_a_spreadsheet_gives_the_same_result(
    tmp_path: Path, variant: str, clean_result: tuple[bytes, list[dict[str, Any]]]
) -> None:
    p = make_project(tmp_path, queue_text=VARIANTS[variant]())
    out = apply_ok(p.queue, "--reviewer", "ana")
    v2_bytes, records = clean_result
    assert p.v2.read_bytes() == v2_bytes
    assert without_time(jsonl(p.log)) == records
    deleted = "deleted" in variant or variant == "all_at_once"
    assert printed_counts(out) == EXPECTED_COUNTS | {"not reviewed": 0 if deleted else 1}


# -- 3. malformed input: one clear message, exit 2, nothing written -------------------------


def _set(who: str, /, **values: str) -> Callable[[list[dict[str, str]]], None]:
    def edit(rows: list[dict[str, str]]) -> None:
        (row,) = [r for r in rows if r["sample_id"] == who]
        row.update(values)

    return edit


def _append(*extra: dict[str, str]) -> Callable[[list[dict[str, str]]], None]:
    def edit(rows: list[dict[str, str]]) -> None:
        rows.extend(extra)

    return edit


def _prepend(*extra: dict[str, str]) -> Callable[[list[dict[str, str]]], None]:
    def edit(rows: list[dict[str, str]]) -> None:
        rows[:0] = extra

    return edit


# name -> (edit of QUEUE_ROWS, line of queue.csv, reason)
BAD_ROWS: dict[str, tuple[Callable[[list[dict[str, str]]], None], int, str]] = {
    "unknown_decision": (
        _set("s01", decision="maybe"),
        7,
        "unknown decision 'maybe'; use one of keep, relabel, drop, unsure (or leave it blank)",
    ),
    "new_label_not_a_class": (_set("s02", new_label="d"), 3, "new_label 'd' is not a class"),
    "suggested_label_not_a_class": (
        _set("s03", suggested_label="A"),
        4,
        "new_label 'A' is not a class",
    ),
    "sample_not_in_manifest": (
        _set("s05", sample_id="s99"),
        6,
        "sample_id 's99' is not in the manifest",
    ),
    "unknown_group": (
        _set("group:g8", sample_id="group:g99"),
        2,
        "group 'g99' is not in the manifest",
    ),
    "two_rows_conflicting_decisions": (
        _append({"sample_id": "s01", "decision": "drop"}),
        9,
        "sample 's01' gets two decisions: keep on line 7 and drop",
    ),
    "two_rows_conflicting_new_labels": (
        _append({"sample_id": "s02", "decision": "relabel", "new_label": "a"}),
        9,
        "sample 's02' gets two decisions: relabel to 'c' on line 3 and relabel to 'a'",
    ),
    "group_row_then_member_row": (
        _append({"sample_id": "s09", "decision": "drop"}),
        9,
        "sample 's09' gets two decisions: relabel to 'a' on line 2 and drop",
    ),
    "member_row_then_group_row": (
        _prepend({"sample_id": "s10", "decision": "keep"}),
        3,
        "sample 's10' gets two decisions: keep on line 2 and relabel to 'a'",
    ),
    "relabel_without_any_label": (
        _set("s03", suggested_label=""),
        4,
        "relabel needs new_label (or a suggested_label)",
    ),
    # An older queue still fills suggested_label on these kinds: it is not a suggestion.
    "outlier_accepting_a_suggestion": (
        _set("s05", decision="relabel"),
        6,
        "an outlier row has no suggested label: write the class in new_label",
    ),
    "near_duplicate_accepting_a_suggestion": (
        _set("s04", decision="Relabel "),
        5,
        "a near_duplicate row has no suggested label: write the class in new_label",
    ),
    "leakage_relabel": (
        _set("s04", issue="leakage", decision="relabel", new_label="b"),
        5,
        "a leakage row is kept or dropped, not relabel",
    ),
    "leakage_unsure": (
        _set("s04", issue="leakage", decision="unsure"),
        5,
        "a leakage row is kept or dropped, not unsure",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_a_bad_queue_row_is_refused_with_file_line_and_reason(tmp_path: Path, case: str) -> None:
    edit, line, reason = BAD_ROWS[case]
    rows = [dict(r) for r in QUEUE_ROWS]
    edit(rows)
    p = make_project(tmp_path, rows)
    out = apply_refused(tmp_path, p.queue, "--reviewer", "ana")
    assert_says(out, f"error: {p.queue}, line {line}: {reason}")
    assert not p.v2.exists() and not p.log.exists()


@pytest.mark.parametrize("columns", [QUEUE_COLUMNS, OLD_QUEUE_COLUMNS], ids=["new", "old"])
def test_each_issue_kind_takes_the_decisions_that_fit_it(
    tmp_path: Path, columns: Sequence[str]
) -> None:
    """An outlier relabelled to a named class and a leakage row dropped apply, in a
    queue with the ``partner`` column and in an older one without it."""
    rows = [dict(r) for r in QUEUE_ROWS]
    _set("s05", decision="relabel", new_label="a")(rows)  # outlier: the class written out
    _set("s04", issue="leakage", partner="s11", decision="drop")(rows)
    p = make_project(tmp_path, queue_text=render(rows, columns))
    apply_ok(p.queue, "--reviewer", "ana")
    new = read_manifest(p.v2).set_index("sample_id")
    assert new.loc["s05", "label"] == "a" and new.loc["s04", "split"] == "excluded"
    assert new.loc["s11", "split"] == "test"  # the leaked partner is a test row: untouched


def test_the_line_named_is_the_line_in_the_file(tmp_path: Path) -> None:
    """Blank lines and a note over several lines (Alt+Enter in a spreadsheet) count."""
    rows = [dict(r) for r in QUEUE_ROWS]
    rows[0]["note"] = "mixed labels:\nb x2\nc x1"
    rows[5]["decision"] = "maybe"
    text = render(rows).replace("\n", "\n\n", 1)  # a blank line after the header
    p = make_project(tmp_path, queue_text=text)
    (line,) = [n for n, t in enumerate(text.splitlines(), start=1) if ",maybe," in t]
    assert line == 10
    out = apply_refused(tmp_path, p.queue)
    assert_says(out, f"error: {p.queue}, line {line}: unknown decision 'maybe'")


def test_a_queue_saved_in_a_legacy_encoding(tmp_path: Path) -> None:
    rows = [dict(r) for r in QUEUE_ROWS]
    rows[3]["note"] = "zu ähnlich"  # line 5
    p = make_project(tmp_path)
    p.queue.write_bytes(render(rows).encode("cp1252"))
    out = apply_refused(tmp_path, p.queue)
    assert_says(
        out,
        f"error: {p.queue}, line 5: not UTF-8 text (byte b'\\xe4'); save the queue as CSV UTF-8",
    )


def test_several_bad_rows_are_listed_in_one_error(tmp_path: Path) -> None:
    rows = [dict(r) for r in QUEUE_ROWS]
    for name in ("unknown_decision", "new_label_not_a_class", "sample_not_in_manifest"):
        BAD_ROWS[name][0](rows)
    p = make_project(tmp_path, rows)
    out = apply_refused(tmp_path, p.queue)
    lines = [line for line in out.splitlines() if str(p.queue) in line]
    assert len(lines) == 3, out
    for (_, line, reason), shown in zip(
        [BAD_ROWS[n] for n in ("new_label_not_a_class", "sample_not_in_manifest")]
        + [BAD_ROWS["unknown_decision"]],
        lines,
        strict=True,
    ):
        assert f"{p.queue}, line {line}: {reason}" in shown


def test_a_long_list_of_bad_rows_is_cut_after_twenty(tmp_path: Path) -> None:
    rows = [{"sample_id": f"x{i:02d}", "decision": "keep"} for i in range(25)]
    p = make_project(tmp_path, rows)
    out = apply_refused(tmp_path, p.queue)
    for i in range(20):  # lines 2..21
        assert_says(out, f"{p.queue}, line {i + 2}: sample_id 'x{i:02d}' is not in the manifest")
    assert f"{p.queue}, line 22:" not in out
    assert_says(out, "... and 5 more")


@pytest.mark.parametrize(
    ("dropped", "named"),
    [
        (("decision",), "decision"),
        (("sample_id",), "sample_id"),
        (("sample_id", "decision"), "sample_id, decision"),
    ],
)
def test_missing_required_columns(tmp_path: Path, dropped: tuple[str, ...], named: str) -> None:
    columns = [c for c in QUEUE_COLUMNS if c not in dropped]
    p = make_project(tmp_path, queue_text=render(QUEUE_ROWS, columns))
    out = apply_refused(tmp_path, p.queue)
    assert_says(out, f"error: {p.queue}, line 1: missing column(s): {named}")


def test_a_queue_from_another_manifest_version(tmp_path: Path) -> None:
    p = make_project(tmp_path)
    made_from = sha256_file(p.manifest)
    # Someone edits the manifest after the queue was made.
    rows = [r | {"label": "b"} if r["sample_id"] == "s06" else r for r in MANIFEST_ROWS]
    p.manifest.unlink()
    write_csv(p.manifest, rows, MANIFEST_COLUMNS)
    now = sha256_file(p.manifest)
    out = apply_refused(tmp_path, p.queue)
    assert_says(
        out,
        f"error: {p.queue}: made from manifest version sha256 {made_from[:12]}..., "
        f"but {p.manifest} is now {now[:12]}...: a queue from another manifest version",
    )


def test_queue_json_missing(tmp_path: Path) -> None:
    p = make_project(tmp_path)
    (p.queue.parent / "queue.json").unlink()
    out = apply_refused(tmp_path, p.queue)
    assert_says(
        out,
        f"error: {p.queue.parent / 'queue.json'}: not found: it records which manifest "
        "version the queue was made from; keep it beside the queue CSV",
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"manifest": "data/faces.csv"}', "missing key 'manifest_sha256'"),
        ("[]", "not a queue.json written by cleaner flag"),
    ],
)
def test_queue_json_unreadable(tmp_path: Path, text: str, reason: str) -> None:
    p = make_project(tmp_path)
    (p.queue.parent / "queue.json").write_text(text)
    out = apply_refused(tmp_path, p.queue)
    assert_says(out, f"error: {p.queue.parent / 'queue.json'}: {reason}")


@pytest.mark.parametrize("audit", ["s01", {"added": "s01"}, {"ranked": [1, 2]}])
def test_a_damaged_audit_list_is_refused(tmp_path: Path, audit: object) -> None:
    p = make_project(tmp_path)
    meta_path = p.queue.parent / "queue.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "audit": audit}))
    out = apply_refused(tmp_path, p.queue)
    assert_says(out, "audit must hold the lists of sample ids 'added' and 'ranked'")
    assert not p.v2.exists() and not p.log.exists()


def test_the_same_apply_again_writes_nothing_and_an_edited_queue_is_refused(
    tmp_path: Path,
) -> None:
    """The same command twice (after a kill, say) finds its version made; a queue changed
    after it was applied makes another version, which is refused."""
    p = make_project(tmp_path)
    apply_ok(p.queue)
    log, v2 = p.log.read_bytes(), p.v2.read_bytes()
    out = apply_ok(p.queue)
    assert_says(out, f"already applied: {p.v2} holds exactly what this queue makes")
    assert p.log.read_bytes() == log and p.v2.read_bytes() == v2  # nothing written twice
    rows = [dict(r) for r in QUEUE_ROWS]
    rows[1]["new_label"] = "a"  # s02: relabel to a instead of c
    rewrite_queue(p.queue, queue_frame(rows))
    out = apply_refused(tmp_path, p.queue)
    assert_says(
        out,
        f"error: {p.v2}: already exists: was this queue applied before? "
        "flag the newest version for the next round",
    )
    assert p.log.read_bytes() == log  # not appended twice


def test_unsure_factor_must_be_positive(tmp_path: Path) -> None:
    p = make_project(tmp_path)
    for factor in ("0", "-0.5"):
        out = apply_refused(tmp_path, p.queue, "--unsure-factor", factor)
        assert_says(out, f"--unsure-factor must be positive, got {float(factor)}")


def test_a_version_appearing_while_writing_leaves_the_log_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two applies of one queue at once: the loser's decisions must not reach the log."""
    import contextlib

    from cleaner.formats import audit

    p = make_project(tmp_path)
    real = audit.atomic_path

    @contextlib.contextmanager
    def racing(path: Path, **kw: Any):  # type: ignore[no-untyped-def]
        with real(path, **kw) as tmp:
            yield tmp
            if Path(path) == p.v2:  # the other apply renames its v2 into place first
                p.v2.write_text("the other apply's version\n")

    monkeypatch.setattr(audit, "atomic_path", racing)
    result = runner.invoke(app, ["apply", str(p.queue)])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert_says(result.output, f"{p.v2} appeared while writing")
    assert p.v2.read_text() == "the other apply's version\n"
    assert not p.log.exists()
    assert sorted(f.name for f in p.manifest.parent.iterdir()) == [
        "faces.csv",
        "faces.v2.csv",
        "images",
    ]


# -- 4. properties: nothing lost, nothing changed without a decision, the log replays ----------

SPLIT_CHOICES = ("train", "train", "train", "test", "unlabeled", "excluded")
WEIGHTS = ("1.0", "1", "0.5", "2", "3.25", "0", "1e-3", "0.333333")
ACTION_WORDS = {
    "keep": ("keep", "Keep", " KEEP "),
    "relabel": ("relabel", "RELABEL", " Relabel"),
    "drop": ("drop", "Drop "),
    "unsure": ("unsure", " UNSURE"),
}


@st.composite
def reviewed_manifests(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """A manifest, a valid reviewed queue for it (as read from disk), an unsure factor."""
    n = draw(st.integers(1, 25))
    n_groups = draw(st.integers(1, 5))
    rows = []
    for i in range(n):
        split = draw(st.sampled_from(SPLIT_CHOICES))
        labels = CLASSES if split == "train" else ("", *CLASSES)
        rows.append(
            {
                "sample_id": f"s{i}",
                "path": f"images/{i}.png",
                "label": draw(st.sampled_from(labels)),
                "group": f"g{draw(st.integers(0, n_groups - 1))}",
                "weight": draw(st.sampled_from(WEIGHTS)),
                "split": split,
                "note_extra": draw(st.text(max_size=4)),
            }
        )
    manifest = pd.DataFrame(rows)

    def decision() -> tuple[str, str, str]:
        """(action, new_label, suggested_label) of one queue row."""
        action = draw(st.sampled_from(sorted(ACTION_WORDS)))
        label = draw(st.sampled_from(CLASSES)) if action == "relabel" else ""
        other = draw(st.sampled_from(CLASSES))
        if action == "relabel" and draw(st.booleans()):
            return action, "", label  # new_label blank: the suggested label
        return action, label, other

    queue: list[dict[str, str]] = []

    def add(queue_id: str, d: tuple[str, str, str]) -> None:
        action, new_label, suggested = d
        word = draw(st.sampled_from(ACTION_WORDS[action])) if action else ""
        quality = draw(st.one_of(st.just(""), st.floats(0, 1).map(lambda q: f"{q:.6g}")))
        queue.append(
            {
                "sample_id": draw(st.sampled_from(["", " "])) + queue_id,
                "decision": word,
                "new_label": new_label,
                "suggested_label": suggested,
                "label_quality": quality,
            }
        )

    by_group: dict[str, tuple[str, str, str]] = {}
    for g in draw(st.sets(st.sampled_from(sorted(set(manifest["group"]))))):
        by_group[g] = decision()
        add(f"group:{g}", by_group[g])
    for r in rows:
        choice = draw(st.sampled_from(["none", "none", "blank", "own", "group"]))
        covering = by_group.get(r["group"]) if r["split"] == "train" else None
        if choice == "blank":
            add(r["sample_id"], ("", "", ""))
        elif choice == "own" and covering is None and r["split"] != "test":
            # Test rows are never cleaned: a decision on one is refused (tested apart).
            add(r["sample_id"], decision())
        elif choice == "group" and covering is not None:
            # The same decision again, written as its group row wrote it: not a conflict.
            add(r["sample_id"], covering)
    queue = draw(st.permutations(queue))
    table = pd.DataFrame(
        queue, columns=["sample_id", "decision", "new_label", "suggested_label", "label_quality"]
    )
    factor = draw(st.sampled_from([0.5, 0.25, 2.0, 1.0]))
    return manifest, table, factor


def expected_positions(manifest: pd.DataFrame, decisions: Sequence[Decision]) -> set[int]:
    ids = list(manifest["sample_id"])
    out: set[int] = set()
    for d in decisions:
        if d.queue_id.startswith("group:"):
            gid = d.queue_id.removeprefix("group:")
            out |= {
                i
                for i in range(len(manifest))
                if manifest["group"].iat[i] == gid and manifest["split"].iat[i] == "train"
            }
        else:
            out.add(ids.index(d.queue_id))
    return out


@settings(max_examples=150, deadline=None)
@given(reviewed_manifests())
def test_apply_loses_nothing_changes_only_decided_rows_and_replays(
    case: tuple[pd.DataFrame, pd.DataFrame, float],
) -> None:
    manifest, table, factor = case
    old = manifest.copy(deep=True)
    decisions, blank = parse_decisions(
        table, file="queue.csv", classes=CLASSES, manifest=manifest, group="group"
    )
    assert blank == int((table["decision"] == "").sum())
    assert len(decisions) == len(table) - blank
    decided = expand_decisions(decisions, manifest, file="queue.csv", group="group")
    assert set(decided) == expected_positions(manifest, decisions)
    context = {"reviewer": "r", "time": "t", "run": "run", "manifest_sha256": "sha"}
    new, records = apply_decisions(manifest, decided, unsure_factor=factor, context=context)

    pd.testing.assert_frame_equal(manifest, old)  # the input is not modified
    assert list(new.columns) == list(old.columns)
    assert list(new["sample_id"]) == list(old["sample_id"])
    for p in range(len(old)):
        before, after = old.iloc[p].to_dict(), new.iloc[p].to_dict()
        d = decided.get(p)
        if d is None:
            assert after == before, p
            continue
        expected = dict(before)
        if d.action == "relabel":
            expected["label"] = d.new_label
            if before["split"] == "unlabeled":
                expected["split"] = "train"  # labeled now, so it trains
        elif d.action == "drop":
            expected["split"] = "excluded"
        elif d.action == "unsure":
            assert float(after["weight"]) == pytest.approx(
                float(before["weight"]) * factor, rel=1e-5
            )  # written with 6 significant digits
            expected["weight"] = after["weight"]
        assert after == expected, p

    assert [r["sample_id"] for r in records] == [old["sample_id"].iat[p] for p in sorted(decided)]
    assert all(set(r) == RECORD_FIELDS for r in records)
    pd.testing.assert_frame_equal(replay_audit(old, records), new)
    # ... and the same after the records went through the JSON lines of the log.
    logged = [json.loads(json.dumps(r)) for r in records]
    pd.testing.assert_frame_equal(replay_audit(old, logged), new)


def manifest_frame(*rows: tuple[str, str, str], **columns: Sequence[str]) -> pd.DataFrame:
    """A small manifest as read_manifest gives it: (sample_id, label, split) rows,
    images ``ID.png``, weight 1.0, and any other ``columns``."""
    ids = [sid for sid, _, _ in rows]
    return pd.DataFrame(
        {
            "sample_id": ids,
            "path": [f"{sid}.png" for sid in ids],
            "label": [label for _, label, _ in rows],
            "split": [split for _, _, split in rows],
            "weight": ["1.0"] * len(rows),
            **columns,
        }
    )


DECISION_COLUMNS = ("sample_id", "decision", "new_label", "suggested_label", "label_quality")


def decisions_frame(*rows: dict[str, str]) -> pd.DataFrame:
    """Queue rows as read_queue_table gives them: text, the decision columns blank unless
    given, other columns (``issue``) only where a row gives them."""
    columns = list(dict.fromkeys([*DECISION_COLUMNS, *(c for r in rows for c in r)]))
    return pd.DataFrame([{c: r.get(c, "") for c in columns} for r in rows], columns=columns)


def test_library_errors_carry_every_problem() -> None:
    """parse_decisions lists all bad rows; expand_decisions all conflicts."""
    manifest = manifest_frame(("s1", "a", "train"), ("s2", "b", "train"), group=["g", "g"])
    table = decisions_frame(
        {"sample_id": "s1", "decision": "nope"},
        {"sample_id": "zz", "decision": "keep"},
        {"sample_id": "s2", "decision": "relabel", "new_label": "q"},
    )
    with pytest.raises(InputError) as e:
        parse_decisions(table, file="q.csv", classes=CLASSES, manifest=manifest, group="group")
    assert [p.row for p in e.value.problems] == [2, 3, 4]
    conflicting = [
        Decision(2, "group:g", "drop"),
        Decision(3, "s1", "keep"),
        Decision(4, "s2", "relabel", "c"),
    ]
    with pytest.raises(InputError) as e:
        expand_decisions(conflicting, manifest, file="q.csv", group="group")
    assert [(p.row, p.reason) for p in e.value.problems] == [
        (3, "sample 's1' gets two decisions: drop on line 2 and keep"),
        (4, "sample 's2' gets two decisions: drop on line 2 and relabel to 'c'"),
    ]


def _tiny_manifest() -> pd.DataFrame:
    return manifest_frame(("t1", "", "test"), ("u1", "", "unlabeled"), ("r1", "a", "train"))


def test_a_decision_on_a_test_row_is_refused() -> None:
    table = decisions_frame({"sample_id": "t1", "decision": "relabel", "new_label": "a"})
    with pytest.raises(InputError, match="line 2: sample_id 't1' is a test row"):
        parse_decisions(table, file="q.csv", classes=("a", "b"), manifest=_tiny_manifest())


def test_relabeling_an_unlabeled_row_makes_it_a_train_row() -> None:
    manifest = _tiny_manifest()
    new, records = apply_decisions(manifest, {1: Decision(2, "u1", "relabel", "b")})
    assert new.loc[1, ["label", "split"]].tolist() == ["b", "train"]
    assert records[0]["split"] == "train" and records[0]["old_label"] == ""
    pd.testing.assert_frame_equal(replay_audit(manifest, records), new)


# --- a person's group row and one photo's own row, on composite labels ------------------

MASK_CLASSES = ["wear-m", "wear-f", "none-m", "none-f"]


def _mask_manifest() -> tuple[pd.DataFrame, AttributeTable]:
    manifest = pd.DataFrame(
        {
            "sample_id": ["s1", "s2", "s3"],
            "path": ["1.png", "2.png", "3.png"],
            "label": ["wear-m", "wear-m", "wear-m"],
            "group": ["P1", "P1", "P2"],
            "weight": ["1", "1", "1"],
            "split": ["train", "train", "train"],
            "mask": ["wear", "wear", "wear"],
            "gender": ["m", "m", "m"],
        }
    )
    every = pd.DataFrame({"label": MASK_CLASSES})
    mask, gender = every["label"].str.split("-", expand=True).T.to_numpy()
    table = attribute_table(np.arange(4), {"mask": mask, "gender": gender}, 4)
    return manifest, table


@pytest.mark.parametrize("own_first", [False, True])
def test_a_group_relabel_and_a_photo_relabel_of_other_attributes_compose(
    own_first: bool,
) -> None:
    manifest, table = _mask_manifest()
    group = Decision(2, "group:P1", "relabel", "gender=f", 0.2)
    own = Decision(3, "s1", "relabel", "mask=none", 0.1)
    decisions = [own, group] if own_first else [group, own]
    decided = expand_decisions(decisions, manifest, file="q.csv", group="group", attributes=table)
    new, records = apply_decisions(manifest, decided, classes=MASK_CLASSES, attributes=table)
    # s1 gets both changes, s2 (same person) only the group's, s3 nothing
    assert new["label"].tolist() == ["none-f", "wear-f", "wear-m"]
    assert new[["mask", "gender"]].values.tolist() == [["none", "f"], ["wear", "f"], ["wear", "m"]]
    first = records[0]
    assert first["sample_id"] == "s1" and first["columns"] == {"mask": "none", "gender": "f"}
    assert "group:P1" in first["queue_row"] and "s1" in first["queue_row"]
    assert first["label_quality"] == 0.1
    assert replay_audit(manifest, records).equals(new)


def test_a_group_relabel_and_a_photo_relabel_of_the_same_attribute_conflict() -> None:
    manifest, table = _mask_manifest()
    decisions = [
        Decision(2, "group:P1", "relabel", "gender=f"),
        Decision(3, "s1", "relabel", "mask=none;gender=m"),
    ]
    with pytest.raises(InputError, match="sample 's1' gets two decisions"):
        expand_decisions(decisions, manifest, file="q.csv", group="group", attributes=table)
    # the same change twice is no conflict, and stays one decision
    same = [
        Decision(2, "group:P1", "relabel", "gender=f"),
        Decision(3, "s1", "relabel", "gender=f"),
    ]
    assert expand_decisions(same, manifest, file="q.csv", group="group")[0] == same[0]
    # without composite labels nothing composes: "=" may be part of a class name
    other = [
        Decision(2, "group:P1", "relabel", "gender=f"),
        Decision(3, "s1", "relabel", "mask=none"),
    ]
    with pytest.raises(InputError, match="sample 's1' gets two decisions"):
        expand_decisions(other, manifest, file="q.csv", group="group")


def test_several_attributes_in_one_new_label() -> None:
    _, table = _mask_manifest()
    assert table.parse_specs("gender=f;mask=none") == [(1, 0), (0, 0)]
    assert table.parse_specs("gender=f;gender=m") is None  # one attribute, two values
    assert table.parse_specs("gender=f;size=xl") is None  # not an attribute


def test_a_queue_id_with_spaces_matches_the_one_manifest_id(tmp_path: Path) -> None:
    """A spreadsheet may pad an id; apply matches it to the one manifest id it trims to."""
    rows = [dict(r, sample_id=f" {r['sample_id']} ") if r["sample_id"] == "s02" else r
            for r in QUEUE_ROWS]  # fmt: skip
    p = make_project(tmp_path, rows)
    apply_ok(p.queue)
    records = {r["sample_id"]: r for r in jsonl(p.log)}
    assert records["s02"]["new_label"] == "c"  # the manifest's exact id, spaces gone


def test_manifest_ids_that_differ_only_by_spaces_are_refused() -> None:
    from cleaner.formats.manifest import id_matcher, id_problems

    ids = pd.Series(["a", "b ", "a ", "c"])
    problems = id_problems(ids, "m.csv")
    assert len(problems) == 1 and problems[0].row == 4 and "line 2" in problems[0].reason
    match = id_matcher(["a", "b ", "c"])
    assert match("a") == "a" and match("b") == "b " and match(" c ") == "c"
    assert id_matcher(["a", "a "])("a  ") is None  # two ids trim to it: no guess
    assert match("d") is None
