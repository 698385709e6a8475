"""What the commands print: rich tables of a command's typed result."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table

from cleaner.core.progress import console, warn
from cleaner.formats.metrics_file import OofMetrics, RetrainMetrics
from cleaner.formats.run_files import RunFiles


def print_manifest(path: Path) -> None:
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    # A path on its own line, never wrapped: a table title breaks it mid-word.
    console.print(f"manifest: {path}", soft_wrap=True)
    table = Table(title="manifest")
    table.add_column("split")
    table.add_column("rows", justify="right")
    table.add_column("classes", justify="right")
    split = df["split"] if "split" in df.columns else pd.Series(["train"] * len(df))
    for name, part in df.groupby(split):
        table.add_row(str(name), str(len(part)), str(part["label"].replace("", None).nunique()))
    captions = []
    if "origin" in df.columns:
        n_val = int(((df["origin"] == "val") & (split == "train")).sum())
        if n_val:
            captions.append(f"{n_val} train rows from the val folder (origin = val)")
    if "true_label" in df.columns:
        # Only rows that carry a truth: `ingest folder` gives it to test rows alone.
        known = (split == "train") & (df["true_label"] != "")
        if known.any():
            noisy = int((known & (df["label"] != df["true_label"])).sum())
            captions.append(f"{noisy} train labels differ from true_label")
        n_test = int(((split == "test") & (df["true_label"] != "")).sum())
        if n_test and not known.any():
            captions.append(f"{n_test} test rows have a true_label (retrain scores them)")
    if captions:
        table.caption = "; ".join(captions)
    console.print(table)
    from cleaner.ingest.output import skipped_path

    skipped = skipped_path(path)
    if skipped.exists():  # written by this ingest: an older list refuses the ingest
        n = len(pd.read_csv(skipped, dtype=str))
        console.print(
            f"[yellow]left out {n} image files training cannot use[/]: listed, with why, "
            f"in {skipped}",
            soft_wrap=True,
        )


def print_oof(metrics: OofMetrics, run_dir: Path) -> None:
    table = Table(title=f"out-of-fold metrics ({metrics.split})")
    for col in ("fold", "rows", "accuracy", "macro F1", "train img/s", "seconds"):
        table.add_column(col, justify="right")
    for m in metrics.folds:
        table.add_row(
            str(m.fold),
            str(m.n),
            f"{m.accuracy:.4f}",
            f"{m.macro_f1:.4f}",
            # A probe (train.mode) fits a head, no network: no training images per second.
            "probe" if m.train_images_per_s is None else f"{m.train_images_per_s:,.0f}",
            f"{m.seconds:.1f}",
        )
    o = metrics.overall
    table.add_row("all", str(o.n), f"{o.accuracy:.4f}", f"{o.macro_f1:.4f}", "", "", style="bold")
    console.print(table)
    per_class = Table(title="per-class F1 (out-of-fold, against the given labels)")
    per_class.add_column("class")
    per_class.add_column("F1", justify="right")
    for c, f in o.per_class_f1.items():
        per_class.add_row(c, f"{f:.4f}")
    console.print(per_class)
    files = RunFiles(run_dir)
    console.print(f"wrote {files.oof}, {files.embeddings}, {files.metrics}")


def print_ensemble(folder: Path, members: list[OofMetrics | None]) -> None:
    """Each member's out-of-fold scores, and the ensemble's (mean probabilities)."""
    from cleaner.core.metrics import classification_metrics
    from cleaner.formats.scores import expand_runs, read_ensemble_scores

    table = Table(title=f"out-of-fold metrics of the {len(members)} repeats")
    for col in ("run", "seed", "accuracy", "macro F1"):
        table.add_column(col, justify="right")
    paths = expand_runs([folder])
    for path, m in zip(paths, members, strict=True):
        if m is None:
            table.add_row(path.name, "", "not finished", "")
            continue
        o = m.overall
        seed = run_seed(path)
        table.add_row(path.name, seed, f"{o.accuracy:.4f}", f"{o.macro_f1:.4f}")
    if all(m is not None for m in members):
        scores = read_ensemble_scores(paths)
        classes = members[0].classes if members[0] else []
        e = classification_metrics(scores.labels, scores.probs.argmax(1), classes)
        table.add_row(
            "ensemble", "mean", f"{e['accuracy']:.4f}", f"{e['macro_f1']:.4f}", style="bold"
        )
    console.print(table)
    console.print(f"wrote {folder}: flag {folder} ranks by the mean of its runs")


def run_seed(run_dir: Path) -> str:

    return str(RunFiles(run_dir).read_config().train.seed)


def count_table(title: str, key: str, value: str, counts: dict[str, int]) -> Table:
    """A two-column table of counts."""
    table = Table(title=title)
    table.add_column(key)
    table.add_column(value, justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    return table


def image_quality_text(record: dict[str, Any], queued: dict[str, int]) -> str:
    """flag's image-quality check in one line: train images flagged per kind, and how many
    the queue names so (the others are label rows, or after --top)."""
    found = {k: n for k, n in record.get("flagged", {}).items() if n}
    head = f"image quality of the {record['images']:,} train images"
    if not found:
        return f"{head}: none dark, light, blurry, low in information, odd or gray"
    kinds = ", ".join(f"{k} {n:,} ({queued.get(k, 0):,} queued as such)" for k, n in found.items())
    return f"{head}: {kinds}"


def measure_table(title: str) -> Table:
    """An empty two-column ``measure | value`` table."""
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    return table


def trust_table(t: Any) -> Table:
    """How good the out-of-fold model is: what the estimate of wrong labels rests on."""
    table = measure_table("out-of-fold model, against the given labels")
    table.add_row("accuracy", f"{t.accuracy:.3f}")
    table.add_row("majority-class rate (chance)", f"{t.majority_rate:.3f}")
    # Below double precision the binomial tail underflows to 0.
    p = f"{t.p_value:.2g}" if t.p_value > 0 else "< 1e-300"
    table.add_row("one-sided binomial p (accuracy > chance)", p)
    table.add_row("macro F1", f"{t.macro_f1:.3f}")
    table.add_row("expected calibration error (15 bins)", f"{t.ece:.3f}")
    if not t.passed:
        table.add_row("[red]trust gate[/red]", "[red]failed: --force[/red]")
    return table


def annotator_table(table: Any) -> Table:
    """Each annotator's CROWDLAB quality, agreement with the consensus and worst class."""
    out = Table(title="annotators, worst first (CROWDLAB; annotators.png)")
    for col in ("annotator", "quality", "agreement", "worst class", "labels"):
        out.add_column(col, justify="left" if col in ("annotator", "worst class") else "right")
    for r in table.itertuples(index=False):
        out.add_row(
            str(r.annotator), f"{r.quality:.3f}", f"{r.agreement:.3f}", str(r.worst_class),
            f"{r.num_labelled:,}",
        )  # fmt: skip
    return out


def print_flag(s: Any) -> None:
    est = measure_table("label noise (cleanlab, out-of-fold)")
    est.add_row("train rows", f"{s.n_train:,}")
    lo, hi = s.noise_interval
    est.add_row(
        "estimated wrong labels",
        f"{s.num_label_issues:,} ({s.num_label_issues / max(1, s.n_train):.1%}; "
        f"95% interval {lo:,}-{hi:,})",
    )
    est.add_row(
        "out-of-fold prediction is not the given label",
        f"{s.disagreements:,} ({s.disagreements / max(1, s.n_train):.1%})",
    )
    est.add_row("flagged by find_label_issues", f"{s.flagged_label_issues:,}")
    est.add_row("already decided (audit log), left out", f"{s.already_decided:,}")
    est.add_row("ranking", f"{s.method}, {len(s.runs)} run(s)")
    console.print(est)
    console.print(f"[dim]{s.noise_caveat}[/dim]")
    if s.trust is not None:
        console.print(trust_table(s.trust))
    if s.embedding_source:
        console.print(f"outliers and duplicates measured in one space: {s.embedding_source}")
        if not math.isnan(s.own_fold_share):
            console.print(
                f"{s.own_fold_share:.1%} of each train row's 10 nearest neighbours lie in its "
                "own fold (about 1/K when the rows share one space)"
            )
    elif s.legacy_embeddings:
        console.print(
            "[yellow]this run's embeddings are fold-local (an older cleaner): outliers and "
            "near duplicates were not checked; run `cleaner oof` with the same arguments "
            "to add embeddings.npz[/yellow]"
        )
    if s.confused_pairs:
        pairs = Table(title="most confused classes (estimated joint of given and true label)")
        for col in ("given label", "likely true label", "share of rows", "rows"):
            pairs.add_column(col, justify="left" if "label" in col else "right")
        for given, true, frac, n in s.confused_pairs:
            pairs.add_row(given, true, f"{frac:.2%}", f"{n:,}")
        console.print(pairs)
    if s.annotators is not None:
        console.print(annotator_table(s.annotators))
    console.print(count_table("queue rows by issue", "issue", "rows", s.issue_counts))
    if s.image_quality.get("images"):
        console.print(image_quality_text(s.image_quality, s.issue_counts))
    if s.audit_added or s.audit_ranked:
        drawn, ranked = len(s.audit_added) + len(s.audit_ranked), len(s.audit_ranked)
        console.print(
            f"audit slice: {drawn:,} train rows drawn at random ({ranked:,} of them "
            "ranked into the queue anyway). Decide them like the rest: `cleaner retrain` "
            "measures the labels and the models on them."
        )
    if s.finding_counts:
        console.print(
            count_table(
                "duplicate pairs (exact files and near duplicates, one space)",
                "finding",
                "pairs",
                s.finding_counts,
            )
        )
    if s.duplicates_csv is not None:
        console.print(f"every pair is listed in {s.duplicates_csv}")
    if s.map_png is not None:
        console.print(
            f"the map of the data (t-SNE of the embeddings, queue rows marked): {s.map_png}"
        )
    console.print(
        f"wrote {s.queue_csv} and {s.queue_html}: open the HTML to look, "
        "fill `decision` in the CSV (keep / relabel / drop / unsure)"
    )
    console.print(
        "rows nobody decides keep their label; `cleaner retrain --reweight prune` "
        "trains without the flagged label rows nobody decided"
    )


def audit_table(metrics: RetrainMetrics) -> Table:
    """The audit slice's before/after (final.audit_scores); no rows when not measured."""
    a = metrics.audit
    n = f"{a.rows:,} rows" if a is not None else "no rows"
    table = Table(title=f"did cleaning help: {n} drawn at random, decided (95%, paired)")
    for col in ("measure", "before", "after", "after - before"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    if a is None:
        return table

    def value(v: float | None, ci: tuple[float, float] | None, missing: str) -> str:
        return missing if v is None else f"{v:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    def gain(ci: tuple[float, float] | None) -> str:
        return "-" if ci is None else f"{ci[0]:+.3f} to {ci[1]:+.3f}"

    table.add_row(
        "labels right",
        value(a.labels_before, a.labels_before_ci, ""),
        value(a.labels_after, a.labels_after_ci, ""),
        gain(a.labels_gain_ci),
    )
    table.add_row(
        "model accuracy, out of fold",
        value(a.model_before, a.model_before_ci, "run gone"),
        value(a.model_after, a.model_after_ci, "--mode folds"),
        gain(a.model_gain_ci),
    )
    return table


def print_retrain(metrics: RetrainMetrics, run_dir: Path) -> None:
    # Cross-validated and test figures measure different things: two tables, never one.
    cv = Table(title=f"cross-validation ({metrics.mode}, reweight {metrics.reweight})")
    for col in ("labels", "accuracy", "macro F1"):
        cv.add_column(col, justify="left" if col == "labels" else "right")
    for what, m in (("before cleaning", metrics.cv_before), ("cleaned", metrics.cv_cleaned)):
        if m is not None:
            if m.rows_weight_0_left_out:
                what += f" ({m.rows_weight_0_left_out} of weight 0 left out)"
            cv.add_row(what, f"{m.accuracy:.4f}", f"{m.macro_f1:.4f}")
    tt = Table(title="test rows against true_label (95% interval, paired bootstrap)")
    for col in ("model trained on", "accuracy", "macro F1"):
        tt.add_column(col, justify="left" if col == "model trained on" else "right")

    def with_ci(value: float, ci: tuple[float, float] | None) -> str:
        return f"{value:.4f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    test = metrics.test
    for tag, s in (test.models() if test else {}).items():
        tt.add_row(
            f"{tag} labels", with_ci(s.accuracy, s.accuracy_ci), with_ci(s.macro_f1, s.macro_f1_ci)
        )
    audit = audit_table(metrics)
    for table in (cv, audit, tt):
        if table.row_count:
            console.print(table)
    if not audit.row_count:
        console.print(
            "did cleaning help: not measured without decided audit rows "
            "(`cleaner flag RUN --audit 100` queues 100 rows drawn at random)"
        )
    if not metrics.test_rows:
        console.print("the manifest has no test rows: the submission has none")
    if test is not None and test.gap_ci is not None and not test.gap_measurable:
        console.print("the noisy-to-true accuracy gap is too small to measure on these test rows")
    elif test is not None and test.gap_recovered is not None:
        ci = test.gap_recovered_ci
        console.print(
            f"cleaning recovered {test.gap_recovered:.0%}"
            + (f" (95% interval {ci[0]:.0%} to {ci[1]:.0%})" if ci else "")
            + " of the accuracy gap between noisy and true labels"
        )
    files = RunFiles(run_dir)
    console.print(
        f"wrote {files.submission}, {files.predictions} and {files.report}", soft_wrap=True
    )


def print_mask_report(report: Any) -> None:
    """Counts, then every finding of ``cleaner.ingest.mask.ingest_mask``: one table per kind."""
    counts = (
        f"{report.data_dir}: {report.persons:,} persons, {report.train_images:,} train images, "
        f"{report.test_images:,} eval images"
    )
    if report.findings:
        counts += " (paths below are under it)"
    console.print(counts, highlight=False, soft_wrap=True)
    if not report.findings:
        console.print("the layout is complete: nothing skipped, missing or extra")
        return
    for kind in dict.fromkeys(f.kind for f in report.findings):
        found = [f for f in report.findings if f.kind == kind]
        table = Table(title=f"{kind}: {len(found)}", title_justify="left")
        table.add_column("where", no_wrap=True)  # a path: wrapped, it is hard to copy
        lines = any(f.row is not None for f in found)
        if lines:
            table.add_column("line", justify="right")
        table.add_column("what", overflow="fold")
        for f in found:
            line = ["" if f.row is None else str(f.row)] if lines else []
            table.add_row(f.file, *line, f.reason)
        console.print(table)


def print_oof_result(result: Any) -> None:
    """``oof``'s result: one run's metrics, an ensemble's, or the folds still to train."""
    from cleaner.training.oof import EnsembleResult

    if isinstance(result, EnsembleResult):
        print_ensemble(result.run_dir, [m.metrics for m in result.members])
    elif result.metrics is None:
        console.print(
            f"trained fold(s) {result.trained} into {result.run_dir}; "
            f"fold(s) {result.missing} still to train, then the run merges"
        )
    else:
        print_oof(result.metrics, result.run_dir)


def print_apply(queue: Path, s: Any) -> None:
    """``apply``'s summary: decisions by kind, and what was written."""
    console.print(count_table(f"applied {queue}", "decision", "queue rows", s.counts))
    if s.already_applied:
        console.print(
            f"already applied: {s.new_manifest} holds exactly what this queue makes, and "
            f"{s.audit_log} its decisions; nothing written"
        )
    elif s.wrote_version:
        console.print(
            f"{s.rows_changed:,} manifest rows changed; wrote {s.new_manifest} and "
            f"appended to {s.audit_log}"
        )
    else:
        console.print(
            f"no manifest row changed, so no new version: {s.new_manifest} stays current; "
            f"the decisions are in {s.audit_log} (those rows are not queued again)"
        )


def print_demo_files(files: Any) -> None:
    """The demo's files, in the order a newcomer opens them."""
    table = Table(title="demo files, in the order to open them")
    table.add_column("file", overflow="fold")
    table.add_column("what it is")
    for path, what in (
        (files.queue_html, "the relabel queue as a gallery: open it in a browser first"),
        (RunFiles(files.final.run_dir).report, "did cleaning help: before and after"),
        (files.queue_csv, "the queue with the (simulated) decisions"),
        (files.cleaned_manifest, "the cleaned manifest version"),
        (files.audit_log, "one line per decision"),
        (RunFiles(files.oof_run).oof, "out-of-fold probabilities of every train image"),
        (RunFiles(files.final.run_dir).submission, "predictions for the test rows"),
        (files.manifest, "the original, noisy manifest (true_label kept for measuring)"),
    ):
        table.add_row(str(path), what)
    console.print(table)


def print_synth_mask(out: Path) -> None:
    """``synth mask``'s data set: persons and images of each kind, from its truth.csv."""
    import pandas as pd

    truth = pd.read_csv(out / "truth.csv", dtype=str, keep_default_na=False)
    console.print(f"synthetic mask data: {out}", soft_wrap=True)
    table = Table(title="synthetic mask data")
    table.add_column("rows of truth.csv")
    table.add_column("persons", justify="right")
    table.add_column("images", justify="right")
    for what, part in (
        ("train", truth[truth["split"] == "train"]),
        ("  noise: gender_flip (folder name)", truth[truth["noise"] == "gender_flip"]),
        ("  noise: mask_swap (two files exchanged)", truth[truth["noise"] == "mask_swap"]),
        ("eval (test, unlabeled)", truth[truth["split"] == "test"]),
    ):
        table.add_row(what, str(part["person"].nunique()), str(len(part)))
    console.print(table)
    console.print(
        f"true labels in {out / 'truth.csv'}; next: cleaner ingest mask {out}", soft_wrap=True
    )


def print_review_start(server: Any, url: str) -> None:
    """Where the review page is, and where its decisions go."""
    for warning in server.queue.warnings:
        warn(warning)
    through = "".join(
        f"\nthrough the tunnel or forward to port {server.port}, open {u}"
        for u in server.allowed_urls
    )
    console.print(
        f"reviewing {server.queue.path} ({server.queue.reviewed} of {len(server.queue)} rows "
        f"reviewed) at {url}{through}\neach decision is written to {server.queue.path} at "
        "once; Ctrl-C stops the server",
        highlight=False,
        soft_wrap=True,
    )


def print_round(r: Any) -> None:
    """``round``'s batch, the estimate of the wrong labels left, the rounds so far."""
    e = r.errors
    table = measure_table(
        f"round {r.number}: {sum(r.by_kind.values()):,} rows of a budget of {r.budget:,}"
    )
    for kind, n in r.by_kind.items():
        table.add_row(f"rows to ask: {kind.replace('_', ' ')}", f"{n:,}")
    table.add_row("labels per row from", f"{r.annotators} annotator column(s)")
    table.add_row("reviewed so far (wrong)", f"{e.num_reviewed:,} ({e.found_wrong:,})")
    table.add_row(
        "wrong labels left (95% interval)",
        f"{e.estimate:,.0f} ({e.interval[0]:,.0f}-{e.interval[1]:,.0f})",
    )
    table.add_row("expected wrong in this batch", f"{r.stop.expected:,.1f}")
    console.print(table)
    verdict = "[yellow]stop[/]" if r.stop.stop else "go on"
    console.print(f"{r.stop}; verdict: {verdict}", highlight=False, soft_wrap=True)
    console.print(
        f"wrote {r.queue_csv} (answer it: cleaner review, a spreadsheet or Label Studio), "
        f"{r.record} and {r.figure}; then: cleaner apply {r.queue_csv}, cleaner refresh RUN "
        "NEW_MANIFEST, cleaner round NEW_RUN",
        highlight=False,
        soft_wrap=True,
    )


def print_status(s: Any) -> None:
    """``status``: per manifest, its versions with their runs and queues, then the next step."""
    if not s.manifests:
        console.print(
            f"no manifest, run or queue found in {s.folder}; start with: cleaner ingest "
            "(or cleaner init for a pipeline)",
            highlight=False,
            soft_wrap=True,
        )
    for m in s.manifests:
        table = Table(title=f"{m.versions[0].path.name}: {len(m.versions)} version(s)")
        for name in ("version", "decisions logged", "runs", "queues (decided/rows)"):
            table.add_column(name)
        for v in m.versions:
            runs = [f"{r.path.name} ({r.kind})" for r in m.runs if r.manifest == v.path]
            queues = [
                f"{q.path.parent.name}/{q.path.name} {q.decided}/{q.rows}"
                + (" applied" if q.applied else "")
                for q in m.queues
                if q.manifest == v.path
            ]
            current = " (current)" if v.path == m.current else ""
            table.add_row(
                v.path.name + current, f"{v.decisions:,}", "\n".join(runs), "\n".join(queues)
            )
        console.print(table)
        console.print(f"folder: {m.current.parent}", highlight=False, soft_wrap=True)
        console.print(f"next: {m.next_command}  ({m.why})", highlight=False, soft_wrap=True)
    for problem in s.problems:
        warn(f"skipped {problem}")
