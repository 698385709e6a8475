"""Detection quality of ``cleaner flag`` on MNIST with synthetic label noise.

Run: ``.venv/bin/python -m benchmarks.bench_flag_mnist`` (about 25 minutes on 2 cores).

For three kinds of noise (uniform, class-pair flips, flips toward each
sample's most likely other class) at 5%, 10% and 20% on the 10,000 MNIST
digits: ``cleaner oof`` (pipelines/mnist.toml, 5 folds) then ``cleaner flag``,
scored against the known flips: precision and recall of the first k queue
rows (k = number of flipped labels), and AUROC and average precision of the
ranking score (label quality) over all rows. Beside it, in the same run,
cleanlab's reference recipe: 5-fold logistic regression on the pixels, then
``find_label_issues`` ranked by self-confidence.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import cross_val_predict

from benchmarks.common import MNIST_DIR, ROOT, oof_run, result_table, write_section
from cleaner.core.progress import make_progress
from cleaner.formats.run_files import RunFiles
from cleaner.formats.runs import load_run
from cleaner.ingest.arrays import ingest_arrays, load_mnist_arrays
from cleaner.ingest.noise import flip_toward_confusion, inject_noise
from cleaner.ranking.flag import label_quality
from cleaner.ranking.queue import make_queue

PIPELINE = ROOT / "pipelines" / "mnist.toml"
KINDS = ("uniform", "pairs", "toward")
RATES = (0.05, 0.10, 0.20)


def reference_probs(pixels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """cleanlab's reference: 5-fold logistic regression on the pixels, out-of-fold."""
    model = LogisticRegression(max_iter=300)
    return cross_val_predict(model, pixels, labels, cv=5, method="predict_proba", n_jobs=2)


def scores(is_error: np.ndarray, order: np.ndarray, quality: np.ndarray) -> dict[str, float]:
    """P@k and R@k of ``order`` (indices, best first; k = number of errors), AUROC and AP."""
    k = int(is_error.sum())
    hits = int(is_error[order[:k]].sum())
    return {
        "p_at_k": hits / k,
        "r_at_k": hits / k,  # equal to P@k at k = number of errors; kept for the table
        "auroc": float(roc_auc_score(is_error, -quality)),
        "ap": float(average_precision_score(is_error, -quality)),
        "queue": len(order),
    }


def noisy_labels(kind: str, rate: float, labels: np.ndarray, clean_ref: np.ndarray) -> np.ndarray:
    seed = int(rate * 1000)
    if kind == "toward":
        return flip_toward_confusion(labels, clean_ref, rate=rate, seed=seed)
    return inject_noise(labels, rate=rate, kind=kind, n_classes=10, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mnist", type=Path, default=MNIST_DIR)
    parser.add_argument("--set", action="append", default=[], help="pipeline override")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS))
    parser.add_argument("--rates", nargs="*", type=float, default=list(RATES))
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    console = Console()
    images, labels, ids = load_mnist_arrays(args.mnist)
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255.0
    clean_ref = reference_probs(pixels, labels)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = ingest_arrays(
            images, labels, ids, work / "images", work / "mnist.csv", test_fraction=0.0
        )
        df = pd.read_csv(base, dtype=str, keep_default_na=False)
        for kind in args.kinds:
            for rate in args.rates:
                noisy = noisy_labels(kind, rate, labels, clean_ref)
                is_error = noisy != labels
                manifest = work / f"mnist-{kind}-{int(rate * 100)}.csv"
                df.assign(label=noisy.astype(str)).to_csv(manifest, index=False)
                overrides = [f'data.manifest="{manifest}"', *args.set]
                t0 = time.perf_counter()
                with make_progress() as progress:
                    result = oof_run(
                        PIPELINE, overrides, out=work / f"run-{manifest.stem}", progress=progress
                    )
                oof_s = time.perf_counter() - t0
                make_queue([result.run_dir], top=len(labels))
                queue = pd.read_csv(RunFiles(result.run_dir).queue.csv, dtype=str)
                position = {s: i for i, s in enumerate(df["sample_id"])}
                order = np.array([position[s] for s in queue["sample_id"]])
                run = load_run(result.run_dir)
                ours = scores(is_error, order, label_quality(run.labels, run.pred_probs))
                ref_probs = reference_probs(pixels, noisy)
                ref_order = find_label_issues(
                    noisy, ref_probs, return_indices_ranked_by="self_confidence"
                )
                ref = scores(
                    is_error, np.asarray(ref_order), get_label_quality_scores(noisy, ref_probs)
                )
                row = {
                    "kind": kind,
                    "rate": rate,
                    "errors": int(is_error.sum()),
                    "oof_seconds": oof_s,
                    "cleaner": ours,
                    "reference": ref,
                    "oof_accuracy_vs_true": float((run.pred_probs.argmax(1) == labels).mean()),
                }
                results.append(row)
                console.print(json.dumps(row))
    cols = [
        "noise",
        "rate",
        "errors",
        "P@k cleaner",
        "P@k ref",
        "AUROC cleaner",
        "AUROC ref",
        "AP cleaner",
        "AP ref",
        "queue rows",
    ]
    rows = []
    for r in results:
        c, f = r["cleaner"], r["reference"]
        rows.append(
            [
                r["kind"],
                f"{r['rate']:.0%}",
                str(r["errors"]),
                f"{c['p_at_k']:.3f}",
                f"{f['p_at_k']:.3f}",
                f"{c['auroc']:.4f}",
                f"{f['auroc']:.4f}",
                f"{c['ap']:.3f}",
                f"{f['ap']:.3f}",
                str(c["queue"]),
            ]
        )
    table, lines = result_table("label-error detection on MNIST (10,000 digits)", cols, rows)
    console.print(table)
    if not args.no_write:
        body = "\n".join(
            [
                "## `cleaner flag`: finding label errors on MNIST",
                "",
                "`python -m benchmarks.bench_flag_mnist`: `oof` with `pipelines/mnist.toml` "
                f"({' '.join(args.set) or 'as shipped'}) then `flag`,",
                "on the 10,000 MNIST digits with synthetic noise: `uniform` (to any other class),",
                "`pairs` (c -> c+1), `toward` (to the class a logistic regression finds most",
                "likely after the true one). k = number of",
                "flipped labels, so P@k = R@k; AUROC and AP rank all rows by label quality",
                "(self-confidence). `ref` is cleanlab's reference recipe on the same labels in the",
                "same run: 5-fold logistic regression on the pixels, `find_label_issues` ranked by",
                "self-confidence. `queue rows`: rows `flag` queued when asked for all of them.",
                "Targets at 10%: AUROC >= 0.99 and P@k >= 0.9 for every kind.",
                "",
                *lines,
            ]
        )
        write_section("flag-mnist", body)


if __name__ == "__main__":
    main()
