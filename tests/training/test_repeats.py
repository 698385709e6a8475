"""``oof --repeats R``: R runs with other seeds in one ensemble folder, read as one.

The folder's members equal the runs ``oof`` makes separately with those seeds,
``flag`` on the folder equals ``flag`` on the members given separately, and an
interrupted ensemble resumes: finished members are kept, the rest is trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import ingest_digits, invoke, write_digits_pipeline
from typer.testing import CliRunner

from cleaner.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repeats")
    manifest = ingest_digits(root / "digits.csv", "--noise", "0.1")
    # 600 rows keep four trainings short; the first rows of every class are in.
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    df.iloc[:600].to_csv(manifest, index=False)
    # The digits pipeline in 2 folds of 1 epoch, seed 7, the default lr, no augmentation.
    train = {"folds": 2, "seed": 7, "lr": None}
    augment = {"train": None}
    write_digits_pipeline(root, manifest, epochs=1, image_size=16, train=train, augment=augment)
    return root


def test_repeats_equal_separate_runs_and_resume(project: Path) -> None:
    pipeline, ensemble = str(project / "p.toml"), project / "ensemble"
    out = invoke("oof", pipeline, "--repeats", "2", "--out", str(ensemble), "-q")
    assert "ensemble" in out and "repeat-1" in out
    record = json.loads((ensemble / "ensemble.json").read_text())
    assert record == {"members": ["repeat-0", "repeat-1"], "seeds": [7, 8]}
    invoke("oof", pipeline, "--out", str(project / "seed7"), "-q")
    invoke("oof", pipeline, "--set", "train.seed=8", "--out", str(project / "seed8"), "-q")
    for member, alone in (("repeat-0", "seed7"), ("repeat-1", "seed8")):
        assert (ensemble / member / "oof.csv").read_bytes() == (
            project / alone / "oof.csv"
        ).read_bytes()
        assert (ensemble / member / "config.toml").read_text() == (
            project / alone / "config.toml"
        ).read_text()
    # Only the first member embeds: the queue takes the first run's embeddings.
    assert (ensemble / "repeat-0" / "embeddings.npz").exists()
    assert not (ensemble / "repeat-1" / "embeddings.npz").exists()

    # flag on the folder = flag on its members given separately; the queue sits in it.
    # (--force: one epoch on 600 digits is a weak model; the queues must still agree.)
    invoke("flag", str(ensemble), "--top", "30", "--force")
    invoke("flag", str(project / "seed7"), str(project / "seed8"), "--top", "30", "--force")
    assert (ensemble / "queue.csv").read_bytes() == (project / "seed7" / "queue.csv").read_bytes()
    meta = json.loads((ensemble / "queue.json").read_text())
    assert [Path(r).name for r in meta["runs"]] == ["repeat-0", "repeat-1"]

    # Interrupted in the second member: the first is kept, the second is trained again.
    kept = (ensemble / "repeat-0" / "oof.csv").stat().st_mtime_ns
    before = (ensemble / "repeat-1" / "oof.csv").read_bytes()
    for name in ("oof.csv", "metrics.json"):
        (ensemble / "repeat-1" / name).unlink()
    for name in ("oof.npz", "model.pt", "metrics.json"):
        (ensemble / "repeat-1" / "fold-1" / name).unlink()
    invoke("oof", pipeline, "--repeats", "2", "--out", str(ensemble), "-q")
    assert (ensemble / "repeat-0" / "oof.csv").stat().st_mtime_ns == kept
    assert (ensemble / "repeat-1" / "oof.csv").read_bytes() == before


def test_retrain_reads_an_ensemble_folder_as_its_runs(project: Path) -> None:
    ensemble = project / "ensemble"
    if not (ensemble / "repeat-1" / "oof.csv").exists():
        invoke("oof", str(project / "p.toml"), "--repeats", "2", "--out", str(ensemble), "-q")
    runs = [str(ensemble / "repeat-0"), str(ensemble / "repeat-1")]
    for out, given in (("whole", [str(ensemble)]), ("members", runs)):
        args = [a for r in given for a in ("--oof", r)]
        invoke("retrain", str(project / "p.toml"), "--reweight", "quality", *args,
            "--force", "--out", str(project / out), "-q")  # fmt: skip
    assert (project / "whole" / "train_weights.csv").read_bytes() == (
        project / "members" / "train_weights.csv"
    ).read_bytes()
    metrics = json.loads((project / "whole" / "metrics.json").read_text())
    assert Path(metrics["cv_before_run"]).name == "repeat-0"


def test_repeats_refuse_a_fold_and_a_changed_count(project: Path) -> None:
    pipeline = str(project / "p.toml")
    result = runner.invoke(app, ["oof", pipeline, "--repeats", "2", "--fold", "0"])
    assert result.exit_code != 0 and "--fold trains one fold of one run" in result.output
    result = runner.invoke(app, ["oof", pipeline, "--repeats", "0", "--out", str(project / "z")])
    assert result.exit_code != 0 and "at least 1" in result.output
    ensemble = project / "ensemble"
    if (ensemble / "ensemble.json").exists():
        result = runner.invoke(app, ["oof", pipeline, "--repeats", "3", "--out", str(ensemble)])
        assert result.exit_code != 0 and "different number of repeats" in result.output
    result = runner.invoke(app, ["flag", str(project / "ensemble" / "nope")])
    assert result.exit_code != 0
