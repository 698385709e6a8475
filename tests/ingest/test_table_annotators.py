"""``ingest csv --annotator-col``: several labels per image, and their majority as the label."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from helpers import assert_says, invoke, write_csv, write_png
from typer.testing import CliRunner

from cleaner.cli import app


def _table(root: Path, rows: list[dict[str, str]]) -> Path:
    for i, _ in enumerate(rows):
        write_png(root / "img" / f"{i}.png", value=20 * i)
    return write_csv(
        root / "labels.csv", [{"path": f"img/{i}.png", **r} for i, r in enumerate(rows)]
    )


def test_each_annotator_becomes_a_column_and_the_label_their_majority(tmp_path: Path) -> None:
    table = _table(
        tmp_path,
        [
            {"a1": "cat", "a2": "cat", "a3": "dog"},
            {"a1": "dog", "a2": "cat", "a3": "dog"},
            {"a1": "dog", "a2": "", "a3": "cat"},  # a tie: the first column's label
        ],
    )
    out = tmp_path / "m.csv"
    args = ["ingest", "csv", str(table), "--path-col", "path", "--manifest", str(out)]
    invoke(*args, *[a for c in ("a1", "a2", "a3") for a in ("--annotator-col", c)])
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert df["label"].tolist() == ["cat", "dog", "dog"]
    assert df["annotator:a2"].tolist() == ["cat", "cat", ""]
    assert {"a1", "a2", "a3"}.isdisjoint(df.columns)


def test_a_row_without_any_label_is_refused_naming_its_line(tmp_path: Path) -> None:
    table = _table(tmp_path, [{"a1": "cat", "a2": "dog"}, {"a1": "", "a2": ""}])
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(
        app,
        ["ingest", "csv", str(table), "--path-col", "path", "--manifest", str(out),
         "--annotator-col", "a1", "--annotator-col", "a2"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert_says(result.output, str(table), "line 3", "no label from any annotator")
    assert not out.exists()


def test_neither_a_label_nor_an_annotator_column_is_refused(tmp_path: Path) -> None:
    table = _table(tmp_path, [{"a1": "cat"}])
    result = CliRunner().invoke(app, ["ingest", "csv", str(table), "--path-col", "path"])
    assert result.exit_code == 2
    assert_says(result.output, "give --label-col, --annotator-col or --annotations")


def test_the_long_form_merges_in_as_annotator_columns(tmp_path: Path) -> None:
    table = _table(tmp_path, [{"label": "cat"}, {"label": "dog"}])
    long = tmp_path / "answers.csv"
    long.write_text(
        "sample_id,annotator,label\nimg/0.png,ann,dog\nimg/1.png,ann,dog\nimg/0.png,bo,cat\n"
    )
    out = tmp_path / "m.csv"
    invoke("ingest", "csv", str(table), "--path-col", "path", "--annotations", str(long),
           "--manifest", str(out))  # fmt: skip
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert df["annotator:ann"].tolist() == ["dog", "dog"]
    assert df["annotator:bo"].tolist() == ["cat", ""]
    assert df["label"].tolist() == ["dog", "dog"]  # the majority; a tie: the first column


def test_one_annotator_twice_on_one_image_is_refused_naming_both_lines(tmp_path: Path) -> None:
    table = _table(tmp_path, [{"label": "cat"}])
    long = tmp_path / "answers.csv"
    long.write_text("sample_id,annotator,label\nimg/0.png,ann,dog\nimg/0.png,ann,cat\n")
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(
        app,
        ["ingest", "csv", str(table), "--path-col", "path", "--label-col", "label",
         "--annotations", str(long), "--manifest", str(out)],
    )  # fmt: skip
    assert result.exit_code == 2
    assert_says(result.output, str(long), "line 3", "labelled sample", "twice", "first on line 2")
    assert not out.exists()
