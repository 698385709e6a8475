"""Bad input, end to end: ``cleaner oof`` names the file, line and reason, and writes nothing.

Each test breaks one thing in an otherwise valid tiny project (6 real PNGs,
classes ``a`` and ``b``, 2 folds) and runs the real CLI. Manifest lines count
the CSV header as line 1, so manifest row ``i`` (0-based) is on line ``i + 2``.
No test here trains a model: every error is raised before training starts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import assert_not_says, assert_says, snapshot, write_pipeline
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import MAX_LISTED, InputError, Problem


@pytest.fixture
def oof_fails(
    runner: CliRunner,
) -> Callable[..., str]:
    """Run ``cleaner oof PIPELINE --out ROOT/runs/r1 ARGS``; check it failed cleanly.

    Clean failure: exit code 2 (not a traceback), the run folder was not made,
    and no file under ``root`` was added, removed or changed. Returns the output.
    """

    def run(root: Path, pipeline: Path, *args: str, quiet: bool = True) -> str:
        out = root / "runs" / "r1"
        before = snapshot(root)
        argv = ["oof", str(pipeline), "--out", str(out), *(["--quiet"] if quiet else []), *args]
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), result.exception
        assert "error:" in result.output
        assert not (root / "runs").exists()
        assert snapshot(root) == before
        return result.output

    return run


def line(i: int) -> str:
    """How an error names manifest row ``i`` (0-based)."""
    return f"manifest.csv, line {i + 2}:"


# --- manifest problems -------------------------------------------------------------------


@pytest.mark.parametrize("column", ["path", "label"])
def test_missing_required_column(tiny_project, oof_fails, column):
    rows = [{k: v for k, v in r.items() if k != column} for r in tiny_project.rows]
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(
        out,
        f"{tiny_project.manifest}, line 1: missing required column(s): {column}",
    )


def test_missing_both_required_columns(tiny_project, oof_fails):
    tiny_project.rewrite_manifest([{"file": "images/a0.png", "cls": "a"}])
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, f"{tiny_project.manifest}, line 1: missing required column(s): path, label")


def test_duplicate_sample_id(tiny_project, oof_fails):
    rows = [dict(r, sample_id=f"id{i}") for i, r in enumerate(tiny_project.rows)]
    rows[4]["sample_id"] = "id1"
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(
        out, f"{tiny_project.manifest}, line 6: duplicate sample_id 'id1' (first on line 3)"
    )
    assert_not_says(out, "line 3: duplicate")  # the first occurrence is not itself an error


def test_duplicate_default_sample_id(tiny_project, oof_fails):
    # Without a sample_id column the id is the path: one image listed twice is a duplicate.
    rows = [*tiny_project.rows, dict(tiny_project.rows[0])]
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(6), "duplicate sample_id 'images/a0.png' (first on line 2)")


def test_missing_image_file(tiny_project, oof_fails):
    tiny_project.set_cells(2, path="images/gone.png")
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(2), f"image not found: {tiny_project.root / 'images' / 'gone.png'}")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not a png at all", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(None, id="truncated"),
    ],
)
def test_unreadable_image(tiny_project, oof_fails, content):
    bad = tiny_project.root / "images" / "bad.png"
    if content is None:  # a real PNG cut off half way
        content = tiny_project.images[0].read_bytes()[:40]
    bad.write_bytes(content)
    tiny_project.set_cells(3, path="images/bad.png")
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(3), f"unreadable image {bad}")


def test_unknown_label(tiny_project, oof_fails):
    tiny_project.set_cells(1, label="c")
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(1), "label 'c' is not one of the pipeline's classes")


def test_unknown_label_on_test_row(tiny_project, oof_fails):
    # A test row may have no label, but a label it has must be a known class.
    rows = [*tiny_project.rows, {"path": "images/a0.png", "label": "zebra", "sample_id": "t0"}]
    rows = [dict(r, split="train") for r in rows]
    rows[-1]["split"] = "test"
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(6), "label 'zebra' is not one of the pipeline's classes")


@pytest.mark.parametrize("label", ["", "   "])
def test_empty_label_on_train_row(tiny_project, oof_fails, label):
    tiny_project.set_cells(5, label=label)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(5), "empty label on a train row")


@pytest.mark.parametrize("weight", ["heavy", "nan", "1,5"])
def test_non_numeric_weight(tiny_project, oof_fails, weight):
    rows = [dict(r, weight="1") for r in tiny_project.rows]
    rows[0]["weight"] = weight
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(0), f"weight '{weight}' is not a finite number")


def test_negative_weight(tiny_project, oof_fails):
    rows = [dict(r, weight="0.5") for r in tiny_project.rows]
    rows[4]["weight"] = "-0.5"
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(4), "weight '-0.5' is negative")
    assert_not_says(out, "line 2:")  # the other weights are fine


def test_unknown_split(tiny_project, oof_fails):
    rows = [dict(r, split="train") for r in tiny_project.rows]
    rows[3]["split"] = "validation"
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(
        out, line(3), "unknown split 'validation'; use one of train, test, unlabeled, excluded"
    )


def test_class_with_fewer_train_rows_than_folds(tiny_project, oof_fails):
    # Two of the three "b" rows become test rows: "b" keeps one train row for 2 folds.
    rows = [dict(r, split="train") for r in tiny_project.rows]
    rows[4]["split"] = rows[5]["split"] = "test"
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, f"{tiny_project.manifest}: class 'b' has 1 train row(s), fewer than 2 folds")
    assert_not_says(out, "class 'a'")


def test_class_without_train_rows(tiny_project, oof_fails):
    pipeline = tiny_project.pipeline_with(data={"classes": ["a", "b", "c"]})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, "class 'c' has 0 train row(s), fewer than 2 folds")


def test_folds_override_applies_to_class_check(tiny_project, oof_fails):
    # Three rows per class are enough for 2 folds (the file) but not for 4 (--set).
    out = oof_fails(tiny_project.root, tiny_project.pipeline, "--set", "train.folds=4")
    assert_says(
        out,
        "class 'a' has 3 train row(s), fewer than 4 folds",
        "class 'b' has 3 train row(s), fewer than 4 folds",
    )


def test_group_column_missing(tiny_project, oof_fails):
    pipeline = tiny_project.pipeline_with(data={"group": "person"})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, f"{tiny_project.manifest}, line 1: group column 'person' not found")


def test_empty_group_on_train_row(tiny_project, oof_fails):
    rows = [dict(r, person=f"p{i}") for i, r in enumerate(tiny_project.rows)]
    rows[2]["person"] = ""
    tiny_project.rewrite_manifest(rows)
    pipeline = tiny_project.pipeline_with(data={"group": "person"})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, line(2), "empty 'person' on a train row")


def test_manifest_not_found(tiny_project, oof_fails):
    pipeline = write_pipeline(tiny_project.root, manifest="nowhere.csv", name="p3.toml")
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, f"{tiny_project.root / 'nowhere.csv'}: manifest not found")


def test_empty_manifest_file(tiny_project, oof_fails):
    tiny_project.manifest.write_text("")
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, f"{tiny_project.manifest}: not a readable CSV")


# --- every problem at once ----------------------------------------------------------------


def test_two_bad_rows_are_listed_in_one_error(tiny_project, oof_fails):
    rows = [dict(r, weight="1") for r in tiny_project.rows]
    rows[1]["path"] = "images/gone.png"  # an image problem
    rows[4]["weight"] = "lots"  # a value problem
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(1), "image not found", line(4), "weight 'lots' is not a finite number")
    assert out.count("error:") == 1


def test_every_kind_of_problem_is_reported_together(tiny_project, oof_fails):
    (tiny_project.root / "images" / "bad.png").write_bytes(b"garbage")
    rows = [
        dict(r, sample_id=f"id{i}", weight="1", split="train")
        for i, r in enumerate(tiny_project.rows)
    ]
    rows[0]["sample_id"] = "id1"  # duplicate of row 1
    rows[1]["path"] = "images/bad.png"
    rows[2]["label"] = "c"
    rows[3]["weight"] = "-1"
    rows[4]["split"] = "dev"
    rows[5]["path"] = "images/gone.png"
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(
        out,
        line(1) + " duplicate sample_id 'id1' (first on line 2)",
        line(1) + " unreadable image",
        line(2) + " label 'c'",
        line(3) + " weight '-1' is negative",
        line(4) + " unknown split 'dev'",
        line(5) + " image not found",
    )
    assert out.count("error:") == 1


def test_long_lists_are_cut(tiny_project, oof_fails):
    n_bad = MAX_LISTED + 5
    rows = [dict(r) for r in tiny_project.rows]
    rows += [{"path": f"images/gone{i}.png", "label": "a"} for i in range(n_bad)]
    tiny_project.rewrite_manifest(rows)
    out = oof_fails(tiny_project.root, tiny_project.pipeline)
    assert_says(out, line(6), line(6 + MAX_LISTED - 1), "... and 5 more")
    assert_not_says(out, f"line {6 + MAX_LISTED + 2}:")


def test_images_are_checked_before_folds(tiny_project, oof_fails):
    # One group cannot fill two folds, but the missing image is what gets reported:
    # the manifest is checked as a whole before any split is made.
    rows = [dict(r, person="same") for r in tiny_project.rows]
    rows[0]["path"] = "images/gone.png"
    tiny_project.rewrite_manifest(rows)
    pipeline = tiny_project.pipeline_with(data={"group": "person"})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, line(0), "image not found")
    assert_not_says(out, "groups cannot fill")


def test_progress_bar_does_not_hide_the_error(tiny_project, oof_fails):
    tiny_project.set_cells(1, path="images/gone.png")
    out = oof_fails(tiny_project.root, tiny_project.pipeline, quiet=False)
    assert_says(out, line(1), "image not found")


def test_default_run_folder_is_not_made(tiny_project, runner, monkeypatch):
    tiny_project.set_cells(1, label="c")
    monkeypatch.chdir(tiny_project.root)
    before = snapshot(tiny_project.root)
    result = runner.invoke(app, ["oof", "pipeline.toml", "--quiet"])
    assert result.exit_code == 2, result.output
    assert not (tiny_project.root / "runs").exists()
    assert snapshot(tiny_project.root) == before


# --- pipeline problems --------------------------------------------------------------------


def test_missing_pipeline_file(tiny_project, oof_fails):
    missing = tiny_project.root / "nope.toml"
    out = oof_fails(tiny_project.root, missing)
    assert_says(out, f"{missing}: pipeline file not found")


def test_pipeline_not_toml(tiny_project, oof_fails):
    bad = tiny_project.root / "bad.toml"
    bad.write_text("[train]\nepochs = = 3\n")
    out = oof_fails(tiny_project.root, bad)
    assert_says(out, f"{bad}: not valid TOML", "line 2")


def test_unknown_section(tiny_project, oof_fails):
    pipeline = tiny_project.pipeline_with(trainer={"epochs": 3})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, f"{pipeline}: unknown section", "known: data, model, train, augment")


def test_unknown_key(tiny_project, oof_fails):
    pipeline = tiny_project.pipeline_with(train={"epoch": 3})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, f"{pipeline}: unknown key train.epoch; known: folds, epochs,")


@pytest.mark.parametrize(
    ("section", "key", "value", "reason"),
    [
        ("train", "epochs", "three", "train.epochs: expected int, got 'three'"),
        ("train", "epochs", 2.5, "train.epochs: expected int, got 2.5"),
        ("train", "amp", "yes", "train.amp: expected bool, got 'yes'"),
        ("train", "lr", True, "train.lr: expected float, got True"),
        ("data", "classes", "a,b", "data.classes: expected a list, got 'a,b'"),
        ("model", "name", 18, "model.name: expected str, got 18"),
    ],
)
def test_wrong_type(tiny_project, oof_fails, section, key, value, reason):
    pipeline = tiny_project.pipeline_with(**{section: {key: value}})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, f"{pipeline}: {reason}")


def test_bad_choice(tiny_project, oof_fails):
    pipeline = tiny_project.pipeline_with(train={"optimizer": "adam2"})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, f"{pipeline}: train.optimizer = 'adam2'; choose one of adamw, sgd")


def test_bad_values_are_reported_together(tiny_project, oof_fails):
    pipeline = tiny_project.pipeline_with(train={"optimizer": "adam2", "folds": 1, "loss": "hinge"})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(
        out,
        "train.optimizer = 'adam2'",
        "train.loss = 'hinge'; choose one of ce, focal",
        "train.folds must be at least 2",
    )


def test_unknown_key_and_wrong_type_are_reported_together(tiny_project, oof_fails):
    pipeline = tiny_project.pipeline_with(train={"epoch": 3, "batch_size": "big"})
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, "unknown key train.epoch", "train.batch_size: expected int, got 'big'")


def test_manifest_not_set(tiny_project, oof_fails):
    pipeline = tiny_project.root / "p3.toml"
    pipeline.write_text('[model]\nname = "test_resnet"\n')
    out = oof_fails(tiny_project.root, pipeline)
    assert_says(out, f"{pipeline}: data.manifest is not set")


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("train.epochs=x", "train.epochs: expected int, got 'x'"),
        ("train.optimizer=adam2", "train.optimizer = 'adam2'; choose one of adamw, sgd"),
        ("train.epoch=3", "unknown key train.epoch"),
        ("train.batch_size=0", "train.batch_size must be at least 1"),
    ],
)
def test_set_override_is_checked(tiny_project, oof_fails, override, reason):
    out = oof_fails(tiny_project.root, tiny_project.pipeline, "--set", override)
    assert_says(out, f"{tiny_project.pipeline}: {reason}")


@pytest.mark.parametrize("override", ["train.epochs", "epochs=3", "train.=3"])
def test_malformed_set(tiny_project, oof_fails, override):
    out = oof_fails(tiny_project.root, tiny_project.pipeline, "--set", override)
    assert_says(out, f"--set '{override}': expected section.key=value")


def test_set_override_wins_over_the_file(tiny_project, oof_fails):
    # The file's bad value is replaced by a good one, so only the manifest problem remains.
    pipeline = tiny_project.pipeline_with(train={"optimizer": "adam2"})
    tiny_project.set_cells(0, label="c")
    out = oof_fails(tiny_project.root, pipeline, "--set", "train.optimizer=sgd")
    assert_not_says(out, "adam2")
    assert_says(out, line(0), "label 'c' is not one of the pipeline's classes")


# --- error text is shown as written ------------------------------------------------------


@pytest.mark.parametrize("label", ["[bold]c", "[/x]"])
def test_brackets_in_a_message_are_printed(tiny_project, runner, label):
    tiny_project.set_cells(0, label=label)
    argv = ["oof", str(tiny_project.pipeline), "--out", str(tiny_project.root / "r"), "-q"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.exception
    assert_says(result.output, line(0), f"label '{label}' is not one of")


def test_unknown_section_is_named(tiny_project, runner):
    pipeline = tiny_project.pipeline_with(trainer={"epochs": 3})
    result = runner.invoke(app, ["oof", str(pipeline), "--out", str(tiny_project.root / "r")])
    assert result.exit_code == 2
    assert_says(result.output, "unknown section [trainer]")


# --- the error type itself ----------------------------------------------------------------


def test_problem_text():
    assert str(Problem("m.csv", "bad", 3)) == "m.csv, line 3: bad"
    assert str(Problem("m.csv", "bad")) == "m.csv: bad"
    assert str(Problem("m.csv", "bad", 0)) == "m.csv, line 0: bad"


def test_input_error_lists_every_problem():
    e = InputError([Problem("a.csv", "one", 2), Problem("b.toml", "two")])
    assert str(e) == "a.csv, line 2: one\nb.toml: two"
    assert [p.reason for p in e.problems] == ["one", "two"]
    assert isinstance(e, ValueError)


def test_input_error_from_text():
    e = InputError("just a reason")
    assert str(e) == "just a reason"
    assert e.problems == [Problem("", "just a reason")]


def test_input_error_cuts_long_lists():
    e = InputError([Problem("m.csv", f"bad {i}", i + 2) for i in range(MAX_LISTED + 3)])
    lines = str(e).splitlines()
    assert len(lines) == MAX_LISTED + 1
    assert lines[-1] == "... and 3 more"
    assert lines[MAX_LISTED - 1] == f"m.csv, line {MAX_LISTED + 1}: bad {MAX_LISTED - 1}"
    assert len(e.problems) == MAX_LISTED + 3  # the cut is only in the text
