"""``cleaner flag`` end to end: digits with known noise -> oof -> queue.csv and queue.html."""

from __future__ import annotations

import base64
import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import (
    assert_says,
    copy_trained_digits,
    ingest_digits,
    invoke,
    write_flag_pipeline,
)
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.formats.queue_file import QUEUE_COLUMNS, read_queue_meta

pytestmark = pytest.mark.slow
runner = CliRunner()


def fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output + repr(result.exception)
    return " ".join(result.output.split())


def files_under(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory: pytest.TempPathFactory, trained_digits: Path) -> tuple[Path, Path]:
    """Digits with 10% uniform noise, a 3-fold oof run (the suite's shared one, copied);
    returns (manifest, run)."""
    project = copy_trained_digits(trained_digits, tmp_path_factory.mktemp("flag") / "p")
    return project.manifest, project.run


def test_queue_finds_the_injected_errors_first(noisy_run: tuple[Path, Path]) -> None:
    manifest, run = noisy_run
    out = invoke("flag", str(run), "--out", str(run / "q"), "--quiet")
    assert "estimated wrong labels" in out and "most confused classes" in out
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False).set_index("sample_id")
    q = pd.read_csv(run / "q" / "queue.csv", dtype=str, keep_default_na=False)
    assert list(q.columns) == list(QUEUE_COLUMNS)
    assert q["rank"].tolist() == [str(i) for i in range(1, len(q) + 1)]
    assert q["sample_id"].is_unique and len(q) <= 300
    wrong = (m["label"] != m["true_label"]) & (m["split"] == "train")
    k = int(wrong.sum())
    top = q.head(k)
    precision = wrong.loc[top["sample_id"]].mean()
    assert precision >= 0.8, precision
    # the suggestion is the true label for most of the real errors found
    hits = top[wrong.loc[top["sample_id"]].to_numpy()]
    assert (
        hits["suggested_label"].to_numpy() == m.loc[hits["sample_id"], "true_label"]
    ).mean() > 0.9
    assert (q["given_label"] != q["suggested_label"]).all()
    assert (q["given_label"].to_numpy() == m.loc[q["sample_id"], "label"].to_numpy()).all()
    assert set(q["issue"]) <= {"label", "outlier", "near_duplicate", "leakage"}
    # Leakage rows (train copies of test images) come first; then best first.
    leak = (q["issue"] == "leakage").to_numpy()
    assert not leak[leak.argmin() :].any()
    quality = q["label_quality"].astype(float).to_numpy()[~leak]
    assert (np.diff(quality) >= 0).all()  # best first: lowest label quality first
    # Only label rows propose a class.
    assert (q.loc[q["issue"] != "label", "suggested_label"] == "").all()
    assert not set(q["sample_id"]) & set(m.index[m["split"] == "test"])
    assert (q[["decision", "new_label"]] == "").all().all()
    meta = json.loads((run / "q" / "queue.json").read_text())
    # paths relative to the queue's folder: apply works from any directory
    assert (run / "q" / meta["manifest"]).resolve() == manifest.resolve()
    assert not Path(meta["manifest"]).is_absolute() and len(meta["manifest_sha256"]) == 64
    assert read_queue_meta(run / "q" / "queue.csv").manifest.resolve() == manifest.resolve()
    # The count comes with its interval, the model's disagreements and what it means.
    noise = meta["noise"]
    lo, hi = noise["interval_95"]
    assert lo <= noise["estimated_wrong_labels"] <= hi
    assert noise["train_rows"] == int((m["split"] == "train").sum())
    assert 0 < noise["model_disagrees"] < noise["train_rows"]
    assert_says(out, f"95% interval {lo:,}-{hi:,}", "own mistakes count too")
    assert_says(out, "the map of the data", f"{run / 'q' / 'map.png'}")


class _Cards(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.images: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "data-issue" in a:
            self.cards.append(a)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "script":
            self.scripts += 1


def test_gallery_shows_every_row_with_its_image(noisy_run: tuple[Path, Path]) -> None:
    _, run = noisy_run
    invoke("flag", str(run), "--top", "40", "--out", str(run / "g"), "--quiet")
    q = pd.read_csv(run / "g" / "queue.csv", dtype=str, keep_default_na=False)
    page = (run / "g" / "queue.html").read_text()
    parser = _Cards()
    parser.feed(page)
    # Leakage rows (train copies of test images) are never cut by --top.
    assert len(parser.cards) == len(q) == 40 + (q["issue"] == "leakage").sum()
    for sid in q["sample_id"]:
        assert sid in page
    # ... and a near duplicate or leakage row shows its partner beside it; above the
    # cards, the map of the data: map.png's very bytes, and a link to the file.
    assert len(parser.images) == len(q) + (q["partner"] != "").sum() + 1
    for src in parser.images:  # every image reference resolves, with no server
        assert src.startswith("data:image/")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "http://" not in page and "https://" not in page
    png = (run / "g" / "map.png").read_bytes()
    assert f"data:image/png;base64,{base64.b64encode(png).decode()}" == parser.images[0]
    assert 'href="map.png"' in page and "t-SNE of the one embedding space" in page
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and min(im.size) > 300
    # flag.map_points = 0: no map, and the page says nothing of one.
    invoke("flag", str(run), "--top", "5", "--out", str(run / "nomap"), "--quiet",
           "--set", "flag.map_points=0")  # fmt: skip
    assert not (run / "nomap" / "map.png").exists()
    assert "t-SNE" not in (run / "nomap" / "queue.html").read_text()


def test_decided_samples_are_not_queued_again(noisy_run: tuple[Path, Path]) -> None:
    manifest, run = noisy_run
    invoke("flag", str(run), "--top", "50", "--out", str(run / "r1"), "--quiet")
    first = pd.read_csv(run / "r1" / "queue.csv", dtype=str, keep_default_na=False)
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False).set_index("sample_id")
    decided = first["sample_id"].head(5).tolist()
    changed = first["sample_id"].iat[5]  # decided, but its label changed since
    log = manifest.with_name("digits.audit.jsonl")
    lines = [
        {
            "sample_id": s,
            "old_label": m.at[s, "label"],
            "new_label": m.at[s, "label"],
            "action": "keep",
        }
        for s in decided
    ]
    lines.append(
        {"sample_id": changed, "old_label": "x", "new_label": "not-its-label", "action": "relabel"}
    )
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    try:
        out = invoke("flag", str(run), "--top", "50", "--out", str(run / "r2"))
        second = pd.read_csv(run / "r2" / "queue.csv", dtype=str, keep_default_na=False)
    finally:
        log.unlink()
    assert not set(decided) & set(second["sample_id"])
    assert changed in set(second["sample_id"])
    assert second["sample_id"].head(5).tolist() == first["sample_id"].iloc[5:10].tolist() or (
        second["sample_id"].iat[0] == changed
    )
    assert "already decided" in out


def test_group_rows_and_unlabeled_rows(tmp_path: Path) -> None:
    """Groups of 4 same-digit images: flip 3 whole groups, mix one; 30 rows unlabeled."""
    raw = ingest_digits(tmp_path / "raw.csv", "--seed", "2")
    df = pd.read_csv(raw, dtype=str, keep_default_na=False)
    train = df[df["split"] == "train"].sort_values(["true_label", "sample_id"])
    df["group"] = ""
    # four images of one digit per "person"; a class's leftover images form a smaller group
    within = train.groupby("true_label").cumcount() // 4
    df.loc[train.index, "group"] = [
        f"p{int(t) * 50 + w:03d}" for t, w in zip(train["true_label"], within, strict=True)
    ]
    df.loc[df["split"] == "test", "group"] = "test"
    flipped = ["p010", "p110", "p210"]
    for g in flipped:
        rows = df["group"] == g
        true = int(df.loc[rows, "true_label"].iat[0])
        df.loc[rows, "label"] = str((true + 3) % 10)
    mixed = "p310"
    first = df.index[df["group"] == mixed][0]
    df.loc[first, "label"] = str((int(df.loc[first, "true_label"]) + 5) % 10)
    unl = df.index[(df["split"] == "train") & ~df["group"].isin([*flipped, mixed])][::40][:30]
    df.loc[unl, ["split", "label"]] = ["unlabeled", ""]
    manifest = tmp_path / "people.csv"
    df.to_csv(manifest, index=False)
    pipeline = write_flag_pipeline(
        tmp_path, manifest, top=100, data={"group": "group"}, flag={"group_label": True}
    )
    invoke("oof", str(pipeline), "--out", str(tmp_path / "run"), "--quiet")
    folds = pd.read_csv(tmp_path / "run" / "folds.csv", dtype=str)
    groups = df.set_index("sample_id").loc[folds["sample_id"], "group"].to_numpy()
    assert (folds.groupby(groups)["fold"].nunique() == 1).all()
    unlabeled = pd.read_csv(tmp_path / "run" / "unlabeled.csv", dtype=str)
    assert sorted(unlabeled["sample_id"]) == sorted(df.loc[unl, "sample_id"])

    invoke("flag", str(tmp_path / "run"), "--include-unlabeled", "--quiet")
    q = pd.read_csv(tmp_path / "run" / "queue.csv", dtype=str, keep_default_na=False)
    group_rows = q[q["issue"] == "group_inconsistent"].set_index("group")
    for g in [*flipped, mixed]:
        assert g in group_rows.index, (g, group_rows)
        assert group_rows.at[g, "sample_id"] == f"group:{g}"
    for g in flipped:
        true = df.loc[df["group"] == g, "true_label"].iat[0]
        assert group_rows.at[g, "suggested_label"] == true
        assert group_rows.at[g, "given_label"] == str((int(true) + 3) % 10)
    assert "mixed labels" in group_rows.at[mixed, "note"]
    u = q[q["issue"] == "unlabeled"]
    assert len(u) == 30 and set(u["sample_id"]) == set(df.loc[unl, "sample_id"])
    assert (u["given_label"] == "").all() and u.index.min() > q.index[
        q["issue"] != "unlabeled"
    ].max()


# --- bad input: one clear error, exit 2, nothing written ---------------------------------


def test_run_without_oof_csv(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    before = files_under(tmp_path)
    assert "no oof.csv" in fails("flag", str(tmp_path / "run"))
    assert files_under(tmp_path) == before


def _copy_run(run: Path, dest: Path, manifest: Path | None = None) -> Path:
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("q", "g", "r1", "r2", "queue.*"))
    if manifest is not None:
        cfg = (dest / "config.toml").read_text()
        old = next(line for line in cfg.splitlines() if line.startswith("manifest = "))
        (dest / "config.toml").write_text(cfg.replace(old, f'manifest = "{manifest}"'))
    return dest


def test_changed_manifest_is_refused(noisy_run: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, run = noisy_run
    edited = tmp_path / "digits.csv"
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    df.loc[0, "label"] = "3" if df.loc[0, "label"] != "3" else "4"
    df.to_csv(edited, index=False)
    copy = _copy_run(run, tmp_path / "run", edited)
    before = files_under(tmp_path)
    msg = fails("flag", str(copy))
    assert "manifest changed" in msg and "oof.csv" in msg
    assert files_under(tmp_path) == before


def test_a_run_of_an_older_version_is_refused_with_the_command_that_fixes_it(
    noisy_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After apply wrote v2, flagging the v1 run would queue decided rows again."""
    manifest, run = noisy_run
    shutil.copy(manifest, tmp_path / "digits.csv")
    shutil.copytree(manifest.parent / "images", tmp_path / "images")
    copy = _copy_run(run, tmp_path / "run", tmp_path / "digits.csv")
    shutil.copy(manifest, tmp_path / "digits.v2.csv")  # what `cleaner apply` would write
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    msg = fails("flag", "run")
    assert_says(msg, "made from digits.csv, but digits.v2.csv is newer")
    assert files_under(tmp_path) == before
    command = msg[msg.index("cleaner oof") :].split()[1:7]
    assert command[:5] == ["oof", str(Path("run") / "config.toml"), "--set",
                           f"data.manifest={Path('digits.v2.csv')}", "--out"]  # fmt: skip
    # The hint is a command that works: one fold of it, one epoch.
    invoke(*command, "--fold", "0", "--set", "train.epochs=1", "-q")
    assert (tmp_path / command[5] / "fold-0" / "oof.npz").exists()
    assert copy.exists()


@pytest.mark.parametrize(
    ("value", "reason"),
    [("nan", "NaN"), ("-0.5", "negative probability"), ("0.9", "sum to")],
)
def test_bad_probabilities(
    noisy_run: tuple[Path, Path], tmp_path: Path, value: str, reason: str
) -> None:
    _, run = noisy_run
    copy = _copy_run(run, tmp_path / "run")
    oof = pd.read_csv(copy / "oof.csv", dtype=str, keep_default_na=False)
    oof.loc[6, "p:3"] = value
    oof.to_csv(copy / "oof.csv", index=False)
    before = files_under(tmp_path)
    msg = fails("flag", str(copy))
    assert reason in msg and "oof.csv, line 8" in msg
    assert files_under(tmp_path) == before


def test_classes_that_do_not_match(noisy_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = noisy_run
    copy = _copy_run(run, tmp_path / "run")
    oof = pd.read_csv(copy / "oof.csv", dtype=str, keep_default_na=False)
    oof.drop(columns=["p:9"]).to_csv(copy / "oof.csv", index=False)
    assert "columns do not match" in fails("flag", str(copy))
    assert not (copy / "queue.csv").exists()


def test_top_must_be_positive(noisy_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = noisy_run
    assert "--top must be at least 1" in fails(
        "flag", str(run), "--top", "0", "--out", str(tmp_path / "q")
    )
    assert not (tmp_path / "q").exists()


def test_runs_of_different_manifests(noisy_run: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, run = noisy_run
    other = tmp_path / "other.csv"
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    df["extra"] = "x"  # same rows and labels, another version
    df.to_csv(other, index=False)
    copy = _copy_run(run, tmp_path / "run", other)
    (copy / "manifest.sha256").write_text(
        __import__("cleaner.formats.manifest", fromlist=["x"]).sha256_file(other) + f"  {other}\n"
    )
    msg = fails("flag", str(run), str(copy), "--out", str(tmp_path / "q"))
    assert "another manifest" in msg
    assert not (tmp_path / "q").exists()


def test_existing_queue_is_not_overwritten(noisy_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = noisy_run
    invoke("flag", str(run), "--top", "5", "--out", str(tmp_path / "q"), "--quiet")
    before = files_under(tmp_path)
    assert "already exists" in fails("flag", str(run), "--out", str(tmp_path / "q"))
    assert files_under(tmp_path) == before


def test_two_runs_are_ensembled(noisy_run: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, run = noisy_run
    pipeline = write_flag_pipeline(tmp_path, manifest, top=300)
    invoke("oof", str(pipeline), "--set", "train.seed=7", "--out", str(tmp_path / "run2"), "-q")
    out = invoke("flag", str(run), str(tmp_path / "run2"), "--out", str(tmp_path / "q"), "-q")
    assert "2 run(s)" in out
    meta = json.loads((tmp_path / "q" / "queue.json").read_text())
    runs = [(tmp_path / "q" / r).resolve() for r in meta["runs"]]
    assert runs == [run.resolve(), (tmp_path / "run2").resolve()]
    m = pd.read_csv(manifest, dtype=str, keep_default_na=False).set_index("sample_id")
    q = pd.read_csv(tmp_path / "q" / "queue.csv", dtype=str, keep_default_na=False)
    wrong = (m["label"] != m["true_label"]) & (m["split"] == "train")
    k = int(wrong.sum())
    assert wrong.loc[q["sample_id"].head(k)].mean() >= 0.8


def test_unmodified_digits_report_only_near_identical_pairs(noisy_run: tuple[Path, Path]) -> None:
    """The digits hold no pixel-identical images; what the one space pairs is near-identical.

    Each pair reported on the unmodified digits must be among the 2% most alike
    images of the set in pixel space (on the demo: two pairs of 8x8 "1"s, at the
    0.1st and 1st percentile of nearest-neighbour pixel distances).
    """
    from sklearn.metrics import pairwise_distances

    from cleaner.ingest.arrays import load_digits_arrays

    _, run = noisy_run
    invoke("flag", str(run), "--out", str(run / "dups"), "--quiet")
    pairs = pd.read_csv(run / "dups" / "duplicates.csv", dtype=str, keep_default_na=False)
    images, _ = load_digits_arrays()
    pixels = images.reshape(len(images), -1).astype(float)
    assert len(np.unique(pixels, axis=0)) == len(pixels)  # no exact duplicates
    dist = pairwise_distances(pixels)
    np.fill_diagonal(dist, np.inf)
    alike = np.percentile(dist.min(axis=1), 2)
    assert (pairs["match"] == "near").all() and len(pairs) <= 3
    for a, b in zip(pairs["sample_id"], pairs["partner"], strict=True):
        i, j = int(a.removeprefix("digit-")), int(b.removeprefix("digit-"))
        assert dist[i, j] <= alike, (a, b, dist[i, j], alike)


@pytest.mark.parametrize("edit", ["label", "duplicate"])
def test_oof_rows_are_checked_against_the_manifest(
    noisy_run: tuple[Path, Path], tmp_path: Path, edit: str
) -> None:
    """An edited label cell or a repeated row in oof.csv is refused, naming the line."""
    _, run = noisy_run
    copy = _copy_run(run, tmp_path / "run")
    oof = pd.read_csv(copy / "oof.csv", dtype=str, keep_default_na=False)
    if edit == "label":
        oof.loc[4, "label"] = "6" if oof.loc[4, "label"] != "6" else "0"
        reason = "is not the manifest's"
    else:
        oof = pd.concat([oof.iloc[:-1], oof.iloc[[0]]], ignore_index=True)
        reason = "appears twice"
    oof.to_csv(copy / "oof.csv", index=False)
    before = files_under(tmp_path)
    msg = fails("flag", str(copy), "--out", str(tmp_path / "q"))
    assert reason in msg and "oof.csv" in msg
    assert files_under(tmp_path) == before
