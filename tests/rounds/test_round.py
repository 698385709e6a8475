"""``cleaner round``: the next batch for a budget, the errors left, and the loop of rounds.

One base run (scikit-learn's digits with 10% noise, 2 folds, 3 epochs at 16 px) is
shared by the module.
A round offers ``--budget`` train rows, writes an ordinary queue (answered here by a
stand-in that knows the truth), ``round.json`` and ``round.png``; after ``apply`` and
``refresh`` the next round never offers a decided row. A round killed before its
``queue.json`` leaves nothing, and the rerun writes what an uninterrupted round does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_says, ingest_digits, invoke, write_digits_pipeline
from typer.testing import CliRunner

import cleaner.api as cl
from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.demo import simulate_review
from cleaner.formats.annotations import ANNOTATOR_PREFIX
from cleaner.formats.run_files import QueueFiles
from cleaner.formats.runs import load_run
from cleaner.ranking import queue as queue_module
from cleaner.ranking.crowd import run_label_matrix
from cleaner.rounds.round import next_round, past_rounds

pytestmark = pytest.mark.slow
BUDGET = 40


@dataclass(frozen=True)
class Project:
    root: Path
    manifest: Path
    run: Path


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("round")
    manifest = ingest_digits(root / "digits.csv", "--noise", "0.1")
    pipeline = write_digits_pipeline(
        root, manifest, epochs=3, image_size=16, train={"folds": 2}, augment={"train": None}
    )
    invoke("oof", str(pipeline), "--out", str(root / "run"), "-q")
    return Project(root, manifest, root / "run")


def _queue(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_a_round_offers_its_budget_and_says_what_is_left(project: Project, tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app, ["round", str(project.run), "--budget", str(BUDGET), "--out", str(tmp_path / "r")]
    )
    assert out.exit_code == 0, out.output
    assert_says(out.output, "round 1", "wrong labels left (95% interval)", "cleaner apply")
    files = QueueFiles(tmp_path / "r")
    queue = _queue(files.csv)
    manifest = pd.read_csv(project.manifest, dtype=str, keep_default_na=False)
    train = set(manifest.loc[manifest["split"] == "train", "sample_id"])
    assert len(queue) == BUDGET and set(queue["sample_id"]) <= train
    assert queue["sample_id"].is_unique and (queue["issue"] == "label").all()
    record = json.loads(files.round_record.read_text())
    assert record["round"] == 1 and record["budget"] == BUDGET
    low, high = record["errors_left"]["interval_95"]
    assert low <= record["errors_left"]["estimate"] <= high
    assert files.round_png.read_bytes().startswith(b"\x89PNG")
    assert files.record.exists()  # queue.json: a complete queue that review and apply take


def test_rounds_never_offer_a_decided_row(project: Project, tmp_path: Path) -> None:
    # A copy of the whole project: apply writes a version the other tests must not see.
    shutil.copytree(project.root, tmp_path / "p")
    project = Project(
        tmp_path / "p", tmp_path / "p" / project.manifest.name, tmp_path / "p" / "run"
    )
    first = cl.round(project.run, budget=BUDGET, out=tmp_path / "r1")
    relabeled, _ = simulate_review(first.queue_csv, project.manifest)  # the truth answers
    applied = cl.apply(first.queue_csv, reviewer="kim")
    assert applied.new_manifest is not None and relabeled > 0
    with pytest.raises(InputError, match="cleaner refresh"):  # the old run: the old labels
        cl.round(project.run, budget=BUDGET, out=tmp_path / "stale")
    refreshed = cl.refresh(project.run, applied.new_manifest, epochs=1, out=tmp_path / "run2")
    second = cl.round(refreshed.run_dir, budget=BUDGET, out=tmp_path / "r2")
    decided = set(_queue(first.queue_csv)["sample_id"])
    assert not decided & set(_queue(second.queue_csv)["sample_id"])
    assert second.number == 2 and second.errors.num_reviewed == BUDGET
    assert second.errors.found_wrong == relabeled
    (past,) = past_rounds(Path(applied.new_manifest))
    assert past.labels_spent == BUDGET and past.errors_found == relabeled


def test_a_killed_round_leaves_nothing_and_resumes_to_the_same_queue(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = next_round(project.run, budget=BUDGET, out=tmp_path / "whole")

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as a Ctrl-C between the files and queue.json

    monkeypatch.setattr(queue_module, "write_queue_meta", killed)
    with pytest.raises(KeyboardInterrupt):
        next_round(project.run, budget=BUDGET, out=tmp_path / "again")
    monkeypatch.undo()
    assert not any((tmp_path / "again").iterdir())  # all or none
    again = next_round(project.run, budget=BUDGET, out=tmp_path / "again")
    assert again.queue_csv.read_bytes() == whole.queue_csv.read_bytes()
    assert json.loads(again.record.read_text()) == json.loads(whole.record.read_text())
    with pytest.raises(InputError, match="already exists"):  # a round is never overwritten
        next_round(project.run, budget=BUDGET, out=tmp_path / "again")


def test_several_labels_per_row_are_read_from_the_annotator_columns(project: Project) -> None:
    """A manifest with ``annotator:NAME`` columns gives each train row its labels (NaN where
    an annotator gave none); without them, the label is the one annotation."""
    run = load_run(project.run)
    df = pd.read_csv(project.manifest, dtype=str, keep_default_na=False)
    assert run_label_matrix(df, run)[1] == ["label"]
    train = (df["split"] == "train").to_numpy()
    df[f"{ANNOTATOR_PREFIX}a"] = np.where(train, df["label"], "")
    second = np.where(np.arange(len(df)) % 2 == 0, df["true_label"], "")
    df[f"{ANNOTATOR_PREFIX}b"] = np.where(train, second, "")
    labels, names = run_label_matrix(df, run)
    assert names == ["a", "b"] and labels.shape == (len(run.labels), 2)
    np.testing.assert_array_equal(labels[:, 0], run.labels)
    counts = (~np.isnan(labels)).sum(axis=1)
    has_b = df.set_index("sample_id").loc[run.sample_ids, f"{ANNOTATOR_PREFIX}b"] != ""
    np.testing.assert_array_equal(counts, np.where(has_b, 2, 1))
