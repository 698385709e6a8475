"""Active label cleaning in rounds on real human noise: labels corrected per label spent.

``python -m benchmarks.bench_rounds [--seeds 3]``: the 10,000 shared photos labelled by
CIFAR-10N's ``annotator_1`` (17.8% wrong against ``cifar_label``), answered by a
SIMULATED annotator: one ask reads ``annotator_2``, then ``annotator_3``, then
``cifar_label``, until one class leads the row's labels (Bernhardt et al. 2022). A
row's label is the majority of its labels (ties: the model's most likely of the tied).

Four orders spend the same labels, measured at 5%, 10% and 20% of the rows:

- ``rounds``: the product's rounds (:func:`cleaner.rounds.select.select_batch`:
  Bernhardt's relabel score, ActiveLab on rows with several labels) of 5% of the rows
  each, the fold models refreshed after each (:func:`cleaner.training.refresh.refresh_run`,
  2 epochs from each fold's own checkpoint), so out-of-fold stays out-of-fold;
- ``one-shot``: ``flag``'s queue order (self-confidence) of the first run, no refresh;
- ``random``: a seeded random order;
- ``entropy``: the first run's most uncertain rows first (predictive entropy).

"Corrected" is net: wrong labels made right minus right labels made wrong, against
``cifar_label``. After each round the estimate of wrong labels left among the rows not
yet asked (:func:`cleaner.rounds.estimate.errors_left`) is set against the truth.
Seed s is ``oof``'s ``train.seed = 42 + s`` (``bench_human detect``'s runs, reused) and
the random order's seed. Runs in parts: each seed's result is kept in
``benchmarks/results/rounds/``. ``--compare-refresh --seeds 1`` sets the last refresh
against ``oof`` from scratch on the same manifest version (time and detection).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from scipy.stats import entropy

from benchmarks.bench_human import WORK, human_manifest
from benchmarks.bench_photos import cached, seed_overrides, timed_oof
from benchmarks.common import ROOT, write_section
from cleaner.core.atomic import atomic_path
from cleaner.core.progress import make_progress
from cleaner.formats.run_files import RunFiles
from cleaner.formats.runs import Run, load_run
from cleaner.ranking.crowd import active_learning_scores
from cleaner.ranking.flag import label_quality
from cleaner.rounds.estimate import errors_left
from cleaner.rounds.select import select_batch
from cleaner.rounds.simulate import SimulatedAnnotator
from cleaner.training.refresh import refresh_run

HUMAN = ROOT.parent / "shared" / "data" / "cifar10" / "human_labels.csv"
RESULTS = ROOT / "benchmarks" / "results" / "rounds"
ANSWERS = ("annotator_2", "annotator_3", "cifar_label")
ROUND = 0.05  # of the rows: the labels one round spends, and the first budget
BUDGETS = (0.05, 0.10, 0.20)
ORDERS = ("rounds", "one-shot", "random", "entropy")


class Labels:
    """Every row's labels as class counts (N, K), the answers taken, and the rows asked."""

    def __init__(self, first: np.ndarray, k: int, annotator: SimulatedAnnotator) -> None:
        self.first = first
        self.counts = np.zeros((len(first), k), dtype=np.int64)
        self.counts[np.arange(len(first)), first] = 1
        self.taken = np.zeros(len(first), dtype=np.int64)
        self.asked = np.zeros(len(first), dtype=bool)
        self.annotator = annotator
        self.spent = 0
        self.matrix = np.full((len(first), 1 + len(ANSWERS)), np.nan)  # (N, M) for ActiveLab
        self.matrix[:, 0] = first

    def ask(self, rows: np.ndarray, budget: int) -> None:
        """Ask about ``rows`` in order until ``budget`` labels in all are spent."""
        for row in rows.tolist():
            if self.spent >= budget:
                return
            answers = self.annotator.ask([row], label_counts=self.counts, taken=self.taken)
            for a in answers:
                self.counts[row, a.label] += 1
                self.matrix[row, 1 + ANSWERS.index(a.annotator)] = a.label
            self.taken[row] += len(answers)
            self.spent += len(answers)
            self.asked[row] = True

    def consensus(self, probs: np.ndarray) -> np.ndarray:
        """Each row's majority label; a tie goes to the model's most likely of the tied."""
        top = self.counts == self.counts.max(axis=1, keepdims=True)
        return np.where(top, probs + 1.0, probs).argmax(axis=1)


def _corrected(labels: np.ndarray, first: np.ndarray, truth: np.ndarray) -> int:
    """Wrong labels made right minus right labels made wrong."""
    fixed = (first != truth) & (labels == truth)
    broken = (first == truth) & (labels != truth)
    return int(fixed.sum() - broken.sum())


def _static(
    order: np.ndarray, state: Labels, run: Run, truth: np.ndarray, n: int
) -> dict[str, int]:
    """An order fixed up front, no refresh: the net corrected labels at each budget."""
    out = {}
    for b in BUDGETS:
        state.ask(order, round(b * n))
        out[f"{b:.2f}"] = _corrected(state.consensus(run.pred_probs), state.first, truth)
    return out


def _write_version(manifest: Path, labels: np.ndarray, run: Run, out: Path) -> Path:
    """The manifest with each train row's label set to its consensus."""
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    position = pd.Index(df["sample_id"]).get_indexer(pd.Index(run.sample_ids))
    df.loc[position, "label"] = np.asarray(run.classes, dtype=object)[labels]
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    return out


def _rounds(
    state: Labels, run: Run, truth: np.ndarray, manifest: Path, folder: Path
) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The product's rounds, refreshed between them; corrected labels and the estimates."""
    n = len(truth)
    out: dict[str, int] = {}
    estimates = []
    for r in range(1, round(max(BUDGETS) / ROUND) + 1):
        labelled = ~np.isnan(state.matrix)
        activelab = np.full(n, np.nan)
        if (labelled.sum(axis=1) >= 2).any():  # ActiveLab needs a row with two labels
            used = labelled.any(axis=0)  # and no annotator without a label
            activelab = active_learning_scores(state.matrix[:, used], run.pred_probs)[0]
        sel = select_batch(
            run.pred_probs,
            label_counts=state.counts,
            budget=round(ROUND * n),
            decided=state.asked,
            activelab_scores=activelab,
        )
        state.ask(sel.rows, round(r * ROUND * n))
        labels = state.consensus(run.pred_probs)
        out[f"{r * ROUND:.2f}"] = _corrected(labels, state.first, truth)
        if r * ROUND >= max(BUDGETS) - 1e-9:
            break
        t0 = time.perf_counter()
        version = _write_version(manifest, labels, run, folder / f"round-{r}.csv")
        with make_progress() as progress:
            refreshed = refresh_run(
                run.run_dir, version, out=folder / f"run-{r}", progress=progress
            )
        run = load_run(refreshed.run_dir)
        # The labels the asks checked: the first ones; found wrong where the answers moved it.
        e = errors_left(state.first, run.pred_probs, reviewed=state.asked,
                        found_wrong=state.asked & (labels != state.first))  # fmt: skip
        truly = int(((labels != truth) & ~state.asked).sum())
        estimates.append({
            "round": r, "labels_spent": state.spent, "estimate": e.estimate,
            "interval": list(e.interval), "truth": truly,
            "cleanlab_flags": e.cleanlab_estimate, "refresh_seconds": time.perf_counter() - t0,
        })  # fmt: skip
    return out, estimates


def _human(run: Run) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """The run's classes, each row's cifar_label (class index) and the answer columns."""
    human = pd.read_csv(HUMAN, dtype=str, keep_default_na=False).set_index("path")
    rows = human.loc[run.sample_ids]
    classes = list(run.classes)
    truth = pd.Index(classes).get_indexer(pd.Index(rows["cifar_label"]))
    return classes, truth, rows[list(ANSWERS)].reset_index(drop=True)


def measure(seed: int, work: Path) -> dict[str, Any]:
    """One seed: the first run (trained if missing), then every order from it."""
    manifest = human_manifest(work, "annotator_1")
    run_dir = work / "runs" / f"annotator_1-s{seed}"
    oof_seconds = None
    if not RunFiles(run_dir).metrics.exists():
        oof_seconds = timed_oof(manifest, seed_overrides(seed), run_dir)[1]
    run = load_run(run_dir)
    classes, truth, table = _human(run)
    n = len(truth)

    def fresh() -> Labels:
        annotator = SimulatedAnnotator.from_columns(table, ANSWERS, classes=classes, seed=seed)
        return Labels(run.labels.copy(), len(classes), annotator)

    quality = label_quality(run.labels, run.pred_probs, method=run.cfg.flag.method)
    orders: dict[str, Callable[[], dict[str, int]]] = {
        "one-shot": lambda: _static(np.argsort(quality, kind="stable"), fresh(), run, truth, n),
        "random": lambda: _static(
            np.random.default_rng(seed).permutation(n), fresh(), run, truth, n
        ),
        "entropy": lambda: _static(
            np.argsort(-entropy(run.pred_probs, axis=1), kind="stable"), fresh(), run, truth, n
        ),
    }
    result: dict[str, Any] = {"seed": seed, "rows": n, "wrong": int((run.labels != truth).sum())}
    result["oof_seconds"] = oof_seconds
    result["simulated"] = fresh().annotator.name
    for name, compute in orders.items():
        result[name] = compute()
    t0 = time.perf_counter()
    folder = work / "rounds" / f"s{seed}"
    result["rounds"], result["estimates"] = _rounds(fresh(), run, truth, manifest, folder)
    result["rounds_seconds"] = time.perf_counter() - t0
    return result


def refresh_vs_oof(seed: int, work: Path) -> dict[str, Any]:
    """The last refresh of seed ``seed``'s rounds against ``oof`` from scratch on the same
    manifest version: time, and detection of the wrong labels among the rows not yet asked
    (AUROC and AP of 1 - label quality against cifar_label)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    folder = work / "rounds" / f"s{seed}"
    last = max(int(p.name.split("-")[1]) for p in folder.glob("run-*"))
    refreshed = load_run(folder / f"run-{last}")
    version = folder / f"round-{last}.csv"
    scratch_dir = folder / f"oof-{last}"
    t0 = time.perf_counter()
    timed_oof(version, seed_overrides(seed), scratch_dir)
    scratch_seconds = time.perf_counter() - t0
    human = pd.read_csv(HUMAN, dtype=str, keep_default_na=False).set_index("path")
    result: dict[str, Any] = {"seed": seed, "round": last, "oof_seconds": scratch_seconds}
    result["refresh_seconds"] = json.loads((RESULTS / f"rounds-s{seed}.json").read_text())[
        "estimates"
    ][-1]["refresh_seconds"]
    for name, run in (("refresh", refreshed), ("oof", load_run(scratch_dir))):
        truth = pd.Index(run.classes).get_indexer(
            pd.Index(human.loc[run.sample_ids, "cifar_label"])
        )
        wrong = run.labels != truth
        doubt = 1 - label_quality(run.labels, run.pred_probs)
        result[name] = {
            "auroc": float(roc_auc_score(wrong, doubt)),
            "ap": float(average_precision_score(wrong, doubt)),
            "accuracy": float(np.mean(run.pred_probs.argmax(1) == truth)),
        }
    return result


# The final model's accuracy on clean held-out rows: each label set trains `oof` with 2
# folds, so every photo is predicted by a model trained on the other half's labels (and
# scored against its cifar_label, which that model never saw).
FINAL_FOLDS = 2
FINAL_BUDGET = 0.10


def _label_sets(seed: int, work: Path) -> dict[str, Path]:
    """The manifest versions the final models train on: the first labels, each order's
    consensus at ``FINAL_BUDGET`` (the rounds' as their refresh saw it), all true labels."""
    manifest = human_manifest(work, "annotator_1")
    run = load_run(work / "runs" / f"annotator_1-s{seed}")
    classes, truth, table = _human(run)
    n = len(truth)
    folder = work / "final" / f"s{seed}"
    rounds = work / "rounds" / f"s{seed}" / f"round-{round(FINAL_BUDGET / ROUND)}.csv"
    if not rounds.exists():
        raise SystemExit(f"{rounds} is missing: run `python -m benchmarks.bench_rounds` first")
    quality = label_quality(run.labels, run.pred_probs, method=run.cfg.flag.method)
    sets = {"annotator_1, not cleaned": manifest, "rounds": rounds}
    for name, order in (
        ("one-shot", np.argsort(quality, kind="stable")),
        ("random", np.random.default_rng(seed).permutation(n)),
    ):
        annotator = SimulatedAnnotator.from_columns(table, ANSWERS, classes=classes, seed=seed)
        state = Labels(run.labels.copy(), len(classes), annotator)
        state.ask(order, round(FINAL_BUDGET * n))
        labels = state.consensus(run.pred_probs)
        sets[name] = _write_version(manifest, labels, run, folder / f"{name}.csv")
    sets["cifar_label, all clean"] = _write_version(manifest, truth, run, folder / "clean.csv")
    return sets


def final_accuracy(seed: int, work: Path) -> dict[str, Any]:
    """Held-out accuracy (against cifar_label) of the model each label set trains, with a
    95% interval, and its paired difference from the uncleaned labels'."""
    from cleaner.core.intervals import difference_interval, metric_intervals

    human = pd.read_csv(HUMAN, dtype=str, keep_default_na=False).set_index("path")
    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    truth = np.array([])
    for name, version in _label_sets(seed, work).items():
        slug = name.split(",")[0].replace(" ", "-")
        out = work / "final" / f"s{seed}" / f"oof-{slug}"
        if RunFiles(out).metrics.exists():
            wall = float("nan")
        else:
            overrides = [*seed_overrides(seed), f"train.folds={FINAL_FOLDS}"]
            wall = timed_oof(version, overrides, out)[1]
        run = load_run(out)
        truth = pd.Index(run.classes).get_indexer(
            pd.Index(human.loc[run.sample_ids, "cifar_label"])
        )
        preds[name] = run.pred_probs.argmax(axis=1)
        seconds[name] = wall
    k = len(np.unique(truth))
    intervals = metric_intervals(truth, preds, k)
    base = preds["annotator_1, not cleaned"]
    return {
        "seed": seed,
        "budget": FINAL_BUDGET,
        "rows": len(truth),
        "models": {
            name: {
                "accuracy": float(np.mean(pred == truth)),
                "interval": list(intervals[name]["accuracy"]),
                "gain_interval": list(difference_interval(truth, base, pred)),
                "seconds": seconds[name],
            }
            for name, pred in preds.items()
        },
    }


def _final_summary(finals: list[dict[str, Any]]) -> str:
    """Each order's gain in held-out accuracy over the seeds, and its share of the gain
    that all true labels give."""

    def gain(f: dict[str, Any], name: str) -> float:
        base = f["models"]["annotator_1, not cleaned"]["accuracy"]
        return float(f["models"][name]["accuracy"] - base)

    clean = "cifar_label, all clean"
    parts = []
    for name in ("rounds", "one-shot", "random"):
        gains = [100 * gain(f, name) for f in finals]
        shares = [gain(f, name) / gain(f, clean) for f in finals if gain(f, clean) > 0]
        parts.append(
            f"{name} {_spread(gains, '+.1f')} points ({_spread(shares, '.0%')} of the gain of "
            "all true labels)"
        )
    gains = [100 * gain(f, clean) for f in finals]
    return (
        f"Over {len(finals)} seed(s), mean [min, max], the held-out accuracy gained "
        f"at a {FINAL_BUDGET:.0%} budget: "
        + "; ".join(parts)
        + f"; all true labels {_spread(gains, '+.1f')} points."
    )


def _spread(values: list[float], fmt: str = ".0f") -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{np.mean(values):{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


def section(console: Console) -> None:
    """The BENCHMARKS.md section from every seed measured so far."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("rounds-s*.json"))]
    if not results:
        return
    n = results[0]["rows"]
    lines = [
        "## Active cleaning in rounds: labels corrected per label spent (real human noise)",
        "",
        f"`python -m benchmarks.bench_rounds`: the {n:,} shared photos labelled by "
        f"CIFAR-10N's annotator_1 ({np.mean([r['wrong'] for r in results]):,.0f} wrong "
        "against cifar_label); answers from a SIMULATED annotator "
        f"({results[0]['simulated']}), one more column per ask until one class leads. "
        f"Net labels corrected against cifar_label at each budget; {len(results)} seed(s), "
        "mean [min, max].",
        "",
        "| order | "
        + " | ".join(f"{b:.0%} budget ({round(b * n):,} labels)" for b in BUDGETS)
        + " |",
        "|---|" + "---:|" * len(BUDGETS),
    ]
    for order in ORDERS:
        cells = [_spread([r[order][f"{b:.2f}"] for r in results]) for b in BUDGETS]
        lines.append(f"| {order} | " + " | ".join(cells) + " |")
    ratios = [r["rounds"]["0.10"] / max(r["random"]["0.10"], 1) for r in results]
    per_label = [r["rounds"]["0.10"] / round(0.10 * n) for r in results]
    lines += [
        "",
        f"At 10%: rounds correct {_spread(ratios, '.1f')}x as many labels as random order "
        f"(target 3x); {_spread(per_label, '.2f')} labels corrected per label spent.",
        "",
        "Estimate of the wrong labels left among the rows not yet asked, after each round "
        "(refreshed model), against the truth:",
        "",
        "| round | labels spent | estimate (95% interval) | truth | error | refresh s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    trained = [r["oof_seconds"] for r in results if r.get("oof_seconds")]
    if trained:
        lines[-4:-4] = [
            f"`oof` from scratch took {_spread(trained)} s where this benchmark trained it "
            "(the refresh column is its fine-tune of the 5 fold models, with the checks and "
            "predictions; seed 0's first run predates `train.cpu_amp` and refreshes in "
            "float32).",
            "",
        ]
    for r in results:
        for e in r["estimates"]:
            err = (e["estimate"] - e["truth"]) / max(e["truth"], 1)
            lines.append(
                f"| {e['round']} (seed {r['seed']}) | {e['labels_spent']:,} | "
                f"{e['estimate']:,.0f} ({e['interval'][0]:,.0f}-{e['interval'][1]:,.0f}) | "
                f"{e['truth']:,} | {err:+.0%} | {e['refresh_seconds']:.0f} |"
            )
    compared = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("refresh-vs-oof-s*.json"))]
    if compared:
        lines += [
            "",
            "The refresh against `oof` from scratch on the same version (the last round's): "
            "detection of the wrong labels still in it (every row), and time:",
            "",
            "| seed | model | AUROC | AP | out-of-fold accuracy | seconds |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for c in compared:
            for name, secs in (("refresh", c["refresh_seconds"]), ("oof", c["oof_seconds"])):
                m = c[name]
                lines.append(
                    f"| {c['seed']} | {name} (after round {c['round']}) | {m['auroc']:.3f} | "
                    f"{m['ap']:.3f} | {m['accuracy']:.3f} | {secs:.0f} |"
                )
    finals = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("final-s*.json"))]
    if finals:
        lines += [
            "",
            f"The final model's accuracy on clean held-out photos, after a "
            f"{FINAL_BUDGET:.0%} budget: `oof` with {FINAL_FOLDS} folds on each label set, "
            "so each photo is predicted by a model trained on the other half's labels and "
            "scored against its cifar_label (95% bootstrap intervals over the photos; the "
            "gain is paired, against the uncleaned labels). The orders chose whom to ask "
            "with models that had seen every photo's noisy label, not its true one.",
            "",
            "| seed | labels trained on | held-out accuracy | gain over not cleaned |",
            "|---:|---|---:|---:|",
        ]
        for f in finals:
            for name, m in f["models"].items():
                lo, hi = m["interval"]
                glo, ghi = m["gain_interval"]
                gain = m["accuracy"] - f["models"]["annotator_1, not cleaned"]["accuracy"]
                lines.append(
                    f"| {f['seed']} | {name} | {m['accuracy']:.3f} ({lo:.3f}-{hi:.3f}) | "
                    f"{gain:+.3f} ({glo:+.3f} to {ghi:+.3f}) |"
                )
        lines += ["", _final_summary(finals)]
    write_section("rounds", "\n".join(lines))
    console.print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--compare-refresh", action="store_true", help="the last refresh against oof from scratch"
    )
    parser.add_argument(
        "--final", action="store_true", help="the final model's accuracy on held-out photos"
    )
    args = parser.parse_args()
    console = Console()
    measures: dict[str, Callable[[int, Path], dict[str, Any]]] = {
        "final": final_accuracy, "refresh-vs-oof": refresh_vs_oof, "rounds": measure,
    }  # fmt: skip
    kind = "final" if args.final else "refresh-vs-oof" if args.compare_refresh else "rounds"
    for seed in args.seeds:
        compute = functools.partial(measures[kind], seed, args.work.resolve())
        result = cached(RESULTS / f"{kind}-s{seed}.json", compute)
        console.print(json.dumps({k: v for k, v in result.items() if k != "estimates"}))
        if not args.no_write:
            section(console)


if __name__ == "__main__":
    main()
