"""Active cleaning in rounds: ``round`` (the next batch for a budget), ``refresh``, and
``status`` (where the project stands, the next command)."""

from __future__ import annotations

from pathlib import Path

import typer

from cleaner.cli.base import app, friendly_errors
from cleaner.cli.printing import print_oof_result, print_round, print_status
from cleaner.core.progress import console, make_progress


@app.command("round")
@friendly_errors
def round_(
    run: Path = typer.Argument(
        ..., metavar="RUN", help="A finished run of the newest manifest version."
    ),
    budget: int = typer.Option(..., "--budget", help="Rows to ask about in this round."),
    max_labels: int | None = typer.Option(
        None, "--max-labels", help="Never ask about a row that has this many labels already."
    ),
    stop_below: float = typer.Option(
        1.0,
        "--stop-below",
        help="Say stop when the batch is expected to hold fewer wrong labels than this.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Queue folder (default RUN/round-N)."),
    force: bool = typer.Option(
        False,
        "--force",
        metavar="",
        help="Select even when the out-of-fold model is no better than chance.",
    ),
) -> None:
    """The next batch to label: the rows most likely wrong and where one more label is worth
    most, the wrong labels left (95% interval), and whether to stop."""
    from cleaner import api

    result = api.round(
        run, budget=budget, max_labels=max_labels, stop_below=stop_below, out=out, force=force
    )
    print_round(result)


@app.command()
@friendly_errors
def refresh(
    run: Path = typer.Argument(..., metavar="RUN", help="A finished oof run (or a refreshed one)."),
    manifest: Path = typer.Argument(
        ..., metavar="MANIFEST", help="A newer version of its manifest (from apply)."
    ),
    epochs: int = typer.Option(2, "--epochs", help="Fine-tuning epochs per fold model."),
    out: Path | None = typer.Option(
        None, "--out", help="Run folder (default RUN-refresh-HASH beside RUN)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars."),
) -> None:
    """Fine-tune each fold model on the new labels of its own training rows (minutes, not
    a new oof): out-of-fold probabilities for the next round."""
    from cleaner.training.refresh import refresh_run

    with make_progress(quiet=quiet) as progress:
        result = refresh_run(run, manifest, epochs=epochs, out=out, progress=progress)
    print_oof_result(result)
    console.print(f"next: cleaner round {result.run_dir} --budget N", highlight=False)


@app.command()
@friendly_errors
def status(
    folder: Path = typer.Argument(Path("."), metavar="FOLDER", help="The project folder."),
) -> None:
    """Where the project stands: each manifest's versions, the runs and queues of each, what
    is decided and applied, and the next command to run."""
    from cleaner import api

    print_status(api.status(folder))
