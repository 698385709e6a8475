"""Several labels per image: the wide and long files, read strictly, converted and appended."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cleaner.core.errors import InputError
from cleaner.formats.annotations import (
    Annotation,
    Annotations,
    append_annotations,
    long_to_wide,
    parse_wide,
    read_long,
    read_wide,
    write_long,
)

CLASSES = ("cat", "dog", "frog")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def spots(err: pytest.ExceptionInfo[InputError]) -> list[tuple[int | None, str]]:
    """(line, reason) of every problem, in order."""
    return [(p.row, p.reason) for p in err.value.problems]


def test_wide_manifest_reads_every_annotator_with_nan_for_missing(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv",
        "sample_id,path,label,split,annotator:alice,annotator:bob\n"
        "a,a.png,cat,train,cat,dog\n"
        "b,b.png,dog,train,,dog\n"
        "c,c.png,,test,,\n",
    )
    a = read_wide(path, classes=CLASSES)
    assert a.sample_ids == ("a", "b", "c")
    assert a.annotators == ("alice", "bob")
    np.testing.assert_array_equal(a.labels_multiannotator, [[0, 1], [np.nan, 1], [np.nan, np.nan]])
    np.testing.assert_array_equal(a.label_matrix(), [[0, 1], [-1, 1], [-1, -1]])
    np.testing.assert_array_equal(a.num_annotations, [2, 1, 0])
    assert not a.labels_multiannotator.flags.writeable  # frozen all the way down


def test_wide_file_with_bad_rows_is_refused_with_file_line_and_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.csv",
        "sample_id,annotator:alice,annotator:bob\n"
        "a,cat,dgo\n"  # line 2: unknown class
        "b,,\n"  # line 3: no label at all
        "c,frog,frog\n"
        "a,cat,cat\n",  # line 5: the id again
    )
    with pytest.raises(InputError) as err:
        read_wide(path, classes=CLASSES)
    assert all(p.file == str(path) for p in err.value.problems)
    found = spots(err)
    assert found[0][0] == 2 and "'dgo' is not one of the classes" in found[0][1]
    assert found[1] == (3, "no label from any annotator")
    assert found[2][0] == 5 and "duplicate sample_id 'a'" in found[2][1]
    assert str(path) + ", line 2" in str(err.value)


def test_a_repeated_annotator_column_is_refused(tmp_path: Path) -> None:
    # pandas would rename the second one silently ("annotator:alice.1").
    path = write(tmp_path / "m.csv", "sample_id,annotator:alice,annotator: alice\na,cat,dog\n")
    with pytest.raises(InputError) as err:
        read_wide(path, classes=CLASSES)
    assert spots(err)[0][0] == 1 and "duplicate column" in spots(err)[0][1]


def test_a_wide_row_without_an_id_is_refused() -> None:
    df = pd.DataFrame({"sample_id": ["a", " "], "annotator:x": ["cat", "dog"]})
    with pytest.raises(InputError) as err:
        parse_wide(df, file="m.csv", classes=CLASSES)
    assert spots(err) == [(3, "empty sample_id")]


def test_wide_without_annotator_columns_is_refused() -> None:
    with pytest.raises(InputError, match="no annotator columns"):
        parse_wide(pd.DataFrame({"sample_id": ["a"], "label": ["cat"]}), file="m.csv")


LONG = (
    "sample_id,annotator,label,time\n"
    "a,alice,cat,2024-05-01T10:00:00+00:00\n"
    "a,bob,dog,\n"
    "b,bob,dog,\n"
    "c,alice,frog,\n"
)


def test_long_file_reads_in_manifest_order_and_converts_to_wide(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.csv", LONG)
    a = read_long(path, classes=CLASSES, sample_ids=["c", "b", "a"])
    assert a.sample_ids == ("c", "b", "a")
    assert a.annotators == ("alice", "bob")
    np.testing.assert_array_equal(a.label_matrix(), [[2, -1], [-1, 1], [0, 1]])
    assert a.times[2, 0] == "2024-05-01T10:00:00+00:00"
    wide = long_to_wide(pd.read_csv(path, dtype=str, keep_default_na=False), file=path)
    assert list(wide.columns) == ["sample_id", "annotator:alice", "annotator:bob"]
    assert wide.to_dict("records")[0] == {
        "sample_id": "a",
        "annotator:alice": "cat",
        "annotator:bob": "dog",
    }
    # The wide form read back is the same annotations.
    again = parse_wide(wide, file="wide.csv", classes=CLASSES)
    b = read_long(path, classes=CLASSES)
    np.testing.assert_array_equal(again.labels_multiannotator, b.labels_multiannotator)


def test_long_file_with_bad_lines_is_refused_with_every_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.csv",
        "sample_id,annotator,label,time\n"
        "a,alice,cat,\n"  # 2
        "a,alice,dog,\n"  # 3: alice again on a
        "b,bob,horse,\n"  # 4: unknown class
        "b,carol,,\n"  # 5: no label
        "zzz,bob,cat,\n"  # 6: not in the manifest
        "b,bob,cat,yesterday\n"  # 7: not a time
        "a, alice ,dog,\n",  # 8: alice again, by the id rule
    )
    with pytest.raises(InputError) as err:
        read_long(path, classes=CLASSES, sample_ids=["a", "b", "c"])
    found = spots(err)
    lines = [line for line, _ in found]
    assert lines[:6] == [3, 4, 5, 6, 7, 8]
    assert "annotator 'alice' labelled sample 'a' twice (first on line 2)" in found[0][1]
    assert "'horse' is not one of the classes" in found[1][1]
    assert found[2][1] == "no label"
    assert "unknown sample_id 'zzz'" in found[3][1]
    assert "not an ISO 8601 time" in found[4][1]
    assert "twice (first on line 2)" in found[5][1]
    # b (whose every line was refused) and c have no label from anyone: named with their
    # manifest line, since no line of this file is theirs.
    assert found[6:] == [
        (None, "sample_id 'b' (manifest line 3) has no label from any annotator"),
        (None, "sample_id 'c' (manifest line 4) has no label from any annotator"),
    ]


def test_long_file_missing_a_column_is_refused_naming_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.csv", "sample_id,label\na,cat\n")
    with pytest.raises(InputError) as err:
        read_long(path, classes=CLASSES)
    assert spots(err) == [(1, "missing column(s): annotator")]


def test_write_long_round_trips_and_never_overwrites(tmp_path: Path) -> None:
    a = read_long(write(tmp_path / "in.csv", LONG), classes=CLASSES)
    out = write_long(tmp_path / "out.csv", a.to_long())
    b = read_long(out, classes=CLASSES)
    assert b.sample_ids == a.sample_ids and b.annotators == a.annotators
    np.testing.assert_array_equal(b.labels_multiannotator, a.labels_multiannotator)
    np.testing.assert_array_equal(b.times, a.times)
    with pytest.raises(FileExistsError):
        write_long(out, a.to_long())


def test_an_answer_is_appended_as_one_more_annotation(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.csv", LONG)
    before = path.read_bytes()
    answer = Annotation("b", "carol", "cat", "2024-05-02T09:00:00+00:00")
    everything = append_annotations(path, [answer], classes=CLASSES, sample_ids=["a", "b", "c"])
    assert path.read_bytes().startswith(before)  # the old lines byte for byte
    assert path.read_text().endswith("b,carol,cat,2024-05-02T09:00:00+00:00\n")
    assert everything.annotators == ("alice", "bob", "carol")
    assert everything.labels_multiannotator[1, 2] == 0
    again = read_long(path, classes=CLASSES)
    assert answer in again.to_long()


def test_an_answer_from_an_annotator_already_heard_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.csv", LONG)
    before = path.read_bytes()
    with pytest.raises(InputError, match="'bob' already labelled sample 'b'"):
        append_annotations(
            path, [Annotation("c", "bob", "cat"), Annotation("b", "bob", "cat")], classes=CLASSES
        )
    with pytest.raises(InputError, match="not one of the classes"):
        append_annotations(path, [Annotation("c", "bob", "horse")], classes=CLASSES)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_appending_to_no_file_makes_it(tmp_path: Path) -> None:
    path = tmp_path / "new" / "labels.csv"
    append_annotations(path, [Annotation("x", "ann", "dog", "2024-01-01T00:00:00+00:00")])
    assert path.read_text() == (
        "sample_id,annotator,label,time\nx,ann,dog,2024-01-01T00:00:00+00:00\n"
    )
    # Without a class list, classes are the labels seen, sorted: a new one is remapped.
    everything = append_annotations(path, [Annotation("x", "other", "cat")])
    assert everything.classes == ("cat", "dog")
    np.testing.assert_array_equal(everything.label_matrix(), [[1, 0]])


def test_with_annotations_keeps_the_original_unchanged() -> None:
    a = Annotations(("a", "b"), ("alice",), CLASSES, np.array([[0.0], [np.nan]]))
    b = a.with_annotations([Annotation("b", "alice", "dog"), Annotation("a", "bob", "frog")])
    np.testing.assert_array_equal(b.label_matrix(), [[0, 2], [1, -1]])
    np.testing.assert_array_equal(a.label_matrix(), [[0], [-1]])
