"""Commands that make a project's inputs: ``ingest ...``, ``synth mask`` and ``init``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from cleaner.cli.base import (
    app,
    friendly_errors,
    ingest_app,
    synth_app,
)
from cleaner.cli.printing import (
    print_manifest,
    print_mask_report,
    print_synth_mask,
)
from cleaner.core.progress import console, make_progress
from cleaner.ingest.noise import NOISE_KINDS

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
    metavar="",
    help="Leave unreadable, empty or truncated image files out (listed in NAME.skipped.csv) "
    "instead of refusing them all in one error.",
)


@ingest_app.command("folder")
@friendly_errors
def ingest_folder(
    src_dir: Path = typer.Argument(..., metavar="SRC_DIR"),
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
        metavar="",
        help="Also ingest images that symbolic links reach outside SRC_DIR (refused by default).",
    ),
    skip_bad_images: bool = SKIP_BAD_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars."),
) -> None:
    """SRC_DIR/<class>/<image>, or split folders above them: SRC_DIR/{train,val,test,unlabeled}/."""
    from cleaner import api

    noisy = _Noise(noise, noise_kind, seed, test_fraction)
    with make_progress(quiet=quiet) as progress:
        out = api.ingest_folder(
            src_dir,
            manifest,
            split=split,
            follow_links=follow_links,
            skip_bad_images=skip_bad_images,
            progress=progress,
            **noisy.options(),
        )
    print_manifest(out)


@ingest_app.command("csv")
@friendly_errors
def ingest_csv(
    table: Path = typer.Argument(..., metavar="TABLE"),
    path_col: str = typer.Option(..., "--path-col", help="Column with image paths."),
    label_col: str = typer.Option("", "--label-col", help="Column with class names."),
    annotator_col: list[str] = typer.Option(
        [],
        "--annotator-col",
        metavar="COLUMN",
        help="A column of one annotator's labels (repeat: several labels per image); "
        "without --label-col the label is their majority.",
    ),
    annotations: Path | None = typer.Option(
        None,
        "--annotations",
        help="Several labels per image in the long form: sample_id,annotator,label[,time].",
    ),
    id_col: str = typer.Option("", "--id-col", help="Column with unique ids (default: the path)."),
    group_col: str = typer.Option("", "--group-col", help="Column with group ids."),
    split_col: str = typer.Option("", "--split-col", help="Column with train/test/unlabeled."),
    manifest: Path | None = ManifestOpt,
    skip_bad_images: bool = SKIP_BAD_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="No progress bars."),
) -> None:
    """An existing table of image paths and labels (paths relative to the table)."""
    from cleaner import api

    with make_progress(quiet=quiet) as progress:
        out = api.ingest_csv(
            table,
            path_col=path_col,
            label_col=label_col,
            annotator_col=annotator_col,
            annotations=annotations,
            id_col=id_col,
            group_col=group_col,
            split_col=split_col,
            manifest=manifest,
            skip_bad_images=skip_bad_images,
            progress=progress,
        )
    print_manifest(out)


@ingest_app.command("digits")
@friendly_errors
def ingest_digits(
    images_dir: Path = typer.Argument(..., metavar="IMAGES_DIR"),
    noise: float = NoiseOpt,
    noise_kind: str = KindOpt,
    seed: int = SeedOpt,
    test_fraction: float = TestOpt,
    manifest: Path | None = ManifestOpt,
) -> None:
    """scikit-learn's bundled 1,797 8x8 digit images, written as PNG files."""
    from cleaner import api

    print_manifest(
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
    from cleaner.ingest import arrays, output

    out = arrays.ingest_arrays(
        images,
        labels,
        ids,
        images_dir,
        output.default_manifest(manifest) if isinstance(manifest, str) else manifest,
        **noise.options(),
    )
    print_manifest(out)


@ingest_app.command("mnist")
@friendly_errors
def ingest_mnist(
    idx_dir: Path = typer.Argument(..., metavar="IDX_DIR"),
    images_dir: Path = typer.Argument(..., metavar="IMAGES_DIR"),
    noise: float = NoiseOpt,
    noise_kind: str = KindOpt,
    seed: int = SeedOpt,
    test_fraction: float = TestOpt,
    manifest: Path | None = ManifestOpt,
) -> None:
    """MNIST IDX files (PREFIX-images-idx3-ubyte[.gz] with their labels)."""
    from cleaner.ingest import arrays

    images, labels, ids = arrays.load_mnist_arrays(idx_dir)
    noisy = _Noise(noise, noise_kind, seed, test_fraction)
    _ingest_arrays(images, labels, ids, images_dir, manifest or "mnist", noisy)


@app.command()
@friendly_errors
def init(
    source: Path = typer.Argument(
        ..., metavar="SOURCE", help="A manifest CSV, or a folder of class folders."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Pipeline to write (default pipelines/NAME.toml)."
    ),
    gpu: bool | None = typer.Option(
        None, "--gpu/--cpu", metavar="", help="Choose for a GPU or the CPU (default: this machine)."
    ),
) -> None:
    """Write a starting pipeline for a manifest: classes, size, model and training length."""
    from cleaner.ingest.starter import init_project

    r = init_project(source, out, gpu=gpu)
    if r.ingested_from is not None:
        console.print(f"wrote {r.manifest} from {r.ingested_from}")
    where = "a GPU" if r.gpu else "the CPU"
    console.print(f"wrote {r.pipeline} for {where}; next: cleaner oof {r.pipeline}", soft_wrap=True)


@app.command()
@friendly_errors
def repoint(
    manifest: Path = typer.Argument(..., metavar="MANIFEST", help="The newest manifest version."),
    folder: Path = typer.Argument(..., metavar="FOLDER", help="Where the images are now."),
    old_root: str | None = typer.Option(
        None,
        "--from",
        metavar="PATH",
        help="The part of the paths to replace, as the manifest writes it (default: the "
        "folder that holds every image).",
    ),
) -> None:
    """Point a manifest at its moved images: the next version, audit-logged."""
    from cleaner import api

    r = api.repoint(manifest, folder, old_root=old_root)
    console.print(
        f"wrote {r.version}: the {r.rows:,} image paths under {r.old_root} now under "
        f"{r.new_root}, every image found (logged in the audit log); runs of {manifest.name} "
        f"still flag: the labels are unchanged",
        soft_wrap=True,
    )


@ingest_app.command("mask")
@friendly_errors
def ingest_mask(data_dir: Path, manifest: Path | None = ManifestOpt) -> None:
    """The mask competition: train/images/<id>_<gender>_<race>_<age>/ and eval/info.csv."""
    from cleaner.ingest.mask import ingest_mask as ingest_mask_lib

    out, report = ingest_mask_lib(data_dir, manifest)
    print_manifest(out)
    print_mask_report(report)


@synth_app.command("mask")
@friendly_errors
def synth_mask(
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR"),
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
    print_synth_mask(out)
