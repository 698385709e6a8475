"""End to end: ``ingest digits -> oof`` through the CLI, determinism, resume, --fold merge."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import ingest_digits, invoke, write_digits_pipeline
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.formats.embeddings import read_embeddings

pytestmark = pytest.mark.slow
runner = CliRunner()
CLASSES = [str(i) for i in range(10)]


def _embeddings(run: Path) -> np.ndarray:
    return read_embeddings(run / "embeddings.npz").embeddings


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits with 10% noise, a clean test split, and a group column (writers of 4 images)."""
    root = tmp_path_factory.mktemp("digits")
    raw = ingest_digits(root / "raw.csv", "--noise", "0.1", "--seed", "0")
    df = pd.read_csv(raw, dtype=str, keep_default_na=False)
    df["group"] = [f"g{i // 4}" for i in range(len(df))]
    df.to_csv(root / "digits.csv", index=False)
    return root / "digits.csv"


def write_pipeline(path: Path, manifest: Path, epochs: int = 4) -> Path:
    """The digits pipeline at ``path``, its classes listed and the writers as groups."""
    data = {"classes": CLASSES, "group": "group"}
    return write_digits_pipeline(path.parent, manifest, epochs=epochs, name=path.name, data=data)


@pytest.fixture(scope="module")
def baseline(digits: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("baseline")
    pipeline = write_pipeline(root / "p.toml", digits)
    out = invoke("oof", str(pipeline), "--out", str(root / "run"))
    assert "out-of-fold metrics" in out
    return root / "run"


def test_oof_table_is_complete_and_out_of_fold(digits: Path, baseline: Path) -> None:
    manifest = pd.read_csv(digits, dtype=str, keep_default_na=False)
    train = manifest[manifest["split"] == "train"]
    oof = pd.read_csv(baseline / "oof.csv", dtype={"label": str, "pred": str})
    # every train row exactly once, in manifest order; no test row
    assert oof["sample_id"].tolist() == train["sample_id"].tolist()
    assert not set(oof["sample_id"]) & set(manifest.loc[manifest["split"] == "test", "sample_id"])
    assert list(oof.columns) == ["sample_id", "fold", "label", "pred"] + [f"p:{c}" for c in CLASSES]
    assert oof["label"].tolist() == train["label"].tolist()
    probs = oof[[f"p:{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()
    assert (oof["pred"] == np.array(CLASSES)[probs.argmax(1)]).all()
    # no group is split across folds, and folds.csv agrees with oof.csv
    groups = train.set_index("sample_id").loc[oof["sample_id"], "group"].to_numpy()
    assert (pd.Series(oof["fold"].to_numpy()).groupby(groups).nunique() == 1).all()
    folds = pd.read_csv(baseline / "folds.csv")
    assert folds["fold"].tolist() == oof["fold"].tolist()
    assert sorted(oof["fold"].unique()) == [0, 1, 2]
    # one model embedded every row: the train rows in oof.csv's order, then the others
    e = read_embeddings(baseline / "embeddings.npz")
    emb = e.embeddings
    assert e.sample_ids[e.split == "train"].tolist() == oof["sample_id"].tolist()
    assert emb.shape[0] >= len(oof) and emb.ndim == 2 and np.isfinite(emb).all()
    # a model that learned something: well above chance against the noisy labels
    metrics = json.loads((baseline / "metrics.json").read_text())
    assert metrics["overall"]["accuracy"] > 0.5
    assert "StratifiedGroupKFold" in metrics["split"]
    assert [m["fold"] for m in metrics["folds"]] == [0, 1, 2]
    assert sum(m["n"] for m in metrics["folds"]) == len(oof)
    assert (baseline / "config.toml").read_text().count("classes = [") == 1
    for k in range(3):
        assert (baseline / f"fold-{k}" / "model.pt").exists()
        assert not (baseline / f"fold-{k}" / "checkpoint.pt").exists()


def test_same_seed_same_oof(digits: Path, baseline: Path, tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.toml", digits)
    invoke("oof", str(pipeline), "--out", str(tmp_path / "again"), "--quiet")
    assert (tmp_path / "again" / "oof.csv").read_bytes() == (baseline / "oof.csv").read_bytes()
    np.testing.assert_array_equal(_embeddings(tmp_path / "again"), _embeddings(baseline))


def test_other_seed_other_folds(digits: Path, baseline: Path, tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.toml", digits)
    invoke(
        "oof",
        str(pipeline),
        "--set",
        "train.seed=7",
        "--set",
        "train.epochs=1",
        "--out",
        str(tmp_path / "seed7"),
        "--quiet",
    )
    a = pd.read_csv(tmp_path / "seed7" / "folds.csv")["fold"]
    b = pd.read_csv(baseline / "folds.csv")["fold"]
    assert (a != b).any()


def test_folds_run_separately_then_merge(digits: Path, baseline: Path, tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.toml", digits)
    run = tmp_path / "run"
    out = invoke("oof", str(pipeline), "--out", str(run), "--fold", "2", "--quiet")
    assert "still to train" in out and not (run / "oof.csv").exists()
    invoke("oof", str(pipeline), "--out", str(run), "--fold", "0", "--quiet")
    assert not (run / "oof.csv").exists()
    mtime = (run / "fold-0" / "oof.npz").stat().st_mtime_ns
    invoke("oof", str(pipeline), "--out", str(run), "--quiet")  # trains fold 1 only, merges
    assert (run / "fold-0" / "oof.npz").stat().st_mtime_ns == mtime
    assert (run / "oof.csv").read_bytes() == (baseline / "oof.csv").read_bytes()


def test_killed_run_resumes_to_the_same_result(digits: Path, tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.toml", digits, epochs=3)
    straight = tmp_path / "straight"
    invoke("oof", str(pipeline), "--out", str(straight), "--quiet", "--set", "train.folds=2")

    run = tmp_path / "killed"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [
        sys.executable,
        "-m",
        "cleaner",
        "oof",
        str(pipeline),
        "--out",
        str(run),
        "--quiet",
        "--set",
        "train.folds=2",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "fold-1" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # killed in the middle of the second fold: fold 0 done, fold 1 checkpointed, no merge
    assert (run / "fold-0" / "oof.npz").exists()
    assert not (run / "fold-1" / "oof.npz").exists()
    assert not (run / "oof.csv").exists()

    out = invoke("oof", str(pipeline), "--out", str(run), "--set", "train.folds=2")
    assert "resuming after epoch" in out
    assert (run / "oof.csv").read_bytes() == (straight / "oof.csv").read_bytes()
    np.testing.assert_array_equal(_embeddings(run), _embeddings(straight))


def test_run_folder_of_another_config_is_refused(
    digits: Path, baseline: Path, tmp_path: Path
) -> None:
    pipeline = write_pipeline(tmp_path / "p.toml", digits)
    before = sorted(p.name for p in baseline.rglob("*"))
    result = runner.invoke(
        app, ["oof", str(pipeline), "--out", str(baseline), "--set", "train.lr=0.1"]
    )
    assert result.exit_code == 2
    assert "different config" in result.output and "config.toml" in result.output
    assert sorted(p.name for p in baseline.rglob("*")) == before


def test_bad_fold_number(digits: Path, tmp_path: Path) -> None:
    pipeline = write_pipeline(tmp_path / "p.toml", digits)
    result = runner.invoke(app, ["oof", str(pipeline), "--out", str(tmp_path / "r"), "--fold", "3"])
    assert result.exit_code == 2 and "--fold 3" in result.output
    assert not (tmp_path / "r").exists()
