"""``cleaner export labelstudio`` and ``cleaner import labelstudio``: the Label Studio round trip.

No model is trained: the project (manifest, images, ``queue.csv``, ``queue.json``)
is the hand-written one of ``test_apply``. The exported tasks are checked against
the JSON schema Label Studio documents for imports and pre-annotations
(guide/tasks.md "Basic Label Studio JSON format", guide/predictions.md), and
``tests/data/labelstudio_export.json`` is a Label Studio export written by hand
to the documented export schema (includes/task_format.md), not by our writer.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import TEST_DATA, assert_says
from helpers import make_project as make_queue_project
from test_apply import (
    MANIFEST_COLUMNS,
    MANIFEST_ROWS,
    QUEUE_ROWS,
    Project,
    files_under,
    make_project,
    raw_rows,
    render,
)
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.formats.queue_file import QUEUE_COLUMNS
from cleaner.review.labelstudio_config import DECISION_CHOICES
from cleaner.review.labelstudio_export import LOCAL_FILES_URL, export_tasks
from cleaner.review.labelstudio_import import parse_export

runner = CliRunner()
EXPORT_FIXTURE = TEST_DATA / "labelstudio_export.json"
CLASSES = ["a", "b", "c"]

# The queue of test_apply, nothing decided yet.
UNDECIDED = [dict(r, decision="", new_label="") for r in QUEUE_ROWS]
# What the fixture's annotations decide (the last annotation not cancelled counts).
FIXTURE_DECISIONS = {
    "group:g8": ("unsure", ""),
    "s02": ("relabel", "a"),  # the pre-annotation accepted
    "s03": ("relabel", "b"),  # two annotations: the last one
    "s04": ("drop", ""),  # the later annotation was cancelled (skipped)
    "s05": ("", ""),  # only a cancelled annotation: not decided
    "s01": ("keep", ""),  # the given label chosen
    "s07": ("", ""),  # not annotated (only the prediction)
}


def undecided_project(root: Path, rows: Sequence[dict[str, str]] = UNDECIDED) -> Project:
    return make_project(root, rows)


def invoke_ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def refused(root: Path, *args: str) -> str:
    """Run a command on bad input: exit 2, no traceback, and not one file under root changed."""
    before = files_under(root)
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    assert files_under(root) == before
    return result.output


def decisions(queue: Path) -> dict[str, tuple[str, str]]:
    _, rows = raw_rows(queue)
    return {r["sample_id"]: (r["decision"], r["new_label"]) for r in rows}


# -- the documented schemas, as checks ---------------------------------------------------


def check_result(result: Any, *, from_name: str = "decision", to_name: str = "image") -> str:
    """A Choices result (predictions.md): id, type "choices", from/to name, one choice."""
    assert isinstance(result, dict)
    assert {"id", "type", "from_name", "to_name", "value"} <= set(result)
    assert isinstance(result["id"], str) and result["id"]
    assert result["type"] == "choices"
    assert (result["from_name"], result["to_name"]) == (from_name, to_name)
    choices = result["value"]["choices"]
    assert isinstance(choices, list) and len(choices) == 1 and isinstance(choices[0], str)
    return choices[0]


def check_import_task(task: Any) -> None:
    """A task of a Label Studio import file with pre-annotations (tasks.md, predictions.md)."""
    assert isinstance(task, dict)
    assert set(task) <= {"data", "predictions"}
    assert isinstance(task["data"], dict) and isinstance(task["data"]["image"], str)
    for p in task.get("predictions", []):
        assert set(p) <= {"model_version", "score", "result"}
        assert isinstance(p["model_version"], str)
        assert isinstance(p["score"], float) and 0 <= p["score"] <= 1
        assert isinstance(p["result"], list) and p["result"]
        for r in p["result"]:
            check_result(r)


def check_export_task(task: Any) -> None:
    """A task of a Label Studio JSON export (task_format.md): id, data, annotations."""
    assert isinstance(task, dict)
    assert {"id", "data", "annotations"} <= set(task)
    assert isinstance(task["data"], dict)
    for a in task["annotations"]:
        assert {"id", "result", "was_cancelled", "created_at", "completed_by"} <= set(a)
        assert isinstance(a["was_cancelled"], bool)
        for r in a["result"]:
            check_result(r)
    for p in task.get("predictions", []):
        assert {"model_version", "result"} <= set(p)


def label_studio_annotates(
    tasks: list[dict[str, Any]], answers: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    """What Label Studio exports after a person answered: ids, and an annotation per answer.

    An answer of None is a skipped task (a cancelled annotation); a task not in
    ``answers`` is not annotated.
    """
    out = []
    for k, task in enumerate(copy.deepcopy(tasks)):
        task["id"] = 500 + k
        task["annotations"] = []
        sid = task["data"]["sample_id"]
        if sid in answers:
            choice = answers[sid]
            result = (
                []
                if choice is None
                else [
                    {
                        "id": f"r{k}",
                        "type": "choices",
                        "from_name": "decision",
                        "to_name": "image",
                        "origin": "manual",
                        "value": {"choices": [choice]},
                    }
                ]
            )
            task["annotations"].append(
                {
                    "id": 900 + k,
                    "result": result,
                    "was_cancelled": choice is None,
                    "ground_truth": False,
                    "created_at": "2026-01-05T10:00:00.000000Z",
                    "updated_at": "2026-01-05T10:00:00.000000Z",
                    "lead_time": 1.0,
                    "task": task["id"],
                    "completed_by": 1,
                }
            )
        out.append(task)
    return out


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
    return path


# -- export ------------------------------------------------------------------------------


def test_export_writes_tasks_and_config_to_the_documented_schema(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    before = p.queue.read_bytes()
    out = invoke_ok("export", "labelstudio", str(p.queue))
    tasks_json = p.queue.with_name("queue.labelstudio.json")
    config_xml = p.queue.with_name("queue.labelstudio.xml")
    assert_says(out, f"wrote 7 tasks (5 with the suggestion pre-annotated) to {tasks_json}")
    assert_says(out, f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={p.manifest.parent.resolve()}")
    assert p.queue.read_bytes() == before  # export never changes the queue

    tasks = json.loads(tasks_json.read_text(encoding="utf-8"))
    assert isinstance(tasks, list) and len(tasks) == len(UNDECIDED)
    for task in tasks:
        check_import_task(task)
    by_id = {t["data"]["sample_id"]: t for t in tasks}
    assert list(by_id) == [r["sample_id"] for r in UNDECIDED]  # the queue's order

    s02 = by_id["s02"]
    assert s02["data"] == {
        "image": "/data/local-files/?d=images/s02.png",  # relative to the manifest's folder
        "sample_id": "s02",
        "queue_row": 2,
        "given_label": "b",
        "suggested_label": "a",
        "issue": "label",
        "label_quality": 0.02,
        "note": "",
    }
    [prediction] = s02["predictions"]
    assert prediction["score"] == pytest.approx(0.98)  # the model's doubt in the given label
    assert [check_result(r) for r in prediction["result"]] == ["a"]
    # A group row shows the member its cell names (s08), from the manifest.
    assert by_id["group:g8"]["data"]["image"] == "/data/local-files/?d=images/s08.png"
    # An outlier or near duplicate has no suggestion: nothing pre-annotated, none shown.
    for sid in ("s04", "s05"):
        assert "predictions" not in by_id[sid]
        assert by_id[sid]["data"]["suggested_label"] == ""
    # Result ids differ across the file (predictions.md asks for it).
    ids = [r["id"] for t in tasks for p_ in t.get("predictions", []) for r in p_["result"]]
    assert len(ids) == len(set(ids))

    # The labeling config: the image, and one choice per class then the decisions.
    view = ET.fromstring(config_xml.read_text(encoding="utf-8"))
    assert view.tag == "View"
    [image] = view.findall("Image")
    assert image.attrib == {"name": "image", "value": "$image"}
    [choices] = view.findall("Choices")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == (
        "decision",
        "image",
        "single-radio",
    )
    assert [c.get("value") for c in choices.findall("Choice")] == [*CLASSES, *DECISION_CHOICES]
    # Every $variable the config shows is a data field of every task.
    shown = " ".join(h.get("value", "") for h in view.findall("Header"))
    for word in shown.split():
        name = word.strip("|:")
        if name.startswith("$"):
            assert all(name[1:] in t["data"] for t in tasks), name


def test_export_with_an_image_prefix_and_out(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    out = tmp_path / "ls" / "round1.json"
    text = invoke_ok(
        "export", "labelstudio", str(p.queue), "--out", str(out), "--image-prefix",
        "https://data.example.org/faces/",
    )  # fmt: skip
    assert (tmp_path / "ls" / "round1.xml").is_file()
    assert "LOCAL_FILES" not in text
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert tasks[1]["data"]["image"] == "https://data.example.org/faces/images/s02.png"


def test_export_quotes_file_names_in_the_local_files_url(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    # An image whose name needs escaping in a query value.
    (p.manifest.parent / "images" / "s02.png").rename(p.manifest.parent / "images" / "s 02&b.png")
    text = p.manifest.read_text(encoding="utf-8").replace("images/s02.png", "images/s 02&b.png")
    p.manifest.write_text(text, encoding="utf-8")
    (p.queue.parent / "queue.json").unlink()
    from test_apply import write_queue_meta

    write_queue_meta(p.queue.parent, p.manifest)
    tasks, _ = export_tasks(p.queue)
    assert tasks[1]["data"]["image"] == "/data/local-files/?d=images/s%2002%26b.png"


def test_export_refuses_images_outside_the_document_root_and_existing_files(
    tmp_path: Path,
) -> None:
    p = undecided_project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = refused(
        tmp_path, "export", "labelstudio", str(p.queue), "--document-root", str(elsewhere)
    )
    assert_says(out, "is not under the document root", "--image-prefix")
    invoke_ok("export", "labelstudio", str(p.queue))
    out = refused(tmp_path, "export", "labelstudio", str(p.queue))
    assert_says(out, "queue.labelstudio.json: already exists")


def test_export_finds_the_document_root_of_images_beside_the_project(tmp_path: Path) -> None:
    """`ingest folder ../photos` puts the images outside the manifest's folder: the default
    document root is then the folder above both, printed, and every URL is under it."""
    rows = [dict(r, path=f"../../photos/{Path(r['path']).name}") for r in MANIFEST_ROWS]
    project = tmp_path / "project"
    p = make_queue_project(project, rows, UNDECIDED, classes=CLASSES,
                           manifest="data/faces.csv", columns=MANIFEST_COLUMNS)  # fmt: skip
    assert (tmp_path / "photos").is_dir()
    out = invoke_ok("export", "labelstudio", str(p.queue))
    assert_says(out, f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={tmp_path.resolve()}")
    tasks = json.loads(p.queue.with_name("queue.labelstudio.json").read_text())
    assert all(t["data"]["image"].startswith(LOCAL_FILES_URL + "photos/") for t in tasks)


def test_export_refuses_a_queue_from_another_manifest_version(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    with open(p.manifest, "a", encoding="utf-8") as f:
        f.write("s99,images/s01.png,,a,g1,1.0,train,cam1\n")
    out = refused(tmp_path, "export", "labelstudio", str(p.queue))
    assert_says(out, "a queue from another manifest version")


# -- the fixture: a Label Studio export written to the documented schema -----------------


def test_the_fixture_follows_the_documented_export_schema_and_our_task_data(
    tmp_path: Path,
) -> None:
    fixture = json.loads(EXPORT_FIXTURE.read_text(encoding="utf-8"))
    for task in fixture:
        check_export_task(task)
    # Its tasks carry the data our export writes for the same queue (an import of ours).
    p = undecided_project(tmp_path)
    tasks, _ = export_tasks(p.queue)
    assert [t["data"] for t in fixture] == [t["data"] for t in tasks]


def test_parse_export_takes_the_last_annotation_not_cancelled() -> None:
    fixture = json.loads(EXPORT_FIXTURE.read_text(encoding="utf-8"))
    found = parse_export(fixture, file="export.json")
    assert [(t.task, t.sample_id, t.queue_row, t.choice) for t in found] == [
        ("task 101", "group:g8", 1, "unsure"),
        ("task 102", "s02", 2, "a"),
        ("task 103", "s03", 3, "b"),
        ("task 104", "s04", 4, "drop"),  # the later, cancelled annotation is ignored
        ("task 105", "s05", 5, None),  # only cancelled: no answer
        ("task 106", "s01", 6, "a"),
        ("task 107", "s07", 7, None),
    ]


def test_the_annotation_saved_last_counts_whatever_the_export_order() -> None:
    # Label Studio does not sort a task's annotations (on PostgreSQL the order is free).
    def choice(value: str, updated: str, ident: int) -> dict[str, object]:
        result = {"from_name": "decision", "to_name": "image", "type": "choices",
                  "value": {"choices": [value]}}  # fmt: skip
        return {"id": ident, "was_cancelled": False, "result": [result],
                "created_at": "2026-01-01T00:00:00Z", "updated_at": updated}  # fmt: skip

    later, earlier = (
        choice("drop", "2026-01-03T10:00:00Z", 1),
        choice("b", "2026-01-02T10:00:00Z", 2),
    )
    task = {"id": 9, "data": {"sample_id": "s1", "queue_row": 1}, "annotations": [later, earlier]}
    (found,) = parse_export([task], file="export.json")
    assert found.choice == "drop"  # saved last, though listed first
    same_time = {**earlier, "updated_at": later["updated_at"]}  # a tie: the higher id
    (found,) = parse_export([{**task, "annotations": [later, same_time]}], file="export.json")
    assert found.choice == "b"


# -- import, then apply ------------------------------------------------------------------


def test_import_the_fixture_then_apply(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    header_before, rows_before = raw_rows(p.queue)
    mode = p.queue.stat().st_mode
    out = invoke_ok("import", "labelstudio", str(EXPORT_FIXTURE), str(p.queue))
    assert_says(out, f"wrote the decisions into {p.queue}; next: cleaner apply {p.queue}")
    assert decisions(p.queue) == FIXTURE_DECISIONS
    # Only the decision cells changed; every other cell and the header are as they were.
    header_after, rows_after = raw_rows(p.queue)
    assert header_after == header_before
    for old, new in zip(rows_before, rows_after, strict=True):
        assert {k: v for k, v in new.items() if k not in ("decision", "new_label")} == {
            k: v for k, v in old.items() if k not in ("decision", "new_label")
        }
    assert p.queue.stat().st_mode == mode

    invoke_ok("apply", str(p.queue), "--reviewer", "ls")
    _, v2 = raw_rows(p.v2)
    got = {r["sample_id"]: r for r in v2}
    assert got["s02"]["label"] == "a"  # relabel to the suggestion
    assert got["s03"]["label"] == "b"  # relabel to the class chosen
    assert got["s04"]["split"] == "excluded"  # drop
    assert [got[s]["weight"] for s in ("s08", "s09", "s10")] == ["0.5", "0.5", "0.25"]  # unsure
    v1 = {r["sample_id"]: r for r in raw_rows(p.manifest)[1]}
    assert got["s01"] == v1["s01"]  # keep: recorded in the audit log, the row as it was
    assert got["s05"] == v1["s05"] and got["s07"] == v1["s07"]  # not decided


def test_export_annotate_as_label_studio_import_apply(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    invoke_ok("export", "labelstudio", str(p.queue))
    tasks = json.loads(p.queue.with_name("queue.labelstudio.json").read_text(encoding="utf-8"))
    export = write_json(
        tmp_path / "export.json",
        label_studio_annotates(
            tasks, {"s02": "c", "s03": "drop", "s04": "keep", "s05": None, "group:g8": "a"}
        ),
    )
    for task in json.loads(export.read_text(encoding="utf-8")):
        check_export_task(task)
    out = invoke_ok("import", "labelstudio", str(export), str(p.queue))
    assert_says(out, "not annotated")
    assert decisions(p.queue) == {
        "group:g8": ("relabel", "a"),
        "s02": ("relabel", "c"),
        "s03": ("drop", ""),
        "s04": ("keep", ""),
        "s05": ("", ""),
        "s01": ("", ""),
        "s07": ("", ""),
    }
    invoke_ok("apply", str(p.queue))
    got = {r["sample_id"]: r for r in raw_rows(p.v2)[1]}
    assert got["s02"]["label"] == "c"
    assert got["s03"]["split"] == "excluded"
    assert [got[s]["label"] for s in ("s08", "s09", "s10")] == ["a", "a", "a"]
    assert got["s11"]["label"] == ""  # the group's test row is never cleaned


def test_import_keeps_a_spreadsheets_format(tmp_path: Path) -> None:
    """Delimiter, BOM, CRLF, an extra column and a blank line survive; only two cells change."""
    columns = (*QUEUE_COLUMNS, "my_notes")
    rows = [dict(r, my_notes="x;y" if i == 0 else "") for i, r in enumerate(UNDECIDED)]
    text = render(rows, columns, delimiter=";", lineterminator="\r\n")
    lines = text.split("\r\n")
    text = "\ufeff" + "\r\n".join([*lines[:3], "", *lines[3:]])
    p = make_project(tmp_path, queue_text=text)
    before = p.queue.read_bytes()
    export = write_json(
        tmp_path / "export.json",
        label_studio_annotates(export_tasks(p.queue)[0], {"s02": "a"}),
    )
    invoke_ok("import", "labelstudio", str(export), str(p.queue))
    after = p.queue.read_bytes()
    assert after.startswith(b"\xef\xbb\xbf")
    old_lines, new_lines = before.split(b"\r\n"), after.split(b"\r\n")
    assert len(old_lines) == len(new_lines)
    changed = [(o, n) for o, n in zip(old_lines, new_lines, strict=True) if o != n]
    assert changed == [
        (
            b"2;s02;images/s02.png;g2;b;a;0.02;label;;;;;",
            b"2;s02;images/s02.png;g2;b;a;0.02;label;relabel;a;;;",
        )
    ]


def test_an_import_that_changes_nothing_leaves_the_queue_alone(tmp_path: Path) -> None:
    rows = [dict(r, decision="relabel" if r["sample_id"] == "s02" else "") for r in UNDECIDED]
    p = undecided_project(tmp_path, rows)  # s02: relabel, new_label blank = the suggestion a
    export = write_json(
        tmp_path / "export.json", label_studio_annotates(export_tasks(p.queue)[0], {"s02": "a"})
    )
    before = files_under(tmp_path)
    out = invoke_ok("import", "labelstudio", str(export), str(p.queue))
    assert_says(out, "no new decision")
    assert files_under(tmp_path) == before


# -- refused, nothing written ------------------------------------------------------------


def test_a_decision_already_in_the_queue_is_not_replaced_without_force(tmp_path: Path) -> None:
    rows = [
        dict(r, decision={"s02": "keep", "s03": "drop"}.get(r["sample_id"], "")) for r in UNDECIDED
    ]
    p = undecided_project(tmp_path, rows)
    export = write_json(
        tmp_path / "export.json",
        label_studio_annotates(
            export_tasks(p.queue)[0], {"s02": "a", "s03": "drop", "s07": "keep"}
        ),
    )
    out = refused(tmp_path, "import", "labelstudio", str(export), str(p.queue))
    # Only the real conflict: s03 says drop twice, s07 was blank.
    assert_says(out, f"{p.queue}, line 3: 's02' is decided keep here; task 501 says relabel to 'a'")
    assert "s03" not in out and "s07" not in out

    out = invoke_ok("import", "labelstudio", str(export), str(p.queue), "--force")
    assert_says(out, "1 decisions already in the queue were replaced (--force)")
    got = decisions(p.queue)
    assert (got["s02"], got["s03"], got["s07"]) == (("relabel", "a"), ("drop", ""), ("keep", ""))


def test_tasks_of_samples_not_in_the_queue_are_refused(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    tasks = label_studio_annotates(export_tasks(p.queue)[0], {"s02": "a"})
    for sid, k in (("s99", 0), ("s11", 1)):  # unknown, and a manifest row the queue lacks
        tasks[k]["data"]["sample_id"] = sid
    export = write_json(tmp_path / "export.json", tasks)
    out = refused(tmp_path, "import", "labelstudio", str(export), str(p.queue))
    assert_says(
        out,
        f"{export}: task 500: sample_id 's99' is not in the queue",
        f"{export}: task 501: sample_id 's11' is not in the queue",
    )


def test_a_decision_apply_would_refuse_is_refused_before_writing(tmp_path: Path) -> None:
    rows = [*UNDECIDED, {"rank": "8", "sample_id": "s06", "given_label": "a", "issue": "leakage"}]
    p = undecided_project(tmp_path, rows)
    export = write_json(
        tmp_path / "export.json",
        label_studio_annotates(export_tasks(p.queue)[0], {"s02": "a", "s06": "b"}),
    )
    out = refused(tmp_path, "import", "labelstudio", str(export), str(p.queue))
    assert_says(
        out,
        f"{p.queue}, line 9: a leakage row is kept or dropped, not relabel "
        "(from Label Studio task 507)",
    )
    assert ".tmp" not in out  # named as the queue, not as the copy it was checked in


def _answered(task_id: int, choices: list[str]) -> str:
    """An export of one task about s02 whose one annotation chose ``choices``."""
    result = {
        "id": "r",
        "type": "choices",
        "from_name": "decision",
        "to_name": "image",
        "value": {"choices": choices},
    }
    annotation = {"id": 1, "was_cancelled": False, "result": [result]}
    return json.dumps([{"id": task_id, "data": {"sample_id": "s02"}, "annotations": [annotation]}])


BAD_EXPORTS: dict[str, tuple[str, str]] = {
    "truncated JSON": ('[{"id": 1, "data": {"sample_id": "s02"}', "not valid JSON"),
    "not a list": ('{"data": {"sample_id": "s02"}}', "expected a list of tasks"),
    "a task without sample_id": (
        '[{"id": 4, "data": {"image": "x.png"}, "annotations": []}]',
        "task 4: no data.sample_id",
    ),
    "an answer that is no class": (
        _answered(5, ["zebra"]),
        "task 5 (sample_id 's02'): answer 'zebra' is not a class",
    ),
    "two answers": (_answered(6, ["a", "keep"]), "chose 2 answers; choose one"),
    "an annotation without a choice": (
        '[{"id": 7, "data": {"sample_id": "s02"}, '
        '"annotations": [{"id": 1, "was_cancelled": false, "result": []}]}]',
        "task 7 (sample_id 's02'): its annotation chose nothing in 'decision'",
    ),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
}


@pytest.mark.parametrize("kind", list(BAD_EXPORTS))
def test_a_bad_export_is_refused_with_nothing_written(tmp_path: Path, kind: str) -> None:
    p = undecided_project(tmp_path)
    text, message = BAD_EXPORTS[kind]
    export = tmp_path / "export.json"
    export.write_text(text, encoding="utf-8")
    out = refused(tmp_path, "import", "labelstudio", str(export), str(p.queue))
    assert_says(out, str(export), message)


def test_two_tasks_deciding_one_row_differently_are_refused(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    tasks = export_tasks(p.queue)[0]
    first = label_studio_annotates(tasks, {"s02": "a"})
    again = label_studio_annotates(tasks, {"s02": "drop"})
    again[1]["id"] = 777
    export = write_json(tmp_path / "export.json", [*first, again[1]])
    out = refused(tmp_path, "import", "labelstudio", str(export), str(p.queue))
    assert_says(out, "task 777 and task 501 decide queue line 3 ('s02') differently")


def test_a_missing_export_file_and_a_non_utf8_one(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    out = refused(tmp_path, "import", "labelstudio", str(tmp_path / "nope.json"), str(p.queue))
    assert_says(out, "Label Studio export not found")
    bad = tmp_path / "latin1.json"
    bad.write_bytes('[{"data": {"sample_id": "caf\u00e9"}}]'.encode("latin-1"))
    out = refused(tmp_path, "import", "labelstudio", str(bad), str(p.queue))
    assert_says(out, "not UTF-8")


def test_parse_export_refuses_what_is_not_an_export() -> None:
    with pytest.raises(InputError, match="annotations is not a list"):
        parse_export([{"id": 1, "data": {"sample_id": "s02"}, "annotations": {}}], file="e")
    with pytest.raises(InputError, match="is not a JSON object"):
        parse_export([3], file="e")


# -- the command path stays light --------------------------------------------------------


def test_the_cli_and_this_module_import_no_heavy_library() -> None:
    code = (
        "import sys, cleaner.cli, cleaner.review.labelstudio_import\n"
        "print([m for m in ('torch', 'timm', 'cleanlab', 'sklearn') if m in sys.modules])"
    )
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout.strip() == "[]"


def test_manifest_rows_are_the_ones_of_test_apply() -> None:
    # The fixture's image URLs name test_apply's images: keep them in step.
    fixture = json.loads(EXPORT_FIXTURE.read_text(encoding="utf-8"))
    paths = {r["path"] for r in MANIFEST_ROWS}
    for task in fixture:
        assert task["data"]["image"].removeprefix("/data/local-files/?d=") in paths
