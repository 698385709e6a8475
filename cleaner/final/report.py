"""``report.md`` of a retrain and its figures: what was trained on, and whether cleaning helped.

Pure rendering of ``metrics.json`` (and the oof run it names, for the noise
matrix); :mod:`cleaner.final.retrain` calls it last, as the retrain's finishing mark.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cleaner.formats.metrics_file import AuditScores, RetrainMetrics, ScoresOnTest
from cleaner.formats.run_files import RunFiles
from cleaner.formats.scores import read_scores
from cleaner.ranking import flag


def write_figures(metrics: RetrainMetrics, run_dir: Path, oof_run: str | Path | None) -> list[str]:
    """PNGs beside report.md: the oof run's estimated noise matrix, per-class test F1, and
    the oof run's map of the data (``flag``'s map.png, when its queue is in that run)."""
    from cleaner.core.figures import noise_matrix_png, per_class_f1_png

    classes = metrics.classes
    made = []
    files = RunFiles(run_dir)
    if oof_run is not None and RunFiles(Path(oof_run)).oof.exists():
        run = read_scores(Path(oof_run))
        if (run.labels >= 0).all():
            joint = flag.estimate_noise(run.labels, run.probs).joint
            noise_matrix_png(joint, classes, files.noise_matrix_png,
                             title="estimated noise (cleanlab), before cleaning",
                             xlabel="likely true label")  # fmt: skip
            made.append(files.noise_matrix_png.name)
    trained = metrics.test.models() if metrics.test else {}
    models = {f"{tag} labels": s.per_class_f1 for tag, s in trained.items()}
    if models:
        title = "per-class F1 on the test rows, by the labels trained on"
        per_class_f1_png(models, classes, files.per_class_f1_png, title=title)
        made.append(files.per_class_f1_png.name)
    oof_map = RunFiles(Path(oof_run)).queue.map_png if oof_run is not None else None
    if oof_map is not None and oof_map.exists():  # flag's, when its queue is in the oof run
        import shutil

        from cleaner.core.atomic import atomic_path

        with atomic_path(files.map_png, overwrite=True) as tmp:
            shutil.copyfile(oof_map, tmp)
        made.append(files.map_png.name)
    return made


def _ci(ci: Sequence[float] | None, fmt: str = ".4f") -> str:
    return f" ({ci[0]:{fmt}} to {ci[1]:{fmt}})" if ci else ""


def _gain(ci: Sequence[float] | None) -> str:
    if ci is None:
        return "not measured"
    verdict = "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "no measurable change"
    return f"{verdict} ({ci[0]:+.3f} to {ci[1]:+.3f})"


def audit_lines(audit: AuditScores | None, mode: str) -> list[str]:
    """ "Did cleaning help?", answered on the audit slice (final.audit_scores)."""
    lines = ["", "## Did cleaning help? Rows drawn at random, decided by a person", ""]
    if audit is None:
        return [
            *lines,
            "Not measured: no audit rows were decided. `cleaner flag RUN --audit 100` adds "
            "100 train rows drawn at random to the queue; decide them with the rest, "
            "`apply`, and retrain (with `--mode folds` for the model's figure too).",
        ]
    model_after = (
        f"{audit.model_after:.3f}{_ci(audit.model_after_ci, '.3f')}"
        if audit.model_after is not None
        else "needs `--mode folds`"
        if mode != "folds"
        else "not measured"
    )
    model_before = (
        f"{audit.model_before:.3f}{_ci(audit.model_before_ci, '.3f')}"
        if audit.model_before is not None
        else "not measured: the run that flagged them is gone"
    )
    lines += [
        f"{audit.rows:,} train rows drawn at random by `flag --audit` and decided keep or "
        f"relabel ({audit.left_out:,} dropped or unsure, left out; {audit.ranked:,} of them "
        "were ranked into the queue anyway). The reviewer's class is their truth, and as a "
        "random sample they speak for every train row. 95% intervals: paired bootstrap "
        "over these rows.",
        "",
        "| measure | before cleaning | after | after - before |",
        "|---|---:|---:|---:|",
        f"| labels right | {audit.labels_before:.3f}{_ci(audit.labels_before_ci, '.3f')} | "
        f"{audit.labels_after:.3f}{_ci(audit.labels_after_ci, '.3f')} | "
        f"{_gain(audit.labels_gain_ci)} |",
        f"| model accuracy against the reviewer, out of fold ({audit.model_rows:,} rows) | "
        f"{model_before} | {model_after} | {_gain(audit.model_gain_ci)} |",
        "",
        "Labels after: the same rows as the cleaning left them, the audit's own decisions "
        "aside. Model before: the oof run that flagged each row"
        + (f" ({', '.join(f'`{r}`' for r in audit.before_runs)})" if audit.before_runs else "")
        + "; after: the fold models of this retrain, trained on the cleaned labels.",
    ]
    return lines


def _test_lines(test: ScoresOnTest) -> list[str]:
    """The test rows' table, each figure with its 95% interval, and the gap recovered."""
    lines = [
        "",
        "## Test rows, against `true_label`",
        "",
        "Each figure with its 95% interval: a paired percentile bootstrap over the test rows "
        "(1,000 resamples, seeded).",
        "",
        "| model trained on | accuracy (95% interval) | macro F1 (95% interval) |",
        "|---|---:|---:|",
    ]
    for tag, m in test.models().items():
        lines.append(
            f"| {tag} labels | {m.accuracy:.4f}{_ci(m.accuracy_ci)} | "
            f"{m.macro_f1:.4f}{_ci(m.macro_f1_ci)} |"
        )
    if test.gap_ci is not None:
        lines.append("")
        if not test.gap_measurable:
            lines.append(
                "The accuracy gap between the models trained on the noisy and on the true "
                f"labels is too small to measure on these test rows: its 95% interval"
                f"{_ci(test.gap_ci)} includes 0, so no share of it recovered is reported."
            )
        elif test.gap_recovered is not None:
            lines.append(
                f"Cleaning recovered {test.gap_recovered:.0%}"
                f"{_ci(test.gap_recovered_ci, '.0%')} of the accuracy gap between the "
                f"noisy and the true labels (gap {test.gap_ci[0]:.4f} to "
                f"{test.gap_ci[1]:.4f}, 95%)."
            )
    per_class = test.cleaned.per_class_f1
    lines += [
        "",
        "### Per-class F1 of the cleaned model on the test rows",
        "",
        "| class | F1 |",
        "|---|---:|",
        *[f"| {c} | {f:.4f} |" for c, f in per_class.items()],
    ]
    return lines


def render_report(metrics: RetrainMetrics, run_dir: Path) -> str:
    """report.md: what was trained on, and whether cleaning helped."""
    files = RunFiles(run_dir)
    lines = [
        "# cleaner retrain report",
        "",
        f"- manifest: `{metrics.manifest}` (sha256 `{metrics.manifest_sha256[:12]}`)",
        f"- mode: {metrics.mode}; test-time flip: {metrics.tta}",
        f"- train rows: {metrics.train_rows:,}; test rows: {metrics.test_rows:,}",
        f"- loss weights (`--reweight {metrics.reweight}`): {metrics.weight_rule}",
    ]
    if metrics.labels_changed is not None:
        lines.append(
            f"- since `{metrics.first_version}`: {metrics.labels_changed:,} labels "
            f"changed, {metrics.rows_excluded or 0:,} rows excluded"
        )
    lines += [
        "",
        "## Cross-validated, against each version's own labels",
        "",
        "| labels | accuracy | macro F1 |",
        "|---|---:|---:|",
    ]
    for tag, m, how in (
        ("before cleaning (oof run)", metrics.cv_before, "pass `--oof RUN`"),
        ("cleaned", metrics.cv_cleaned, "use `--mode folds`"),
    ):
        if m is None:
            lines.append(f"| {tag} | not measured | {how} |")
            continue
        if m.rows_weight_0_left_out:
            tag += f" ({m.rows_weight_0_left_out} rows of weight 0 left out)"
        lines.append(f"| {tag} | {m.accuracy:.4f} | {m.macro_f1:.4f} |")
    lines += audit_lines(metrics.audit, metrics.mode)
    if metrics.test is not None:
        lines += _test_lines(metrics.test)
    figures = metrics.figures
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{name[:-4].replace('_', ' ')}]({name})" for name in figures]
    lines += [
        "",
        "## Files",
        "",
        f"- `{files.submission}`: the file to submit",
        f"- `{files.predictions}`: every class probability of every test row",
        f"- `{files.train_weights}`: the loss weight of every train row",
        f"- `{files.metrics}`: everything above, as JSON",
        "",
    ]
    return "\n".join(lines)
