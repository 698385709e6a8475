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
``predictions.csv``, ``submission.csv``, ``metrics.json``, ``report.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from rich.progress import Progress

from cleaner import flag
from cleaner.atomic import atomic_path, write_text
from cleaner.audit import decided_in_manifest
from cleaner.config import PipelineConfig, load_config, text_override
from cleaner.data import decode_all, seed_for
from cleaner.errors import InputError, Problem
from cleaner.manifest import audit_log_path, read_manifest, resolve_paths, split_version
from cleaner.metrics import classification_metrics
from cleaner.oof import BACKENDS, PipelineData, load_pipeline_data, run_oof
from cleaner.pipeline import make_dataset, model_and_normalize, predict_rows
from cleaner.runs import MANIFEST_RECORD, PROB_PREFIX, manifest_record
from cleaner.train import fit, resolve_device
from cleaner.trust import check_trust

if TYPE_CHECKING:
    from cleaner.ray_folds import RayOptions

REWEIGHTS = ("none", "quality", "prune", "class")
MODES = ("full", "folds")


# --- pure array work --------------------------------------------------------------------


def quality_weights(
    weights: np.ndarray, quality_scores: np.ndarray, reviewed: np.ndarray
) -> np.ndarray:
    """Loss weights (N,) scaled by out-of-fold label quality, except where a person decided.

    ``w_i = weights_i * quality_scores_i`` for unreviewed rows and ``weights_i``
    for reviewed ones (kept, relabeled or marked unsure by a person): a label a
    person confirmed gets its full say, a doubtful one the model's confidence in it.
    ``quality_scores`` is NaN for rows the run did not score; they keep ``weights_i``.
    """
    q = np.where(np.isnan(quality_scores), 1.0, np.clip(quality_scores, 0.0, 1.0))
    return np.where(reviewed, weights, weights * q)


def prune_weights(
    weights: np.ndarray, is_label_issue: np.ndarray, reviewed: np.ndarray
) -> np.ndarray:
    """Loss weights (N,) with the flagged label issues nobody reviewed set to 0.

    cleanlab's ``CleanLearning`` recipe: train on the rows ``find_label_issues``
    does not flag. A row a person decided keeps ``weights_i`` whatever the flag.
    """
    return np.where(np.asarray(is_label_issue, bool) & ~np.asarray(reviewed, bool), 0.0, weights)


def class_balance_weights(weights: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Loss weights (N,) times ``N / (K * n_c)``: every class contributes the same total."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    return weights * (len(labels) / (present * counts[labels]))


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
    metrics: dict[str, Any]


def _fit_full(
    cfg: PipelineConfig,
    data: PipelineData,
    rows: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    *,
    out_dir: Path,
    progress: Progress,
    desc: str,
) -> tuple[torch.nn.Module, Any]:
    """One model on the given train rows, resumable from ``out_dir/checkpoint.pt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = seed_for(cfg.train.seed, 1000)
    model, norm = model_and_normalize(cfg, seed)
    root = data.manifest_path.parent
    cache = None
    if cfg.data.cache:
        cache = decode_all(resolve_paths(data.df.iloc[rows], root), cfg.model.in_chans)
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
        checkpoint=out_dir / "checkpoint.pt",
        seed=seed,
        device=resolve_device(cfg.train.device),
        progress=progress,
        desc=desc,
    )
    with atomic_path(out_dir / "model.pt", overwrite=True) as tmp:
        torch.save(model.state_dict(), tmp)
    return model, norm


def _fold_models_predict(
    cv_dir: Path, cfg: PipelineConfig, data: PipelineData, rows: np.ndarray, *, tta: bool
) -> np.ndarray:
    """Average of the K fold models of an oof run on ``rows``."""
    probs = []
    for k in range(cfg.train.folds):
        model, norm = model_and_normalize(cfg, 0)
        model.load_state_dict(torch.load(cv_dir / f"fold-{k}" / "model.pt", weights_only=True))
        model.to(resolve_device(cfg.train.device))
        probs.append(
            predict_rows(model, norm, cfg, data.df, data.manifest_path.parent, rows, tta=tta)
        )
    return np.mean(probs, axis=0)


# --- the command ------------------------------------------------------------------------


def _train_weights(
    data: PipelineData, reweight: str, oof_runs: Sequence[Path], *, force: bool = False
) -> tuple[np.ndarray, str]:
    """The loss weight of every train row under ``--reweight``, and how it was made."""
    sub = data.df.iloc[data.train_rows]
    weights = pd.to_numeric(sub["weight"]).to_numpy(np.float64)
    ids = sub["sample_id"].to_numpy()
    if reweight == "class":
        return class_balance_weights(weights, data.labels, len(data.cfg.data.classes)), (
            "manifest weight x N / (K x rows of the class)"
        )
    if reweight in ("quality", "prune"):
        if not oof_runs:
            raise InputError(
                f"--reweight {reweight} needs the oof run that scored the labels: "
                "pass --oof RUN or --probs FILE (or --queue, whose runs are used)"
            )
        run = load_runs_lenient(oof_runs)
        named = ", ".join(str(r) for r in oof_runs)
        # The same gate as `flag`: weights from a model no better than chance are noise.
        known = run["labels"] >= 0
        check_trust(run["labels"][known], run["probs"][known], force=force, source=named)
        position = pd.Index(run["sample_id"]).get_indexer(ids)
        found = position >= 0
        decided = decided_in_manifest(data.df, audit_log_path(data.manifest_path))
        reviewed = np.isin(ids, list(decided))
        if reweight == "prune":
            # Flagged on the labels the runs scored and their mean probabilities, as
            # `flag` on the same runs (without flag.attributes) lists its `label` rows.
            flagged = flag.find_label_errors(run["labels"], run["probs"])
            is_issue = np.zeros(len(ids), bool)
            is_issue[found] = flagged[position[found]]
            return prune_weights(weights, is_issue, reviewed), (
                "manifest weight; 0 for the rows cleanlab's find_label_issues flags in "
                f"run {named} that no person decided"
            )
        quality = np.full(len(ids), np.nan)
        # Self-confidence: the out-of-fold probability of the row's current label.
        quality[found] = run["probs"][position[found], data.labels[found]]
        return quality_weights(weights, quality, reviewed), (
            f"manifest weight x out-of-fold probability of the label (run {named}); "
            "rows a person decided keep their manifest weight"
        )
    return weights, "manifest weight"


def load_run_lenient(run_dir: Path) -> dict[str, np.ndarray]:
    """An oof run's ids and probabilities, whatever manifest version it was made on.

    Reweighting reads the run that scored the *previous* version: rows are
    matched by ``sample_id``, so the manifest's sha256 need not match.
    ``run_dir`` may also be a probability file in the ``oof.csv`` layout
    (``--probs``: probabilities made outside ``cleaner``).
    """
    oof_csv = Path(run_dir) if Path(run_dir).is_file() else Path(run_dir) / "oof.csv"
    if not oof_csv.exists():
        raise InputError([Problem(str(run_dir), "no oof.csv: not a finished oof run")])
    table = pd.read_csv(
        oof_csv, dtype={"sample_id": str, "label": str, "pred": str}, keep_default_na=False
    )
    cols = [c for c in table.columns if c.startswith(PROB_PREFIX)]
    classes = [c[len(PROB_PREFIX) :] for c in cols]
    return {
        "sample_id": table["sample_id"].to_numpy(),
        "probs": table[cols].to_numpy(np.float64),
        # The labels the run scored (class indices), as its queue saw them.
        "labels": pd.Index(classes).get_indexer(pd.Index(table["label"])),
    }


def load_runs_lenient(run_dirs: Sequence[Path]) -> dict[str, np.ndarray]:
    """Several oof runs of one manifest version as one: their mean probabilities.

    The ensemble ``flag RUN1 RUN2 ...`` ranks by; the runs must score the same rows
    with the same labels (oof runs of one version with other seeds or models).
    """
    runs = [load_run_lenient(Path(r)) for r in run_dirs]
    first = runs[0]
    for r, other in zip(run_dirs[1:], runs[1:], strict=True):
        position = pd.Index(other["sample_id"]).get_indexer(first["sample_id"])
        if (position < 0).any() or len(position) != len(other["sample_id"]):
            raise InputError(
                [Problem(str(r), f"scores other rows than {run_dirs[0]}: not the same version")]
            )
        if (other["labels"][position] != first["labels"]).any():
            raise InputError(
                [Problem(str(r), f"scored other labels than {run_dirs[0]}: not the same version")]
            )
        other["probs"] = other["probs"][position]
    return {**first, "probs": np.mean([r["probs"] for r in runs], axis=0)}


def _true_labels(df: pd.DataFrame, rows: np.ndarray, classes: Sequence[str]) -> np.ndarray | None:
    if "true_label" not in df.columns:
        return None
    index = {c: i for i, c in enumerate(classes)}
    values = df["true_label"].to_numpy()[rows]
    if not all(v in index for v in values):
        return None
    return np.array([index[v] for v in values], dtype=np.int64)


def run_retrain(
    pipeline: str | Path,
    overrides: Iterable[str] = (),
    *,
    manifest: str | Path | None = None,
    queue: str | Path | None = None,
    reweight: str = "none",
    mode: str = "full",
    oof_runs: Sequence[str | Path] = (),
    tta: bool = False,
    out: str | Path | None = None,
    reviewer: str = "",
    progress: Progress,
    backend: str = "local",
    ray_options: RayOptions | None = None,
    baselines: bool = True,
    probs: str | Path | None = None,
    force: bool = False,
) -> RetrainResult:
    """``cleaner retrain``: train the final model(s), predict the test rows, write the report."""
    if reweight not in REWEIGHTS:
        raise InputError(f"--reweight {reweight!r}: choose one of {', '.join(REWEIGHTS)}")
    if mode not in MODES:
        raise InputError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "ray" and mode != "folds":
        raise InputError("--backend ray spreads folds: use it with --mode folds")
    overrides = list(overrides)
    load_config(pipeline, overrides)  # a bad pipeline fails before the queue is applied
    if queue is not None:
        from cleaner.review import apply_queue, read_queue_meta

        meta = read_queue_meta(queue)
        # Resumable: a queue this command applied before (then was killed) is reused.
        manifest = apply_queue(queue, reviewer=reviewer, reuse_applied=True).new_manifest
        oof_runs = oof_runs or meta.runs or ([meta.probs] if meta.probs else [])
    if manifest is not None:
        overrides.append(text_override("data.manifest", Path(manifest).as_posix()))
    data = load_pipeline_data(pipeline, overrides, progress=progress)
    cfg = data.cfg
    if probs is not None and oof_runs:
        raise InputError("give --oof runs or --probs, not both")
    runs = [Path(probs)] if probs is not None else [Path(r) for r in oof_runs]
    weights, weight_rule = _train_weights(data, reweight, runs, force=force)
    key = hashlib.sha256(
        (cfg.to_toml() + data.manifest_sha + mode + reweight + str(tta)).encode()
    ).hexdigest()[:8]
    run_dir = Path(out) if out else Path("runs") / f"{Path(pipeline).stem}-retrain-{key}"
    if (run_dir / "report.md").exists():
        raise InputError(
            [Problem(str(run_dir), "already holds a finished retrain; pass --out for a new one")]
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("config.toml", cfg.to_toml()),
        (MANIFEST_RECORD, manifest_record(data.manifest_sha, data.manifest_path, run_dir)),
    ):
        if not (run_dir / name).exists():
            write_text(run_dir / name, text)
        elif (run_dir / name).read_text() != text:
            raise InputError(
                [
                    Problem(
                        str(run_dir / name),
                        "this run folder was made with a different config or manifest; pass --out",
                    )
                ]
            )
    ids = data.df["sample_id"].to_numpy()
    weights_csv = run_dir / "train_weights.csv"
    if not weights_csv.exists():
        with atomic_path(weights_csv) as tmp:
            pd.DataFrame({"sample_id": ids[data.train_rows], "weight": weights}).to_csv(
                tmp, index=False, float_format="%.6g"
            )
    test_rows = np.flatnonzero((data.df["split"] == "test").to_numpy())
    classes = cfg.data.classes

    cv_metrics = None
    if mode == "folds":
        # The fold models train with the same weights as the full model would.
        cv_overrides = overrides
        if reweight != "none":
            cv_overrides = [
                *overrides,
                text_override("data.weights", weights_csv.resolve().as_posix()),
            ]
        cv = run_oof(
            pipeline,
            cv_overrides,
            out=run_dir / "cv",
            progress=progress,
            backend=backend,
            ray_options=ray_options,
            embed=False,  # the queue is made; these folds only score the cleaned labels
        )
        cv_metrics = cv.metrics
        if cv_metrics is not None and (weights == 0).any():
            # Weight-0 rows (pruned) taught nothing: score the labels that were trained on.
            cv_metrics = {
                "overall": _cv_on_trained_rows(
                    run_dir / "cv", ids[data.train_rows], weights, classes
                )
            }
        test_probs = _fold_models_predict(run_dir / "cv", cfg, data, test_rows, tta=tta)
    else:
        model, norm = _fit_full(
            cfg,
            data,
            data.train_rows,
            data.labels,
            weights,
            out_dir=run_dir / "full",
            progress=progress,
            desc="final model",
        )
        test_probs = predict_rows(
            model, norm, cfg, data.df, data.manifest_path.parent, test_rows, tta=tta
        )

    metrics: dict[str, Any] = {
        "manifest": str(data.manifest_path),
        "manifest_sha256": data.manifest_sha,
        "mode": mode,
        "reweight": reweight,
        "weight_rule": weight_rule,
        "tta": tta,
        "train_rows": len(data.train_rows),
        "test_rows": len(test_rows),
        "classes": list(classes),
        "cv_cleaned": cv_metrics["overall"] if cv_metrics else None,
    }
    metrics.update(_before(data, runs[0] if runs else None))
    true_test = _true_labels(data.df, test_rows, classes)
    if true_test is not None and len(test_rows):
        metrics["test"] = _compare_on_test(
            cfg,
            data,
            test_rows,
            true_test,
            test_probs,
            run_dir=run_dir,
            progress=progress,
            tta=tta,
            baselines=baselines,
        )

    predictions = pd.concat(
        [
            pd.DataFrame({"sample_id": ids[test_rows]}),
            pd.DataFrame(test_probs, columns=[f"{PROB_PREFIX}{c}" for c in classes]),
        ],
        axis=1,
    )
    sub = cfg.submission
    submission = submission_table(
        ids[test_rows],
        test_probs,
        classes,
        id_column=sub.id_column,
        label_column=sub.label_column,
        label_format=sub.label_format,
    )
    for name, table in (("predictions.csv", predictions), ("submission.csv", submission)):
        with atomic_path(run_dir / name, overwrite=True) as tmp:
            table.to_csv(tmp, index=False, float_format="%.8g")
    metrics["figures"] = _figures(metrics, run_dir, runs[0] if runs else None)
    write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2), overwrite=True)
    # The report is written last: its presence marks the retrain as finished.
    write_text(run_dir / "report.md", render_report(metrics, run_dir))
    return RetrainResult(run_dir, data.manifest_path, metrics)


def _cv_on_trained_rows(
    cv_dir: Path, sample_ids: np.ndarray, weights: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Cross-validated metrics of an oof run on the rows with weight > 0 only."""
    run = load_run_lenient(cv_dir)
    kept = pd.Index(run["sample_id"]).get_indexer(sample_ids[weights > 0])
    out = classification_metrics(run["labels"][kept], run["probs"][kept].argmax(axis=1), classes)
    out["rows_weight_0_left_out"] = int((weights == 0).sum())
    return out


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
    if oof_run is not None and (Path(oof_run) / "metrics.json").exists():
        before = json.loads((Path(oof_run) / "metrics.json").read_text())
        out["cv_before"] = before["overall"]
        out["cv_before_run"] = str(oof_run)
    return out


def _compare_on_test(
    cfg: PipelineConfig,
    data: PipelineData,
    test_rows: np.ndarray,
    true_test: np.ndarray,
    cleaned_probs: np.ndarray,
    *,
    run_dir: Path,
    progress: Progress,
    tta: bool,
    baselines: bool = True,
) -> dict[str, Any]:
    """Test metrics of models trained on the noisy, the cleaned and the true labels.

    ``baselines=False`` scores the cleaned model alone (no extra trainings).
    """
    classes = cfg.data.classes
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
        return results
    weights = pd.to_numeric(base["weight"].to_numpy()[base_train]).astype(np.float64)
    for tag, labels in (
        ("noisy", np.array([index[v] for v in base["label"].to_numpy()[base_train]])),
        ("true", _true_labels(base, base_train, classes)),
    ):
        if labels is None:
            continue
        model, norm = _fit_full(
            cfg,
            data,
            position,
            labels,
            weights,
            out_dir=run_dir / f"baseline-{tag}",
            progress=progress,
            desc=f"baseline on {tag} labels",
        )
        probs = predict_rows(
            model, norm, cfg, data.df, data.manifest_path.parent, test_rows, tta=tta
        )
        predicted[tag] = probs.argmax(1)
        results[tag] = classification_metrics(true_test, predicted[tag], classes)
    if "noisy" in results and "true" in results:
        gap = results["true"]["accuracy"] - results["noisy"]["accuracy"]
        gained = results["cleaned"]["accuracy"] - results["noisy"]["accuracy"]
        results["gap_recovered"] = gained / gap if gap > 0 else None
    return _with_intervals(results, true_test, predicted, len(classes))


def _with_intervals(
    results: dict[str, Any], y: np.ndarray, predicted: dict[str, np.ndarray], n_classes: int
) -> dict[str, Any]:
    """95% intervals (paired bootstrap over the test rows) of each figure, and whether the
    noisy-to-true gap is measurable at all: its interval must exclude 0."""
    from cleaner.intervals import gap_intervals, metric_intervals

    for tag, ci in metric_intervals(y, predicted, n_classes).items():
        results[tag]["accuracy_ci"], results[tag]["macro_f1_ci"] = ci["accuracy"], ci["macro_f1"]
    if "noisy" in predicted and "true" in predicted:
        gaps = gap_intervals(y, predicted["noisy"], predicted["cleaned"], predicted["true"])
        results["gap_ci"] = gaps["gap"]
        results["gap_measurable"] = gaps["gap"][0] > 0
        results["gap_recovered_ci"] = gaps.get("recovered")
    return results


def _figures(metrics: dict[str, Any], run_dir: Path, oof_run: str | Path | None) -> list[str]:
    """PNGs beside report.md: the oof run's estimated noise matrix, per-class test F1."""
    from cleaner.figures import noise_matrix_png, per_class_f1_png

    classes = metrics["classes"]
    made = []
    if oof_run is not None and (Path(oof_run) / "oof.csv").exists():
        run = load_run_lenient(Path(oof_run))
        if (run["labels"] >= 0).all():
            joint = flag.estimate_noise(run["labels"], run["probs"]).joint
            noise_matrix_png(joint, classes, run_dir / "noise_matrix.png",
                             title="estimated noise (cleanlab), before cleaning",
                             xlabel="likely true label")  # fmt: skip
            made.append("noise_matrix.png")
    test = metrics.get("test") or {}
    models = {f"{t} labels": test[t]["per_class_f1"] for t in ("noisy", "cleaned", "true")
              if t in test}  # fmt: skip
    if models:
        title = "per-class F1 on the test rows, by the labels trained on"
        per_class_f1_png(models, classes, run_dir / "per_class_f1.png", title=title)
        made.append("per_class_f1.png")
    return made


def _ci(ci: Sequence[float] | None, fmt: str = ".4f") -> str:
    return f" ({ci[0]:{fmt}} to {ci[1]:{fmt}})" if ci else ""


def _test_lines(test: dict[str, Any]) -> list[str]:
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
    for tag in ("noisy", "cleaned", "true"):
        if tag in test:
            m = test[tag]
            lines.append(
                f"| {tag} labels | {m['accuracy']:.4f}{_ci(m.get('accuracy_ci'))} | "
                f"{m['macro_f1']:.4f}{_ci(m.get('macro_f1_ci'))} |"
            )
    if "gap_ci" in test:
        lines.append("")
        if not test.get("gap_measurable"):
            lines.append(
                "The accuracy gap between the models trained on the noisy and on the true "
                f"labels is too small to measure on these test rows: its 95% interval"
                f"{_ci(test['gap_ci'])} includes 0, so no share of it recovered is reported."
            )
        elif test.get("gap_recovered") is not None:
            lines.append(
                f"Cleaning recovered {test['gap_recovered']:.0%}"
                f"{_ci(test.get('gap_recovered_ci'), '.0%')} of the accuracy gap between the "
                f"noisy and the true labels (gap {test['gap_ci'][0]:.4f} to "
                f"{test['gap_ci'][1]:.4f}, 95%)."
            )
    per_class = test["cleaned"]["per_class_f1"]
    lines += [
        "",
        "### Per-class F1 of the cleaned model on the test rows",
        "",
        "| class | F1 |",
        "|---|---:|",
        *[f"| {c} | {f:.4f} |" for c, f in per_class.items()],
    ]
    return lines


def render_report(metrics: dict[str, Any], run_dir: Path) -> str:
    """report.md: what was trained on, and whether cleaning helped."""
    lines = [
        "# cleaner retrain report",
        "",
        f"- manifest: `{metrics['manifest']}` (sha256 `{metrics['manifest_sha256'][:12]}`)",
        f"- mode: {metrics['mode']}; test-time flip: {metrics['tta']}",
        f"- train rows: {metrics['train_rows']:,}; test rows: {metrics['test_rows']:,}",
        f"- loss weights (`--reweight {metrics['reweight']}`): {metrics['weight_rule']}",
    ]
    if "labels_changed" in metrics:
        lines.append(
            f"- since `{metrics['first_version']}`: {metrics['labels_changed']:,} labels "
            f"changed, {metrics['rows_excluded']:,} rows excluded"
        )
    lines += [
        "",
        "## Cross-validated, against each version's own labels",
        "",
        "| labels | accuracy | macro F1 |",
        "|---|---:|---:|",
    ]
    for tag, key in (("before cleaning (oof run)", "cv_before"), ("cleaned", "cv_cleaned")):
        m = metrics.get(key)
        if m:
            if m.get("rows_weight_0_left_out"):
                tag += f" ({m['rows_weight_0_left_out']} rows of weight 0 left out)"
            lines.append(f"| {tag} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |")
        else:
            lines.append(
                f"| {tag} | not measured | "
                + ("use `--mode folds` |" if key == "cv_cleaned" else "pass `--oof RUN` |")
            )
    test = metrics.get("test")
    if test:
        lines += _test_lines(test)
    figures = metrics.get("figures") or []
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{name[:-4].replace('_', ' ')}]({name})" for name in figures]
    lines += [
        "",
        "## Files",
        "",
        f"- `{run_dir / 'submission.csv'}`: the file to submit",
        f"- `{run_dir / 'predictions.csv'}`: every class probability of every test row",
        f"- `{run_dir / 'train_weights.csv'}`: the loss weight of every train row",
        f"- `{run_dir / 'metrics.json'}`: everything above, as JSON",
        "",
    ]
    return "\n".join(lines)
