"""``cleaner flag``: from one or more ``oof`` runs to ``queue.csv`` and ``queue.html``.

Reads the runs (checked against their manifest) or a probability file, the
settings and what a person already decided (the manifest's audit log); the
rows themselves, scored and ordered best-first, come from
:func:`cleaner.ranking.queue_rows.build_queue`; then writes the queue, its gallery,
its noise matrix, its map of the data (with embeddings: :mod:`cleaner.ranking.data_map`)
and ``queue.json``, the last marking a complete queue.
``queue.json`` beside the
queue records the manifest version and runs it was made from, so that
``cleaner apply`` can refuse a queue from another version. Both files'
formats (columns, writers, readers) live in :mod:`cleaner.formats.queue_file`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress

from cleaner.core.atomic import atomic_path, write_text
from cleaner.core.choices import RANK_METHODS
from cleaner.core.config import PipelineConfig, apply_overrides
from cleaner.core.errors import InputError, Problem
from cleaner.formats.attributes import AttributeTable
from cleaner.formats.audit import decided_in_manifest, read_audit_log
from cleaner.formats.manifest import (
    audit_log_path,
    newest_version,
    read_manifest,
    require_images,
    resolve_paths,
    sha256_file,
)
from cleaner.formats.queue_file import (
    QueueMeta,
    read_queue_table,
    write_queue_csv,
    write_queue_meta,
)
from cleaner.formats.repoint import repoint_chain
from cleaner.formats.run_files import QueueFiles, RunFiles
from cleaner.formats.runs import (
    Run,
    load_probs,
    load_run,
    mean_probs,
)
from cleaner.formats.scores import ensemble_members, expand_runs
from cleaner.ranking import flag
from cleaner.ranking.data_map import map_image
from cleaner.ranking.image_findings import train_image_findings
from cleaner.ranking.queue_rows import QueueSummary, build_queue
from cleaner.ranking.trust import check_trust
from cleaner.review.gallery import MapImage, render_gallery


def load_runs(run_dirs: Sequence[str | Path]) -> list[Run]:
    """Load runs that share one manifest version, row order and class order."""
    if not run_dirs:
        raise InputError("give at least one run folder")
    runs = [load_run(d) for d in run_dirs]
    first = runs[0]
    for r in runs[1:]:
        if r.manifest_sha != first.manifest_sha:
            raise InputError(
                [
                    Problem(
                        str(r.run_dir),
                        f"made from another manifest than "
                        f"{first.run_dir} ({r.manifest_path} vs "
                        f"{first.manifest_path}); flag runs of one manifest together",
                    )
                ]
            )
        if r.classes != first.classes or not np.array_equal(r.sample_ids, first.sample_ids):
            raise InputError(
                [Problem(str(r.run_dir), f"classes or rows differ from {first.run_dir}")]
            )
    return runs


def _flag_inputs(
    run_dirs: Sequence[str | Path],
    overrides: Sequence[str],
    *,
    probs: str | Path | None,
    manifest: str | Path | None,
    embeddings: str | Path | None,
) -> list[Run]:
    """The runs to flag: run folders, or one probability file with its manifest.

    ``overrides`` (``flag.*``; with ``probs`` also ``data.group``) apply at this
    step, without a new oof run.
    """
    if probs is not None:
        if run_dirs:
            raise InputError("give run folders or --probs, not both")
        if manifest is None:
            raise InputError("--probs needs --manifest: the manifest the probabilities score")
        cfg = apply_overrides(PipelineConfig(), overrides, keys=("flag", "data.group"))
        return [load_probs(probs, manifest, cfg, embeddings=embeddings)]
    if manifest is not None or embeddings is not None:
        raise InputError("--manifest and --embeddings go with --probs (a run folder has its own)")
    runs = load_runs(expand_runs(run_dirs))
    if overrides:
        runs = [
            dataclasses.replace(r, cfg=apply_overrides(r.cfg, overrides, keys=("flag",)))
            for r in runs
        ]
    return runs


def queue_meta(
    runs: Sequence[Run],
    *,
    method: str,
    top: int,
    table: AttributeTable | None,
    trust: flag.ModelTrust,
    mean_probs: np.ndarray,
    noise: Mapping[str, Any],
    audit: tuple[Sequence[str], Sequence[str]] = ((), ()),
    issue_counts: Mapping[str, int] | None = None,
    image_quality: Mapping[str, Any] | None = None,
) -> QueueMeta:
    """``queue.json``: what the queue was made from, for ``apply`` and the review page."""
    run = runs[0]
    from_file = run.probs_file is not None
    # Confidently labelled train rows of each class, for the review page to compare.
    examples = {
        run.classes[c]: tuple(str(run.sample_ids[i]) for i in rows)
        for c, rows in flag.confident_examples(run.labels, mean_probs).items()
    }
    return QueueMeta(
        manifest=run.manifest_path,
        manifest_sha256=run.manifest_sha,
        classes=tuple(run.classes),
        runs=() if from_file else tuple(str(r.run_dir) for r in runs),
        group_column=run.cfg.data.group,
        attributes=table,
        examples=examples,
        probs=run.probs_file,
        probs_sha256=sha256_file(run.probs_file) if run.probs_file else "",
        # The flag settings used: the run's, --set's, and --top/--method.
        flag={
            **dataclasses.asdict(run.cfg.flag),
            "top": top,
            "method": method,
            "audit": len(audit[0]) + len(audit[1]),
        },
        method=method,
        top=top,
        trust=dataclasses.asdict(trust),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        noise=noise,
        audit_added=tuple(audit[0]),
        audit_ranked=tuple(audit[1]),
        issue_counts=dict(issue_counts or {}),
        image_quality=dict(image_quality or {}),
    )


def noise_record(summary: QueueSummary) -> dict[str, Any]:
    """queue.json's ``noise``: cleanlab's count of wrong labels and what it means."""
    return {
        "estimated_wrong_labels": summary.num_label_issues,
        "interval_95": list(summary.noise_interval),
        "model_disagrees": summary.disagreements,
        "train_rows": summary.n_train,
        "note": summary.noise_caveat,
    }


def make_queue(
    run_dirs: Sequence[str | Path] = (),
    *,
    top: int | None = None,
    method: str | None = None,
    out: str | Path | None = None,
    include_unlabeled: bool = False,
    on_image: Callable[[], None] | None = None,
    force: bool = False,
    overrides: Sequence[str] = (),
    probs: str | Path | None = None,
    manifest: str | Path | None = None,
    embeddings: str | Path | None = None,
    audit: int | None = None,
    progress: Progress | None = None,
) -> QueueSummary:
    """``cleaner flag``: write queue.csv, queue.html, queue.json (and, with embeddings,
    duplicates.csv and map.png).

    From run folders, or from ``probs`` (out-of-fold probabilities made outside
    ``cleaner``, in the ``oof.csv`` layout) scoring ``manifest``, with optional
    ``embeddings`` (:mod:`cleaner.formats.embeddings`); then ``out`` is required.
    Refuses (unless ``force``) when the out-of-fold model is no better than chance.
    Every train image is read for its quality (dark, blurry, ...; a bar on ``progress``).
    """
    runs = _flag_inputs(run_dirs, overrides, probs=probs, manifest=manifest, embeddings=embeddings)
    run = runs[0]
    if probs is None:
        runs = [on_newest_version(r) for r in runs]
        run = runs[0]
    top, method = _settings(run, top=top, method=method)
    audit = run.cfg.flag.audit if audit is None else audit
    if audit < 0:
        raise InputError(f"--audit must be 0 or more random rows, got {audit}")
    if probs is not None and out is None:
        raise InputError("--probs needs --out: the folder for the queue")
    ensemble_probs = mean_probs(runs)
    source = str(probs) if probs is not None else ", ".join(str(r.run_dir) for r in runs)
    trust = check_trust(run.labels, ensemble_probs, force=force, source=source)
    # An ensemble folder (oof --repeats) holds its queue, as a run folder does.
    alone = Path(run_dirs[0]) if len(run_dirs) == 1 else None
    home = alone if alone is not None and ensemble_members(alone) else run.run_dir
    targets = queue_targets(Path(out) if out else home, runs)
    df = read_manifest(run.manifest_path)
    require_images(df, run.manifest_path)  # the gallery and the review page show them
    decided = decided_in_manifest(df, audit_log_path(run.manifest_path))
    images = train_image_findings(df, run, progress=progress)
    queue, summary = build_queue(
        df, runs, top=top, method=method, decided=decided,
        include_unlabeled=include_unlabeled, audit=audit, images=images,
    )  # fmt: skip
    summary.trust, summary.image_quality = trust, images.record
    if probs is not None:
        summary.runs = [str(probs)]
    data_map = map_image(runs, queue)  # with embeddings: map.png, shown in the gallery
    page = gallery_page(queue, df, run, on_image=on_image, data_map=data_map)
    meta = queue_meta(
        runs, method=method, top=top, table=summary.attributes, trust=trust,
        mean_probs=ensemble_probs, noise=noise_record(summary),
        audit=(summary.audit_added, summary.audit_ranked),
        issue_counts=summary.issue_counts, image_quality=images.record,
    )  # fmt: skip
    write_outputs(
        targets,
        queue=queue,
        page=page,
        meta=meta,
        noise_joint=summary.noise_joint,
        classes=run.classes,
        duplicate_pairs=summary.duplicate_pairs,
        annotators=summary.annotators,
        data_map=data_map,
    )
    if targets.with_duplicates and summary.duplicate_pairs is not None:
        summary.duplicates_csv = targets.duplicates
    summary.queue_csv, summary.queue_html = targets.csv, targets.html
    summary.map_png = targets.map_png if data_map is not None else None
    return summary


def on_newest_version(run: Run) -> Run:
    """``run``, taken to score the newest version of its manifest.

    A version that ``cleaner repoint`` made changed image paths only: the run scores it
    as it scored the one before, and the queue is made on it. A run of a manifest that
    ``apply`` has since replaced scores the old labels: its queue would ask again about
    rows already decided. Refused, with the command that trains on the newest version
    (the run's own config.toml is a complete pipeline)."""
    newest = newest_version(run.manifest_path)
    if newest == run.manifest_path:
        return run
    records = read_audit_log(audit_log_path(run.manifest_path))
    if repoint_chain(run.manifest_path, records)[-1] == newest:
        return dataclasses.replace(run, manifest_path=newest, manifest_sha=sha256_file(newest))
    files = RunFiles(run.run_dir)
    out = run.run_dir.with_name(f"{run.run_dir.name}-{newest.stem.rsplit('.', 1)[-1]}")
    raise InputError(
        [
            Problem(
                str(run.run_dir),
                f"made from {run.manifest_path.name}, but {newest.name} is newer (cleaner "
                "apply wrote it): this run's queue would ask again about rows already "
                f"decided. Train on the newest version, then flag that run: cleaner oof "
                f"{files.config} --set data.manifest={newest} --out {out} (or, in minutes, "
                f"fine-tune this run's fold models on it: cleaner refresh {run.run_dir} "
                f"{newest})",
            )
        ]
    )


def _settings(run: Run, *, top: int | None, method: str | None) -> tuple[int, str]:
    """--top and --method, or the run's ``flag.top`` and ``flag.method``; checked."""
    top = top if top is not None else run.cfg.flag.top
    method = method or run.cfg.flag.method
    check_settings(top, method)
    return top, method


def check_settings(top: int, method: str) -> None:
    """Refuse a queue length below 1 and an unknown ranking method (CLI and API alike)."""
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    RANK_METHODS.check(method, "--method")


@dataclass(frozen=True)
class QueueTargets(QueueFiles):
    """The files ``flag`` writes into the queue's folder."""

    with_duplicates: bool  # with embeddings: duplicates.csv and map.png too

    def all(self) -> list[Path]:
        paths = [self.csv, self.html, self.record, self.noise_png, self.annotators_png]
        return paths + ([self.duplicates, self.map_png] if self.with_duplicates else [])


def queue_targets(out_dir: Path, runs: Sequence[Run]) -> QueueTargets:
    """The files to write; refused when a queue is there (a queue is never overwritten).

    ``queue.json`` is written last and marks a complete queue. Without it, the
    other files are what an interrupted ``flag`` left (apply and review refuse
    them), and this run replaces them: unless a reviewer has already filled in
    decisions there, which are never written over.
    """
    targets = QueueTargets(out_dir, any(r.embeddings is not None for r in runs))
    existing = [p for p in targets.all() if p.exists()]
    if targets.record.exists():
        raise InputError(
            [Problem(str(p), "already exists; pass --out for a new queue folder") for p in existing]
        )
    if targets.csv in existing and _has_decisions(targets.csv):
        raise InputError(
            [
                Problem(
                    str(targets.csv),
                    "already exists with decisions filled in, but without its "
                    f"{targets.record.name} (an interrupted flag?); "
                    "pass --out for a new queue folder",
                )
            ]
        )
    return targets


def _has_decisions(queue_csv: Path) -> bool:
    """Whether a queue CSV has a decision filled in (unreadable: taken as yes, and kept)."""
    try:
        table = read_queue_table(queue_csv)
    except InputError:
        return True
    return bool(table["decision"].str.strip().ne("").any())


def gallery_page(
    queue: pd.DataFrame,
    df: pd.DataFrame,
    run: Run,
    *,
    on_image: Callable[[], None] | None,
    data_map: MapImage | None = None,
) -> str:
    """queue.html: the rows with the manifest's images (and a pair's partner image)."""
    root = run.manifest_path.parent
    paths = [
        p if str(raw) else None
        for p, raw in zip(resolve_paths(queue, root), queue["path"], strict=True)
    ]
    # A near duplicate or leakage row shows its partner: the manifest's image of that id.
    at = pd.Index(df["sample_id"]).get_indexer(queue["partner"].astype(str))
    found = iter(resolve_paths(df.iloc[at[at >= 0]], root))
    partner_paths = [next(found) if i >= 0 else None for i in at]
    return render_gallery(
        queue,
        paths,
        title=f"relabel queue: {run.manifest_path.name}",
        classes=run.classes,
        on_image=on_image,
        partner_paths=partner_paths,
        noise_png=QueueFiles(Path(".")).noise_png.name,
        data_map=data_map,
    )


def write_outputs(
    targets: QueueTargets,
    *,
    queue: pd.DataFrame,
    page: str,
    meta: QueueMeta,
    noise_joint: np.ndarray | None,
    classes: Sequence[str],
    duplicate_pairs: pd.DataFrame | None = None,
    annotators: pd.DataFrame | None = None,
    before_record: Callable[[], list[Path]] | None = None,
    data_map: MapImage | None = None,
) -> None:
    """Everything is computed; now write the files, all or none (queue.json last).

    ``before_record`` writes files of the caller's (a round's record) just before
    ``queue.json`` and returns them, so that a failure removes them too.
    """
    targets.dir.mkdir(parents=True, exist_ok=True)
    for leftover in targets.all():  # an interrupted flag's, without queue.json (_targets)
        leftover.unlink(missing_ok=True)
    written: list[Path] = []
    try:
        write_queue_csv(queue, targets.csv)
        written.append(targets.csv)
        write_text(targets.html, page)
        written.append(targets.html)
        from cleaner.core.figures import noise_matrix_png  # matplotlib only where it draws

        assert noise_joint is not None  # build_queue estimated it
        noise_matrix_png(noise_joint, classes, targets.noise_png,
                         xlabel="likely true label",
                         title="estimated noise (cleanlab): given vs likely true")  # fmt: skip
        written.append(targets.noise_png)
        if targets.with_duplicates and duplicate_pairs is not None:
            with atomic_path(targets.duplicates) as tmp:
                duplicate_pairs.to_csv(tmp, index=False, float_format="%.6g")
            written.append(targets.duplicates)
        if annotators is not None:
            from cleaner.core.figures import annotators_png

            annotators_png(annotators["annotator"].tolist(), annotators["quality"].tolist(),
                           annotators["agreement"].tolist(), targets.annotators_png,
                           title="annotators, worst first (CROWDLAB)")  # fmt: skip
            written.append(targets.annotators_png)
        if data_map is not None:  # the same bytes the gallery embeds
            with atomic_path(targets.map_png) as tmp:
                tmp.write_bytes(data_map.png)
            written.append(targets.map_png)
        if before_record is not None:
            written += before_record()
        # queue.json last: apply and review look for it.
        write_queue_meta(targets.record, meta)
    except BaseException:
        for p in written:
            os.unlink(p)
        raise
