"""Real human label noise: detection and cleaning gain on the shared photos, CIFAR-10N's labels.

``../shared/data/cifar10/human_labels.csv`` gives each of the 10,000 shared photos
the labels of three crowd annotators (CIFAR-10N, Wei et al., ICLR 2022) beside
CIFAR-10's own (the truth here). Run in parts, each resumable and kept like
:mod:`benchmarks.bench_photos` (finished measurements as JSON in
``benchmarks/results/human``, committed; data and run folders under ``--work``):

- ``python -m benchmarks.bench_human detect [--labels annotator_1 ...] [--seeds N]``:
  ``oof`` with ``pipelines/photos.toml`` on all 10,000 photos labelled by one
  column, ``flag``'s order scored against the truth (P@k, AUROC, AP), the
  out-of-fold accuracy against the truth, the time, the training images/s
  against the same model on synthetic tensors, and cleanlab's reference recipe
  (5-fold logistic regression on the pixels) on the same rows in the same run.
  ``--labels realistic20`` is bench_photos' synthetic 20% realistic noise on
  its 8,000 train photos (seed 0), for continuity with the earlier pipeline.
  ``--repeats R`` (seed 0 only): ``oof --repeats R``, the ensemble of R runs
  with other folds and seeds, its probabilities averaged (what twice the time buys).
- ``python -m benchmarks.bench_human clean [--seeds N]``: 8,000 photos labelled by
  ``annotator_1`` and 2,000 clean test photos (a stratified split per seed);
  ``oof``, the queue, a simulated reviewer who answers right on the first 10% of
  the train rows in queue order, and ``retrain`` on the noisy, the reviewed and
  the true labels, scored on the test photos.

- ``python -m benchmarks.bench_human ensemble [--seeds N]``: ``oof --repeats R`` for R =
  2..N from the seed runs ``detect`` made (repeat r is the run with ``train.seed + r``,
  seed r's run here): the mean of their probabilities, scored; its time, theirs summed.
- ``python -m benchmarks.bench_human probe``: ``train.mode = "probe"`` with a local
  weights file, as a team would use a hub backbone on a machine without the hub: the
  product's own small-photo net trained (``oof``'s embedding model) on the true labels of
  one half of the photos, then frozen-feature heads on the other half labelled by
  ``annotator_1``, against the same recipe fine-tuned from scratch on that half alone.

Seed ``S`` seeds the training (``train.seed = 42 + S``) and, for ``clean``, the split.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
from rich.console import Console
from sklearn.model_selection import train_test_split

from benchmarks.bench_flag_mnist import scores
from benchmarks.bench_oof_mnist import synthetic_images_per_s
from benchmarks.bench_photos import (
    CIFAR,
    PIPELINE,
    REVIEWED,
    cached,
    detection,
    make_data,
    recovered,
    reference_detection,
    retrain_test,
    reviewed_version,
    seed_overrides,
    spread,
    timed_oof,
    wrong_labels,
)
from benchmarks.common import ROOT, result_table, write_section
from cleaner.core.atomic import atomic_path
from cleaner.core.config import load_config
from cleaner.core.progress import make_progress
from cleaner.formats.run_files import RunFiles
from cleaner.formats.runs import load_run
from cleaner.ranking.flag import label_quality
from cleaner.training.oof import run_repeats
from cleaner.training.pipeline import load_pipeline_data

HUMAN = CIFAR.parent / "human_labels.csv"
WORK = ROOT / "benchmarks" / ".work" / "human"
RESULTS = ROOT / "benchmarks" / "results" / "human"
LABELS = ("annotator_1", "aggregate", "worst")
SYNTHETIC = "realistic20"  # bench_photos' 20% realistic noise, for continuity
TEST_FRACTION = 0.2


def human_manifest(work: Path, column: str, *, seed: int = 0, test_fraction: float = 0.0) -> Path:
    """The shared photos labelled by ``column`` (``true_label``: CIFAR-10's); with
    ``test_fraction``, a stratified share held out as clean test rows (true labels)."""
    folder = work / "data" / f"{column}-t{round(test_fraction * 100)}-s{seed}"
    manifest = folder / "cifar10.csv"
    if manifest.exists():
        return manifest
    h = pd.read_csv(HUMAN, dtype=str, keep_default_na=False)
    df = pd.DataFrame(
        {
            "sample_id": h["path"],
            "path": [str((CIFAR.parent / p).resolve()) for p in h["path"]],
            "label": h[column],
            "split": "train",
            "true_label": h["cifar_label"],
        }
    )
    if test_fraction:
        _, test = train_test_split(
            np.arange(len(df)), test_size=test_fraction, stratify=df["true_label"],
            random_state=seed,
        )  # fmt: skip
        df.loc[test, "split"] = "test"
        df.loc[test, "label"] = df.loc[test, "true_label"]  # test rows are never cleaned
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(manifest) as tmp:
        df.to_csv(tmp, index=False)
    return manifest


def detect_one(work: Path, labels: str, seed: int, synthetic: float) -> dict[str, Any]:
    if labels == SYNTHETIC:
        manifest = make_data(work, "realistic", 0.2, seed)
    else:
        manifest = human_manifest(work, labels)
    out = work / "runs" / f"{labels}-s{seed}"

    def compute() -> dict[str, Any]:
        run_dir, wall, rate = timed_oof(manifest, seed_overrides(seed), out)
        return {
            "labels": labels, "seed": seed, "oof_seconds": wall,
            "train_images_per_s": rate, "synthetic_images_per_s": synthetic,
            "cleaner": detection(run_dir, manifest),
            "reference": reference_detection(manifest, run_dir),
        }  # fmt: skip

    return cached(RESULTS / f"detect-{labels}-s{seed}.json", compute)


def mean_detection(runs: list[Any], manifest: Path) -> dict[str, Any]:
    """Runs of one manifest as an ensemble: their mean out-of-fold probabilities (rows
    matched by id) ranked by self-confidence and scored against the truth."""
    order = pd.Index(runs[0].sample_ids)
    probs = np.mean([r.pred_probs[pd.Index(r.sample_ids).get_indexer(order)] for r in runs], axis=0)
    run = runs[0]
    truth = pd.read_csv(manifest, dtype=str).set_index("sample_id")
    true = pd.Index(run.cfg.data.classes).get_indexer(truth.loc[run.sample_ids, "true_label"])
    quality = label_quality(run.labels, probs)
    is_error = run.labels != true
    out = scores(is_error, np.argsort(quality, kind="stable"), quality)
    out |= {"oof_accuracy_vs_true": float((probs.argmax(1) == true).mean()),
            "errors": int(is_error.sum())}  # fmt: skip
    return out


def ensemble_one(work: Path, labels: str, repeats: int, synthetic: float) -> dict[str, Any]:
    """``oof --repeats`` on seed 0: the members' out-of-fold probabilities averaged, scored
    in label-quality order (self-confidence, as the queue's label rows)."""
    manifest = human_manifest(work, labels)
    folder = work / "runs" / f"{labels}x{repeats}-s0"

    def compute() -> dict[str, Any]:
        t0 = time.perf_counter()
        cfg = load_config(PIPELINE, [f'data.manifest="{manifest}"', *seed_overrides(0)])
        with make_progress() as progress:
            data = load_pipeline_data(cfg, progress=progress, source=PIPELINE)
            result = run_repeats(data, repeats, out=folder, progress=progress)
        wall = time.perf_counter() - t0
        runs = [load_run(m.run_dir) for m in result.members]
        out = mean_detection(runs, manifest)
        rates = [
            f.train_images_per_s
            for r in result.members
            for f in (r.metrics.folds if r.metrics else [])
            if f.train_images_per_s is not None
        ]
        return {
            "labels": f"{labels}x{repeats}", "seed": 0, "oof_seconds": wall,
            "train_images_per_s": float(np.mean(rates)), "synthetic_images_per_s": synthetic,
            "cleaner": out, "reference": reference_detection(manifest, runs[0].run_dir),
        }  # fmt: skip

    return cached(RESULTS / f"detect-{labels}x{repeats}-s0.json", compute)


def seed_ensemble(work: Path, labels: str, seeds: int) -> dict[str, Any] | None:
    """``oof --repeats R`` from the seed runs already made: repeat r of an ensemble is the
    run with ``train.seed + r``, which is seed r's run here (``train.seed = 42 + S``), so
    the mean of seeds 0..R-1's out-of-fold probabilities is that ensemble's, scored as
    :func:`ensemble_one` scores one; its time is the members' times summed."""
    members = [RESULTS / f"detect-{labels}-s{s}.json" for s in range(seeds)]
    runs_dirs = [work / "runs" / f"{labels}-s{s}" for s in range(seeds)]
    if not all(p.exists() for p in members) or not all(RunFiles(d).oof.exists() for d in runs_dirs):
        return None
    manifest = human_manifest(work, labels)

    def compute() -> dict[str, Any]:
        out = mean_detection([load_run(d) for d in runs_dirs], manifest)
        parts = [json.loads(p.read_text()) for p in members]
        return {
            "labels": f"{labels}x{seeds}",
            "seed": 0,
            "oof_seconds": float(sum(p["oof_seconds"] for p in parts)),
            "train_images_per_s": float(np.mean([p["train_images_per_s"] for p in parts])),
            "synthetic_images_per_s": parts[0]["synthetic_images_per_s"],
            "cleaner": out,
            "reference": parts[0]["reference"],
            "note": f"the mean of seed runs 0..{seeds - 1}, which are oof --repeats {seeds}'s "
            "members; its time is theirs summed",
        }

    return cached(RESULTS / f"detect-{labels}x{seeds}-s0.json", compute)


def half_manifest(work: Path, column: str, half: int) -> Path:
    """One half (0 or 1) of the shared photos, a stratified split, labelled by ``column``."""
    folder = work / "data" / f"{column}-half{half}"
    manifest = folder / "cifar10.csv"
    if manifest.exists():
        return manifest
    df = pd.read_csv(human_manifest(work, column), dtype=str, keep_default_na=False)
    halves = train_test_split(
        np.arange(len(df)), test_size=0.5, stratify=df["true_label"], random_state=0
    )
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(manifest) as tmp:
        df.iloc[np.sort(halves[half])].to_csv(tmp, index=False)
    return manifest


def probe_one(work: Path) -> dict[str, Any]:
    """Frozen-feature heads on a backbone the product trained on the other half."""
    backbone_run = work / "runs" / "probe-backbone-half0"

    def compute() -> dict[str, Any]:
        _, backbone_s, _ = timed_oof(half_manifest(work, "cifar_label", 0), [], backbone_run)
        weights = RunFiles(backbone_run).embed.model
        manifest = half_manifest(work, "annotator_1", 1)
        probe = [f'model.weights="{weights}"', 'train.mode="probe"']
        probe_dir, probe_s, _ = timed_oof(manifest, probe, work / "runs" / "probe-half1")
        tuned_dir, tuned_s, _ = timed_oof(manifest, [], work / "runs" / "finetune-half1")
        return {
            "backbone": {"rows": 5000, "labels": "cifar_label (true)", "oof_seconds": backbone_s},
            "probe": detection(probe_dir, manifest) | {"oof_seconds": probe_s},
            "finetune": detection(tuned_dir, manifest) | {"oof_seconds": tuned_s},
            "reference": reference_detection(manifest, tuned_dir),
        }

    return cached(RESULTS / "probe-annotator_1-half1.json", compute)


def probe_section(console: Console) -> None:
    path = RESULTS / "probe-annotator_1-half1.json"
    if not path.exists():
        return
    r = json.loads(path.read_text())
    cols = ["out-of-fold model", "oof acc vs true", "P@k", "AUROC", "AP", "oof time"]
    rows = [
        [name, f"{m['oof_accuracy_vs_true']:.3f}" if "oof_accuracy_vs_true" in m else "-",
         f"{m['p_at_k']:.3f}", f"{m['auroc']:.3f}", f"{m['ap']:.3f}",
         f"{m['oof_seconds'] / 60:.1f} min" if "oof_seconds" in m else "-"]
        for name, m in (
            ("probe: heads on the half-0 backbone's features", r["probe"]),
            ("finetune: photos.toml from scratch on half 1", r["finetune"]),
            ("reference: logistic regression on the pixels", r["reference"]),
        )
    ]  # fmt: skip
    table, lines = result_table("train.mode = probe with a local backbone", cols, rows)
    lines += [f"\n_{r['note']}._"] if "note" in r else []
    console.print(table)
    body = [
        '## Frozen-feature heads (`train.mode = "probe"`) with a local backbone',
        "",
        "`python -m benchmarks.bench_human probe`: no model hub is reachable here, so the",
        "backbone is one the product trained itself: `oof`'s embedding model (photos.toml,",
        "airbench_s) on the CIFAR-10 labels of one stratified half of the shared photos (5,000;",
        f"{r['backbone']['oof_seconds'] / 60:.1f} min for the whole `oof`), given as",
        "`model.weights`. The other half, labelled by `annotator_1`, is then scored three ways:",
        'logistic-regression heads on that backbone\'s frozen features (`train.mode = "probe"`),',
        "the same recipe fine-tuned from scratch on that half alone, and cleanlab's reference",
        "recipe. The backbone saw clean labels of similar photos, as a hub backbone has seen",
        "ImageNet: this measures the probe path, not what a hub backbone would reach.",
        "",
        *lines,
    ]
    write_section("human-probe", "\n".join(body))


def detect_section(console: Console) -> None:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("detect-*.json"))]
    order = [*LABELS, SYNTHETIC]
    groups: dict[str, list[dict]] = {}
    rank = {name: i for i, name in enumerate(order)}
    for r in sorted(results, key=lambda r: (rank.get(r["labels"], len(order)), r["seed"])):
        groups.setdefault(r["labels"], []).append(r)
    cols = [
        "labels", "seeds", "wrong labels", "oof acc vs true", "P@k", "P@k ref", "AUROC",
        "AUROC ref", "AP", "AP ref", "oof time", "train img/s : synthetic",
    ]  # fmt: skip
    rows = []
    for labels, rs in groups.items():
        c = {m: [r["cleaner"][m] for r in rs] for m in ("p_at_k", "auroc", "ap")}
        ref = {m: [r["reference"][m] for r in rs] for m in ("p_at_k", "auroc", "ap")}
        rows.append(
            [
                labels, ",".join(str(r["seed"]) for r in rs), str(rs[0]["cleaner"]["errors"]),
                spread([r["cleaner"]["oof_accuracy_vs_true"] for r in rs]),
                spread(c["p_at_k"]), spread(ref["p_at_k"]), spread(c["auroc"]),
                spread(ref["auroc"]), spread(c["ap"]), spread(ref["ap"]),
                spread([r["oof_seconds"] / 60 for r in rs], ".1f") + " min",
                f"{np.mean([r['train_images_per_s'] for r in rs]):,.0f} : "
                f"{np.mean([r['synthetic_images_per_s'] for r in rs]):,.0f}",
            ]
        )  # fmt: skip
    table, lines = result_table("label-error detection, real human labels (CIFAR-10N)", cols, rows)
    # A run interrupted and resumed reports the resumed part's time: its note says so.
    lines += [f"\n_{r['labels']} seed {r['seed']}: {r['note']}._" for r in results if "note" in r]
    console.print(table)
    body = [
        "## `cleaner flag` on real human label noise: the shared photos, CIFAR-10N's annotators",
        "",
        "`python -m benchmarks.bench_human detect`: `oof` with `pipelines/photos.toml` on all",
        "10,000 shared photos labelled by one CIFAR-10N column (`annotator_1`: 17.8% wrong,",
        "`aggregate`: majority of three, 9.5%, `worst`: a wrong one where any is, 40.7%), then",
        "`flag`, scored against CIFAR-10's own labels. k = wrong labels, so P@k = R@k; AUROC and",
        "AP rank all rows by label quality (self-confidence). `ref`: cleanlab's reference recipe",
        "on the same rows in the same run (5-fold logistic regression on the pixels,",
        "`find_label_issues` ranked by self-confidence). Several seeds: mean [min, max].",
        f"`{SYNTHETIC}`: bench_photos' 20% realistic synthetic noise on its 8,000 train photos",
        "(seed 0), for continuity with the earlier pipeline's figures above. `oof time`: the",
        "whole command (5 folds and the embedding model); `train img/s : synthetic`: training",
        "images/s inside `oof` beside the same model's steps on random tensors, same run.",
        "Targets (annotator_1, mean of 3 seeds): oof accuracy >= 0.78, AUROC >= 0.93,",
        "P@k >= 0.75, each `oof` within about 15 minutes on 2 idle cores. `annotator_1xR`:",
        "`oof --repeats R`, the R runs' probabilities averaged and ranked by self-confidence",
        "(`ensemble`: from the seed runs, which are its members): what R times the time buys.",
        "",
        *lines,
    ]
    write_section("human-detect", "\n".join(body))


def clean_one(work: Path, seed: int) -> dict[str, Any]:
    manifest = human_manifest(work, "annotator_1", seed=seed, test_fraction=TEST_FRACTION)
    run_dir = work / "runs" / f"clean-annotator_1-s{seed}"
    base = work / "clean" / f"annotator_1-s{seed}"

    def compute() -> dict[str, Any]:
        if not RunFiles(run_dir).oof.exists():
            timed_oof(manifest, seed_overrides(seed), run_dir)
        review = reviewed_version(run_dir, manifest, base / "review", "review")
        r = retrain_test(review, base / "retrain-review", seed, baselines=True)
        return {
            "seed": seed, "noisy": r["noisy"], "true": r["true"], "review": r["cleaned"],
            "wrong_after": {"noisy": wrong_labels(manifest), "review": wrong_labels(review)},
        }  # fmt: skip

    return cached(RESULTS / f"clean-annotator_1-s{seed}.json", compute)


def clean_section(console: Console) -> None:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("clean-*.json"))]
    if not results:
        return
    acc = {k: [r[k]["accuracy"] for r in results] for k in ("noisy", "review", "true")}
    names = {
        "noisy": "annotator_1's labels",
        "review": f"simulated reviewer, first {REVIEWED:.0%} of train rows",
        "true": "true labels",
    }
    cols = ["model trained on", "wrong train labels", "test accuracy", "test macro F1",
            "gap recovered (accuracy)", "first seed's 95% interval (accuracy)"]  # fmt: skip
    rows = []
    for key, name in names.items():
        wrong = [float(r["wrong_after"].get(key, 0)) for r in results]
        ci = results[0][key].get("accuracy_ci")
        rows.append(
            [
                name, spread(wrong, ".0f"), spread(acc[key], ".4f"),
                spread([r[key]["macro_f1"] for r in results], ".4f"),
                recovered(acc["noisy"], acc[key], acc["true"]) if key == "review" else "-",
                f"[{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "-",
            ]
        )  # fmt: skip
    title = f"cleaning gain, annotator_1's labels ({len(results)} seeds)"
    table, lines = result_table(title, cols, rows)
    console.print(table)
    body = [
        "## Cleaning gain on real human label noise: annotator_1 (CIFAR-10N)",
        "",
        "`python -m benchmarks.bench_human clean`: 8,000 shared photos labelled by",
        "`annotator_1` and 2,000 clean test photos (stratified, a split per seed); `oof` and",
        f"the queue, a simulated reviewer who answers right on the first {REVIEWED:.0%} of the",
        "train rows in queue order (relabel to CIFAR-10's class, or keep; 800 labels), then",
        "`retrain` (full mode, `pipelines/photos.toml`) on annotator_1's, the reviewed and the",
        "true labels, scored on the test photos. Gap recovered: `(cleaned - noisy) / (true -",
        "noisy)` of the means (± the paired standard error over seeds); the interval is",
        "retrain's paired bootstrap over the first seed's test rows. Target >= 0.6.",
        "",
        *lines,
    ]
    write_section("human-clean", "\n".join(body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("detect", "clean", "probe", "ensemble"))
    parser.add_argument("--labels", nargs="*", default=[*LABELS, SYNTHETIC])
    parser.add_argument("--seeds", type=int, default=3, help="annotator_1: seeds 0..N-1")
    parser.add_argument("--repeats", type=int, default=1, help="detect: oof --repeats R, seed 0")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    if unknown := sorted(set(args.labels) - {*LABELS, SYNTHETIC}):
        parser.error(f"--labels: unknown {', '.join(unknown)}")
    console = Console()
    work = args.work.resolve()
    if args.part == "detect":
        classes = sorted(p.name for p in CIFAR.iterdir() if p.is_dir())
        shape = [f'data.manifest="{human_manifest(work, LABELS[0])}"',
                 f"data.classes={json.dumps(classes)}"]  # fmt: skip
        synthetic = synthetic_images_per_s(PIPELINE, shape, 10.0)
        if args.repeats > 1:
            for labels in args.labels:
                console.print(json.dumps(ensemble_one(work, labels, args.repeats, synthetic)))
            if not args.no_write:
                detect_section(console)
            return
        for labels in args.labels:
            for seed in range(args.seeds if labels == "annotator_1" else 1):
                console.print(json.dumps(detect_one(work, labels, seed, synthetic)))
                if not args.no_write:
                    detect_section(console)
    elif args.part == "ensemble":
        for r in range(2, args.seeds + 1):
            console.print(json.dumps(seed_ensemble(work, "annotator_1", r)))
        if not args.no_write:
            detect_section(console)
    elif args.part == "probe":
        console.print(json.dumps(probe_one(work)))
        if not args.no_write:
            probe_section(console)
    else:
        for seed in range(args.seeds):
            console.print(json.dumps(clean_one(work, seed)))
            if not args.no_write:
                clean_section(console)


if __name__ == "__main__":
    main()
