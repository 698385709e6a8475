"""Every hint names a command that works, and no library's internal text reaches the user."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_says, write_png
from test_apply import apply_ok, apply_refused, make_project
from typer.testing import CliRunner

from cleaner.cli import app

runner = CliRunner()


def refused(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    return result.output


def test_a_queue_folder_means_the_queue_csv_in_it(tmp_path: Path) -> None:
    """`flag` takes a run folder; apply, review and the rest take it too."""
    p = make_project(tmp_path)
    out = apply_ok(p.queue.parent)
    assert_says(out, f"applied {p.queue.parent}")
    assert p.version(2).exists()


@pytest.mark.parametrize("command", [["apply"], ["review", "--no-browser"]])
def test_a_folder_without_a_queue_and_the_gallery_say_what_to_give(
    tmp_path: Path, command: list[str]
) -> None:
    p = make_project(tmp_path)
    empty = tmp_path / "runs" / "r1"
    empty.mkdir(parents=True)
    assert_says(refused(*command, str(empty)), f"a folder without queue.csv: make its queue "
                f"with `cleaner flag {empty}`")  # fmt: skip
    gallery = p.queue.with_name("queue.html")
    gallery.write_text("<html></html>")
    assert_says(refused(*command, str(gallery)),
                f"the queue's gallery page, not the queue: give {p.queue}")  # fmt: skip


def test_a_queue_the_csv_reader_cannot_split_is_named_in_our_words(tmp_path: Path) -> None:
    p = make_project(tmp_path)
    lines = p.queue.read_text(encoding="utf-8").splitlines()
    lines[2] += ",one,cell,too,many"
    p.queue.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = apply_refused(tmp_path, p.queue)
    assert_says(out, "line 3 has", "cells, more than the header")
    assert "tokenizing" not in out and "C error" not in out


def test_flag_on_a_retrain_folder_says_what_it_reads(tmp_path: Path) -> None:
    final = tmp_path / "runs" / "final"
    final.mkdir(parents=True)
    (final / "train_weights.csv").write_text("sample_id,weight\n")
    out = refused("flag", str(final))
    assert_says(out, "a retrain folder", "cleaner oof PIPELINE --set data.manifest=NEWEST_VERSION")
    assert "the run is not finished" not in out


def test_init_on_a_folder_ingested_before_names_the_commands_that_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for c in ("cat", "dog"):
        for i in range(3):
            write_png(tmp_path / "photos" / c / f"{i}.png", value=30 * i, size=(32, 32))
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["ingest", "folder", "photos", "-q"]).exit_code == 0
    out = refused("init", "photos", "--cpu")
    manifest = Path("data_manifests") / "photos.csv"
    assert_says(out, f"start from it with `cleaner init {manifest}`")
    assert "--manifest to write" not in out
    assert not Path("pipelines").exists()
    # The command it names works.
    assert runner.invoke(app, ["init", str(manifest), "--cpu"]).exit_code == 0
    assert (Path("pipelines") / "photos.toml").exists()
