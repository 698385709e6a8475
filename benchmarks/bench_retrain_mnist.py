"""Cleaning gain on MNIST: does ``flag`` -> accept -> ``retrain`` close the gap to clean labels?

Run: ``.venv/bin/python -m benchmarks.bench_retrain_mnist`` (about 50 minutes on 2 cores;
``--seeds 1 --set train.epochs=8`` for a quick look).

MNIST's 10,000 digits split into 8,000 train and 2,000 clean test rows; class-pair
noise (c -> c+1) at 10%, 20% and 40% of the train labels. For each: ``oof`` on the
noisy labels, ``flag``, a reviewer who accepts the suggestion on every queue row
whose issue is ``label`` (the rows cleanlab's ``find_label_issues`` flags; "accepted"
counts them), ``apply``, ``retrain`` (full mode, with and without ``--reweight
quality``). Test accuracy of the model trained on the noisy labels, on the cleaned
labels and on the true labels, each the mean over training seeds (one model per
seed, the same seeds for every model; the spread is the standard deviation over
seeds); the fraction of the gap recovered is ``(cleaned - noisy) / (true - noisy)``
of the means, ± its paired standard error (every model of a seed shares
``train.seed``: the error of the mean per-seed difference). On MNIST the whole
gap is a few dozen of the 2,000 test images, about the spread between two seeds
of one model, so one seed cannot measure it. The wrong
labels left after cleaning are split by cause: noise outside the accepted rows
(missed), accepted rows whose suggestion is not the true class either (wrong fix),
and right labels replaced by the suggestion (introduced). Two more models: one
with no review at all, ``retrain --reweight prune`` on the noisy labels (the rows
the first ``oof`` flags get weight 0, as cleanlab's ``CleanLearning`` prunes its
issues), and one for a reviewer who looks at the same accepted rows but answers
with the true label (keeps right labels), as a person reviewing the queue
would. ``--rounds 2`` runs the loop twice before
retraining (the second ``oof`` on the first cleaned version; decided rows are not
queued again); "accepted" then counts both rounds. ``--oof-runs 3`` trains three
``oof`` runs per round (``train.seed`` 42, 43, 44: other folds, other models) and flags
them together, as ``flag RUN1 RUN2 RUN3`` does (mean probabilities); ``prune`` and
``quality`` read the same runs.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
from rich.console import Console

from benchmarks.common import MNIST_DIR, ROOT, oof_run, result_table, write_section
from cleaner.core.atomic import atomic_path
from cleaner.core.config import load_config
from cleaner.core.progress import make_progress
from cleaner.final.retrain import RetrainOptions, run_retrain
from cleaner.formats.run_files import RunFiles
from cleaner.ingest.arrays import ingest_arrays, load_mnist_arrays
from cleaner.ranking.queue import make_queue
from cleaner.review.apply import apply_queue

PIPELINE = ROOT / "pipelines" / "mnist.toml"
RATES = (0.10, 0.20, 0.40)


def accept_label_issues(queue_csv: Path) -> list[str]:
    """Accept the suggestion on every ``label`` issue row of the queue; returns their ids."""
    q = pd.read_csv(queue_csv, dtype=str, keep_default_na=False)
    take = q.index[q["issue"] == "label"]
    q.loc[take, "decision"] = "relabel"
    with atomic_path(queue_csv, overwrite=True) as tmp:
        q.to_csv(tmp, index=False)
    return q.loc[take, "sample_id"].tolist()


def residual_errors(truth: pd.DataFrame, after: pd.DataFrame, accepted: list[str]) -> dict:
    """Wrong train labels after cleaning, by cause (frames indexed by sample_id)."""
    train = truth.index[truth["split"] == "train"]
    given, true, now = (truth.loc[train, "label"], truth.loc[train, "true_label"],
                        after.loc[train, "label"])  # fmt: skip
    took = train.isin(accepted)
    noisy = (given != true).to_numpy()
    wrong = (now != true).to_numpy()
    return {
        "missed": int((noisy & ~took).sum()),  # a wrong label not in the accepted rows
        "wrong_fix": int((noisy & took & wrong).sum()),  # accepted, but not the true class
        "introduced": int((~noisy & took).sum()),  # a right label replaced by the suggestion
        "wrong_after": int(wrong.sum()),
    }


def oracle_manifest(manifest: Path, accepted: list[str]) -> Path:
    """The reviewer who looks at the same rows and knows the truth: right labels kept."""
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    rows = df["sample_id"].isin(accepted)
    df.loc[rows, "label"] = df.loc[rows, "true_label"]
    out = manifest.with_name(f"{manifest.stem}-oracle.csv")
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    return out


def mean_sd(values: list[float]) -> str:
    """``mean`` or ``mean ± sd`` (over seeds) with 4 decimals."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def recovered(noisy: list[float], cleaned: list[float], true: list[float]) -> str:
    """Gap recovered, ``± paired standard error`` over seeds when there are several.

    Every model of a seed shares its ``train.seed``, so the error is that of the mean
    of the per-seed differences ``cleaned - noisy``, over the mean gap.
    """
    gap = np.mean(true) - np.mean(noisy)
    if gap <= 0:
        return "-"
    diff = np.asarray(cleaned) - np.asarray(noisy)
    text = f"{diff.mean() / gap:.2f}"
    if len(diff) > 1:
        text += f" ± {diff.std(ddof=1) / np.sqrt(len(diff)) / gap:.2f}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", type=Path, default=MNIST_DIR)
    parser.add_argument("--set", action="append", default=[], help="pipeline override")
    parser.add_argument("--rates", nargs="*", type=float, default=list(RATES))
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per model")
    parser.add_argument(
        "--rounds", type=int, default=1, help="oof -> flag -> accept -> apply rounds"
    )
    parser.add_argument(
        "--oof-runs",
        type=int,
        default=1,
        help="oof runs per round (train.seed, +1, ...), flagged as one ensemble",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    console = Console()
    images, labels, ids = load_mnist_arrays(args.mnist)
    base_seed = load_config(PIPELINE, args.set).train.seed
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for rate in args.rates:
            tag = f"pairs{int(rate * 100)}"
            manifest = work / tag / "mnist.csv"
            ingest_arrays(
                images,
                labels,
                ids,
                work / tag / "images",
                manifest,
                noise=rate,
                noise_kind="pairs",
                seed=1,
                test_fraction=0.2,
            )
            cleaned, accepted = manifest, []
            first_oof: list[Path] = []
            for round_ in range(args.rounds):
                # Each round: oof on the current version (one run per seed), flag them
                # together, accept every label row, apply.
                runs = []
                for k in range(args.oof_runs):
                    oof_seed = f"train.seed={base_seed + k}"
                    overrides = [f'data.manifest="{cleaned}"', *args.set, oof_seed]
                    with make_progress() as progress:
                        oof = oof_run(
                            PIPELINE,
                            overrides,
                            out=work / tag / f"oof-{round_}-{k}",
                            progress=progress,
                        )
                    runs.append(oof.run_dir)
                first_oof = first_oof or runs
                make_queue(runs, top=len(ids))  # every flagged row
                queue_csv = RunFiles(runs[0]).queue.csv
                accepted += accept_label_issues(queue_csv)
                applied = apply_queue(queue_csv, reviewer="benchmark")
                assert applied.new_manifest is not None
                cleaned = applied.new_manifest
            truth = pd.read_csv(manifest, dtype=str, keep_default_na=False).set_index("sample_id")
            after = pd.read_csv(cleaned, dtype=str, keep_default_na=False).set_index("sample_id")
            train = truth["split"] == "train"
            wrong_before = int((truth.loc[train, "label"] != truth.loc[train, "true_label"]).sum())
            oracle = oracle_manifest(manifest, accepted)
            acc: dict[str, list[float]] = {
                "noisy": [], "cleaned": [], "quality": [], "prune": [], "oracle": [], "true": []
            }  # fmt: skip
            for seed in range(args.seeds):
                # (key, manifest, reweight, oof runs): the baselines come with the first
                for key, trained_on, reweight, scored_by in (
                    ("cleaned", cleaned, "none", runs),
                    ("quality", cleaned, "quality", runs),
                    ("prune", manifest, "prune", first_oof),  # no review at all
                    ("oracle", oracle, "none", runs),
                ):
                    with make_progress() as progress:
                        overrides = [*args.set, f"train.seed={seed}"]
                        options = RetrainOptions(
                            manifest=Path(trained_on),
                            reweight=reweight,
                            oof_runs=tuple(Path(r) for r in scored_by),
                            out=work / tag / f"retrain-{key}-{seed}",
                            baselines=key == "cleaned",
                        )
                        res = run_retrain(
                            load_config(PIPELINE, overrides), options, progress=progress
                        )
                    test = res.metrics.test
                    assert test is not None and test.noisy and test.true
                    acc[key].append(test.cleaned.accuracy)
                    if key == "cleaned":
                        acc["noisy"].append(test.noisy.accuracy)
                        acc["true"].append(test.true.accuracy)
            result = {
                "rate": rate,
                "accepted": len(accepted),
                "wrong_before": wrong_before,
                **residual_errors(truth, after, accepted),
                "accuracy": acc,
            }
            rows.append(result)
            console.print(json.dumps(result))
    cols = [
        "pair noise",
        "wrong labels before -> after",
        "after: missed / wrong fix / introduced",
        "accepted",
        "test acc noisy",
        "test acc cleaned",
        "cleaned + quality weights",
        "test acc true",
        "gap recovered",
        "gap recovered (+ quality)",
        "no review, --reweight prune: acc, gap",
        "reviewer who knows: acc, gap",
    ]
    cells = []
    for r in rows:
        a = r["accuracy"]
        cells.append(
            [
                f"{r['rate']:.0%}",
                f"{r['wrong_before']} -> {r['wrong_after']}",
                f"{r['missed']} / {r['wrong_fix']} / {r['introduced']}",
                str(r["accepted"]),
                mean_sd(a["noisy"]),
                mean_sd(a["cleaned"]),
                mean_sd(a["quality"]),
                mean_sd(a["true"]),
                recovered(a["noisy"], a["cleaned"], a["true"]),
                recovered(a["noisy"], a["quality"], a["true"]),
                f"{np.mean(a['prune']):.4f}, {recovered(a['noisy'], a['prune'], a['true'])}",
                f"{np.mean(a['oracle']):.4f}, {recovered(a['noisy'], a['oracle'], a['true'])}",
            ]
        )
    table, lines = result_table(
        f"cleaning gain on MNIST (8,000 train, 2,000 clean test, {args.seeds} seeds)", cols, cells
    )
    console.print(table)
    if not args.no_write:
        about = (__doc__ or "").split("\n\n", 2)[2].strip()
        default = list(args.rates) == list(RATES)
        command = " ".join(
            [
                "python -m benchmarks.bench_retrain_mnist",
                f"--seeds {args.seeds}",
                *([] if default else ["--rates", *map(str, args.rates)]),
                *([f"--rounds {args.rounds}"] if args.rounds > 1 else []),
                *([f"--oof-runs {args.oof_runs}"] if args.oof_runs > 1 else []),
                *(f"--set {s}" for s in args.set),
            ]
        )
        body = "\n".join(
            [
                "## Cleaning gain: `oof` -> `flag` -> accept -> `retrain` on MNIST"
                + (f", {args.rounds} rounds" if args.rounds > 1 else "")
                + (f", {args.oof_runs} oof runs per round" if args.oof_runs > 1 else ""),
                "",
                f"`{command}`: {about}",
                "Target: gap recovered >= 0.7 at 20% noise.",
                "",
                *lines,
            ]
        )
        # Each set of rates and rounds keeps its own section (a long 20% run, say).
        rounds = f"-rounds{args.rounds}" if args.rounds > 1 else ""
        rates = "" if default else "-pairs" + "-".join(str(round(r * 100)) for r in args.rates)
        ensemble = f"-ens{args.oof_runs}" if args.oof_runs > 1 else ""
        write_section(f"retrain-mnist{rounds}{ensemble}{rates}", body)


if __name__ == "__main__":
    main()
