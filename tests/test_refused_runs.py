"""A refused command leaves no run folder behind that would refuse the corrected one.

Unknown model or augmentation names, bad augmentation arguments and a
normalisation that cannot apply are refused before the run folder is made; a
folder that holds only what a refused start wrote is set up afresh.
"""

from __future__ import annotations

import pytest
from conftest import TinyProject, flat, invoke
from typer.testing import CliRunner

from cleaner.cli import app


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    return flat(result.output)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("model.name=no_such_net", "timmhasnomodelnamed'no_such_net'"),
        ('augment.train=[{name="NoSuchTransform"}]', "notransformnamed'NoSuchTransform'"),
        ('augment.train=[{name="HorizontalFlip", p="often"}]', "HorizontalFlip"),
        ("data.std=[0]", "data.stdvaluesmustbepositive"),
        ("data.mean=[0.5,0.5,0.5]", "model.in_chansis1"),
    ],
)
def test_refused_before_the_run_folder_is_made(
    tiny_project: TinyProject, override: str, reason: str
) -> None:
    run = tiny_project.root / "run"
    extra = ["--set", "data.std=[0.5,0.5,0.5]"] if "mean=[0.5,0.5,0.5]" in override else []
    out = _refused("oof", str(tiny_project.pipeline), "--out", str(run), "--set", override, *extra)
    assert reason in out
    assert not run.exists() or not any(run.iterdir())
    # The corrected command runs in the same folder.
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "-q")
    assert (run / "oof.csv").exists()


def test_a_refused_start_left_behind_is_set_up_afresh(tiny_project: TinyProject) -> None:
    """Start files from another config, and nothing trained: the folder is reused."""
    run = tiny_project.root / "run"
    run.mkdir()
    (run / "config.toml").write_text("# a config a refused command left\n")
    (run / "manifest.sha256").write_text("0" * 64 + "  elsewhere.csv\n")
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "-q")
    assert (run / "oof.csv").exists()
    # A folder with a trained fold is a real run: another config is still refused.
    out = _refused("oof", str(tiny_project.pipeline), "--out", str(run), "--set", "train.epochs=2")
    assert "differentconfig" in out
