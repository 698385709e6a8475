"""The ``cleaner`` command line: each command parses, makes one library call, prints."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from cleaner.core import choices
from cleaner.core.errors import FoldsFailed, InputError, task_name
from cleaner.core.progress import console, err_console, make_progress, warn
from cleaner.formats.run_files import RunFiles
from cleaner.ingest.noise import NOISE_KINDS

# `--help` lists the commands in the order of the loop, not alphabetically.
WORKFLOW = ("ingest", "init", "oof", "flag", "review", "apply", "retrain", "export", "import")


class WorkflowGroup(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:  # typer vendors its own click
        names = super().list_commands(ctx)
        order = {name: i for i, name in enumerate(WORKFLOW)}
        return sorted(names, key=lambda n: order.get(n, len(order)))


app = typer.Typer(
    cls=WorkflowGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Find mislabeled images, review them, and retrain on the cleaned labels.",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"cleaner {package_version('cleaner')}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Find mislabeled images, review them, and retrain on the cleaned labels."""


ingest_app = typer.Typer(no_args_is_help=True, help="Make a manifest from raw images.")
app.add_typer(ingest_app, name="ingest")

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Print bad-input errors as one message and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (InputError, FileExistsError) as e:
            # The message is user text (labels, paths): print it literally, unwrapped.
            err_console.print(
                Text.assemble(("error: ", "bold red"), str(e)), highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except OSError as e:
            # A full disk, a read-only or unwritable folder: the environment, not the input
            # and not a bug. Outputs are written atomically, so nothing half-way is left.
            where = f"{e.filename}: " if e.filename else ""
            err_console.print(
                Text.assemble(("error: ", "bold red"), f"{where}{e.strerror or e}"),
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None
        except FoldsFailed as e:
            table = Table(title=f"failed folds of {e.run_dir} (each was retried once)")
            table.add_column("fold", justify="right")
            table.add_column("error", overflow="fold")
            for k, reason in e.failed.items():
                table.add_row(task_name(k), reason)
            err_console.print(table)
            err_console.print(
                "the finished folds are kept: run the same command again to train only "
                "the failed ones and merge"
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


# Options shared by `oof` and `retrain --mode folds`: where the folds run.
SET_OPTION = typer.Option([], "--set", help="Override a key: section.key=value.")
BACKEND_OPTION = typer.Option("local", "--backend", help=choices.BACKENDS.help())
ADDRESS_OPTION = typer.Option(
    None, "--address", help="Ray cluster address (default: start a local Ray instance)."
)
GPUS_OPTION = typer.Option(
    None, "--gpus-per-fold", help="GPUs per Ray fold, <= 1 (default: 1 when the cluster has GPUs)."
)
CPUS_OPTION = typer.Option(
    None, "--cpus-per-fold", help="CPUs per Ray fold (default: max(1, train.workers))."
)


def _print_manifest(path: Path) -> None:
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = Table(title=f"manifest {path}")
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
    from cleaner.ingest.adapters import skipped_path

    skipped = skipped_path(path)
    if skipped.exists():  # written by this ingest: an older list refuses the ingest
        n = len(pd.read_csv(skipped, dtype=str))
        console.print(
            f"[yellow]left out {n} image files training cannot use[/]: listed, with why, "
            f"in {skipped}",
            soft_wrap=True,
        )


NoiseOpt = typer.Option(0.0, "--noise", help="Fraction of train labels to flip.")
KindOpt = typer.Option(
    "uniform",
    "--noise-kind",
    help=f"Noise model: {' | '.join(NOISE_KINDS)} (README: cleaner ingest).",
)
SeedOpt = typer.Option(
    0, "--seed", help="Seed of the test split, the noise and its reference model."
)
TestOpt = typer.Option(
    0.2, "--test-fraction", help="Stratified fraction held out as clean test rows."
)
# A folder of one's own photos keeps every image for training unless asked.
FolderTestOpt = typer.Option(
    0.0, "--test-fraction", help="Stratified fraction of train rows held out as test rows."
)
ManifestOpt = typer.Option(
    None, "--manifest", help="Output manifest (default data_manifests/NAME.csv)."
)
SKIP_BAD_OPTION = typer.Option(
    False,
    "--skip-bad-images",
    help="Leave unreadable, empty or truncated image files out (listed in NAME.skipped.csv) "
    "instead of refusing them all in one error.",
)


@ingest_app.command("folder")
@friendly_errors
def ingest_folder(
    src_dir: Path,
    manifest: Path | None = ManifestOpt,
    split: str | None = typer.Option(
        None,
        "--split",
        help="train | test | unlabeled: the split of a folder without split folders "
        "(test: the class folder goes to true_label).",
    ),
    noise: float = NoiseOpt,
    noise_kind: str = KindOpt,
    seed: int = SeedOpt,
    test_fraction: float = FolderTestOpt,
    follow_links: bool = typer.Option(
        False,
        "--follow-links",
        help="Also ingest images that symbolic links reach outside SRC_DIR (refused by default).",
    ),
    skip_bad_images: bool = SKIP_BAD_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """SRC_DIR/<class>/<image>, or split folders above them: SRC_DIR/{train,val,test,unlabeled}/."""
    from cleaner.ingest import adapters as ingest_lib

    noisy = _Noise(noise, noise_kind, seed, test_fraction)
    with make_progress(quiet=quiet) as progress:
        out = ingest_lib.ingest_folder(
            src_dir,
            manifest,
            split=split,
            follow_links=follow_links,
            skip_bad_images=skip_bad_images,
            progress=progress,
            **noisy.options(),
        )
    _print_manifest(out)


@ingest_app.command("csv")
@friendly_errors
def ingest_csv(
    table: Path,
    path_col: str = typer.Option(..., "--path-col", help="Column with image paths."),
    label_col: str = typer.Option(..., "--label-col", help="Column with class names."),
    id_col: str = typer.Option("", "--id-col", help="Column with unique ids (default: the path)."),
    group_col: str = typer.Option("", "--group-col", help="Column with group ids."),
    split_col: str = typer.Option("", "--split-col", help="Column with train/test/unlabeled."),
    manifest: Path | None = ManifestOpt,
    skip_bad_images: bool = SKIP_BAD_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """An existing table of image paths and labels (paths relative to the table)."""
    from cleaner.ingest import adapters as ingest_lib

    with make_progress(quiet=quiet) as progress:
        out = ingest_lib.ingest_csv(
            table,
            path_col=path_col,
            label_col=label_col,
            id_col=id_col,
            group_col=group_col,
            split_col=split_col,
            manifest=manifest,
            skip_bad_images=skip_bad_images,
            progress=progress,
        )
    _print_manifest(out)


@ingest_app.command("digits")
@friendly_errors
def ingest_digits(
    images_dir: Path,
    noise: float = NoiseOpt,
    noise_kind: str = KindOpt,
    seed: int = SeedOpt,
    test_fraction: float = TestOpt,
    manifest: Path | None = ManifestOpt,
) -> None:
    """scikit-learn's bundled 1,797 8x8 digit images, written as PNG files."""
    from cleaner import api

    _print_manifest(
        api.ingest_digits(
            images_dir, manifest, noise=noise, noise_kind=noise_kind, seed=seed,
            test_fraction=test_fraction,
        )
    )  # fmt: skip


@dataclass(frozen=True)
class _Noise:
    """The options of the ingest commands that flip labels and hold out a test split."""

    rate: float
    kind: str
    seed: int
    test_fraction: float

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``ingest_arrays`` and ``ingest_folder``."""
        return {
            "noise": self.rate,
            "noise_kind": self.kind,
            "seed": self.seed,
            "test_fraction": self.test_fraction,
        }


def _ingest_arrays(
    images: Any, labels: Any, ids: list[str], images_dir: Path, manifest: Path | str,
    noise: _Noise,
) -> None:  # fmt: skip
    """Write array images with noisy labels; ``manifest`` a path, or a name for the default."""
    from cleaner.ingest import adapters as ingest_lib

    out = ingest_lib.ingest_arrays(
        images,
        labels,
        ids,
        images_dir,
        ingest_lib.default_manifest(manifest) if isinstance(manifest, str) else manifest,
        **noise.options(),
    )
    _print_manifest(out)


@ingest_app.command("mnist")
@friendly_errors
def ingest_mnist(
    idx_dir: Path,
    images_dir: Path,
    noise: float = NoiseOpt,
    noise_kind: str = KindOpt,
    seed: int = SeedOpt,
    test_fraction: float = TestOpt,
    manifest: Path | None = ManifestOpt,
) -> None:
    """MNIST IDX files (PREFIX-images-idx3-ubyte[.gz] with their labels)."""
    from cleaner.ingest import adapters as ingest_lib

    images, labels, ids = ingest_lib.load_mnist_arrays(idx_dir)
    noisy = _Noise(noise, noise_kind, seed, test_fraction)
    _ingest_arrays(images, labels, ids, images_dir, manifest or "mnist", noisy)


def _print_oof(metrics: dict[str, Any], run_dir: Path) -> None:
    table = Table(title=f"out-of-fold metrics ({metrics['split']})")
    for col in ("fold", "rows", "accuracy", "macro F1", "train img/s", "seconds"):
        table.add_column(col, justify="right")
    for m in metrics["folds"]:
        table.add_row(
            str(m["fold"]),
            str(m["n"]),
            f"{m['accuracy']:.4f}",
            f"{m['macro_f1']:.4f}",
            # A probe (train.mode) fits a head, no network: no training images per second.
            f"{m['train_images_per_s']:,.0f}" if "train_images_per_s" in m else "probe",
            f"{m['seconds']:.1f}",
        )
    o = metrics["overall"]
    table.add_row(
        "all", str(o["n"]), f"{o['accuracy']:.4f}", f"{o['macro_f1']:.4f}", "", "", style="bold"
    )
    console.print(table)
    per_class = Table(title="per-class F1 (out-of-fold, against the given labels)")
    per_class.add_column("class")
    per_class.add_column("F1", justify="right")
    for c, f in o["per_class_f1"].items():
        per_class.add_row(c, f"{f:.4f}")
    console.print(per_class)
    files = RunFiles(run_dir)
    console.print(f"wrote {files.oof}, {files.embeddings}, {files.metrics}")


@app.command()
@friendly_errors
def init(
    source: Path = typer.Argument(..., help="A manifest CSV, or a folder of class folders."),
    out: Path | None = typer.Option(
        None, "--out", help="Pipeline to write (default pipelines/NAME.toml)."
    ),
    gpu: bool | None = typer.Option(
        None, "--gpu/--cpu", help="Choose for a GPU or the CPU (default: this machine)."
    ),
) -> None:
    """Write a starting pipeline for a manifest: classes, size, model and training length."""
    from cleaner.ingest.starter import write_starter

    manifest = source
    if source.is_dir():
        from cleaner.ingest.adapters import ingest_folder, manifest_for_init

        manifest = ingest_folder(source, manifest_for_init(source))
        console.print(f"wrote {manifest} from {source}")
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    path = write_starter(manifest, out or Path("pipelines") / f"{manifest.stem}.toml", gpu=gpu)
    console.print(
        f"wrote {path} for {'a GPU' if gpu else 'the CPU'}; next: cleaner oof {path}",
        soft_wrap=True,
    )


@app.command()
@friendly_errors
def oof(
    pipeline: Path,
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """K-fold cross-validation: out-of-fold probabilities and embeddings for every train row.

    Under `torchrun --nproc-per-node N -m cleaner oof ...` the N processes train
    each fold together (DistributedDataParallel).
    """
    from cleaner.core.config import load_config

    load_config(pipeline, set_)  # a typo in --set is reported before torch loads
    from cleaner.training.distributed import context, shutdown
    from cleaner.training.oof import EnsembleResult, oof_command
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
    if not main:
        return
    if isinstance(result, EnsembleResult):
        _print_ensemble(result.run_dir, [m.metrics for m in result.members])
        return
    if result.metrics is None:
        console.print(
            f"trained fold(s) {result.trained} into {result.run_dir}; "
            f"fold(s) {result.missing} still to train, then the run merges"
        )
        return
    _print_oof(result.metrics, result.run_dir)


def _print_ensemble(folder: Path, members: list[dict[str, Any] | None]) -> None:
    """Each member's out-of-fold scores, and the ensemble's (mean probabilities)."""
    from cleaner.core.metrics import classification_metrics
    from cleaner.formats.runs import expand_runs, read_ensemble_scores

    table = Table(title=f"out-of-fold metrics of the {len(members)} repeats")
    for col in ("run", "seed", "accuracy", "macro F1"):
        table.add_column(col, justify="right")
    paths = expand_runs([folder])
    for path, m in zip(paths, members, strict=True):
        if m is None:
            table.add_row(path.name, "", "not finished", "")
            continue
        o = m["overall"]
        seed = _run_seed(path)
        table.add_row(path.name, seed, f"{o['accuracy']:.4f}", f"{o['macro_f1']:.4f}")
    if all(m is not None for m in members):
        scores = read_ensemble_scores(paths)
        classes = members[0]["classes"] if members[0] else []
        o = classification_metrics(scores.labels, scores.probs.argmax(1), classes)
        table.add_row(
            "ensemble", "mean", f"{o['accuracy']:.4f}", f"{o['macro_f1']:.4f}", style="bold"
        )
    console.print(table)
    console.print(f"wrote {folder}: flag {folder} ranks by the mean of its runs")


def _run_seed(run_dir: Path) -> str:

    return str(RunFiles(run_dir).read_config().train.seed)


def _count_table(title: str, key: str, value: str, counts: dict[str, int]) -> Table:
    """A two-column table of counts."""
    table = Table(title=title)
    table.add_column(key)
    table.add_column(value, justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    return table


def _trust_table(t: Any) -> Table:
    """How good the out-of-fold model is: what the estimate of wrong labels rests on."""
    table = Table(title="out-of-fold model, against the given labels")
    table.add_column("measure")
    table.add_column("value", justify="right")
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


def _print_flag(s: Any) -> None:
    est = Table(title="label noise (cleanlab, out-of-fold)")
    est.add_column("measure")
    est.add_column("value", justify="right")
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
        console.print(_trust_table(s.trust))
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
    console.print(_count_table("queue rows by issue", "issue", "rows", s.issue_counts))
    if s.finding_counts:
        console.print(
            _count_table(
                "duplicate pairs (exact files and near duplicates, one space)",
                "finding",
                "pairs",
                s.finding_counts,
            )
        )
    if s.duplicates_csv is not None:
        console.print(f"every pair is listed in {s.duplicates_csv}")
    console.print(
        f"wrote {s.queue_csv} and {s.queue_html}: open the HTML to look, "
        "fill `decision` in the CSV (keep / relabel / drop / unsure)"
    )
    console.print(
        "rows nobody decides keep their label; `cleaner retrain --reweight prune` "
        "trains without the flagged label rows nobody decided"
    )


@app.command()
@friendly_errors
def flag(
    runs: list[Path] = typer.Argument(None, help="Run folder(s) made by `cleaner oof`."),
    top: int | None = typer.Option(None, "--top", help="Queue length (default flag.top)."),
    method: str | None = typer.Option(
        None,
        "--method",
        help="Label quality: " + choices.RANK_METHODS.help(),
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Folder for the queue (default: the first run)."
    ),
    include_unlabeled: bool = typer.Option(
        False, "--include-unlabeled", help="Also rank unlabeled rows for labeling."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override flag.* (with --probs also data.group), e.g. flag.top=50."
    ),
    force: bool = typer.Option(
        False, "--force", help="Rank even when the out-of-fold model is no better than chance."
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
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
        )
    _print_flag(summary)


@app.command()
@friendly_errors
def apply(
    queue: Path = typer.Argument(..., help="A reviewed queue.csv (queue.json beside it)."),
    reviewer: str = typer.Option("", "--reviewer", help="Name recorded in the audit log."),
    unsure_factor: float = typer.Option(
        0.5, "--unsure-factor", help="Weight multiplier for rows marked unsure."
    ),
) -> None:
    """Fold the queue's decisions into the next manifest version and the audit log."""
    from cleaner.review.apply import apply_queue

    # The same command again (after a kill, say) finds its version made and writes nothing.
    s = apply_queue(queue, reviewer=reviewer, unsure_factor=unsure_factor, reuse_applied=True)
    console.print(_count_table(f"applied {queue}", "decision", "queue rows", s.counts))
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


@app.command()
@friendly_errors
def review(
    queue: Path = typer.Argument(
        ..., help="A queue.csv made by `cleaner flag` (queue.json beside it)."
    ),
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1; 0 picks a free one."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL."),
    allow_host: list[str] = typer.Option(
        [],
        "--allow-host",
        help="Also answer this HOST:PORT (repeatable), e.g. localhost:9000 behind "
        "`ssh -L 9000:localhost:8765 BOX`; still 127.0.0.1 only, token still needed.",
    ),
) -> None:
    """Review the queue in a local page: one image at a time, decisions saved to the CSV at once."""
    import webbrowser

    from cleaner.review.server import serve

    server, url = serve(queue, port=port, allow_hosts=allow_host)
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
    if not no_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    console.print(
        f"stopped: {server.queue.reviewed} of {len(server.queue)} rows reviewed in {queue}"
    )


# --- Label Studio: `export labelstudio` and `import labelstudio` ------------------------

export_app = typer.Typer(no_args_is_help=True, help="Write the queue for another review tool.")
app.add_typer(export_app, name="export")
import_app = typer.Typer(no_args_is_help=True, help="Read decisions from another review tool.")
app.add_typer(import_app, name="import")


@export_app.command("labelstudio")
@friendly_errors
def export_labelstudio(
    queue: Path = typer.Argument(..., help="A queue.csv made by `cleaner flag`."),
    out: Path | None = typer.Option(
        None, "--out", help="Tasks file (default QUEUE.labelstudio.json); FILE.xml beside it."
    ),
    image_prefix: str | None = typer.Option(
        None, "--image-prefix", help="Image URL = PREFIX + the manifest's path (no local files)."
    ),
    document_root: Path | None = typer.Option(
        None,
        "--document-root",
        help="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: the manifest's folder, or the "
        "folder above it and every image).",
    ),
) -> None:
    """Label Studio tasks of the queue (suggestions pre-annotated) and their labeling config."""
    from cleaner.review.labelstudio import write_tasks

    s = write_tasks(queue, out, image_prefix=image_prefix, document_root=document_root)
    console.print(
        f"wrote {s.tasks:,} tasks ({s.predictions:,} with the suggestion pre-annotated) to "
        f"{s.tasks_json} and the labeling config to {s.config_xml}",
        highlight=False,
        soft_wrap=True,
    )
    if s.document_root is not None:
        console.print(
            "images are Label Studio local files: start it with "
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={s.document_root.resolve()}, "
            "and add a Local Files storage under that folder (no sync)",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"paste {s.config_xml.name} into the project's labeling interface (Code), import "
        f"{s.tasks_json.name}; then export JSON and run `cleaner import labelstudio EXPORT.json "
        f"{queue}`",
        highlight=False,
        soft_wrap=True,
    )


@import_app.command("labelstudio")
@friendly_errors
def import_labelstudio(
    export: Path = typer.Argument(..., help="A Label Studio JSON export of the exported tasks."),
    queue: Path = typer.Argument(..., help="The queue.csv the tasks were exported from."),
    force: bool = typer.Option(
        False, "--force", help="Replace decisions already in the queue with Label Studio's."
    ),
) -> None:
    """Write the answers of a Label Studio export into the queue's decision column."""
    from cleaner.review.labelstudio import import_export

    s = import_export(export, queue, force=force)
    counts = {**s.counts, "already in the queue": s.unchanged, "not annotated": s.not_annotated}
    console.print(_count_table(f"imported {export}", "decision", "tasks", counts))
    if s.replaced:
        console.print(f"{s.replaced:,} decisions already in the queue were replaced (--force)")
    if s.wrote:
        console.print(
            f"wrote the decisions into {queue}; next: cleaner apply {queue}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(f"no new decision: {queue} is unchanged", highlight=False, soft_wrap=True)


def _print_retrain(metrics: dict[str, Any], run_dir: Path) -> None:
    # Cross-validated and test figures measure different things: two tables, never one.
    cv = Table(title=f"cross-validation ({metrics['mode']}, reweight {metrics['reweight']})")
    for col in ("labels", "accuracy", "macro F1"):
        cv.add_column(col, justify="left" if col == "labels" else "right")
    for key, what in (("cv_before", "before cleaning"), ("cv_cleaned", "cleaned")):
        m = metrics.get(key)
        if m:
            if m.get("rows_weight_0_left_out"):
                what += f" ({m['rows_weight_0_left_out']} of weight 0 left out)"
            cv.add_row(what, f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}")
    test = metrics.get("test") or {}
    tt = Table(title="test rows against true_label (95% interval, paired bootstrap)")
    for col in ("model trained on", "accuracy", "macro F1"):
        tt.add_column(col, justify="left" if col == "model trained on" else "right")

    def with_ci(m: dict[str, Any], key: str) -> str:
        ci = m.get(f"{key}_ci")
        return f"{m[key]:.4f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")

    for tag in ("noisy", "cleaned", "true"):
        if tag in test:
            tt.add_row(
                f"{tag} labels", with_ci(test[tag], "accuracy"), with_ci(test[tag], "macro_f1")
            )
    for table in (cv, tt):
        if table.row_count:
            console.print(table)
    if not cv.row_count and not tt.row_count:
        console.print("no baselines and no test rows with true labels: nothing to measure")
    if not metrics.get("test_rows"):
        console.print("the manifest has no test rows: the submission has none")
    if "gap_ci" in test and not test.get("gap_measurable"):
        console.print("the noisy-to-true accuracy gap is too small to measure on these test rows")
    elif test.get("gap_recovered") is not None:
        ci = test.get("gap_recovered_ci")
        console.print(
            f"cleaning recovered {test['gap_recovered']:.0%}"
            + (f" (95% interval {ci[0]:.0%} to {ci[1]:.0%})" if ci else "")
            + " of the accuracy gap between noisy and true labels"
        )
    files = RunFiles(run_dir)
    console.print(
        f"wrote {files.submission}, {files.predictions} and {files.report}", soft_wrap=True
    )


@app.command()
@friendly_errors
def retrain(
    pipeline: Path,
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
        help="The oof run that --reweight quality|prune reads; repeat for an ensemble "
        "(mean probabilities, as `flag RUN1 RUN2`).",
    ),
    probs: Path | None = typer.Option(
        None,
        "--probs",
        help="Out-of-fold probabilities made elsewhere (oof.csv layout) for --reweight.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Reweight even when the out-of-fold model is no better than chance."
    ),
    tta: bool = typer.Option(False, "--tta", help="Average with horizontally flipped images."),
    out: Path | None = typer.Option(
        None, "--out", help="Run folder (default runs/NAME-retrain-HASH)."
    ),
    reviewer: str = typer.Option("", "--reviewer", help="Audit-log name when --queue is applied."),
    baselines: bool = typer.Option(
        True,
        "--baselines/--no-baselines",
        help="With true_label in the manifest: also train on the noisy and the true labels.",
    ),
    backend: str = BACKEND_OPTION,
    address: str | None = ADDRESS_OPTION,
    gpus_per_fold: float | None = GPUS_OPTION,
    cpus_per_fold: float | None = CPUS_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Train the final model on the cleaned data; write predictions, submission and report."""
    from cleaner.core.config import load_config

    cfg = load_config(pipeline, set_)  # a typo in --set is reported before torch loads
    from cleaner.final.retrain import RetrainOptions, run_retrain
    from cleaner.training.distributed import from_env
    from cleaner.training.ray_options import ray_options

    if from_env().active:
        raise InputError(
            "cleaner retrain runs in one process; under torchrun, train the folds with "
            "`cleaner oof --fold K` (see the README)"
        )
    options = RetrainOptions(
        queue=queue,
        manifest=manifest,
        reweight=reweight,
        mode=mode,
        oof_runs=tuple(oof_runs),
        probs=probs,
        tta=tta,
        out=out,
        reviewer=reviewer,
        backend=backend,
        ray_options=ray_options(backend, address, gpus_per_fold, cpus_per_fold),
        baselines=baselines,
        force=force,
    )
    with make_progress(quiet=quiet) as progress:
        result = run_retrain(cfg, options, progress=progress, name=pipeline.stem, source=pipeline)
    _print_retrain(result.metrics, result.run_dir)


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("cleaner-demo"), "--out", help="Folder for every file."),
    top: int = typer.Option(200, "--top", help="Queue length."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """The whole loop on scikit-learn's digits with a simulated reviewer (a few minutes)."""
    from cleaner.demo import run_demo

    with make_progress(quiet=quiet) as progress:
        files = run_demo(out, top=top, progress=progress, console=console)
    _print_retrain(files.final.metrics, files.final.run_dir)
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


# --- the mask competition: `ingest mask` and `synth mask` -------------------------------

synth_app = typer.Typer(no_args_is_help=True, help="Make synthetic data sets with known noise.")
app.add_typer(synth_app, name="synth")


def _print_mask_report(report: Any) -> None:
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


@ingest_app.command("mask")
@friendly_errors
def ingest_mask(data_dir: Path, manifest: Path | None = ManifestOpt) -> None:
    """The mask competition: train/images/<id>_<gender>_<race>_<age>/ and eval/info.csv."""
    from cleaner.ingest.mask import ingest_mask as ingest_mask_lib

    out, report = ingest_mask_lib(data_dir, manifest)
    _print_manifest(out)
    _print_mask_report(report)


@synth_app.command("mask")
@friendly_errors
def synth_mask(
    out_dir: Path,
    people: int = typer.Option(40, "--people", help="Train persons (7 photos each)."),
    gender_flips: float = typer.Option(
        0.1, "--gender-flips", help="Fraction of persons whose folder names the wrong gender."
    ),
    mask_swaps: float = typer.Option(
        0.1, "--mask-swaps", help="Fraction of persons with two photos' files exchanged."
    ),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    size: int = typer.Option(48, "--size", help="Image width and height in pixels."),
    eval_people: int = typer.Option(10, "--eval-people", help="Persons in eval/ (unlabeled)."),
) -> None:
    """Cartoon faces in the mask competition's layout, with known label noise in truth.csv."""
    import pandas as pd

    from cleaner.ingest.synth import synth_mask as synth_mask_lib

    out = synth_mask_lib(
        out_dir,
        people=people,
        gender_flips=gender_flips,
        mask_swaps=mask_swaps,
        seed=seed,
        size=size,
        eval_people=eval_people,
    )
    truth = pd.read_csv(out / "truth.csv", dtype=str, keep_default_na=False)
    table = Table(title=f"synthetic mask data in {out}")
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
