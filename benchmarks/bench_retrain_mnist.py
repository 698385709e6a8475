"""Cleaning gain on MNIST: does ``flag`` -> accept -> ``retrain`` close the gap to clean labels?

Run: ``.venv/bin/python -m benchmarks.bench_retrain_mnist --set train.epochs=8`` (about
15 minutes on 2 cores).

MNIST's 10,000 digits split into 8,000 train and 2,000 clean test rows; class-pair
noise (c -> c+1) at 10%, 20% and 40% of the train labels. For each: ``oof`` on the
noisy labels, ``flag``, a reviewer who accepts the suggestion on the first N queue
rows (N = cleanlab's estimate of the number of wrong labels, printed by ``flag``),
``apply``, ``retrain`` (full mode, with and without ``--reweight quality``). Test
accuracy of the model trained on the noisy labels, on the cleaned labels and on the
true labels; the fraction of the gap recovered is
``(cleaned - noisy) / (true - noisy)``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", type=Path, default=MNIST_DIR)
    parser.add_argument("--set", action="append", default=[], help="pipeline override")
    parser.add_argument("--rates", nargs="*", type=float, default=list(RATES))
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
            result: dict = {
                "rate": rate,
                "accepted": n,
                "wrong_before": wrong_before,
                "wrong_after": wrong_after,
            }
            for reweight in ("none", "quality"):
                with make_progress() as progress:
                    res = run_retrain(
                        PIPELINE,
                        [f'data.manifest="{cleaned}"', *args.set],
                        reweight=reweight,
                        oof_run=oof.run_dir,
                        out=work / tag / f"retrain-{reweight}",
                        progress=progress,
                    )
                result[reweight] = res.metrics["test"]
            rows.append(result)
            console.print(
                json.dumps({k: v for k, v in result.items() if k not in ("none", "quality")})
            )
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
    table = Table(title="cleaning gain on MNIST (8,000 train, 2,000 clean test)")
    for c in cols:
        table.add_column(c, justify="right")
    lines = []
    for r in rows:
        none, q = r["none"], r["quality"]

        def gap(t: dict) -> str:
            return f"{t['gap_recovered']:.2f}" if t.get("gap_recovered") is not None else "-"

        cells = [
            f"{r['rate']:.0%}",
            f"{r['wrong_before']} -> {r['wrong_after']}",
            str(r["accepted"]),
            f"{none['noisy']['accuracy']:.4f}",
            f"{none['cleaned']['accuracy']:.4f}",
            f"{q['cleaned']['accuracy']:.4f}",
            f"{none['true']['accuracy']:.4f}",
            gap(none),
            gap(q),
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    if not args.no_write:
        about = (__doc__ or "").split("\n\n", 2)[2].strip()
        command = " ".join(
            ["python -m benchmarks.bench_retrain_mnist", *(f"--set {s}" for s in args.set)]
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
