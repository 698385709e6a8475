"""The loop's commands: ``oof``, ``flag``, ``apply``, ``retrain`` and ``demo``."""

from __future__ import annotations

from pathlib import Path

import typer

from cleaner.cli.base import (
    ADDRESS_OPTION,
    BACKEND_OPTION,
    CPUS_OPTION,
    GPUS_OPTION,
    SET_OPTION,
    app,
    friendly_errors,
)
from cleaner.cli.printing import (
    print_apply,
    print_demo_files,
    print_flag,
    print_oof_result,
    print_retrain,
)
from cleaner.core import choices
from cleaner.core.progress import console, make_progress


@app.command()
@friendly_errors
def oof(
    pipeline: Path = typer.Argument(..., metavar="PIPELINE"),
    set_: list[str] = SET_OPTION,
    fold: int | None = typer.Option(None, "--fold", help="Train only fold K (0-based)."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default runs/NAME-HASH)."),
    repeats: int = typer.Option(
        1,
        "--repeats",
        help="Train R runs with seeds train.seed+r into one ensemble folder "
        "(runs/NAME-HASH-xR) that flag and retrain --oof read as one.",
    ),
    backend: str = BACKEND_OPTION,
    address: str | None = ADDRESS_OPTION,
    gpus_per_fold: float | None = GPUS_OPTION,
    cpus_per_fold: float | None = CPUS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars."),
) -> None:
    """K-fold cross-validation: out-of-fold probabilities and embeddings for every train row.

    Under `torchrun --nproc-per-node N -m cleaner oof ...` the N processes train
    each fold together (DistributedDataParallel).
    """
    from cleaner.core.config import load_config

    load_config(pipeline, set_)  # a typo in --set is reported before torch loads
    from cleaner.training.distributed import context, shutdown
    from cleaner.training.oof import oof_command
    from cleaner.training.ray_options import ray_options

    options = ray_options(backend, address, gpus_per_fold, cpus_per_fold)
    main = context().main  # under torchrun only rank 0 prints
    try:
        with make_progress(quiet=quiet or not main) as progress:
            result = oof_command(
                pipeline, set_, fold=fold, out=out, repeats=repeats, backend=backend,
                ray_options=options, progress=progress,
            )  # fmt: skip
    finally:
        shutdown()
    if main:
        print_oof_result(result)


@app.command()
@friendly_errors
def flag(
    runs: list[Path] = typer.Argument(
        None, metavar="RUNS", help="Run folder(s) made by `cleaner oof`."
    ),
    top: int | None = typer.Option(None, "--top", help="Queue length (default flag.top)."),
    method: str | None = typer.Option(
        None,
        "--method",
        help="Label quality: " + choices.RANK_METHODS.help(),
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the queue (default: the first run)."
    ),
    audit: int | None = typer.Option(
        None,
        "--audit",
        metavar="N",
        help="Also queue N train rows drawn at random: their decisions measure whether "
        "cleaning helped, in retrain's report (default flag.audit).",
    ),
    include_unlabeled: bool = typer.Option(
        False, "--include-unlabeled", metavar="", help="Also rank unlabeled rows for labeling."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Override flag.* (with --probs also data.group), e.g. flag.top=50.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        metavar="",
        help="Rank even when the out-of-fold model is no better than chance.",
    ),
    probs: Path | None = typer.Option(
        None, "--probs", help="Out-of-fold probabilities made elsewhere (oof.csv layout)."
    ),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="With --probs: the manifest they score."
    ),
    embeddings: Path | None = typer.Option(
        None, "--embeddings", help="With --probs: embeddings.npz of the rows (optional)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars."),
) -> None:
    """Rank the samples most likely to be mislabeled into queue.csv and queue.html."""
    from cleaner.core.config import check_overrides

    check_overrides(set_, keys=("flag", "data.group") if probs else ("flag",))
    from cleaner.ranking.queue import make_queue

    with make_progress(quiet=quiet) as progress:
        task = progress.add_task("thumbnails", total=None, unit="img")
        summary = make_queue(
            runs or [],
            top=top,
            method=method,
            out=out,
            include_unlabeled=include_unlabeled,
            on_image=lambda: progress.advance(task),
            force=force,
            overrides=set_,
            probs=probs,
            manifest=manifest,
            embeddings=embeddings,
            audit=audit,
            progress=progress,
        )
    print_flag(summary)


@app.command()
@friendly_errors
def apply(
    queue: Path = typer.Argument(
        ..., metavar="QUEUE", help="A reviewed queue.csv (queue.json beside it)."
    ),
    reviewer: str = typer.Option("", "--reviewer", help="Name recorded in the audit log."),
    unsure_factor: float = typer.Option(
        0.5, "--unsure-factor", help="Weight multiplier for rows marked unsure."
    ),
) -> None:
    """Fold the queue's decisions into the next manifest version and the audit log."""
    from cleaner import api

    # The same command again (after a kill, say) finds its version made and writes nothing.
    print_apply(queue, api.apply(queue, reviewer=reviewer, unsure_factor=unsure_factor))


@app.command()
@friendly_errors
def retrain(
    pipeline: Path = typer.Argument(..., metavar="PIPELINE"),
    set_: list[str] = SET_OPTION,
    manifest: Path | None = typer.Option(
        None, "--manifest", help="Train on this manifest version."
    ),
    queue: Path | None = typer.Option(None, "--queue", help="Apply this reviewed queue first."),
    reweight: str = typer.Option("none", "--reweight", help=choices.REWEIGHT_MODES.help()),
    mode: str = typer.Option("full", "--mode", help=choices.RETRAIN_MODES.help()),
    oof_runs: list[Path] = typer.Option(
        [],
        "--oof",
        metavar="RUN",
        help="The oof run that --reweight quality|prune reads; repeat for an ensemble "
        "(mean probabilities, as `flag RUN1 RUN2`).",
    ),
    probs: Path | None = typer.Option(
        None,
        "--probs",
        help="Out-of-fold probabilities made elsewhere (oof.csv layout) for --reweight.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        metavar="",
        help="Reweight even when the out-of-fold model is no better than chance.",
    ),
    tta: bool = typer.Option(
        False, "--tta", metavar="", help="Average with horizontally flipped images."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Run folder (default runs/NAME-retrain-HASH)."
    ),
    reviewer: str = typer.Option("", "--reviewer", help="Audit-log name when --queue is applied."),
    baselines: bool = typer.Option(
        True,
        "--baselines/--no-baselines",
        metavar="",
        help="With true_label in the manifest: also train on the noisy and the true labels.",
    ),
    backend: str = BACKEND_OPTION,
    address: str | None = ADDRESS_OPTION,
    gpus_per_fold: float | None = GPUS_OPTION,
    cpus_per_fold: float | None = CPUS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars."),
) -> None:
    """Train the final model on the cleaned data; write predictions, submission and report."""
    from cleaner import api

    with make_progress(quiet=quiet) as progress:
        result = api.retrain(
            pipeline, set_, manifest=manifest, queue=queue, reweight=reweight, mode=mode,
            oof=oof_runs, probs=probs, force=force, tta=tta, out=out, reviewer=reviewer,
            baselines=baselines, backend=backend, address=address, gpus_per_fold=gpus_per_fold,
            cpus_per_fold=cpus_per_fold, progress=progress,
        )  # fmt: skip
    print_retrain(result.metrics, result.run_dir)


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("cleaner-demo"), "--out", help="Folder for every file."),
    top: int = typer.Option(200, "--top", help="Queue length (with --rounds: each batch's)."),
    rounds: int = typer.Option(
        0, "--rounds", min=0, help="Rounds of active cleaning instead of one queue (0: none)."
    ),
    set_: list[str] = SET_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars."),
) -> None:
    """The whole loop on scikit-learn's digits with a simulated reviewer (a few minutes)."""
    from cleaner.demo import run_demo

    with make_progress(quiet=quiet) as progress:
        files = run_demo(
            out, top=top, rounds=rounds, overrides=set_, progress=progress, console=console
        )
    print_retrain(files.final.metrics, files.final.run_dir)
    print_demo_files(files)
