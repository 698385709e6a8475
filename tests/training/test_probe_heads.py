"""``train.mode = "probe"``: frozen backbone features, a logistic-regression head per fold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import assert_says, digits_project, invoke, snapshot
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.config import ModelConfig, load_config
from cleaner.core.progress import make_progress
from cleaner.formats.embeddings import read_embeddings
from cleaner.formats.run_files import RunFiles
from cleaner.training.models import create_model
from cleaner.training.pipeline import load_fold_model, load_pipeline_data, predict_outputs
from cleaner.training.probe import fit_head, head_probs

CLASSES = [str(i) for i in range(10)]


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Digits, a local weights file (a test_resnet's own initialisation, standing in
    for a pretrained backbone), and an oof run in probe mode. Returns (pipeline, run)."""
    root = tmp_path_factory.mktemp("probe")
    torch.manual_seed(0)
    weights = root / "backbone.pt"
    torch.save(create_model(ModelConfig(name="test_resnet", in_chans=1), 10).state_dict(), weights)
    _, pipeline = digits_project(
        root,
        "--noise",
        "0.1",
        epochs=1,
        data={"classes": CLASSES},
        model={"weights": str(weights)},
        train={"mode": "probe", "probe_c": 0.5},
    )
    invoke("oof", str(pipeline), "--out", str(root / "run"), "--quiet")
    return pipeline, root / "run"


def test_probe_oof_equals_a_direct_sklearn_kfold(probe_run: tuple[Path, Path]) -> None:
    _, run = probe_run
    oof = pd.read_csv(run / "oof.csv")
    folds = pd.read_csv(run / "folds.csv")
    emb = read_embeddings(run / "embeddings.npz")
    train = emb.split == "train"
    x = emb.embeddings[train]
    ids = emb.sample_ids[train]
    assert list(oof["sample_id"]) == list(ids) == list(folds["sample_id"])
    labels = oof["label"].astype(str).map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    probs = oof[[f"p:{c}" for c in CLASSES]].to_numpy()
    fold = folds["fold"].to_numpy()
    for k in np.unique(fold):
        direct = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
        direct.fit(x[fold != k], labels[fold != k])
        np.testing.assert_allclose(probs[fold == k], direct.predict_proba(x[fold == k]), atol=2e-4)
    assert (oof["fold"] == fold).all()


def test_a_probe_fold_model_is_the_backbone_with_its_head(probe_run: tuple[Path, Path]) -> None:
    """fold-K/model.pt alone reproduces the fold's probabilities: retrain --mode folds and
    anything else that loads a fold model see the head."""
    pipeline, run = probe_run
    cfg = load_config(pipeline)
    with make_progress(quiet=True) as progress:
        data = load_pipeline_data(cfg, progress=progress)
    oof = pd.read_csv(run / "oof.csv")
    own = (oof["fold"] == 1).to_numpy()
    model, norm = load_fold_model(data.cfg, RunFiles(run).fold(1))
    probs, _ = predict_outputs(model, norm, data.cfg, data.df, data.root, data.train_rows[own])
    expected = oof.loc[own, [f"p:{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs, expected, atol=2e-4)


def test_fit_head_covers_absent_and_two_classes() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    labels = np.where(x[:, 0] > 0, 2, 0)  # classes 0 and 2 of 3; class 1 has no row
    w, b = fit_head(x, labels, np.ones(60), n_classes=3, c=1.0)
    p = head_probs(x, w, b)
    direct = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x, labels)
    np.testing.assert_allclose(p[:, [0, 2]], direct.predict_proba(x), atol=1e-5)
    assert p[:, 1].max() < 1e-6
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_probe_without_pretrained_weights_is_refused(tmp_path: Path) -> None:
    _, pipeline = digits_project(tmp_path, epochs=1, train={"mode": "probe"})
    before = snapshot(tmp_path)
    result = CliRunner().invoke(app, ["oof", str(pipeline), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert_says(
        result.output,
        "train.mode = 'probe' fits heads on a pretrained backbone's features",
        "model.weights = FILE",
    )
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()
