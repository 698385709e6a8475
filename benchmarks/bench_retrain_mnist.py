"""Cleaning gain on MNIST: does ``flag`` -> accept -> ``retrain`` close the gap to clean labels?

Run: ``.venv/bin/python -m benchmarks.bench_retrain_mnist`` (about 30 minutes on 2 cores;
``--seeds 1 --set train.epochs=8`` for a quick look).

MNIST's 10,000 digits split into 8,000 train and 2,000 clean test rows; class-pair
noise (c -> c+1) at 10%, 20% and 40% of the train labels. For each: ``oof`` on the
noisy labels, ``flag``, a reviewer who accepts the suggestion on the first N queue
rows (N = cleanlab's estimate of the number of wrong labels, printed by ``flag``),
``apply``, ``retrain`` (full mode, with and without ``--reweight quality``). Test
accuracy of the model trained on the noisy labels, on the cleaned labels and on the
true labels, each the mean over training seeds (one model per seed; the spread is
the standard deviation over seeds); the fraction of the gap recovered is
``(cleaned - noisy) / (true - noisy)`` of the means. On MNIST the whole gap is a
few dozen of the 2,000 test images, about the spread between two seeds of one
model, so one seed cannot measure it.
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
from rich.table import Table

from benchmarks.common import MNIST_DIR, ROOT, write_section
from cleaner.atomic import atomic_path
from cleaner.ingest import ingest_arrays, load_mnist_arrays
from cleaner.oof import run_oof
from cleaner.progress import make_progress
from cleaner.queue import make_queue
from cleaner.retrain import run_retrain
from cleaner.review import apply_queue

PIPELINE = ROOT / "pipelines" / "mnist.toml"
RATES = (0.10, 0.20, 0.40)


def accept_top(queue_csv: Path, n: int) -> int:
    """Accept the suggestion on the first ``n`` label-issue rows; returns how many."""
    q = pd.read_csv(queue_csv, dtype=str, keep_default_na=False)
    take = q.index[q["issue"] == "label"][:n]
    q.loc[take, "decision"] = "relabel"
    with atomic_path(queue_csv, overwrite=True) as tmp:
        q.to_csv(tmp, index=False)
    return len(take)


def mean_sd(values: list[float]) -> str:
    """``mean`` or ``mean ± sd`` (over seeds) with 4 decimals."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def recovered(noisy: list[float], cleaned: list[float], true: list[float]) -> str:
    gap = np.mean(true) - np.mean(noisy)
    return f"{(np.mean(cleaned) - np.mean(noisy)) / gap:.2f}" if gap > 0 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", type=Path, default=MNIST_DIR)
    parser.add_argument("--set", action="append", default=[], help="pipeline override")
    parser.add_argument("--rates", nargs="*", type=float, default=list(RATES))
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per model")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    console = Console()
    images, labels, ids = load_mnist_arrays(args.mnist)
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
            overrides = [f'data.manifest="{manifest}"', *args.set]
            with make_progress() as progress:
                oof = run_oof(PIPELINE, overrides, out=work / tag / "oof", progress=progress)
            summary = make_queue([oof.run_dir], top=8000)
            n = accept_top(oof.run_dir / "queue.csv", summary.num_label_issues)
            cleaned = apply_queue(oof.run_dir / "queue.csv", reviewer="benchmark").new_manifest
            assert cleaned is not None
            truth = pd.read_csv(manifest, dtype=str, keep_default_na=False).set_index("sample_id")
            after = pd.read_csv(cleaned, dtype=str, keep_default_na=False).set_index("sample_id")
            train = truth["split"] == "train"
            wrong_before = int((truth.loc[train, "label"] != truth.loc[train, "true_label"]).sum())
            wrong_after = int((after.loc[train, "label"] != truth.loc[train, "true_label"]).sum())
            acc: dict[str, list[float]] = {"noisy": [], "cleaned": [], "quality": [], "true": []}
            for seed in range(args.seeds):
                for reweight in ("none", "quality"):
                    with make_progress() as progress:
                        res = run_retrain(
                            PIPELINE,
                            [f'data.manifest="{cleaned}"', *args.set, f"train.seed={seed}"],
                            reweight=reweight,
                            oof_run=oof.run_dir,
                            out=work / tag / f"retrain-{reweight}-{seed}",
                            progress=progress,
                            baselines=reweight == "none",  # the baselines do not depend on it
                        )
                    test = res.metrics["test"]
                    if reweight == "none":
                        for k in ("noisy", "cleaned", "true"):
                            acc[k].append(test[k]["accuracy"])
                    else:
                        acc["quality"].append(test["cleaned"]["accuracy"])
            result = {
                "rate": rate,
                "accepted": n,
                "wrong_before": wrong_before,
                "wrong_after": wrong_after,
                "accuracy": acc,
            }
            rows.append(result)
            console.print(json.dumps(result))
    cols = [
        "pair noise",
        "wrong labels before -> after",
        "accepted",
        "test acc noisy",
        "test acc cleaned",
        "cleaned + quality weights",
        "test acc true",
        "gap recovered",
        "gap recovered (+ quality)",
    ]
    table = Table(
        title=f"cleaning gain on MNIST (8,000 train, 2,000 clean test, {args.seeds} seeds)"
    )
    for c in cols:
        table.add_column(c, justify="right")
    lines = []
    for r in rows:
        a = r["accuracy"]
        cells = [
            f"{r['rate']:.0%}",
            f"{r['wrong_before']} -> {r['wrong_after']}",
            str(r["accepted"]),
            mean_sd(a["noisy"]),
            mean_sd(a["cleaned"]),
            mean_sd(a["quality"]),
            mean_sd(a["true"]),
            recovered(a["noisy"], a["cleaned"], a["true"]),
            recovered(a["noisy"], a["quality"], a["true"]),
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    if not args.no_write:
        about = (__doc__ or "").split("\n\n", 2)[2].strip()
        command = " ".join(
            [
                "python -m benchmarks.bench_retrain_mnist",
                f"--seeds {args.seeds}",
                *(f"--set {s}" for s in args.set),
            ]
        )
        body = "\n".join(
            [
                "## Cleaning gain: `oof` -> `flag` -> accept -> `retrain` on MNIST",
                "",
                f"`{command}`: {about}",
                "Target: gap recovered >= 0.7 at 20% noise.",
                "",
                "| " + " | ".join(cols) + " |",
                "|" + "---|" * len(cols),
                *lines,
            ]
        )
        write_section("retrain-mnist", body)


if __name__ == "__main__":
    main()
