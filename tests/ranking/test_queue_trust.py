"""A queue you can trust: one embedding space, leakage, the trust gate, ``flag --probs``.

Digits written as PNG files, with copies planted across folds and across
train/test; a model no better than chance; probabilities made by
scikit-learn outside ``cleaner``.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cleanlab.filter import find_label_issues
from helpers import FLAG_AUGMENT, REPO, flat, ingest_digits, invoke, snapshot, write_digits_pipeline
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.formats.embeddings import Embeddings, read_embeddings, write_embeddings
from cleaner.ingest.arrays import load_digits_arrays

pytestmark = pytest.mark.slow
runner = CliRunner()
MNIST = REPO.parent / "shared" / "data" / "mnist"


def fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output + repr(result.exception)
    return flat(result.output)


def _digits(root: Path, *extra: str) -> pd.DataFrame:
    manifest = ingest_digits(root / "digits.csv", *extra)
    return pd.read_csv(manifest, dtype=str, keep_default_na=False)


def _pipeline(root: Path, manifest: Path, epochs: int = 6, image_size: int = 16) -> Path:
    """The digits pipeline of the flag tests, at ``root/p.toml``."""
    return write_digits_pipeline(
        root,
        manifest,
        epochs=epochs,
        image_size=image_size,
        data={"cache": True},
        augment={"train": FLAG_AUGMENT},
    )


def _copy(src: Path, dest: Path, kind: str) -> None:
    """An exact copy (same bytes), or the same pixels re-encoded (JPEG, quality 95)."""
    if kind == "exact":
        shutil.copyfile(src, dest)
    else:
        buf = io.BytesIO()
        Image.open(src).convert("L").save(buf, "JPEG", quality=95)
        dest.write_bytes(buf.getvalue())


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Digits with 12 train images copied into the test rows and 4 relabelled train copies."""
    root = tmp_path_factory.mktemp("planted")
    df = _digits(root)
    rng = np.random.default_rng(0)
    train = np.flatnonzero((df["split"] == "train").to_numpy())
    src = rng.choice(train, 16, replace=False)
    classes = sorted(set(df.loc[df["split"] == "train", "label"]))
    rows, leaks, conflicts = [], [], []
    for n, i in enumerate(src):
        kind = "exact" if n % 2 == 0 else "reencoded"
        orig = root / df["path"].iat[i]
        dest = orig.with_name(f"copy-{n}" + (".png" if kind == "exact" else ".jpg"))
        _copy(orig, dest, kind)
        row = {**df.iloc[i].to_dict(), "sample_id": f"copy-{n}", "path": f"images/{dest.name}"}
        if n < 12:  # a copy among the test rows: leakage
            row.update(split="test", label="", true_label=df["label"].iat[i])
            leaks.append((df["sample_id"].iat[i], f"copy-{n}"))
        else:  # a train copy with another label: a conflicting pair
            other = classes[(classes.index(df["label"].iat[i]) + 1) % len(classes)]
            row.update(label=other)
            conflicts.append({df["sample_id"].iat[i], f"copy-{n}"})
        rows.append(row)
    manifest = root / "planted.csv"
    pd.concat([df, pd.DataFrame(rows)], ignore_index=True).to_csv(manifest, index=False)
    pipeline = _pipeline(root, manifest)
    invoke("oof", str(pipeline), "--out", str(root / "run"), "--quiet")
    return {"root": root, "run": root / "run", "leaks": leaks, "conflicts": conflicts}


def test_one_space_for_every_row(planted: dict) -> None:
    emb = read_embeddings(planted["run"] / "embeddings.npz")
    assert {"train", "test"} == set(emb.split)
    assert len(emb.sample_ids) == len(set(emb.sample_ids))
    assert "trained on all" in emb.source
    # Each row's 10 nearest train neighbours lie in its own fold about 1/K of the time
    # (fold-local embeddings gave 99.8%).
    assert abs(emb.own_fold_share - 1 / 3) < 0.05, emb.own_fold_share
    folds = pd.read_csv(planted["run"] / "folds.csv", dtype=str).set_index("sample_id")["fold"]
    # The planted conflicting pairs sit in different folds at least once (the space must
    # compare rows across folds to find them).
    assert any(len({folds[a] for a in pair}) == 2 for pair in planted["conflicts"])


def test_queue_names_leakage_and_conflicting_copies(planted: dict) -> None:
    run = planted["run"]
    out = flat(invoke("flag", str(run), "--out", str(run / "q"), "--top", "5", "--quiet"))
    assert "leakage" in out and "onespace" in out
    q = pd.read_csv(run / "q" / "queue.csv", dtype=str, keep_default_na=False)
    leak = q[q["issue"] == "leakage"]
    found = set(zip(leak["sample_id"], leak["partner"], strict=True))
    recall = np.mean([pair in found for pair in planted["leaks"]])
    assert recall >= 0.9, (recall, found)
    # Leakage comes first, is never cut by --top, and is kept or dropped: no suggestion.
    assert (q["issue"].head(len(leak)) == "leakage").all()
    assert len(q) - len(leak) <= 5
    assert (leak["suggested_label"] == "").all()
    assert leak["note"].str.contains("test row").all()
    pairs = pd.read_csv(run / "q" / "duplicates.csv", dtype=str, keep_default_na=False)
    listed = [set(p) for p in zip(pairs["sample_id"], pairs["partner"], strict=True)]
    conflicts = pairs[pairs["finding"] == "near_duplicate"]
    for pair in planted["conflicts"]:
        assert pair in listed
    assert len(conflicts) >= len(planted["conflicts"])
    meta = json.loads((run / "q" / "queue.json").read_text())
    assert meta["flag"]["top"] == 5 and meta["trust"]["accuracy"] > 0.8


def test_every_conflicting_pair_is_a_queue_row(planted: dict) -> None:
    run = planted["run"]
    invoke("flag", str(run), "--out", str(run / "q300"), "--top", "300", "--quiet")
    q = pd.read_csv(run / "q300" / "queue.csv", dtype=str, keep_default_na=False)
    named = [{a, b} for a, b in zip(q["sample_id"], q["partner"], strict=True) if b]
    for pair in planted["conflicts"]:
        assert pair in named, pair
    # A near duplicate row names its partner and offers no class of its own.
    near = q[q["issue"] == "near_duplicate"]
    assert (near["partner"] != "").all() and (near["suggested_label"] == "").all()
    outliers = q[q["issue"] == "outlier"]
    assert (outliers["suggested_label"] == "").all()


def test_flag_set_overrides_flag_keys_only(planted: dict, tmp_path: Path) -> None:
    run = planted["run"]
    invoke("flag", str(run), "--out", str(tmp_path / "q"), "--set", "flag.top=3", "-q")
    q = pd.read_csv(tmp_path / "q" / "queue.csv", dtype=str, keep_default_na=False)
    assert (q["issue"] != "leakage").sum() == 3
    assert "othersettingsbelongto`cleaneroof`" in fails(
        "flag", str(run), "--out", str(tmp_path / "q2"), "--set", "train.epochs=3"
    )
    assert not (tmp_path / "q2").exists()


@pytest.fixture(scope="module")
def weak(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two runs that learned nothing: 320 digits with one epoch, and shuffled labels."""
    root = tmp_path_factory.mktemp("weak")
    df = _digits(root, "--test-fraction", "0")
    train = df.iloc[:320].copy()
    train.to_csv(root / "small.csv", index=False)
    shuffled = df.copy()
    shuffled["label"] = np.random.default_rng(0).permutation(shuffled["label"].to_numpy())
    shuffled.to_csv(root / "shuffled.csv", index=False)
    runs = {}
    for name, epochs in (("small", 1), ("shuffled", 4)):
        pipeline = _pipeline(root, root / f"{name}.csv", epochs=epochs)
        invoke("oof", str(pipeline), "--out", str(root / name), "--quiet")
        runs[name] = root / name
        (root / f"{name}.toml").write_text(pipeline.read_text())
    return {"root": root, **runs}


@pytest.mark.parametrize("name", ["small", "shuffled"])
def test_gate_refuses_a_model_no_better_than_chance(weak: dict, name: str) -> None:
    run = weak[name]
    before = snapshot(weak["root"])
    out = fails("flag", str(run), "--out", str(run / "q"))
    assert "nobetterthanalwaysansweringthemostcommonclass" in out
    assert "--force" in out and "train.epochs" in out
    assert snapshot(weak["root"]) == before  # nothing written
    out = flat(invoke("flag", str(run), "--out", str(run / "q"), "--force", "-q"))
    assert "trustgate" in out and (run / "q" / "queue.csv").exists()


def test_gate_refuses_reweighting_from_a_chance_model(weak: dict) -> None:
    run, root = weak["shuffled"], weak["root"]
    before = snapshot(root)
    for rule in ("prune", "quality"):
        out = fails(
            "retrain",
            str(root / "shuffled.toml"),
            "--reweight",
            rule,
            "--oof",
            str(run),
            "--out",
            str(root / "final"),
        )
        assert "nobetterthanalwaysansweringthemostcommonclass" in out
    assert snapshot(root) == before


@pytest.mark.skipif(not MNIST.is_dir(), reason="needs ../shared/data/mnist")
def test_gate_passes_mnist_with_pair_noise(tmp_path: Path) -> None:
    manifest = tmp_path / "mnist.csv"
    invoke(
        "ingest",
        "mnist",
        str(MNIST),
        str(tmp_path / "images"),
        "--manifest",
        str(manifest),
        "--noise",
        "0.2",
        "--noise-kind",
        "pairs",
        "--test-fraction",
        "0.8",
    )
    pipeline = _pipeline(tmp_path, manifest, epochs=3, image_size=28)
    invoke("oof", str(pipeline), "--out", str(tmp_path / "run"), "-q")
    out = flat(invoke("flag", str(tmp_path / "run"), "--out", str(tmp_path / "q"), "-q"))
    assert "majority-classrate" in out
    trust = json.loads((tmp_path / "q" / "queue.json").read_text())["trust"]
    assert trust["p_value"] < 1e-3 and trust["accuracy"] > 0.5


# --- probabilities made outside cleaner --------------------------------------------------


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Digits with 10% noise, scored by scikit-learn's 5-fold logistic regression."""
    root = tmp_path_factory.mktemp("outside")
    df = _digits(root, "--noise", "0.1", "--seed", "3")
    images, _ = load_digits_arrays()
    number = df["sample_id"].str.replace("digit-", "").astype(int).to_numpy()
    train = (df["split"] == "train").to_numpy()
    x = images[number[train]].reshape(train.sum(), -1) / 255.0
    labels = df.loc[train, "label"].to_numpy()
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    probs = cross_val_predict(LogisticRegression(max_iter=2000), x, y, cv=5, method="predict_proba")
    table = pd.DataFrame({"sample_id": df.loc[train, "sample_id"], "label": labels})
    for k, c in enumerate(classes):
        table[f"p:{c}"] = probs[:, k]
    path = root / "probs.csv"
    table.sample(frac=1.0, random_state=0).to_csv(path, index=False)  # any row order
    wrong = (df.loc[train, "label"] != df.loc[train, "true_label"]).to_numpy()
    return {
        "root": root,
        "probs": path,
        "manifest": root / "digits.csv",
        "x": x,
        "y": y,
        "pred_probs": probs,
        "wrong": wrong,
        "ids": table["sample_id"].to_numpy(),
    }


def flag_probs(outside: dict, out: Path, *extra: str) -> str:
    """``cleaner flag --probs`` on the scikit-learn probabilities; what it printed, flat."""
    args = ["--probs", str(outside["probs"]), "--manifest", str(outside["manifest"])]
    return flat(invoke("flag", *args, "--out", str(out), *extra, "-q"))


def test_flag_probs_ranks_like_cleanlab(outside: dict) -> None:
    root = outside["root"]
    out = flag_probs(outside, root / "q", "--top", "300")
    assert "estimatedwronglabels" in out
    q = pd.read_csv(root / "q" / "queue.csv", dtype=str, keep_default_na=False)
    wrong = pd.Series(outside["wrong"], index=outside["ids"])
    k = int(wrong.sum())
    ours = wrong.loc[q["sample_id"].head(k)].mean()
    # cleanlab's own recipe on the same probabilities: find_label_issues, ranked.
    direct = find_label_issues(
        outside["y"], outside["pred_probs"], return_indices_ranked_by="self_confidence"
    )[:k]
    theirs = outside["wrong"][direct].mean()
    assert ours >= theirs - 1e-9 and ours > 0.5, (ours, theirs)
    meta = json.loads((root / "q" / "queue.json").read_text())
    assert meta["runs"] == [] and (root / "q" / meta["probs"]).resolve() == outside["probs"]
    assert len(meta["probs_sha256"]) == 64


def test_probs_queue_round_trip_through_apply_and_retrain(outside: dict) -> None:
    root = outside["root"]
    flag_probs(outside, root / "rt", "--top", "40")
    q = pd.read_csv(root / "rt" / "queue.csv", dtype=str, keep_default_na=False)
    q["decision"] = np.where(q.index < 30, "relabel", "keep")
    q.to_csv(root / "rt" / "queue.csv", index=False)
    invoke("apply", str(root / "rt" / "queue.csv"))
    v2 = root / "digits.v2.csv"
    assert v2.exists()
    pipeline = _pipeline(root, v2, epochs=1)
    invoke(
        "retrain",
        str(pipeline),
        "--reweight",
        "prune",
        "--probs",
        str(outside["probs"]),
        "--out",
        str(root / "final"),
        "--no-baselines",
        "-q",
    )
    weights = pd.read_csv(root / "final" / "train_weights.csv")
    assert (weights["weight"] == 0).any() and (root / "final" / "submission.csv").exists()


def test_flag_probs_with_embeddings_finds_duplicates(outside: dict) -> None:
    root = outside["root"]
    df = pd.read_csv(outside["manifest"], dtype=str, keep_default_na=False)
    ids = outside["ids"].copy()
    x = outside["x"].astype(np.float32).copy()
    x[1] = x[0]  # two train rows with the same pixels
    emb = Embeddings(ids, np.full(len(ids), ""), np.full(len(ids), ""), x, "pixels", np.nan)
    write_embeddings(root / "emb.npz", emb)
    flag_probs(outside, root / "qe", "--embeddings", str(root / "emb.npz"))
    pairs = pd.read_csv(root / "qe" / "duplicates.csv", dtype=str, keep_default_na=False)
    assert {ids[0], ids[1]} in [
        set(p) for p in zip(pairs["sample_id"], pairs["partner"], strict=True)
    ]
    assert len(df) > len(ids)  # test rows have no embeddings here: nothing to compare


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda t: t.iloc[1:], "havenoprobabilities"),
        (lambda t: pd.concat([t, t.iloc[:1]]), "appearstwice"),
        (lambda t: t.assign(label=np.roll(t["label"].to_numpy(), 1)), "isnotthemanifest's"),
        (lambda t: t.rename(columns={"label": "given"}), "expectedcolumnssample_id"),
        (lambda t: t.assign(**{t.columns[2]: np.nan}), "NaN"),
    ],
)
def test_bad_probability_files_are_refused(outside: dict, tmp_path: Path, edit, reason) -> None:
    table = pd.read_csv(outside["probs"], dtype={"sample_id": str, "label": str})
    bad = tmp_path / "bad.csv"
    edit(table).to_csv(bad, index=False)
    out = fails(
        "flag",
        "--probs",
        str(bad),
        "--manifest",
        str(outside["manifest"]),
        "--out",
        str(tmp_path / "q"),
    )
    assert reason in out and str(bad) in out.replace(" ", "")
    assert not (tmp_path / "q").exists()
    assert "--manifest" in fails("flag", "--probs", str(bad), "--out", str(tmp_path / "q"))
