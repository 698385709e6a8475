"""``cleaner demo``: the whole loop on scikit-learn's digits, with a simulated reviewer.

Written against :mod:`cleaner.api`, as a user's script would be.

ingest (10% label noise, clean test split) -> oof -> flag (with an audit slice
of 100 random rows) -> a *simulated* review that answers with the true labels ->
apply -> retrain -> report, whose "did cleaning help" the audit slice answers.
Every step writes its files under one folder; running the demo again finds
what is done and goes on from there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import Progress

from cleaner import api
from cleaner.core.config import SHIPPED
from cleaner.core.project_lock import project_lock
from cleaner.final.retrain import RetrainResult
from cleaner.formats.issue_kinds import GROUP_PREFIX
from cleaner.formats.manifest import next_version_path
from cleaner.formats.metrics_file import read_retrain_metrics
from cleaner.formats.queue_file import QueueText, replace_queue
from cleaner.formats.run_files import QueueFiles, RunFiles

# Package data, so an installed cleaner has it.
PIPELINE = SHIPPED / "digits.toml"
# Random rows reviewed beside the queue (flag --audit). At 10% noise about 10 of them are
# wrong; a 200-row queue holds most of those, so the labels' gain (about +7 points) has
# an interval above 0, where 50 rows would often not.
AUDIT = 100


@dataclass(frozen=True)
class DemoFiles:
    manifest: Path
    oof_run: Path
    queue_csv: Path
    queue_html: Path
    cleaned_manifest: Path
    audit_log: Path
    final: RetrainResult


def simulate_review(queue_csv: Path, manifest: Path) -> tuple[int, int]:
    """Fill the queue's decisions with the truth: relabel if wrong, keep if right.

    Returns (relabeled, kept). Only the demo does this; a person does it for real.
    """
    truth = pd.read_csv(manifest, dtype=str, keep_default_na=False).set_index("sample_id")
    # Through the queue's one writer, as a person's review page would write it.
    with project_lock(queue_csv.parent, f"cleaner demo (simulated review) {queue_csv}"):
        raw = QueueText.read(queue_csv)
        decisions: dict[int, tuple[str, str]] = {}
        for i in range(len(raw.data_rows)):
            sid = raw.cell(i, "sample_id")
            if sid.startswith(GROUP_PREFIX):
                continue
            true = str(truth.loc[sid, "true_label"])
            wrong = raw.cell(i, "given_label") != true
            decisions[i] = ("relabel", true) if wrong else ("keep", "")
        data = raw.with_decisions(decisions).render()
        replace_queue(queue_csv, data, expected=raw.sha256, changed=f"{queue_csv} changed")
    relabeled = sum(d == "relabel" for d, _ in decisions.values())
    return relabeled, len(decisions) - relabeled


def run_rounds(
    run_dir: Path,
    manifest: Path,
    *,
    rounds: int,
    budget: int,
    progress: Progress,
    console: Console,
) -> tuple[Path, Path, Path]:
    """``rounds`` rounds of active cleaning from ``run_dir``: each asks a batch of
    ``budget`` rows, a SIMULATED annotator answers it from ``true_label``, ``apply``
    folds the answers into the next version, and ``refresh`` fine-tunes the fold models
    on it. Returns the last run, manifest version and round queue; done rounds are
    found and skipped."""
    version, queue_csv = manifest, RunFiles(run_dir).round(1).csv  # rounds >= 1 sets both
    for r in range(1, rounds + 1):
        console.rule(f"[bold]round {r}/{rounds}: the {budget} rows a label is worth most on")
        queue_csv = RunFiles(run_dir).round(r).csv
        applied = next_version_path(version)
        if not applied.exists():
            if not queue_csv.exists():
                e = api.round(run_dir, budget=budget).errors
                console.print(
                    f"wrong labels left before it: {e.estimate:,.0f} "
                    f"({e.interval[0]:,.0f}-{e.interval[1]:,.0f}, 95%); queue: {queue_csv}"
                )
            relabeled, kept = simulate_review(queue_csv, manifest)
            console.print(
                f"[yellow]SIMULATED annotator[/] (answers from true_label): {relabeled} "
                f"relabeled, {kept} kept"
            )
            api.apply(queue_csv, reviewer="simulated (demo)")
        version = applied
        refreshed = run_dir.with_name(f"refresh-{r}")
        console.print(f"refresh: the fold models fine-tuned on {version.name} -> {refreshed}")
        run_dir = api.refresh(run_dir, version, out=refreshed, progress=progress).run_dir
    return run_dir, version, queue_csv


def run_demo(
    out: Path,
    *,
    top: int,
    rounds: int = 0,
    overrides: Sequence[str] = (),
    progress: Progress,
    console: Console,
) -> DemoFiles:
    """The loop in ``out``; ``overrides`` (``section.key=value``) change the shipped pipeline,
    for example ``train.epochs=2`` for a quicker, weaker model. With ``rounds``, steps 3-5
    are that many rounds of active cleaning of ``top`` rows each (:func:`run_rounds`)."""
    manifest = out / "data_manifests" / "digits.csv"
    oof_dir, final_dir = out / "runs" / "oof", out / "runs" / "final"

    def step(text: str) -> None:
        console.rule(f"[bold]{text}")

    step("1/6 ingest: scikit-learn's digits, 10% of train labels flipped, 20% clean test rows")
    if not manifest.exists():
        api.ingest_digits(
            out / "data" / "digits", manifest, noise=0.1, noise_kind="uniform", seed=0,
            test_fraction=0.2,
        )  # fmt: skip
    console.print(f"manifest: {manifest}")

    step("2/6 oof: 5-fold cross-validation, out-of-fold probabilities for every train image")
    overrides = [f"data.manifest={manifest.as_posix()}", *overrides]
    api.oof(PIPELINE, overrides, out=oof_dir, progress=progress)

    if rounds:
        return _demo_with_rounds(
            manifest, oof_dir, final_dir, rounds=rounds, budget=top,
            overrides=overrides, progress=progress, console=console,
        )  # fmt: skip

    step(f"3/6 flag: the {top} images most likely mislabeled, and {AUDIT} drawn at random")
    queue = RunFiles(oof_dir).queue
    queue_csv = queue.csv
    if not queue_csv.exists():
        # The random rows measure whether cleaning helped, in the report (final.audit_scores).
        api.flag(oof_dir, top=top, audit=AUDIT)
    console.print(f"queue: {queue_csv} and {queue.html}")

    step("4/6 review: SIMULATED - a stand-in reviewer answers with the true labels")
    cleaned = next_version_path(manifest)
    if not cleaned.exists():
        relabeled, kept = simulate_review(queue_csv, manifest)
        console.print(
            f"[yellow]SIMULATED reviewer[/]: {relabeled} relabeled, {kept} kept. "
            "For real data a person decides, with `cleaner review` or a spreadsheet."
        )

        step("5/6 apply: decisions into a new manifest version and the audit log")
        api.apply(queue_csv, reviewer="simulated (demo)")
    console.print(f"cleaned manifest: {cleaned}")

    step("6/6 retrain: the same model on the cleaned labels, weighted by label quality")
    final = _retrain(final_dir, cleaned, oof_dir, overrides, progress)
    return DemoFiles(
        manifest,
        oof_dir,
        queue_csv,
        queue.html,
        cleaned,
        manifest.with_name("digits.audit.jsonl"),
        final,
    )


def _demo_with_rounds(
    manifest: Path,
    oof_dir: Path,
    final_dir: Path,
    *,
    rounds: int,
    budget: int,
    overrides: Sequence[str],
    progress: Progress,
    console: Console,
) -> DemoFiles:
    """Steps 3-6 as rounds: the batches, the simulated answers, the refreshes, then
    retrain on the last version weighted by the last refreshed run's label quality."""
    run_dir, version, queue_csv = run_rounds(
        oof_dir, manifest, rounds=rounds, budget=budget, progress=progress, console=console
    )
    console.rule(f"[bold]6/6 retrain: the same model on {version.name}")
    final = _retrain(final_dir, version, run_dir, overrides, progress)
    queue = QueueFiles.beside(queue_csv)
    return DemoFiles(
        manifest, oof_dir, queue.csv, queue.html, version,
        manifest.with_name("digits.audit.jsonl"), final,
    )  # fmt: skip


def _retrain(
    final_dir: Path, manifest: Path, run_dir: Path, overrides: Sequence[str], progress: Progress
) -> RetrainResult:
    """The final model on ``manifest``, weighted by ``run_dir``'s label quality; a
    finished one is read back."""
    files = RunFiles(final_dir)
    if files.report.exists():
        return RetrainResult(final_dir, manifest, read_retrain_metrics(files.metrics))
    return api.retrain(
        PIPELINE, overrides, manifest=manifest, reweight="quality", oof=[run_dir],
        out=final_dir, progress=progress,
    )  # fmt: skip
