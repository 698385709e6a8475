"""The final model: retrain on the cleaned, reweighted manifest; predict the test rows.

``--mode full`` trains one model on every train row; ``--mode folds`` runs
``oof`` on the cleaned manifest (K models, which also measures the cleaned
labels by cross-validation) and averages the fold models on the test rows.
Given a reviewed queue, it is applied first exactly as ``cleaner apply`` does.
When the manifest carries ``true_label`` (synthetic noise), two more models are
trained, on the original noisy labels and on the true ones, so the report can
say how much of the gap the cleaning closed.

Run folder: ``config.toml``, ``manifest.sha256``, ``train_weights.csv``,
``full/`` (or ``cv/``, an oof run), ``baseline-noisy/``, ``baseline-true/``,
``predictions.csv``, ``submission.csv``, ``metrics.json``, ``report.md``
(:mod:`cleaner.final.report`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from cleaner.core.atomic import atomic_file, write_text
from cleaner.core.choices import BACKENDS, RETRAIN_MODES, REWEIGHT_MODES
from cleaner.core.config import PipelineConfig
from cleaner.core.errors import InputError, Problem
from cleaner.core.metrics import classification_metrics
from cleaner.final.audit_scores import audit_rows, audit_scores, measure_plan
from cleaner.final.report import render_report, write_figures
from cleaner.final.weights import train_weights, write_weights
from cleaner.formats.audit import read_audit_log
from cleaner.formats.manifest import (
    audit_log_path,
    read_manifest,
    resolve_paths,
    split_version,
)
from cleaner.formats.metrics_file import (
    AuditScores,
    ClassScores,
    RetrainMetrics,
    ScoresOnTest,
    from_json,
    read_oof_metrics,
    write_metrics,
)
from cleaner.formats.prob_table import PROB_PREFIX, write_table
from cleaner.formats.run_files import FoldFiles, RunFiles
from cleaner.formats.scores import expand_runs, read_scores
from cleaner.training.data import Normalize, decode_all, seed_for
from cleaner.training.device import resolve_device
from cleaner.training.oof import run_oof
from cleaner.training.pipeline import (
    PipelineData,
    load_fold_model,
    load_pipeline_data,
    make_dataset,
    model_and_normalize,
    predict_outputs,
)
from cleaner.training.probe import fit_head, set_head
from cleaner.training.run_plan import init_records, run_key
from cleaner.training.train import fit

if TYPE_CHECKING:
    from cleaner.training.ray_folds import RayOptions


def submission_table(
    sample_ids: Sequence[str] | np.ndarray,
    pred_probs: np.ndarray,
    classes: Sequence[str],
    *,
    id_column: str,
    label_column: str,
    label_format: str,
) -> pd.DataFrame:
    """The competition's file: one row per test sample, in the given order."""
    pred = pred_probs.argmax(axis=1)
    labels = pred if label_format == "index" else np.asarray(classes, dtype=object)[pred]
    return pd.DataFrame({id_column: list(sample_ids), label_column: labels})


# --- training and prediction ------------------------------------------------------------


@dataclass(frozen=True)
class RetrainResult:
    run_dir: Path
    manifest: Path
    metrics: RetrainMetrics


def _fit_full(
    data: PipelineData,
    rows: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    out: FoldFiles,
    progress: Progress,
    desc: str,
) -> tuple[torch.nn.Module, Any]:
    """One model on the given train rows, resumable from its checkpoint in ``out``."""
    cfg = data.cfg
    out.dir.mkdir(parents=True, exist_ok=True)
    seed = seed_for(cfg.train.seed, 1000)
    model, norm = model_and_normalize(cfg, seed)
    root = data.manifest_path.parent
    if cfg.train.mode == "probe":  # the backbone as it is, a head on its features
        features = predict_outputs(model, norm, cfg, data.df, root, rows)[1]
        head = fit_head(
            features, labels, weights, n_classes=len(cfg.data.classes), c=cfg.train.probe_c
        )
        set_head(model, *head)
    else:
        cache = None
        if cfg.data.cache:
            cache = decode_all(
                resolve_paths(data.df.iloc[rows], root),
                cfg.model.in_chans,
                max_pixels=cfg.data.max_image_pixels,
            )
        ds = make_dataset(
            cfg,
            data.df,
            root,
            rows,
            labels,
            train=True,
            normalize=norm,
            seed=seed,
            weights=weights.astype(np.float32),
            cache=cache,
        )
        fit(
            model,
            ds,
            None,
            cfg.train,
            classes=cfg.data.classes,
            checkpoint=out.checkpoint,
            seed=seed,
            device=resolve_device(cfg.train.device),
            progress=progress,
            desc=desc,
        )
    with atomic_file(out.model, overwrite=True) as f:
        torch.save(model.state_dict(), f)
    return model, norm


def _predict(
    model: torch.nn.Module, norm: Normalize, data: PipelineData, rows: np.ndarray, *, tta: bool
) -> np.ndarray:
    """Probabilities (R, K) of manifest positions ``rows`` under ``model``."""
    return predict_outputs(model, norm, data.cfg, data.df, data.root, rows, tta=tta)[0]


def _fold_models_predict(
    cv: RunFiles, data: PipelineData, rows: np.ndarray, *, tta: bool
) -> np.ndarray:
    """Average of the K fold models of an oof run on ``rows``."""
    cfg = data.cfg
    probs = []
    for k in range(cfg.train.folds):
        model, norm = load_fold_model(cfg, cv.fold(k))
        probs.append(_predict(model, norm, data, rows, tta=tta))
    return np.mean(probs, axis=0)


# --- the command ------------------------------------------------------------------------


def _true_labels(df: pd.DataFrame, rows: np.ndarray, classes: Sequence[str]) -> np.ndarray | None:
    if "true_label" not in df.columns:
        return None
    index = {c: i for i, c in enumerate(classes)}
    values = df["true_label"].to_numpy()[rows]
    if not all(v in index for v in values):
        return None
    return np.array([index[v] for v in values], dtype=np.int64)


@dataclass(frozen=True)
class RetrainOptions:
    """What ``cleaner retrain`` does with the pipeline: its command-line options."""

    queue: Path | None = None  # a reviewed queue, applied first exactly as `cleaner apply`
    manifest: Path | None = None  # the manifest version to train on (default: data.manifest)
    reweight: str = "none"  # one of choices.REWEIGHT_MODES
    mode: str = "full"  # one of MODES
    oof_runs: tuple[Path, ...] = ()  # the runs --reweight quality|prune reads (an ensemble)
    probs: Path | None = None  # or probabilities made elsewhere, in the oof.csv layout
    tta: bool = False  # mirror TTA of the test rows; on too with the pipeline's train.tta
    out: Path | None = None  # default runs/NAME-retrain-HASH
    reviewer: str = ""  # the audit log's name when the queue is applied
    backend: str = "local"  # --mode folds: one of choices.BACKENDS
    ray_options: RayOptions | None = None
    baselines: bool = True  # with true_label: also train on the noisy and the true labels
    force: bool = False  # reweight even when the oof model is no better than chance

    def check(self) -> None:
        """Refuse option values and combinations that cannot run, before anything loads."""
        REWEIGHT_MODES.check(self.reweight)
        RETRAIN_MODES.check(self.mode)
        BACKENDS.check(self.backend)
        if self.backend == "ray" and self.mode != "folds":
            raise InputError("--backend ray spreads folds: use it with --mode folds")


def _applied(cfg: PipelineConfig, options: RetrainOptions) -> tuple[PipelineConfig, list[Path]]:
    """The config on the manifest to train on, and the oof runs that scored its labels.

    A queue is applied first (resumable: the version it made before, then was
    killed, is reused); its runs are the ones reweighting reads unless ``--oof``
    names others.
    """
    manifest, oof_runs = options.manifest, list(options.oof_runs)
    if options.queue is not None:
        from cleaner.formats.queue_file import read_queue_meta
        from cleaner.review.apply import apply_queue

        meta = read_queue_meta(options.queue)
        applied = apply_queue(options.queue, reviewer=options.reviewer, reuse_applied=True)
        manifest = applied.new_manifest
        oof_runs = oof_runs or [Path(r) for r in meta.runs] or ([meta.probs] if meta.probs else [])
    if options.probs is not None and oof_runs:
        raise InputError("give --oof runs or --probs, not both")
    if manifest is not None:
        cfg = cfg.replace("data", manifest=Path(manifest).as_posix())
    return cfg, [options.probs] if options.probs is not None else expand_runs(oof_runs)


def _retrain_dir(data: PipelineData, options: RetrainOptions, name: str) -> Path:
    """The retrain's folder, with its config and manifest recorded (once)."""
    key = run_key(data.cfg, data.manifest_sha, options.mode, options.reweight, str(options.tta))
    run_dir = options.out or Path("runs") / f"{name}-retrain-{key}"
    if RunFiles(run_dir).report.exists():
        raise InputError(
            [Problem(str(run_dir), "already holds a finished retrain; pass --out for a new one")]
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    init_records(run_dir, data.cfg, data.manifest_sha, data.manifest_path)
    return run_dir


def _train_fold_models(
    data: PipelineData,
    options: RetrainOptions,
    run_dir: Path,
    weights: np.ndarray,
    test_rows: np.ndarray,
    *,
    progress: Progress,
) -> tuple[np.ndarray, ClassScores | None]:
    """``--mode folds``: an oof run on the cleaned labels into ``cv/``; the fold models'
    mean on the test rows, and the cleaned labels' cross-validated scores."""
    cv_data = data
    if options.reweight != "none":
        # The fold models train with the same weights as the full model would.
        cv_data = data.with_weights(RunFiles(run_dir).train_weights.resolve())
    cv_files = RunFiles(run_dir).cv
    cv = run_oof(
        cv_data,
        out=cv_files.dir,
        progress=progress,
        backend=options.backend,
        ray_options=options.ray_options,
        embed=False,  # the queue is made; these folds only score the cleaned labels
    )
    cv_scores = cv.metrics.overall if cv.metrics is not None else None
    if cv_scores is not None and (weights == 0).any():
        # Weight-0 rows (pruned) taught nothing: score the labels that were trained on.
        cv_scores = _cv_on_trained_rows(cv_files.dir, data.sample_ids, weights, data.classes)
    return _fold_models_predict(cv_files, data, test_rows, tta=options.tta), cv_scores


def _write_predictions(
    run_dir: Path, data: PipelineData, test_rows: np.ndarray, test_probs: np.ndarray
) -> None:
    """``predictions.csv`` (every class probability) and ``submission.csv`` of the test rows."""
    ids, classes, sub = (
        data.df["sample_id"].to_numpy()[test_rows],
        data.classes,
        data.cfg.submission,
    )
    predictions = pd.concat(
        [
            pd.DataFrame({"sample_id": ids}),
            pd.DataFrame(test_probs, columns=[f"{PROB_PREFIX}{c}" for c in classes]),
        ],
        axis=1,
    )
    submission = submission_table(
        ids,
        test_probs,
        classes,
        id_column=sub.id_column,
        label_column=sub.label_column,
        label_format=sub.label_format,
    )
    files = RunFiles(run_dir)
    for path, table in ((files.predictions, predictions), (files.submission, submission)):
        write_table(path, table, overwrite=True)


def run_retrain(
    cfg: PipelineConfig,
    options: RetrainOptions = RetrainOptions(),
    *,
    progress: Progress,
    name: str = "run",
    source: str | Path = "the pipeline",
) -> RetrainResult:
    """``cleaner retrain``: train the final model(s), predict the test rows, write the report.

    ``cfg`` is the resolved pipeline; ``name`` prefixes the run folder's name
    when ``options.out`` is not given and ``source`` names the pipeline in errors.
    """
    options.check()
    if cfg.train.tta and not options.tta:
        # The pipeline's train.tta predicts the test rows with the mirror too.
        options = dataclasses.replace(options, tta=True)
    cfg, runs = _applied(cfg, options)
    data = load_pipeline_data(cfg, progress=progress, source=source)
    weights, weight_rule = train_weights(data, options.reweight, runs, force=options.force)
    run_dir = _retrain_dir(data, options, name)
    write_weights(run_dir, data, weights)
    test_rows = data.rows_of("test")
    true_test = _true_labels(data.df, test_rows, data.classes)
    audit = _audit_slice(data, options, len(test_rows), true_test is not None, progress)
    cv_scores = None
    if options.mode == "folds":
        test_probs, cv_scores = _train_fold_models(
            data, options, run_dir, weights, test_rows, progress=progress
        )
    else:
        model, norm = _fit_full(
            data,
            data.train_rows,
            data.labels,
            weights,
            out=RunFiles(run_dir).final,
            progress=progress,
            desc="final model",
        )
        test_probs = _predict(model, norm, data, test_rows, tta=options.tta)
    test = None
    if true_test is not None and len(test_rows):
        test = _compare_on_test(
            data,
            test_rows,
            true_test,
            test_probs,
            run_dir=run_dir,
            progress=progress,
            tta=options.tta,
            baselines=options.baselines,
        )
    _write_predictions(run_dir, data, test_rows, test_probs)
    metrics = RetrainMetrics(
        manifest=str(data.manifest_path),
        manifest_sha256=data.manifest_sha,
        mode=options.mode,
        reweight=options.reweight,
        weight_rule=weight_rule,
        tta=options.tta,
        train_rows=len(data.train_rows),
        test_rows=len(test_rows),
        classes=list(data.classes),
        cv_cleaned=cv_scores,
        test=test,
        audit=_audit_figures(audit, data, options, run_dir),
        **_before(data, runs[0] if runs else None),
    )
    figures = write_figures(metrics, run_dir, runs[0] if runs else None)
    metrics = dataclasses.replace(metrics, figures=figures)
    files = RunFiles(run_dir)
    write_metrics(files.metrics, metrics, overwrite=True)
    # The report is written last: its presence marks the retrain as finished.
    write_text(files.report, render_report(metrics, run_dir))
    return RetrainResult(run_dir, data.manifest_path, metrics)


def _audit_slice(
    data: PipelineData,
    options: RetrainOptions,
    test_rows: int,
    test_truth: bool,
    progress: Progress,
) -> pd.DataFrame:
    """The audit slice's decisions in effect (final.audit_scores), after saying, before the
    long work, what the report will be able to measure."""
    audit = audit_rows(read_audit_log(audit_log_path(data.manifest_path)), data.df)
    if not progress.disable:
        plan = measure_plan(
            audit, mode=options.mode, test_rows=test_rows, test_truth=test_truth,
            baselines=options.baselines,
        )  # fmt: skip
        progress.console.print("\n".join(plan), highlight=False)
    return audit


def _audit_figures(
    audit: pd.DataFrame, data: PipelineData, options: RetrainOptions, run_dir: Path
) -> AuditScores | None:
    """The audit slice's figures; the model after from ``--mode folds``' fold models."""
    cv_run = RunFiles(run_dir).cv.dir if options.mode == "folds" else None
    project = data.manifest_path.parent.parent  # where relative run folders are looked up
    return audit_scores(audit, data.classes, project=project, cv_run=cv_run)


def _cv_on_trained_rows(
    cv_dir: Path, sample_ids: np.ndarray, weights: np.ndarray, classes: Sequence[str]
) -> ClassScores:
    """Cross-validated scores of an oof run on the rows with weight > 0 only."""
    run = read_scores(cv_dir)
    kept = pd.Index(run.sample_ids).get_indexer(sample_ids[weights > 0])
    return ClassScores(
        **classification_metrics(run.labels[kept], run.probs[kept].argmax(axis=1), classes),
        rows_weight_0_left_out=int((weights == 0).sum()),
    )


def _before(data: PipelineData, oof_run: str | Path | None) -> dict[str, Any]:
    """Labels changed since the first version, and the cross-validated score before cleaning."""
    out: dict[str, Any] = {}
    name, version = split_version(data.manifest_path)
    first = data.manifest_path.with_name(f"{name}.csv")
    if version > 1 and first.exists():
        old = read_manifest(first).set_index("sample_id")
        now = data.df.set_index("sample_id")
        common = now.index.intersection(old.index)
        out["labels_changed"] = int((old.loc[common, "label"] != now.loc[common, "label"]).sum())
        out["rows_excluded"] = int(
            (
                (now.loc[common, "split"] == "excluded") & (old.loc[common, "split"] != "excluded")
            ).sum()
        )
        out["first_version"] = str(first)
    if oof_run is not None and RunFiles(Path(oof_run)).metrics.exists():
        out["cv_before"] = read_oof_metrics(RunFiles(Path(oof_run)).metrics).overall
        out["cv_before_run"] = str(oof_run)
    return out


def _compare_on_test(
    data: PipelineData,
    test_rows: np.ndarray,
    true_test: np.ndarray,
    cleaned_probs: np.ndarray,
    *,
    run_dir: Path,
    progress: Progress,
    tta: bool,
    baselines: bool = True,
) -> ScoresOnTest:
    """Test scores of models trained on the noisy, the cleaned and the true labels.

    ``baselines=False`` scores the cleaned model alone (no extra trainings).
    """
    classes = data.classes
    predicted = {"cleaned": cleaned_probs.argmax(1)}
    results: dict[str, Any] = {
        "cleaned": classification_metrics(true_test, predicted["cleaned"], classes)
    }
    if not baselines:
        return _with_intervals(results, true_test, predicted, len(classes))
    name, _ = split_version(data.manifest_path)
    first = data.manifest_path.with_name(f"{name}.csv")
    base = read_manifest(first) if first.exists() else data.df
    base_train = np.flatnonzero((base["split"] == "train").to_numpy())
    index = {c: i for i, c in enumerate(classes)}
    position = pd.Index(data.df["sample_id"]).get_indexer(base["sample_id"].to_numpy()[base_train])
    if (position < 0).any():
        return from_json(ScoresOnTest, results, where="test")
    weights = pd.to_numeric(base["weight"].to_numpy()[base_train]).astype(np.float64)
    for tag, labels in (
        ("noisy", np.array([index[v] for v in base["label"].to_numpy()[base_train]])),
        ("true", _true_labels(base, base_train, classes)),
    ):
        if labels is None:
            continue
        model, norm = _fit_full(
            data,
            position,
            labels,
            weights,
            out=RunFiles(run_dir).baseline(tag),
            progress=progress,
            desc=f"baseline on {tag} labels",
        )
        probs = _predict(model, norm, data, test_rows, tta=tta)
        predicted[tag] = probs.argmax(1)
        results[tag] = classification_metrics(true_test, predicted[tag], classes)
    if "noisy" in results and "true" in results:
        gap = results["true"]["accuracy"] - results["noisy"]["accuracy"]
        gained = results["cleaned"]["accuracy"] - results["noisy"]["accuracy"]
        results["gap_recovered"] = gained / gap if gap > 0 else None
    return _with_intervals(results, true_test, predicted, len(classes))


def _with_intervals(
    results: dict[str, Any], y: np.ndarray, predicted: dict[str, np.ndarray], n_classes: int
) -> ScoresOnTest:
    """95% intervals (paired bootstrap over the test rows) of each figure, and whether the
    noisy-to-true gap is measurable at all: its interval must exclude 0."""
    from cleaner.core.intervals import gap_intervals, metric_intervals

    for tag, ci in metric_intervals(y, predicted, n_classes).items():
        results[tag]["accuracy_ci"], results[tag]["macro_f1_ci"] = ci["accuracy"], ci["macro_f1"]
    if "noisy" in predicted and "true" in predicted:
        gaps = gap_intervals(y, predicted["noisy"], predicted["cleaned"], predicted["true"])
        results["gap_ci"] = gaps["gap"]
        results["gap_measurable"] = gaps["gap"][0] > 0
        results["gap_recovered_ci"] = gaps.get("recovered")
    return from_json(ScoresOnTest, results, where="test")
