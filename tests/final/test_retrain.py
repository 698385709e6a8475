"""``cleaner retrain`` and ``cleaner demo``: weights, submission, the whole loop end to end."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tomli_w
from cleanlab.filter import find_label_issues
from helpers import copy_trained_digits, digits_project, invoke
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.demo import simulate_review
from cleaner.final.retrain import submission_table
from cleaner.final.weights import class_balance_weights, prune_weights, quality_weights
from cleaner.formats.scores import read_ensemble_scores

runner = CliRunner()

# The digits pipeline, cached, with a submission in the format of a competition.
PIPELINE: dict[str, Any] = {
    "data": {"cache": True},
    "submission": {"id_column": "ImageID", "label_column": "ans", "label_format": "index"},
    "augment": {"train": [{"name": "Affine", "rotate": [-10, 10], "p": 0.7}]},
}


# --- the weights and the submission, on hand-made arrays ---------------------------------


def test_quality_weights_by_hand() -> None:
    weights = np.array([1.0, 1.0, 2.0, 1.0, 0.5])
    quality = np.array([0.9, 0.1, 0.5, np.nan, 0.2])
    reviewed = np.array([False, False, False, False, True])
    # unreviewed rows: weight x quality; unscored (NaN) and reviewed rows keep their weight
    np.testing.assert_allclose(
        quality_weights(weights, quality, reviewed), [0.9, 0.1, 1.0, 1.0, 0.5]
    )


def test_prune_weights_by_hand() -> None:
    weights = np.array([1.0, 2.0, 1.0, 0.5])
    is_issue = np.array([True, True, False, True])
    reviewed = np.array([False, False, False, True])
    # flagged and unreviewed rows get 0; a decided row keeps its weight even if flagged
    np.testing.assert_allclose(prune_weights(weights, is_issue, reviewed), [0.0, 0.0, 1.0, 0.5])


def _oof_csv(run: Path, ids: list[str], labels: list[str], probs: list[list[float]]) -> Path:
    run.mkdir(parents=True)
    table = pd.DataFrame({"sample_id": ids, "fold": 0, "label": labels, "pred": labels})
    for k, col in enumerate(np.asarray(probs).T):
        table[f"p:{'ab'[k]}"] = col
    table.to_csv(run / "oof.csv", index=False)
    return run


def test_runs_ensemble_by_sample_id(tmp_path: Path) -> None:
    one = _oof_csv(tmp_path / "one", ["x", "y"], ["a", "b"], [[0.8, 0.2], [0.4, 0.6]])
    # the same rows in another order: matched by sample_id, not by position
    two = _oof_csv(tmp_path / "two", ["y", "x"], ["b", "a"], [[0.2, 0.8], [0.6, 0.4]])
    run = read_ensemble_scores([one, two])
    np.testing.assert_array_equal(run.sample_ids, ["x", "y"])
    np.testing.assert_array_equal(run.labels, [0, 1])
    np.testing.assert_allclose(run.probs, [[0.7, 0.3], [0.3, 0.7]])


@pytest.mark.parametrize(
    ("ids", "labels", "message"),
    [
        (["x", "z"], ["a", "b"], "scores other rows"),
        (["x"], ["a"], "scores other rows"),
        (["x", "y"], ["a", "a"], "scored other labels"),
    ],
)
def test_runs_of_other_versions_are_refused(
    tmp_path: Path, ids: list[str], labels: list[str], message: str
) -> None:
    one = _oof_csv(tmp_path / "one", ["x", "y"], ["a", "b"], [[0.8, 0.2], [0.4, 0.6]])
    other = _oof_csv(tmp_path / "other", ids, labels, [[0.5, 0.5]] * len(ids))
    with pytest.raises(InputError, match=message):
        read_ensemble_scores([one, other])


def test_class_balance_weights_by_hand() -> None:
    labels = np.array([0, 0, 0, 1])
    w = class_balance_weights(np.ones(4), labels, 3)  # class 2 absent: K = 2 present
    np.testing.assert_allclose(w, [4 / 6, 4 / 6, 4 / 6, 2.0])
    assert w[labels == 0].sum() == pytest.approx(w[labels == 1].sum())


@pytest.mark.parametrize(
    ("label_format", "id_column", "label_column", "labels"),
    [("name", "id", "y", ["dog", "cat", "dog"]), ("index", "ImageID", "ans", [1, 0, 1])],
)
def test_submission_table_formats(
    label_format: str, id_column: str, label_column: str, labels: list[Any]
) -> None:
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    table = submission_table(
        ["c", "a", "b"],
        probs,
        ["cat", "dog"],
        id_column=id_column,
        label_column=label_column,
        label_format=label_format,
    )
    assert table.to_dict("list") == {id_column: ["c", "a", "b"], label_column: labels}


# --- end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, trained_digits: Path) -> dict[str, Path]:
    """ingest (10% noise) -> oof (the suite's shared run, copied) -> flag -> simulated
    review, ready to retrain with the oof pipeline and a competition's submission."""
    project = copy_trained_digits(trained_digits, tmp_path_factory.mktemp("loop") / "p")
    root, manifest, run = project.root, project.manifest, project.run
    pipeline = root / "retrain.toml"
    config = tomllib.loads(project.pipeline.read_text())
    pipeline.write_text(tomli_w.dumps({**config, "submission": PIPELINE["submission"]}))
    invoke("flag", str(run), "--top", "150", "-q")
    simulate_review(run / "queue.csv", manifest)
    return {"root": root, "manifest": manifest, "pipeline": pipeline, "oof": run}


@pytest.mark.slow
def test_whole_loop_with_queue_and_quality_weights(loop: dict[str, Path]) -> None:
    root, manifest = loop["root"], loop["manifest"]
    out = invoke(
        "retrain",
        str(loop["pipeline"]),
        "--queue",
        str(loop["oof"] / "queue.csv"),
        "--reweight",
        "quality",
        "--out",
        str(root / "final"),
        "--reviewer",
        "sim",
        "-q",
    )
    assert "noisy labels" in out and "true labels" in out
    final = root / "final"
    v2 = pd.read_csv(root / "digits.v2.csv", dtype=str, keep_default_na=False)
    v1 = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert (v2["label"] != v1["label"]).sum() > 0  # the queue was applied first
    assert (root / "digits.audit.jsonl").exists()

    # the submission: every test row once, in the manifest's order, in the pipeline's format
    sub = pd.read_csv(final / "submission.csv")
    test_ids = v2.loc[v2["split"] == "test", "sample_id"].tolist()
    assert list(sub.columns) == ["ImageID", "ans"]
    assert sub["ImageID"].tolist() == test_ids
    assert sub["ans"].between(0, 9).all()
    pred = pd.read_csv(final / "predictions.csv")
    assert pred["sample_id"].tolist() == test_ids
    probs = pred[[f"p:{i}" for i in range(10)]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == sub["ans"].to_numpy()).all()

    # test rows are never trained on and never cleaned
    weights = pd.read_csv(final / "train_weights.csv", dtype={"sample_id": str})
    assert weights["sample_id"].tolist() == v2.loc[v2["split"] == "train", "sample_id"].tolist()
    assert not set(weights["sample_id"]) & set(test_ids)
    queue = pd.read_csv(loop["oof"] / "queue.csv", dtype=str, keep_default_na=False)
    assert not set(queue["sample_id"]) & set(test_ids)
    test_v1 = v1.loc[v1["split"] == "test"]
    assert test_v1.equals(v2.loc[v2["split"] == "test", list(v1.columns)])

    # --reweight quality: decided rows keep weight 1, the others get p(label) out of fold
    oof = pd.read_csv(loop["oof"] / "oof.csv", dtype={"sample_id": str, "label": str})
    oof = oof.set_index("sample_id")
    w = weights.set_index("sample_id")["weight"]
    decided = set(queue["sample_id"])
    labels = v2.set_index("sample_id")["label"]
    for sid in w.index[:300]:
        if sid in decided:
            assert w[sid] == 1.0
        else:
            assert w[sid] == pytest.approx(oof.at[sid, f"p:{labels[sid]}"], rel=1e-4, abs=1e-6)

    metrics = json.loads((final / "metrics.json").read_text())
    test = metrics["test"]
    assert {"noisy", "cleaned", "true"} <= set(test)
    assert test["cleaned"]["accuracy"] > 0.8
    assert metrics["cv_before"]["accuracy"] == pytest.approx(
        json.loads((loop["oof"] / "metrics.json").read_text())["overall"]["accuracy"]
    )
    report = (final / "report.md").read_text()
    assert "noisy labels" in report and "labels changed" in report

    # a finished retrain folder is not overwritten
    again = runner.invoke(
        app,
        [
            "retrain",
            str(loop["pipeline"]),
            "--manifest",
            str(root / "digits.v2.csv"),
            "--out",
            str(final),
        ],
    )
    assert again.exit_code == 2 and "finished retrain" in again.output


def _prune_undecided(loop: dict[str, Path], name: str, *args: str) -> Path:
    """``retrain --reweight prune`` (1 epoch) on a copy of the first version under another
    name: no audit log, so nothing is decided (whether or not another test applied the
    queue to the original already). Returns the run folder ``root/name``."""
    root = loop["root"]
    fresh = root / f"digits-{name}.csv"
    fresh.write_bytes(loop["manifest"].read_bytes())
    invoke(
        "retrain",
        str(loop["pipeline"]),
        "--manifest",
        str(fresh),
        "--reweight",
        "prune",
        *args,
        "--set",
        "train.epochs=1",
        "--no-baselines",
        "--out",
        str(root / name),
        "-q",
    )
    return root / name


@pytest.mark.slow
def test_prune_drops_the_flagged_rows_nobody_decided(loop: dict[str, Path]) -> None:
    pruned = _prune_undecided(loop, "pruned", "--oof", str(loop["oof"]))
    oof = pd.read_csv(loop["oof"] / "oof.csv", dtype={"sample_id": str, "label": str})
    probs = oof[[f"p:{i}" for i in range(10)]].to_numpy()
    flagged = find_label_issues(oof["label"].astype(int).to_numpy(), probs)
    assert 0 < flagged.sum() < len(oof)
    w = pd.read_csv(pruned / "train_weights.csv", dtype={"sample_id": str})
    w = w.set_index("sample_id")["weight"].loc[oof["sample_id"]].to_numpy()
    # nothing was decided on this version: exactly cleanlab's flagged rows get weight 0
    np.testing.assert_array_equal(w == 0.0, flagged)
    assert (w[~flagged] == 1.0).all()


@pytest.mark.slow
def test_prune_with_two_runs_flags_their_mean(loop: dict[str, Path]) -> None:
    root = loop["root"]
    oof = pd.read_csv(loop["oof"] / "oof.csv", dtype={"sample_id": str, "label": str})
    cols = [f"p:{i}" for i in range(10)]
    # A second "run": another model's opinion (sure of the first run's argmax), rows reversed.
    other = oof.iloc[::-1].copy()
    sure = np.eye(10)[other[cols].to_numpy().argmax(axis=1)]
    other[cols] = 0.9 * sure + 0.01
    (root / "other-run").mkdir(exist_ok=True)
    other.to_csv(root / "other-run" / "oof.csv", index=False)
    pruned = _prune_undecided(
        loop, "pruned-2", "--oof", str(loop["oof"]), "--oof", str(root / "other-run")
    )
    labels = oof["label"].astype(int).to_numpy()
    mean = (oof[cols].to_numpy() + other[cols].to_numpy()[::-1]) / 2
    flagged = find_label_issues(labels, mean)
    assert 0 < flagged.sum() < len(oof)
    w = pd.read_csv(pruned / "train_weights.csv", dtype={"sample_id": str})
    w = w.set_index("sample_id")["weight"].loc[oof["sample_id"]].to_numpy()
    np.testing.assert_array_equal(w == 0.0, flagged)


@pytest.mark.slow
def test_folds_mode_with_prune_scores_only_the_rows_it_trained_on(loop: dict[str, Path]) -> None:
    run = _prune_undecided(loop, "folds-pruned", "--mode", "folds", "--oof", str(loop["oof"]))
    weights = pd.read_csv(run / "train_weights.csv", dtype={"sample_id": str})
    zero = int((weights["weight"] == 0).sum())
    assert 0 < zero < len(weights)
    cv = json.loads((run / "metrics.json").read_text())["cv_cleaned"]
    # the pruned rows taught nothing, so they are not scored either
    assert cv["n"] == len(weights) - zero and cv["rows_weight_0_left_out"] == zero
    oof = pd.read_csv(
        run / "cv" / "oof.csv",
        dtype={"sample_id": str, "label": str, "pred": str},
    ).set_index("sample_id")
    kept = oof.loc[weights.loc[weights["weight"] > 0, "sample_id"]]
    assert cv["accuracy"] == pytest.approx((kept["label"] == kept["pred"]).mean())
    report = (run / "report.md").read_text()
    assert f"{zero} rows of weight 0 left out" in report


@pytest.mark.slow
def test_folds_mode_measures_the_cleaned_labels(loop: dict[str, Path]) -> None:
    root = loop["root"]
    invoke(
        "retrain",
        str(loop["pipeline"]),
        "--manifest",
        str(loop["manifest"]),
        "--mode",
        "folds",
        "--reweight",
        "class",
        "--set",
        "train.epochs=2",
        "--set",
        "train.tta=true",  # the pipeline's TTA predicts the test rows with the mirror too
        "--out",
        str(root / "folds"),
        "-q",
    )
    # the fold models train with the class-balanced weights (data.weights), not the manifest's
    weights_csv = (root / "folds" / "train_weights.csv").resolve()
    assert (
        f'weights = "{weights_csv.as_posix()}"'
        in (root / "folds" / "cv" / "config.toml").read_text()
    )
    weights = pd.read_csv(weights_csv)
    assert weights["weight"].nunique() > 1
    metrics = json.loads((root / "folds" / "metrics.json").read_text())
    assert metrics["cv_cleaned"]["n"] == len(pd.read_csv(root / "folds" / "cv" / "oof.csv"))
    assert metrics["tta"] is True
    sub = pd.read_csv(root / "folds" / "submission.csv")
    assert len(sub) == (pd.read_csv(loop["manifest"])["split"] == "test").sum()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reweight", "loud"], "--reweight 'loud'"),
        (["--mode", "half"], "--mode 'half'"),
        (["--reweight", "quality"], "--reweight quality needs"),
        (["--reweight", "prune"], "--reweight prune needs"),
    ],
)
def test_bad_retrain_options(tmp_path: Path, args: list[str], message: str) -> None:
    _, pipeline = digits_project(tmp_path, epochs=1, **PIPELINE)
    result = runner.invoke(app, ["retrain", str(pipeline), "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_demo_runs_the_loop_and_resumes(tmp_path: Path) -> None:
    # The shipped pipeline, made quicker through --set (the demo's own figures are make demo's).
    args = ("demo", "--out", str(tmp_path / "demo"), "-q")
    quick = ("--set", "train.folds=3", "--set", "train.epochs=3", "--set", "data.image_size=16")
    out = "".join(invoke(*args, *quick).split())
    assert "SIMULATEDreviewer" in out and "queue.html" in out and "report.md" in out
    final = tmp_path / "demo" / "runs" / "final"
    assert (final / "submission.csv").exists() and (final / "report.md").exists()
    # The demo's measured answer: 100 random rows say the labels got better, and by how much.
    assert "didcleaninghelp:100rowsdrawnatrandom" in out
    audit = json.loads((final / "metrics.json").read_text())["audit"]
    assert audit["rows"] == 100 and audit["labels_gain_ci"][0] > 0
    assert (tmp_path / "demo" / "data_manifests" / "digits.v2.csv").exists()
    again = "".join(invoke(*args, *quick).split())
    assert "SIMULATEDreviewer" not in again  # already reviewed and applied: it goes on


@pytest.mark.slow
def test_demo_runs_rounds_and_resumes(tmp_path: Path) -> None:
    args = ("demo", "--out", str(tmp_path / "demo"), "--top", "40", "--rounds", "2", "-q")
    quick = ("--set", "train.folds=2", "--set", "train.epochs=3", "--set", "data.image_size=16")
    out = "".join(invoke(*args, *quick).split())
    assert out.count("SIMULATEDannotator") == 2 and "wronglabelsleftbeforeit" in out
    data, runs = tmp_path / "demo" / "data_manifests", tmp_path / "demo" / "runs"
    assert (data / "digits.v2.csv").exists() and (data / "digits.v3.csv").exists()
    assert not (data / "digits.v4.csv").exists()
    for folder in (runs / "oof" / "round-1", runs / "refresh-1" / "round-2"):
        assert (folder / "queue.csv").exists() and (folder / "round.json").exists()
    assert (runs / "refresh-2" / "oof.csv").exists()
    final = json.loads((runs / "final" / "metrics.json").read_text())
    assert final["manifest"].endswith("digits.v3.csv")
    again = "".join(invoke(*args, *quick).split())
    assert "SIMULATED" not in again  # both rounds applied: it goes on
    assert not (data / "digits.v4.csv").exists()


@pytest.mark.slow
def test_retrain_with_a_queue_resumes_after_a_kill(
    loop: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed during training, the same `retrain --queue` command takes the version it
    applied and trains; it used to answer "already exists" (#17)."""
    import cleaner.final.retrain

    root = loop["root"]
    args = [
        "retrain", str(loop["pipeline"]), "--queue", str(loop["oof"] / "queue.csv"),
        "--out", str(root / "resumed"), "--no-baselines", "--set", "train.epochs=1", "-q",
    ]  # fmt: skip

    def killed(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cleaner.final.retrain, "_fit_full", killed)
    assert CliRunner().invoke(app, args).exit_code != 0
    v2 = root / "digits.v2.csv"
    assert v2.exists()
    log = (root / "digits.audit.jsonl").read_bytes()
    monkeypatch.undo()
    invoke(*args)
    assert (root / "resumed" / "report.md").exists()
    assert (root / "digits.audit.jsonl").read_bytes() == log  # nothing logged twice
    assert not (root / "digits.v3.csv").exists()
