"""``cleaner status``: a project's versions, runs and queues, and the next command (#30)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from helpers import invoke, make_project, rewrite_queue, write_csv, write_png
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.rounds.status import RunState, next_step, project_status

CLASSES = ("a", "b")
ROWS = [
    {"sample_id": f"s{i}", "path": f"images/s{i}.png", "label": "ab"[i % 2], "split": "train"}
    for i in range(6)
]


def _project(root: Path) -> Path:
    """A manifest, a finished run of it (``runs/r1``) and its queue of two rows, undecided."""
    oof = pd.DataFrame(
        {"sample_id": [r["sample_id"] for r in ROWS], "fold": 0,
         "label": [r["label"] for r in ROWS], "pred": "a", "p:a": 0.6, "p:b": 0.4}
    )  # fmt: skip
    queue = [
        {"rank": "1", "sample_id": "s1", "path": "images/s1.png", "given_label": "b",
         "suggested_label": "a", "label_quality": "0.1", "issue": "label"},
        {"rank": "2", "sample_id": "s3", "path": "images/s3.png", "given_label": "b",
         "suggested_label": "a", "label_quality": "0.2", "issue": "label"},
    ]  # fmt: skip
    p = make_project(
        root, ROWS, queue, classes=CLASSES, manifest="data/m.csv", queue_dir="runs/r1",
        runs=["."], oof=oof,
    )  # fmt: skip
    return p.queue


def _said(root: Path) -> str:
    """What ``status`` printed, each run of whitespace one space (paths print unbroken)."""
    return " ".join(invoke("status", str(root)).split())


def _next(root: Path) -> str:
    return _said(root).split("next: ", 1)[1]


def test_status_follows_the_loop(tmp_path: Path) -> None:
    queue = _project(tmp_path)
    assert _next(tmp_path).startswith(f"cleaner review {queue} (2 of its rows undecided)")
    table = pd.read_csv(queue, dtype=str, keep_default_na=False)
    table["decision"] = ["relabel", "keep"]
    rewrite_queue(queue, table)
    assert _next(tmp_path).startswith(f"cleaner apply {queue} (all 2 rows decided")
    invoke("apply", str(queue), "--reviewer", "kim")
    v2 = tmp_path / "data" / "m.v2.csv"
    # The run scores version 1: refresh it on version 2 (or oof from scratch).
    assert _next(tmp_path).startswith(f"cleaner refresh {tmp_path / 'runs' / 'r1'} {v2}")
    status = project_status(tmp_path)
    (m,) = status.manifests
    assert [v.path.name for v in m.versions] == ["m.csv", "m.v2.csv"]
    assert [v.decisions for v in m.versions] == [0, 2]
    (q,) = m.queues
    assert (q.applied, q.decided, q.rows) == (True, 2, 2)
    assert m.current == v2.resolve() and not status.problems


def test_a_manifest_with_nothing_trained_asks_for_oof(tmp_path: Path) -> None:
    write_png(tmp_path / "data_manifests" / "images" / "x.png")
    write_csv(tmp_path / "data_manifests" / "x.csv", [{"path": "images/x.png", "label": "a"}])
    assert _next(tmp_path).startswith("cleaner oof PIPELINE.toml --set data.manifest=")
    assert "nothing trained yet" in _next(tmp_path)


def test_an_empty_folder_and_a_missing_one(tmp_path: Path) -> None:
    assert "no manifest, run or queue found" in _said(tmp_path)
    result = CliRunner().invoke(app, ["status", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_an_unreadable_queue_is_named_and_skipped(tmp_path: Path) -> None:
    queue = _project(tmp_path)
    queue.with_name("queue.json").write_text("{")
    out = _said(tmp_path)
    assert "skipped" in out and "not valid JSON" in out
    # the run is still found: with no readable queue, flag it
    assert _next(tmp_path).startswith(f"cleaner flag {tmp_path / 'runs' / 'r1'}")


def test_a_damaged_audit_log_is_named(tmp_path: Path) -> None:
    _project(tmp_path)
    (tmp_path / "data" / "m.audit.jsonl").write_text("{not json\n")
    said = _said(tmp_path)
    assert "skipped" in said and "m.audit.jsonl" in said and "not valid JSON" in said
    assert "next: cleaner review" in said  # the rest of the project still reads


def test_after_a_retrain_in_folds_the_next_round_starts_from_its_run(tmp_path: Path) -> None:
    v2 = tmp_path / "data" / "m.v2.csv"
    final = RunState(tmp_path / "runs" / "final", v2, "retrain")
    cv = RunState(tmp_path / "runs" / "final" / "cv", v2, "oof")
    command, why = next_step(v2, (final, cv), (), tmp_path)
    assert command == f"cleaner flag {cv.path} --audit 100"
    assert f"m.v2.csv has its final model ({final.path / 'report.md'})" in why
    other = RunState(tmp_path / "runs" / "r2", v2, "oof")  # a plain oof run: no final model
    assert next_step(v2, (other,), (), tmp_path) == (
        f"cleaner flag {other.path}",
        "a run of m.v2.csv without a queue",
    )
