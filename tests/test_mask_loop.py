"""The competition loop on the synthetic mask layout: people as groups, attribute flags."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers import invoke

from cleaner.ingest.mask import decompose

pytestmark = pytest.mark.slow
PIPELINE = Path(__file__).resolve().parent.parent / "pipelines" / "mask.toml"
# The GPU pipeline, shrunk for the CPU: a tiny model at 32 px, no face crop.
CPU = [
    "--set",
    "model.name=test_resnet",
    "--set",
    "model.pretrained=false",
    "--set",
    "data.image_size=32",
    "--set",
    "train.epochs=12",
    "--set",
    "train.folds=4",
    "--set",
    "train.workers=0",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.lr=3e-3",
    "--set",
    'augment.train=[{name="Affine", translate_percent=[-0.05,0.05], p=0.5}]',
    "--set",
    "augment.eval=[]",
    "--set",
    "augment.resize=true",
]


def test_synthetic_mask_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    invoke("synth", "mask", "synth", "--people", "100", "--size", "32", "--seed", "2")
    invoke("ingest", "mask", "synth", "--manifest", "data_manifests/mask.csv")
    invoke("oof", str(PIPELINE), *CPU, "--out", "runs/m", "-q")
    manifest = pd.read_csv("data_manifests/mask.csv", dtype=str, keep_default_na=False)
    folds = pd.read_csv("runs/m/folds.csv", dtype=str)
    person = manifest.set_index("sample_id").loc[folds["sample_id"], "group"].to_numpy()
    assert (folds.groupby(person)["fold"].nunique() == 1).all()  # no person split

    invoke("flag", "runs/m", "--top", "150", "-q")
    q = pd.read_csv("runs/m/queue.csv", dtype=str, keep_default_na=False)
    truth = pd.read_csv("synth/truth.csv", dtype=str, keep_default_na=False)
    flipped = set(truth.loc[truth["noise"] == "gender_flip", "person"])
    groups = q[q["issue"] == "group_inconsistent"].set_index("group")
    found = flipped & set(groups.index)
    assert len(found) >= 0.6 * len(flipped), (sorted(flipped), groups)
    for p in found:
        assert groups.at[p, "suggested_label"].startswith("gender=")
        # a person is queued once, as the group row, not again photo by photo
        assert not ((q["group"] == p) & (q["issue"] == "gender")).any()
    key = manifest["path"].str.replace(r"^.*?synth/", "", regex=True)
    sample_of = dict(zip(key, manifest["sample_id"], strict=True))
    swaps = truth[truth["noise"] == "mask_swap"]
    rows = q[q["issue"] == "mask"].set_index("sample_id")
    hits = [sample_of[p] for p in swaps["path"] if sample_of[p] in rows.index]
    assert len(hits) >= 0.6 * len(swaps)
    true_label = dict(zip(swaps["path"].map(sample_of), swaps["true_label"], strict=True))
    right = 0
    for sid in hits:  # only the mask changes in the suggestion, mostly to the truth
        (m0, g0, a0) = decompose(int(rows.at[sid, "given_label"]))
        (m1, g1, a1) = decompose(int(rows.at[sid, "suggested_label"]))
        assert (g0, a0) == (g1, a1) and m0 != m1
        right += rows.at[sid, "suggested_label"] == true_label[sid]
    assert right >= 0.6 * len(hits)

    # accept the group rows: every photo of the person changes gender, nothing else
    q.loc[q["issue"] == "group_inconsistent", "decision"] = "relabel"
    q.to_csv("runs/m/queue.csv", index=False)
    invoke("apply", "runs/m/queue.csv", "--reviewer", "test")
    v2 = pd.read_csv("data_manifests/mask.v2.csv", dtype=str, keep_default_na=False)
    changed = v2["label"] != manifest["label"]
    assert set(v2.loc[changed, "group"]) == set(groups.index[groups["suggested_label"] != ""])
    for old, new in zip(manifest.loc[changed, "label"], v2.loc[changed, "label"], strict=True):
        (m0, g0, a0), (m1, g1, a1) = decompose(int(old)), decompose(int(new))
        assert (m0, a0) == (m1, a1) and g0 != g1
    assert (v2.loc[changed, "gender"] != manifest.loc[changed, "gender"]).all()

    invoke(
        "retrain",
        str(PIPELINE),
        *CPU,
        "--set",
        "train.epochs=2",
        "--manifest",
        "data_manifests/mask.v2.csv",
        "--out",
        "runs/final",
        "-q",
    )
    sub = pd.read_csv("runs/final/submission.csv", dtype=str)
    info = pd.read_csv("synth/eval/info.csv", dtype=str)
    assert list(sub.columns) == ["ImageID", "ans"]
    assert sub["ImageID"].tolist() == info["ImageID"].tolist()
    assert sub["ans"].astype(int).between(0, 17).all()
