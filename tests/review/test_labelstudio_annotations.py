"""``cleaner import labelstudio --annotations``: every annotator's label of a Label Studio
export as the long form (``sample_id,annotator,label,time``), then into a manifest.

The project is test_apply's hand-written one (no model); the export is built by hand
to Label Studio's documented export schema (includes/task_format.md), with several
annotators per task and ``completed_by`` both as a user id and as a user object.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
from helpers import assert_says, invoke
from test_apply import CLASSES, MANIFEST_ROWS, raw_rows
from test_labelstudio import check_export_task, refused, undecided_project, write_json

from cleaner.formats.annotations import read_long
from cleaner.review.labelstudio_export import export_tasks

KIM = {"id": 2, "email": "kim@example.org", "first_name": "Kim", "last_name": "Lee"}
NO_EMAIL = {"id": 3, "email": "", "first_name": "", "last_name": ""}  # falls back to the id


def annotation(
    aid: int, choice: str, who: Any, *, cancelled: bool = False, created: str | None = None
) -> dict[str, Any]:
    """One annotation as Label Studio exports it (task_format.md)."""
    out = {
        "id": aid,
        "result": [
            {
                "id": f"r{aid}",
                "type": "choices",
                "from_name": "decision",
                "to_name": "image",
                "origin": "manual",
                "value": {"choices": [choice]},
            }
        ],
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": created,
        "updated_at": created,
        "lead_time": 2.5,
        "completed_by": who,
    }
    if created is None:  # an export without times: the line's time is empty
        del out["created_at"], out["updated_at"]
    return out


def at(minute: int) -> str:
    return f"2026-01-05T10:{minute:02d}:00.000000Z"


# Queue order: group:g8 (given b), s02 (b), s03 (c), s04 (a), s05 (b), s01 (a), s07 (a).
ANSWERS: dict[str, list[dict[str, Any]]] = {
    "group:g8": [annotation(10, "c", KIM, created=at(1))],  # each train member of g8
    "s02": [  # three annotators
        annotation(20, "a", 1, created=at(2)),
        annotation(21, "a", KIM, created=at(3)),
        annotation(22, "keep", NO_EMAIL, created=at(4)),  # the given label, b
    ],
    "s03": [
        annotation(30, "b", 1, cancelled=True, created=at(5)),  # skipped: not an answer
        annotation(31, "c", KIM, created=at(6)),
        annotation(32, "c", 1, created=at(7)),  # user 1 again, after a cancelled one
    ],
    "s04": [annotation(40, "drop", KIM, created=at(8)), annotation(41, "a", 1, created=at(9))],
    "s05": [annotation(50, "unsure", NO_EMAIL, created=at(10))],
    "s01": [],  # not annotated
    "s07": [annotation(70, "keep", NO_EMAIL)],  # no time in the export
}
EXPECTED_LINES = [
    "sample_id,annotator,label,time",
    f"s08,kim@example.org,c,{at(1)}",
    f"s09,kim@example.org,c,{at(1)}",
    f"s10,kim@example.org,c,{at(1)}",
    f"s02,labelstudio-user-1,a,{at(2)}",
    f"s02,kim@example.org,a,{at(3)}",
    f"s02,labelstudio-user-3,b,{at(4)}",
    f"s03,kim@example.org,c,{at(6)}",
    f"s03,labelstudio-user-1,c,{at(7)}",
    f"s04,labelstudio-user-1,a,{at(9)}",
    "s07,labelstudio-user-3,a,",
]


def label_studio_export(
    queue: Path, answers: dict[str, list[dict[str, Any]]] = ANSWERS
) -> list[dict[str, Any]]:
    """Our tasks of ``queue`` as Label Studio exports them, annotated with ``answers``."""
    tasks = export_tasks(queue)[0]
    out = []
    for k, task in enumerate(tasks):
        task = dict(task, id=500 + k, project=7)
        task["annotations"] = copy.deepcopy(answers.get(task["data"]["sample_id"], []))
        out.append(task)
    return out


def test_every_annotation_is_one_line_of_the_long_form(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    tasks = label_studio_export(p.queue)
    for task in tasks[:-1]:  # the documented export schema (s07's lacks its times on purpose)
        check_export_task(task)
    export = write_json(tmp_path / "export.json", tasks)
    queue_before = p.queue.read_bytes()
    out = tmp_path / "annotations.csv"

    text = invoke("import", "labelstudio", str(export), str(p.queue), "--annotations", str(out))

    assert out.read_text(encoding="utf-8").splitlines() == EXPECTED_LINES
    assert p.queue.read_bytes() == queue_before  # the queue's decisions are not touched
    assert_says(text, f"wrote 10 annotations by 3 annotators to {out}")
    assert_says(text, "skipped (no label): 1 drop, 1 unsure")
    assert_says(
        text, "│ kim@example.org │ 5 │", "│ labelstudio-user-1 │ 3 │", "│ labelstudio-user-3 │ 2 │"
    )

    # Read back: rows in order of first appearance, annotators likewise, classes in order.
    notes = read_long(out, classes=CLASSES)
    assert notes.sample_ids == ("s08", "s09", "s10", "s02", "s03", "s04", "s07")
    assert notes.annotators == ("kim@example.org", "labelstudio-user-1", "labelstudio-user-3")
    nan = np.nan
    expected = [
        [2, nan, nan],  # s08: kim c (the group row)
        [2, nan, nan],
        [2, nan, nan],
        [0, 0, 1],  # s02: a, a, keep = b
        [2, 2, nan],  # s03: the cancelled b does not count
        [nan, 0, nan],  # s04: kim's drop is no label
        [nan, nan, 0],  # s07: keep = a
    ]
    np.testing.assert_array_equal(notes.labels_multiannotator, np.array(expected))
    assert notes.labels_multiannotator.shape == (7, 3)


def test_the_long_file_feeds_ingest_csv(tmp_path: Path) -> None:
    """The lines name the manifest's samples: `ingest csv --annotations` takes them."""
    p = undecided_project(tmp_path)
    export = write_json(tmp_path / "export.json", label_studio_export(p.queue))
    out = tmp_path / "annotations.csv"
    invoke("import", "labelstudio", str(export), str(p.queue), "--annotations", str(out))
    new = tmp_path / "data" / "faces.annotated.csv"
    invoke(
        "ingest", "csv", str(p.manifest), "--path-col", "path", "--id-col", "sample_id",
        "--label-col", "label", "--group-col", "group", "--split-col", "split",
        "--annotations", str(out), "--manifest", str(new),
    )  # fmt: skip
    header, rows = raw_rows(new)
    assert header[-3:] == [
        "annotator:kim@example.org",
        "annotator:labelstudio-user-1",
        "annotator:labelstudio-user-3",
    ]
    got = {r["sample_id"]: r for r in rows}
    assert [got["s02"][c] for c in header[-3:]] == ["a", "a", "b"]
    assert [got["s09"][c] for c in header[-3:]] == ["c", "", ""]
    assert [r["label"] for r in rows] == [r["label"] for r in MANIFEST_ROWS]  # --label-col


def test_one_annotator_twice_on_a_task_is_refused_with_every_problem(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    answers = dict(
        ANSWERS,
        s02=[*ANSWERS["s02"], annotation(23, "c", 1, created=at(11))],  # user 1 again
        s01=[annotation(60, "a", None, created=at(12))],  # no user
        s07=[annotation(70, "keep", KIM, created="yesterday")],  # no ISO 8601 time
        s04=[annotation(40, "zebra", KIM, created=at(8))],  # no class, found against the queue
    )
    export = write_json(tmp_path / "export.json", label_studio_export(p.queue, answers))
    out = tmp_path / "annotations.csv"
    text = refused(
        tmp_path, "import", "labelstudio", str(export), str(p.queue), "--annotations", str(out)
    )
    assert_says(
        text,
        f"{export}: task 501 (sample_id 's02'): 'labelstudio-user-1' annotated it twice, "
        "annotation 20 and annotation 23",
        "task 505 (sample_id 's01'), annotation 60: completed_by names no user",
        "task 506 (sample_id 's07'), annotation 70: created_at 'yesterday' is not an ISO 8601",
        "task 503 (sample_id 's04'), annotation 40: answer 'zebra' is not a class of the queue",
    )
    assert not out.exists()


def test_one_annotator_giving_a_sample_two_labels_in_two_tasks_is_refused(
    tmp_path: Path,
) -> None:
    p = undecided_project(tmp_path)
    tasks = label_studio_export(p.queue)
    again = dict(tasks[1], id=777, annotations=[annotation(99, "c", KIM, created=at(20))])
    export = write_json(tmp_path / "export.json", [*tasks, again])
    out = tmp_path / "annotations.csv"
    text = refused(
        tmp_path, "import", "labelstudio", str(export), str(p.queue), "--annotations", str(out)
    )
    assert_says(
        text,
        "'kim@example.org' labels sample 's02' 'a' in task 501 (annotation 21) "
        "and 'c' in task 777 (annotation 99)",
    )
    assert not out.exists()


def test_an_existing_output_is_refused_and_left_alone(tmp_path: Path) -> None:
    p = undecided_project(tmp_path)
    export = write_json(tmp_path / "export.json", label_studio_export(p.queue))
    out = tmp_path / "annotations.csv"
    out.write_text("sample_id,annotator,label,time\ns01,me,a,\n", encoding="utf-8")
    args = ("import", "labelstudio", str(export), str(p.queue), "--annotations", str(out))
    text = refused(tmp_path, *args)  # exit 2, not one file under tmp_path changed
    assert_says(text, f"{out}: already exists")
    text = refused(tmp_path, *args, "--force")
    assert_says(text, "--annotations writes none")
