"""``refresh``: a finished run's fold models fine-tuned on a newer manifest version.

One base run (600 digits, 2 folds, 1 epoch) is refreshed onto a version whose wrong
train labels were corrected, one row dropped and one weight halved. The refreshed
fold models start from the base run's, never train on their own fold's rows, and
make an ordinary run folder that ``flag`` accepts; a killed refresh resumes to the
same result; a row the run never split joins a fold, out of fold.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import ingest_digits, invoke, snapshot, write_digits_pipeline

import cleaner.api as cl
from cleaner.core.errors import InputError
from cleaner.core.progress import make_progress
from cleaner.formats.manifest import resolve_paths
from cleaner.formats.refresh_record import read_refresh_record
from cleaner.formats.run_files import RunFiles
from cleaner.training import fold_train
from cleaner.training.refresh import refresh_run

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class FitCall:
    """What one ``fit`` of the refresh was given."""

    desc: str
    paths: list[str]  # its training images
    labels: np.ndarray  # their labels, class indices
    weights: np.ndarray  # their loss weights
    start: dict[str, torch.Tensor]  # the model's weights before the first step
    epochs: int
    lr: float


@dataclass(frozen=True)
class Project:
    root: Path
    manifest: Path  # the base run's version
    v2: Path  # wrong train labels corrected, one row dropped, one weight halved
    run: Path  # the base run
    refreshed: Path
    base_files: dict[str, str]  # the base run's files after the refresh: unchanged
    fits: list[FitCall]


def _v2(manifest: Path) -> tuple[Path, pd.DataFrame]:
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    train = (df["split"] == "train").to_numpy()
    wrong = train & (df["label"] != df["true_label"]).to_numpy()
    assert wrong.sum() > 20
    df.loc[wrong, "label"] = df.loc[wrong, "true_label"]
    train_rows = np.flatnonzero(train & ~wrong)
    df.loc[train_rows[0], "split"] = "excluded"  # a reviewer's drop
    df.loc[train_rows[1], "weight"] = "0.5"  # an unsure row
    v2 = manifest.with_name("digits.v2.csv")
    df.to_csv(v2, index=False)
    return v2, df


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("refresh")
    manifest = ingest_digits(root / "digits.csv", "--noise", "0.1")
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    df["weight"] = "1"
    df.iloc[:600].to_csv(manifest, index=False)
    # 2 folds of 1 epoch, no augmentation: the base run and its refresh stay short.
    train, augment = {"folds": 2, "seed": 7}, {"train": None}
    pipeline = write_digits_pipeline(
        root, manifest, epochs=1, image_size=16, train=train, augment=augment
    )
    run = cl.oof(pipeline, out=root / "run").run_dir
    v2, _ = _v2(manifest)

    fits: list[FitCall] = []
    real_fit = fold_train.fit

    def recording_fit(model: torch.nn.Module, train_ds: Any, *args: Any, **kwargs: Any) -> Any:
        cfg = args[1]
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        fits.append(
            FitCall(
                kwargs["desc"], list(train_ds.paths), train_ds.labels.copy(),
                train_ds.weights.copy(), state, cfg.epochs, cfg.lr,
            )
        )  # fmt: skip
        return real_fit(model, train_ds, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fold_train, "fit", recording_fit)
        refreshed = cl.refresh(run, v2, epochs=1).run_dir
    yield Project(root, manifest, v2, run, refreshed, snapshot(run), fits)


def _folds(run: Path) -> pd.Series:
    folds = pd.read_csv(RunFiles(run).folds, dtype={"sample_id": str, "fold": int})
    return pd.Series(folds["fold"].to_numpy(), index=folds["sample_id"].to_numpy())


def test_fold_models_start_from_the_run_and_never_see_their_own_rows(project: Project) -> None:
    v2 = pd.read_csv(project.v2, dtype=str, keep_default_na=False)
    train = v2[v2["split"] == "train"]
    paths = [str(p) for p in resolve_paths(train, project.v2.parent)]
    path_of = dict(zip(train["sample_id"], paths, strict=True))
    ids = train.set_index("sample_id")
    folds = _folds(project.refreshed)
    # The same split as the base run, less the dropped row: out of fold stays out of fold.
    base = _folds(project.run)
    dropped = v2.loc[v2["split"] == "excluded", "sample_id"].tolist()
    assert set(base.index) - set(folds.index) == set(dropped) and len(dropped) == 1
    assert folds.equals(base.reindex(folds.index))

    assert [f.desc for f in project.fits] == ["refresh fold 1/2", "refresh fold 2/2"]
    for k, call in enumerate(project.fits):
        own = {path_of[s] for s in folds.index[folds.to_numpy() == k]}
        others = folds.index[folds.to_numpy() != k]
        assert not own & set(call.paths)  # never its own fold's rows
        assert call.paths == [path_of[s] for s in others]  # every other fold's row that trains
        # With the new labels and weights.
        assert call.labels.tolist() == ids.loc[others, "label"].astype(int).tolist()
        assert call.weights.tolist() == ids.loc[others, "weight"].astype(float).tolist()
        # Fine-tuned from the base run's fold model, at 0.3 x the pipeline's lr.
        old = torch.load(RunFiles(project.run).fold(k).model, weights_only=True)
        assert old.keys() == call.start.keys()
        assert all(torch.equal(old[name], call.start[name]) for name in old)
        assert (call.epochs, call.lr) == (1, pytest.approx(9e-4))


def test_refreshed_run_has_the_new_labels_and_flag_takes_it(project: Project) -> None:
    refreshed, files = project.refreshed, RunFiles(project.refreshed)
    assert refreshed.parent == project.run.parent and refreshed.name.startswith("run-refresh-")
    v2 = pd.read_csv(project.v2, dtype=str, keep_default_na=False)
    train = v2[v2["split"] == "train"]
    oof = pd.read_csv(files.oof, dtype={"sample_id": str, "label": str})
    assert oof["sample_id"].tolist() == train["sample_id"].tolist()
    assert oof["label"].tolist() == train["label"].tolist()
    assert oof["fold"].tolist() == _folds(refreshed).tolist()
    metrics = json.loads(files.metrics.read_text())
    assert Path(metrics["manifest"]).resolve() == project.v2.resolve()
    # The pipeline's recipe, on the new version; the refresh's own settings in its record.
    config = files.read_config()
    assert config == RunFiles(project.run).read_config().replace("data", manifest=str(project.v2))
    record = read_refresh_record(refreshed)
    assert record is not None and (refreshed / record.source_run).resolve() == project.run.resolve()
    old = pd.read_csv(project.manifest, dtype=str, keep_default_na=False).loc[train.index]
    changed = int((old["label"] != train["label"]).sum())
    assert (record.labels_changed, record.rows_left_out, record.epochs) == (changed, 1, 1)
    assert changed > 20
    # The embeddings are the base run's, for the rows that still train.
    emb, base = np.load(files.embeddings), np.load(RunFiles(project.run).embeddings)
    at = pd.Index(base["sample_id"]).get_indexer(emb["sample_id"])
    assert (at >= 0).all() and np.array_equal(emb["embeddings"], base["embeddings"][at])
    assert set(emb["sample_id"][emb["split"] == "train"]) == set(train["sample_id"])

    invoke("flag", str(refreshed), "--top", "20", "--force")
    queue = pd.read_csv(files.queue.csv, dtype=str, keep_default_na=False)
    assert 0 < len(queue) <= 20 and set(queue["sample_id"]) <= set(train["sample_id"])
    run = cl.load_run(refreshed)
    assert run.embeddings is not None and len(run.sample_ids) == len(train)
    # The base run was only read.
    assert snapshot(project.run) == project.base_files


def test_killed_refresh_resumes_to_the_same_result(project: Project) -> None:
    copy = project.root / "resumed"  # beside the refreshed run: its relative records hold
    shutil.copytree(project.refreshed, copy)
    files = RunFiles(copy)
    # Killed after fold 0: fold 1's outputs and the merge's files never written.
    for path in (files.fold(1).oof, files.fold(1).metrics, files.oof, files.metrics):
        path.unlink()
    with make_progress(quiet=True) as bars:
        result = refresh_run(project.run, project.v2, epochs=1, out=copy, progress=bars)
        assert (result.trained, result.missing) == ([1], [])
        assert files.oof.read_bytes() == RunFiles(project.refreshed).oof.read_bytes()
        assert files.metrics.exists()
        # Finished, the same refresh is returned as it is.
        before = snapshot(copy)
        again = refresh_run(project.run, project.v2, epochs=1, out=copy, progress=bars)
        assert again.trained == [] and snapshot(copy) == before
        # Another refresh into that folder is refused.
        with pytest.raises(InputError, match="different refresh"):
            refresh_run(project.run, project.v2, epochs=2, out=copy, progress=bars)


def test_rows_the_run_never_split_join_a_fold_and_stay_out_of_fold(project: Project) -> None:
    """A round labelled an unlabeled row (or a new one came): it joins a fold, and that
    fold's model, which never trained on it, predicts it."""
    df = pd.read_csv(project.v2, dtype=str, keep_default_na=False)
    shutil.copy(project.root / df["path"].iloc[0], project.root / "images" / "new.png")
    new = df.iloc[[0]].assign(sample_id="digit-new", path="images/new.png", split="train")
    v3 = project.manifest.with_name("digits.v3.csv")
    pd.concat([df, new]).to_csv(v3, index=False)
    refreshed = cl.refresh(project.run, v3, epochs=1, out=project.root / "with-new").run_dir
    folds, base = _folds(refreshed), _folds(project.refreshed)
    assert folds.drop("digit-new").equals(base)  # the old rows keep their folds
    assert folds["digit-new"] in (0, 1)
    oof = pd.read_csv(RunFiles(refreshed).oof, dtype={"sample_id": str})
    row = oof.set_index("sample_id").loc["digit-new"]
    assert int(row["fold"]) == folds["digit-new"]
    assert snapshot(project.run) == project.base_files


def test_a_refresh_never_writes_into_the_run_or_a_strangers_folder(project: Project) -> None:
    other = project.root / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for out, reason in (
        (project.run, "never writes into the run"),
        (project.run / "sub", "never writes into the run"),
        (other, "not a refresh's"),
    ):
        with pytest.raises(InputError, match=reason):
            cl.refresh(project.run, project.v2, epochs=1, out=out)
    assert snapshot(project.run) == project.base_files
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
