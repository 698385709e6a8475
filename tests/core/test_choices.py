"""One registry per set of choices: the config, the CLI's help, the API and the code agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import digits_project, flat
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core import choices
from cleaner.core.config import CHOICES, TrainConfig, build_config, load_config
from cleaner.core.errors import InputError
from cleaner.core.progress import make_progress
from cleaner.final.retrain import RetrainOptions
from cleaner.final.weights import quality_weights, train_weights
from cleaner.formats.prob_table import oof_table, write_table
from cleaner.formats.run_files import RunFiles
from cleaner.ranking.flag import RANK_METHODS, label_quality
from cleaner.training.losses import build_loss
from cleaner.training.pipeline import load_pipeline_data


def test_the_config_validates_against_the_registries() -> None:
    for registry in choices.CONFIG_KEYS:
        assert CHOICES[registry.option] == registry.names
        section, key = registry.option.split(".")
        with pytest.raises(InputError, match=f"{registry.option}.*{registry.names[-1]}"):
            build_config({section: {key: "no-such-choice"}})
    assert choices.RANK_METHODS.names == RANK_METHODS


@pytest.mark.parametrize(
    ("command", "registry"),
    [
        ("flag", choices.RANK_METHODS),
        ("oof", choices.BACKENDS),
        ("retrain", choices.BACKENDS),
        ("retrain", choices.REWEIGHT_MODES),
        ("retrain", choices.RETRAIN_MODES),
    ],
)
def test_the_cli_help_lists_every_choice(command: str, registry: choices.Choices) -> None:
    out = flat(CliRunner().invoke(app, [command, "--help"], terminal_width=400).output)
    for name in registry:
        assert name in out, (command, name)


def test_a_wrong_choice_names_the_option_and_every_choice() -> None:
    with pytest.raises(InputError, match="--reweight 'qualty': choose one of none, quality"):
        RetrainOptions(reweight="qualty").check()
    with pytest.raises(InputError, match="--method 'x': choose one of self_confidence"):
        choices.RANK_METHODS.check("x", "--method")


@pytest.mark.parametrize("name", choices.LOSSES.names)
def test_every_registered_loss_is_built(name: str) -> None:
    loss = build_loss(TrainConfig(loss=name))
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    value = loss(logits, target, torch.ones(4))
    assert value.ndim == 0 and torch.isfinite(value)


@pytest.mark.parametrize("method", choices.RANK_METHODS.names)
def test_quality_reweighting_ranks_by_the_runs_method(tmp_path: Path, method: str) -> None:
    """``--reweight quality`` weighs each row by the label quality its run was ranked by
    (the run's ``flag.method``), not self-confidence always."""
    _, pipeline = digits_project(tmp_path, epochs=1)
    with make_progress(quiet=True) as progress:
        data = load_pipeline_data(load_config(pipeline), progress=progress)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(data.classes)), size=len(data.sample_ids))
    run = tmp_path / "run"
    run.mkdir()
    cfg = data.cfg.replace("flag", method=method)
    RunFiles(run).config.write_text(cfg.to_toml())
    folds = np.zeros(len(data.sample_ids), dtype=int)
    write_table(
        RunFiles(run).oof, oof_table(data.sample_ids, folds, data.labels, probs, data.classes)
    )
    pd.DataFrame({"sample_id": data.sample_ids, "fold": folds}).to_csv(
        RunFiles(run).folds, index=False
    )
    RunFiles(run).metrics.write_text("{}")
    weights, rule = train_weights(data, "quality", [run], force=True)
    stored = pd.read_csv(RunFiles(run).oof)[[f"p:{c}" for c in data.classes]].to_numpy()
    expected = quality_weights(
        np.ones(len(data.sample_ids)),
        label_quality(data.labels, stored, method=method),
        np.zeros(len(data.sample_ids), bool),
    )
    np.testing.assert_allclose(weights, expected)
    assert (method == "self_confidence") == ("probability of the label" in rule)
