"""One embedding space against fold-local embeddings: planted copies and the queue's make-up.

Run: ``.venv/bin/python -m benchmarks.bench_embed_space [--data mnist cifar10]``
(about 5 minutes for MNIST and 12 for CIFAR-10 on 2 cores).

Each data set is split 80/20 into train and clean test rows, with 10% uniform
label noise on the train rows, and copies are planted: 60 train images copied
among the test rows (20 exact file copies, 20 re-encoded as JPEG quality 95,
20 shifted by one pixel) and 20 train images copied as train rows with another
label (10 exact, 10 re-encoded). One ``cleaner oof`` run, then ``cleaner flag``.

- **before**: what ``oof`` wrote until now: each train row embedded by the model
  of its own fold (kept in ``fold-K/oof.npz``), test rows not at all; outliers
  and near duplicates by the same Datalab rules over those vectors.
- **after**: ``embeddings.npz``, every row embedded by one model trained on all
  train rows after the folds, and the queue ``flag`` writes from it.

Measured: the share of each train row's 10 nearest neighbours in its own fold
(1/K = 0.2 is one space), recall of each kind of planted pair, pairs reported
that were not planted, and the share of outlier and near-duplicate rows in the
queue (first 200 rows, and all flagged rows).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import cast

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
from PIL import Image
from rich.console import Console

from benchmarks.common import MNIST_DIR, ROOT, measure_table, oof_run, write_section
from cleaner.core.progress import make_progress
from cleaner.formats.manifest import write_manifest
from cleaner.formats.run_files import QueueFiles, RunFiles
from cleaner.formats.runs import load_run
from cleaner.ingest.arrays import ingest_arrays, load_mnist_arrays
from cleaner.ranking import flag
from cleaner.ranking.queue import make_queue
from cleaner.training.fold_train import load_fold_outputs

CIFAR_DIR = ROOT.parent / "shared" / "data" / "cifar10" / "train"
CIFAR_PIPELINE = """
# pipelines/mnist.toml for 32x32 colour photos: 3 channels, CIFAR statistics, flips.
[data]
manifest = "{manifest}"
image_size = 32
mean = [0.4914, 0.4822, 0.4465]
std = [0.2470, 0.2435, 0.2616]
cache = true

[model]
name = "test_resnet"
in_chans = 3

[train]
folds = 5
epochs = {epochs}
batch_size = 128
lr = 4e-3
workers = 0

[[augment.train]]
name = "HorizontalFlip"
p = 0.5

[[augment.train]]
name = "Affine"
translate_percent = [-0.1, 0.1]
p = 0.7
"""
TOP = 200
FOUND = ("before", "after (duplicates.csv)", "after (queue row, all flagged)")


def _split_and_noise(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """80/20 train/test (stratified by shuffling within class) and 10% uniform flips."""
    test = np.zeros(len(labels), bool)
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        test[rows[: len(rows) // 5]] = True
    noisy = labels.copy()
    train = np.flatnonzero(~test)
    flip = rng.choice(train, len(train) // 10, replace=False)
    k = labels.max() + 1
    noisy[flip] = (labels[flip] + rng.integers(1, k, len(flip))) % k
    return test, noisy


def _cifar_manifest(root: Path, rng: np.random.Generator) -> Path:
    """The shared CIFAR-10 photos (paths into ../shared), split and noised like MNIST."""
    files = sorted(CIFAR_DIR.glob("*/*.jpg"))
    classes = sorted({f.parent.name for f in files})
    labels = np.array([classes.index(f.parent.name) for f in files])
    test, noisy = _split_and_noise(labels, rng)
    names = np.asarray(classes, dtype=object)
    df = pd.DataFrame(
        {
            "sample_id": [f"{f.parent.name}/{f.stem}" for f in files],
            "path": [str(f) for f in files],
            "label": np.where(test, "", names[noisy]),
            "split": np.where(test, "test", "train"),
            "weight": 1.0,
            "true_label": names[labels],
        }
    )
    return write_manifest(df, root / "cifar10.csv")


def _mnist_manifest(root: Path) -> Path:
    images, labels, ids = load_mnist_arrays(MNIST_DIR)
    return ingest_arrays(
        images, labels, ids, root / "images", root / "mnist.csv", noise=0.1, seed=0
    )


def _plant(manifest: Path, rng: np.random.Generator) -> tuple[Path, pd.DataFrame]:
    """Copies of train images among the test rows and as relabelled train rows."""
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    base = manifest.parent
    out = base / "planted"
    out.mkdir()
    classes = sorted(set(df.loc[df["split"] == "train", "label"]))
    train = np.flatnonzero((df["split"] == "train").to_numpy())
    src = rng.choice(train, 80, replace=False)
    kinds = ["exact"] * 20 + ["reencoded"] * 20 + ["shifted"] * 20 + ["exact", "reencoded"] * 10
    rows, plants = [], []
    for n, (i, kind) in enumerate(zip(src, kinds, strict=True)):
        path = Path(str(df["path"].iat[i]))
        path = path if path.is_absolute() else base / path
        dest = out / f"copy-{n}{'.jpg' if kind == 'reencoded' else path.suffix}"
        im = Image.open(path)
        if kind == "exact":
            shutil.copyfile(path, dest)
        elif kind == "reencoded":
            buf = io.BytesIO()
            im.convert("RGB" if im.mode == "RGB" else "L").save(buf, "JPEG", quality=95)
            dest.write_bytes(buf.getvalue())
        else:
            Image.fromarray(np.roll(np.asarray(im), 1, axis=1)).save(dest.with_suffix(".png"))
            dest = dest.with_suffix(".png")
        row = {**df.iloc[i].to_dict(), "sample_id": f"copy-{n}", "path": str(dest)}
        cross = n < 60
        if cross:
            row.update(split="test", label="")
        else:
            row.update(label=classes[(classes.index(df["label"].iat[i]) + 1) % len(classes)])
        rows.append(row)
        plants.append(
            {
                "original": df["sample_id"].iat[i],
                "copy": f"copy-{n}",
                "kind": kind,
                "where": "train/test" if cross else "train/train, other label",
            }
        )
    planted = manifest.with_name(manifest.stem + "-planted.csv")
    pd.concat([df, pd.DataFrame(rows)], ignore_index=True).to_csv(planted, index=False)
    return planted, pd.DataFrame(plants)


def _before(run_dir: Path, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """The fold-local embeddings of the train rows (manifest order) and each row's fold."""
    run = load_run(run_dir)
    position = pd.Index(np.asarray(run.sample_ids, dtype=str))
    emb = None
    fold_of = np.zeros(len(position), int)
    for k in range(folds):
        ids, _, e = load_fold_outputs(RunFiles(run_dir).fold(k).oof)
        if emb is None:
            emb = np.zeros((len(position), e.shape[1]), np.float32)
        pos = position.get_indexer(ids)
        emb[pos], fold_of[pos] = e, k
    assert emb is not None
    return emb, fold_of


def _found(pairs: set[frozenset[str]], plants: pd.DataFrame) -> pd.Series:
    hit = [
        frozenset((a, b)) in pairs for a, b in zip(plants["original"], plants["copy"], strict=True)
    ]
    return pd.Series(hit, index=plants.index)


def _pixel_percentiles(manifest: Path, pairs: pd.DataFrame) -> str:
    """How alike the unplanted pairs are in pixels: percentiles among nearest-neighbour distances.

    A pair at the 1st percentile is closer than 99% of the images are to their
    nearest other image: near-identical, whatever a person calls a duplicate.
    """
    if not len(pairs):
        return "-"
    from sklearn.neighbors import NearestNeighbors

    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    df = df[~df["sample_id"].str.startswith("copy-")]
    base = manifest.parent

    def pixels(paths: pd.Series) -> np.ndarray:
        out = []
        for p in paths:
            path = Path(p) if Path(p).is_absolute() else base / p
            out.append(np.asarray(Image.open(path).convert("L"), np.float32).ravel())
        return np.stack(out)

    x = pixels(df["path"])
    nn = NearestNeighbors(n_neighbors=2).fit(x)
    dist = np.sort(nn.kneighbors(x)[0][:, 1])
    at = pd.Index(df["sample_id"])
    a = x[at.get_indexer(pairs["sample_id"])]
    b = x[at.get_indexer(pairs["partner"])]
    pct = 100 * np.searchsorted(dist, np.linalg.norm(a - b, axis=1)) / len(dist)
    return f"{np.median(pct):.1f}, {pct.max():.1f}"


def measure(
    name: str, manifest: Path, pipeline: Path, overrides: list[str], root: Path
) -> list[str]:
    rng = np.random.default_rng(1)
    planted, plants = _plant(manifest, rng)
    out = root / "run"
    t0 = time.perf_counter()
    with make_progress() as progress:
        oof_run(pipeline, [*overrides, f'data.manifest="{planted.as_posix()}"'], out=out,
                progress=progress)  # fmt: skip
    seconds = time.perf_counter() - t0
    run = load_run(out)
    n = len(run.sample_ids)
    k_folds = run.cfg.train.folds

    # Before: fold-local vectors, train rows only, the old rules.
    emb_before, fold_of = _before(out, k_folds)
    share_before = flag.own_group_neighbour_share(emb_before, fold_of)
    old = flag.embedding_issues(emb_before)
    partner = old.near_duplicate_of
    near_before = (partner >= 0) & (run.labels[np.maximum(partner, 0)] != run.labels)
    ids = np.asarray(run.sample_ids, dtype=str)
    pairs_before = {frozenset((ids[i], ids[partner[i]])) for i in np.flatnonzero(near_before)}
    quality = flag.label_quality(run.labels, run.pred_probs)
    is_label = flag.find_label_errors(run.labels, run.pred_probs)
    issue_before = flag.primary_issue(is_label, near_before, old.is_outlier)
    order_before = flag.review_order(quality, issue_before != "")

    # After: one space, the queue as flag writes it.
    summary = make_queue([out], top=TOP, out=root / "queue")
    q = pd.read_csv(QueueFiles(root / "queue").csv, dtype=str, keep_default_na=False)
    dup = pd.read_csv(QueueFiles(root / "queue").duplicates, dtype=str, keep_default_na=False)
    pairs_after = {
        frozenset(p)
        for p, f in zip(zip(dup["sample_id"], dup["partner"], strict=True), dup["finding"],
                        strict=True)
        if f != "same_label"
    }  # fmt: skip
    make_queue([out], top=10**9, out=root / "all")
    every_row = pd.read_csv(QueueFiles(root / "all").csv, dtype=str, keep_default_na=False)
    # A planted pair is a queue row when some row names the other image as its partner.
    rows_after = {
        frozenset((a, b))
        for a, b in zip(every_row["sample_id"], every_row["partner"], strict=True)
        if b
    }

    plants["before"] = _found(pairs_before, plants)
    plants["after (duplicates.csv)"] = _found(pairs_after, plants)
    plants["after (queue row, all flagged)"] = _found(rows_after, plants)
    recall = plants.groupby(["where", "kind"])[list(FOUND)].agg(["sum", "count"])
    planted_ids = set(plants["copy"])
    false_before = sum(1 for p in pairs_before if not p & planted_ids)
    false_after = dup[~dup["sample_id"].isin(planted_ids) & ~dup["partner"].isin(planted_ids)]

    def share(issues: pd.Series) -> str:
        c = issues.value_counts()
        return ", ".join(f"{k} {v / len(issues):.1%}" for k, v in c.items()) if len(issues) else "-"

    top_after = q[q["issue"] != "leakage"].head(TOP)["issue"]
    every = every_row["issue"]
    alike = _pixel_percentiles(planted, false_after)
    lines = [
        f"### {name}",
        "",
        f"{n:,} train rows ({int((plants['where'] != 'train/test').sum())} planted), "
        f"oof with the embedding step {seconds / 60:.1f} min; "
        f"embedded by: {summary.embedding_source}.",
        "",
        "| planted pairs | kind | before | after: duplicates.csv | after: a queue row names it |",
        "|---|---|---:|---:|---:|",
    ]
    for key, r in recall.iterrows():
        where, how = cast(tuple[str, str], key)
        cells = [f"{int(r[(c, 'sum')])}/{int(r[(c, 'count')])}" for c in FOUND]
        lines.append(f"| {where} | {how} | " + " | ".join(cells) + " |")
    _, table = measure_table(
        f"{name}: one space against fold-local embeddings",
        [
            ("own-fold share of 10 nearest neighbours, before (1/K = 0.2)", f"{share_before:.3f}"),
            ("own-fold share, after", f"{summary.own_fold_share:.3f}"),
            ("pairs reported that were not planted, before", f"{false_before}"),
            (
                "pairs listed that were not planted, after (by finding)",
                ", ".join(f"{k} {v}" for k, v in false_after["finding"].value_counts().items())
                or "0",
            ),
            (f"queue's first {TOP} rows by issue, before", share(
                pd.Series(issue_before[order_before][:TOP]))),
            (f"queue's first {TOP} rows by issue, after (leakage rows before them: "
             f"{int((q['issue'] == 'leakage').sum())})", share(top_after)),
            ("all flagged rows by issue, before",
             share(pd.Series(issue_before[issue_before != ""]))),
            ("all flagged rows by issue, after", share(every)),
            ("pairs listed that were not planted: their pixel distance as a percentile of "
             "the images' nearest-neighbour pixel distances (median, max)", alike),
        ],
    )  # fmt: skip
    return [*lines, "", *table]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=["mnist", "cifar10"])
    parser.add_argument("--cifar-epochs", type=int, default=10)
    args = parser.parse_args()
    console = Console()
    body = [
        "`python -m benchmarks.bench_embed_space`: 10% uniform noise, 80/20 train/test, "
        "copies planted (see the module docstring); before = each train row embedded by "
        "its own fold's model (what `oof` wrote until now), after = `embeddings.npz` "
        "(one model trained on all train rows embeds every row).",
        "",
    ]
    for name in args.data:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            if name == "mnist":
                manifest = _mnist_manifest(root)
                pipeline, overrides = ROOT / "pipelines" / "mnist.toml", list[str]()
            else:
                manifest = _cifar_manifest(root, np.random.default_rng(0))
                pipeline = root / "cifar.toml"
                pipeline.write_text(
                    CIFAR_PIPELINE.format(manifest=manifest.as_posix(), epochs=args.cifar_epochs)
                )
                overrides = []
            lines = measure(name, manifest, pipeline, overrides, root)
        console.print("\n".join(lines))
        body += [*lines, ""]
    write_section("embed-space", "## One embedding space: planted copies and the queue\n\n"
                  + "\n".join(body))  # fmt: skip


if __name__ == "__main__":
    main()
