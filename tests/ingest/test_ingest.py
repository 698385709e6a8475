"""cleaner.ingest's adapters and ``cleaner ingest``: folders, CSV, digits, MNIST into manifests."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_says, write_csv, write_png
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.formats.manifest import read_manifest, resolve_paths, validate_manifest
from cleaner.ingest.arrays import ingest_arrays, load_digits_arrays, load_mnist_arrays, read_idx
from cleaner.ingest.output import default_manifest

MNIST_DIR = Path("/work/shared/data/mnist")


def read_raw(path: Path) -> pd.DataFrame:
    """A manifest exactly as written: every value text, nothing filled in."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def ingest(*args: str) -> str:
    """Run ``cleaner ingest ARGS``; it must succeed. Returns the output."""
    result = CliRunner().invoke(app, ["ingest", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def ingest_fails(root: Path, *args: str) -> str:
    """Run ``cleaner ingest ARGS``; it must fail with exit 2 and change nothing under ``root``."""
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    dirs = sorted(p for p in root.rglob("*") if p.is_dir())
    result = CliRunner().invoke(app, ["ingest", *args])
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "error:" in result.output
    assert {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} == before
    assert sorted(p for p in root.rglob("*") if p.is_dir()) == dirs
    return result.output


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file of unsigned bytes: magic 0x0000080N (N dims), N big-endian sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


# --- digits ------------------------------------------------------------------------------

N_DIGITS = 1797
N_TEST = math.ceil(0.2 * N_DIGITS)  # sklearn rounds the test share up: 360
N_TRAIN = N_DIGITS - N_TEST  # 1437


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, str]:
    """``ingest digits ROOT/img --noise 0.1 --seed 0 --manifest ROOT/m/digits.csv``, once."""
    root = tmp_path_factory.mktemp("digits")
    out = ingest(
        "digits",
        str(root / "img"),
        "--noise",
        "0.1",
        "--seed",
        "0",
        "--manifest",
        str(root / "m" / "digits.csv"),
    )
    return root / "m" / "digits.csv", out


def test_digits_manifest(digits):
    manifest, out = digits
    df = read_raw(manifest)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "true_label"]
    assert len(df) == N_DIGITS
    assert df["sample_id"].is_unique
    assert df["sample_id"].iloc[0] == "digit-0000"
    assert df["path"].iloc[0] == "../img/digit-0000.png"  # relative to the manifest's folder
    assert set(df["split"]) == {"train", "test"}
    assert (df["split"] == "test").sum() == N_TEST
    assert set(df["true_label"]) == {str(c) for c in range(10)}
    _, labels = load_digits_arrays()
    assert df["true_label"].tolist() == [str(c) for c in labels]
    assert "digits.csv" in out


def test_digits_noise_is_exact(digits):
    manifest, out = digits
    df = read_raw(manifest)
    train = df[df["split"] == "train"]
    n_flipped = int((train["label"] != train["true_label"]).sum())
    assert n_flipped == round(0.1 * N_TRAIN) == 144
    assert set(train["label"]) <= {str(c) for c in range(10)}
    assert f"{n_flipped} train labels differ from true_label" in " ".join(out.split())


def test_digits_test_rows_are_clean_and_unlabeled(digits):
    df = read_raw(digits[0])
    test = df[df["split"] == "test"]
    assert (test["label"] == "").all()
    assert (test["true_label"] != "").all()


def test_digits_test_split_is_stratified(digits):
    df = read_raw(digits[0])
    per_class = df.groupby("true_label")["split"].agg(lambda s: (s == "test").sum())
    totals = df.groupby("true_label").size()
    assert np.all(np.abs(per_class - 0.2 * totals) <= 1), (per_class, totals)


def test_digits_images_are_the_digits(digits):
    manifest, _ = digits
    df = read_manifest(manifest)
    images, _ = load_digits_arrays()
    paths = resolve_paths(df, manifest.parent)
    assert len(list((manifest.parent.parent / "img").iterdir())) == N_DIGITS
    for i in [0, 1, 500, N_DIGITS - 1]:
        pixels = decode(paths[i])
        assert pixels.shape == (8, 8)
        assert pixels.dtype == np.uint8
        assert np.array_equal(pixels, images[i])
    assert all(p.is_file() for p in paths)
    # The manifest is valid as it stands.
    validate_manifest(df, file=manifest, classes=[str(c) for c in range(10)], folds=5)


def test_digits_same_seed_same_bytes(digits, tmp_path):
    manifest, _ = digits
    again = tmp_path / "m" / "digits.csv"
    ingest(
        "digits", str(tmp_path / "img"), "--noise", "0.1", "--seed", "0", "--manifest", str(again)
    )
    assert again.read_bytes() == manifest.read_bytes()
    first = manifest.parent.parent / "img" / "digit-1234.png"
    assert (tmp_path / "img" / "digit-1234.png").read_bytes() == first.read_bytes()


def test_digits_other_seed_other_noise(digits, tmp_path):
    manifest, _ = digits
    other = tmp_path / "m" / "digits.csv"
    ingest(
        "digits", str(tmp_path / "img"), "--noise", "0.1", "--seed", "1", "--manifest", str(other)
    )
    a, b = read_raw(manifest), read_raw(other)
    assert not a["split"].equals(b["split"])
    train = b[b["split"] == "train"]
    assert int((train["label"] != train["true_label"]).sum()) == 144


def test_digits_pairs_noise(tmp_path):
    m = tmp_path / "d.csv"
    ingest(
        "digits",
        str(tmp_path / "img"),
        "--noise",
        "0.2",
        "--noise-kind",
        "pairs",
        "--seed",
        "3",
        "--manifest",
        str(m),
    )
    df = read_raw(m)
    train = df[df["split"] == "train"]
    flipped = train[train["label"] != train["true_label"]]
    assert len(flipped) == round(0.2 * N_TRAIN)
    expected = [str((int(t) + 1) % 10) for t in flipped["true_label"]]
    assert flipped["label"].tolist() == expected
    assert "0" in set(flipped["label"])  # 9 wraps around to 0


@pytest.mark.parametrize("kind", ["realistic", "toward"])
def test_digits_reference_noise(tmp_path, kind):
    m = tmp_path / "d.csv"
    args = ["--noise", "0.1", "--noise-kind", kind, "--seed", "2", "--manifest", str(m)]
    out = ingest("digits", str(tmp_path / "img"), *args)
    df = read_raw(m)
    train = df[df["split"] == "train"]
    flipped = train["label"] != train["true_label"]
    assert int(flipped.sum()) == round(0.1 * N_TRAIN) == 144
    assert_says(out, "144 train labels differ from true_label")
    assert (df.loc[df["split"] == "test", "label"] == "").all()
    # The reference model and the noise come from the seed: the same labels again.
    again = tmp_path / "again.csv"
    ingest("digits", str(tmp_path / "img2"), *args[:-1], str(again))
    assert read_raw(again).drop(columns="path").equals(df.drop(columns="path"))


def test_digits_realistic_noise_is_not_uniform_noise(tmp_path):
    # Both flip 144 rows with the same seed (and so the same test split), not the same ones.
    frames = {}
    for kind in ("uniform", "realistic"):
        m = tmp_path / f"{kind}.csv"
        ingest("digits", str(tmp_path / kind), "--noise", "0.1", "--noise-kind", kind,
               "--manifest", str(m))  # fmt: skip
        frames[kind] = read_raw(m)
    a, b = frames["uniform"], frames["realistic"]
    assert a["split"].equals(b["split"])
    assert not (a["label"] != a["true_label"]).equals(b["label"] != b["true_label"])


def test_digits_without_noise_or_test_split(tmp_path):
    m = tmp_path / "d.csv"
    ingest("digits", str(tmp_path / "img"), "--test-fraction", "0", "--manifest", str(m))
    df = read_raw(m)
    assert (df["split"] == "train").all()
    assert df["label"].equals(df["true_label"])


def test_digits_into_an_empty_existing_folder(tmp_path):
    (tmp_path / "img").mkdir()
    ingest("digits", str(tmp_path / "img"), "--manifest", str(tmp_path / "d.csv"))
    assert len(list((tmp_path / "img").iterdir())) == N_DIGITS


def test_digits_default_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ingest("digits", "img", "--test-fraction", "0.5")
    assert default_manifest("digits") == Path("data_manifests/digits.csv")
    df = read_raw(tmp_path / "data_manifests" / "digits.csv")
    assert df["path"].iloc[0] == "../img/digit-0000.png"


def test_refuses_to_overwrite_a_manifest(tmp_path):
    m = tmp_path / "d.csv"
    m.write_text("path,label\nkeep.png,a\n")
    out = ingest_fails(tmp_path, "digits", str(tmp_path / "img"), "--manifest", str(m))
    assert_says(out, f"{m}: already exists")
    assert not (tmp_path / "img").exists()


def test_refuses_a_non_empty_image_folder(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "mine.png").write_bytes(b"not yours")
    out = ingest_fails(
        tmp_path, "digits", str(tmp_path / "img"), "--manifest", str(tmp_path / "d.csv")
    )
    assert_says(out, f"{tmp_path / 'img'}: image folder exists and is not empty")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--noise", "1.5"], "noise rate must be in [0, 1), got 1.5"),
        (["--noise", "-0.1"], "noise rate must be in [0, 1)"),
        (["--noise-kind", "gaussian"], "noise kind must be one of uniform, pairs"),
        (["--test-fraction", "1"], "--test-fraction must be in [0, 1), got 1.0"),
    ],
)
def test_bad_noise_arguments_write_nothing(tmp_path, args, reason):
    out = ingest_fails(
        tmp_path, "digits", str(tmp_path / "img"), "--manifest", str(tmp_path / "d.csv"), *args
    )
    assert_says(out, reason)
    assert list(tmp_path.iterdir()) == []


# --- folder ------------------------------------------------------------------------------


@pytest.fixture
def class_folders(tmp_path) -> Path:
    src = tmp_path / "src"
    write_png(src / "cat" / "c1.png", value=1)
    write_png(src / "cat" / "c2.jpg", value=2)  # PNG bytes, .jpg name: listed by extension
    write_png(src / "cat" / "nested" / "c3.PNG", value=3)
    write_png(src / "dog" / "d1.png", value=4)
    (src / "dog" / "notes.txt").write_text("not an image")
    (src / "empty_class").mkdir()
    write_png(src / ".ipynb_checkpoints" / "c1-checkpoint.png")  # hidden: skipped
    return src


def test_ingest_folder(class_folders, tmp_path):
    m = tmp_path / "out" / "pets.csv"
    out = ingest("folder", str(class_folders), "--manifest", str(m))
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label"]
    assert df["path"].tolist() == [
        "../src/cat/c1.png",
        "../src/cat/c2.jpg",
        "../src/cat/nested/c3.PNG",
        "../src/dog/d1.png",
    ]
    # Ids name the image inside the source folder, wherever the manifest is written.
    assert df["sample_id"].tolist() == [p.removeprefix("../src/") for p in df["path"]]
    assert df["label"].tolist() == ["cat", "cat", "cat", "dog"]
    full = read_manifest(m)
    assert all(p.is_file() for p in resolve_paths(full, m.parent))
    assert "pets.csv" in out


def test_ingest_folder_default_manifest(class_folders, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ingest("folder", "src")
    df = read_raw(tmp_path / "data_manifests" / "src.csv")
    assert df["path"].iloc[0] == "../src/cat/c1.png"


def test_ingest_folder_without_images(tmp_path):
    src = tmp_path / "src"
    write_png(src / "top_level.png")
    (src / "cat").mkdir()
    out = ingest_fails(tmp_path, "folder", str(src), "--manifest", str(tmp_path / "m.csv"))
    assert_says(out, f"{src}: no images found in class sub-folders")


def test_ingest_folder_not_a_folder(tmp_path):
    out = ingest_fails(
        tmp_path, "folder", str(tmp_path / "nope"), "--manifest", str(tmp_path / "x.csv")
    )
    assert_says(out, f"{tmp_path / 'nope'}: not a folder")


def test_ingest_folder_refuses_to_overwrite(class_folders, tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("old")
    out = ingest_fails(tmp_path, "folder", str(class_folders), "--manifest", str(m))
    assert_says(out, f"{m}: already exists")


def test_ingest_folder_refuses_images_beside_class_folders(class_folders, tmp_path):
    # An image in no class folder has no label: refused, not silently left out.
    write_png(class_folders / "stray.png", value=5)
    out = ingest_fails(
        tmp_path, "folder", str(class_folders), "--manifest", str(tmp_path / "m.csv")
    )
    assert_says(
        out,
        f"{class_folders}: 1 image(s) directly in the folder (e.g. stray.png) next to class "
        "folders cat, dog: move each into its class folder",
    )


# --- folder: split folders above the class folders ----------------------------------------


def valid_manifest(m: Path) -> pd.DataFrame:
    """The manifest as ``cleaner oof`` reads it, after the checks oof makes (images decoded)."""
    df = read_manifest(m)
    validate_manifest(df, file=m, check_images=True)
    return df


def test_ingest_folder_train_val_test(tmp_path):
    src = tmp_path / "imgs"
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            for i in range(2):
                write_png(src / split / c / f"{split}{i}.png", value=i)
    write_png(src / "test" / "cat" / "t0.png")  # test has a class folder of train only
    write_png(src / "unlabeled" / "u0.png")
    write_png(src / "unlabeled" / "batch2" / "u1.png")  # any depth; the folder is no label
    (src / "README.txt").write_text("other files are ignored")
    m = tmp_path / "m" / "pets.csv"
    out = ingest("folder", str(src), "--manifest", str(m))
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "origin", "true_label"]
    assert df["path"].tolist() == [
        "../imgs/train/cat/train0.png",
        "../imgs/train/cat/train1.png",
        "../imgs/train/dog/train0.png",
        "../imgs/train/dog/train1.png",
        "../imgs/val/cat/val0.png",
        "../imgs/val/cat/val1.png",
        "../imgs/val/dog/val0.png",
        "../imgs/val/dog/val1.png",
        "../imgs/test/cat/t0.png",
        "../imgs/unlabeled/batch2/u1.png",
        "../imgs/unlabeled/u0.png",
    ]
    assert df["label"].tolist() == ["cat", "cat", "dog", "dog"] * 2 + ["", "", ""]
    # val rows join train (cross-validation); the folder they came from stays in origin.
    assert df["split"].tolist() == ["train"] * 8 + ["test", "unlabeled", "unlabeled"]
    assert df["origin"].tolist() == ["train"] * 4 + ["val"] * 4 + ["test"] + ["unlabeled"] * 2
    # The test class is the truth retrain scores against; no other row claims one.
    assert df["true_label"].tolist() == [""] * 8 + ["cat", "", ""]
    full = valid_manifest(m)
    assert all(p.is_file() for p in resolve_paths(full, m.parent))
    validate_manifest(full, file=m, classes=["cat", "dog"], folds=2)
    assert_says(out, "4 train rows from the val folder (origin = val)")
    assert "differ from true_label" not in out


@pytest.mark.parametrize("val", ["valid", "Validation", "VAL"])
def test_ingest_folder_train_valid(tmp_path, val):
    src = tmp_path / "imgs"
    write_png(src / "Train" / "cat" / "a.png")
    write_png(src / "Train" / "dog" / "b.png")
    write_png(src / val / "dog" / "c.png")  # a val folder need not hold every class
    m = tmp_path / "m.csv"
    ingest("folder", str(src), "--manifest", str(m))
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "origin"]
    assert df["path"].tolist() == [
        "imgs/Train/cat/a.png",
        "imgs/Train/dog/b.png",
        f"imgs/{val}/dog/c.png",
    ]
    assert df["label"].tolist() == ["cat", "dog", "dog"]
    assert df["split"].tolist() == ["train"] * 3
    assert df["origin"].tolist() == ["train", "train", "val"]
    valid_manifest(m)


def test_ingest_folder_test_images_without_classes(tmp_path):
    src = tmp_path / "imgs"
    write_png(src / "train" / "cat" / "a.png")
    write_png(src / "train" / "dog" / "b.png")
    write_png(src / "test" / "x.png")
    write_png(src / "test" / "y.png")
    m = tmp_path / "m.csv"
    ingest("folder", str(src), "--manifest", str(m))
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "origin"]  # no true_label
    assert df["split"].tolist() == ["train", "train", "test", "test"]
    assert df["label"].tolist() == ["cat", "dog", "", ""]
    valid_manifest(m)


def test_ingest_folder_split_test(class_folders, tmp_path):
    m = tmp_path / "m.csv"
    out = ingest("folder", str(class_folders), "--split", "test", "--manifest", str(m))
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "true_label"]
    assert df["path"].tolist() == [
        "src/cat/c1.png",
        "src/cat/c2.jpg",
        "src/cat/nested/c3.PNG",
        "src/dog/d1.png",
    ]
    assert (df["split"] == "test").all()
    assert (df["label"] == "").all()
    assert df["true_label"].tolist() == ["cat", "cat", "cat", "dog"]
    valid_manifest(m)
    assert_says(out, "4 test rows have a true_label")


def test_ingest_folder_split_train_and_unlabeled(class_folders, tmp_path):
    ingest("folder", str(class_folders), "--split", "train", "--manifest", str(tmp_path / "a.csv"))
    a = read_raw(tmp_path / "a.csv")
    assert list(a.columns) == ["sample_id", "path", "label", "split"]
    assert a["label"].tolist() == ["cat", "cat", "cat", "dog"]
    assert (a["split"] == "train").all()
    ingest(
        "folder", str(class_folders), "--split", "unlabeled", "--manifest", str(tmp_path / "b.csv")
    )
    b = read_raw(tmp_path / "b.csv")
    assert list(b.columns) == ["sample_id", "path", "label", "split"]
    assert b["path"].tolist() == a["path"].tolist()
    assert (b["label"] == "").all() and (b["split"] == "unlabeled").all()
    valid_manifest(tmp_path / "a.csv")
    valid_manifest(tmp_path / "b.csv")


def test_ingest_folder_split_unlabeled_images_directly(tmp_path):
    src = tmp_path / "new"
    write_png(src / "a.png")
    write_png(src / "b.png")
    ingest("folder", str(src), "--split", "unlabeled", "--manifest", str(tmp_path / "m.csv"))
    df = read_raw(tmp_path / "m.csv")
    assert df["path"].tolist() == ["new/a.png", "new/b.png"]
    assert (df["split"] == "unlabeled").all()


def _tree(root: Path, files: list[str]) -> Path:
    for f in files:
        write_png(root / f)
    return root


@pytest.mark.parametrize(
    ("files", "args", "says"),
    [
        (
            ["train/cat/a.png", "val/cat/b.png", "cats/c.png", "dogs/d.png"],
            [],
            [
                "{src}: found split folders train, val and other folders cats, dogs: put every "
                "class folder under a split folder"
            ],
        ),
        (
            ["train/cat/a.png", "val/cat/b.png", "x.png"],
            [],
            [
                "{src}: 1 image(s) directly in the folder (e.g. x.png) next to split folders "
                "train, val: move each into a split folder"
            ],
        ),
        (
            ["train/cat/a.png", "val/cat/b.png", "valid/cat/c.png"],
            [],
            ["{src}: found 2 val folders (val, valid): keep one"],
        ),
        (
            [
                "train/cat/a.png",
                "train/dog/b.png",
                "val/owl/c.png",
                "val/dog/e.png",
                "test/emu/d.png",
            ],
            [],
            [
                "{src}/val/owl: val class 'owl' is not a train class (train has cat, dog)",
                "{src}/test/emu: test class 'emu' is not a train class (train has cat, dog)",
            ],
        ),
        (
            ["train/cat/a.png", "train/b.png"],
            [],
            [
                "{src}/train: 1 image(s) directly in the folder (e.g. b.png) next to class "
                "folders cat"
            ],
        ),
        (
            ["train/cat/a.png", "test/cat/b.png", "test/c.png"],
            [],
            [
                "{src}/test: 1 image(s) directly in the folder (e.g. c.png) next to class folders "
                "cat: put every test image in a class folder (its name becomes true_label) or none"
            ],
        ),
        (
            ["val/cat/a.png", "test/b.png"],
            [],
            ["{src}: found split folders test, val but no train folder", "--split test"],
        ),
        (
            ["train/cat/a.png"],
            ["--split", "test"],
            [
                "{src}: --split test is for a folder without split folders, but this one holds "
                "split folders train"
            ],
        ),
        (
            ["cat/a.png"],
            ["--split", "val"],
            ["--split must be one of train, test, unlabeled, got 'val'"],
        ),
        (["cat/a.png"], ["--split", "excluded"], ["--split must be one of train, test, unlabeled"]),
    ],
)
def test_ingest_folder_ambiguous_layouts(tmp_path, files, args, says):
    src = _tree(tmp_path / "imgs", files)
    out = ingest_fails(tmp_path, "folder", str(src), *args, "--manifest", str(tmp_path / "m.csv"))
    assert_says(out, *[s.format(src=src) for s in says])
    assert not (tmp_path / "m.csv").exists()


def test_ingest_folder_empty_split_folder(tmp_path):
    src = _tree(tmp_path / "imgs", ["train/cat/a.png"])
    (src / "test").mkdir()
    (src / "unlabeled" / "sub").mkdir(parents=True)
    out = ingest_fails(tmp_path, "folder", str(src), "--manifest", str(tmp_path / "m.csv"))
    assert_says(out, f"{src / 'test'}: no images found", f"{src / 'unlabeled'}: no images found")


# --- folder: noise and a held-out test split ----------------------------------------------

PER_CLASS = 20  # 200 real digit images in 10 class folders


def _digit_folder(src: Path, per_class: int = PER_CLASS) -> Path:
    """``src/<digit>/<index>.png``: the first ``per_class`` of each of sklearn's digits."""
    images, labels = load_digits_arrays()
    for c in range(10):
        (src / str(c)).mkdir(parents=True)
        for i in np.flatnonzero(labels == c)[:per_class]:
            Image.fromarray(images[i]).save(src / str(c) / f"{i:04d}.png")
    return src


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory) -> Path:
    return _digit_folder(tmp_path_factory.mktemp("digit_folder") / "src")


def _folder_class(df: pd.DataFrame) -> list[str]:
    """The class folder of each row: ``<class>/<file>`` or ``<split>/<class>/<file>``."""
    return [sid.split("/")[-2] for sid in df["sample_id"]]


def test_ingest_folder_realistic_noise_and_test_split(digit_folder, tmp_path):
    m = tmp_path / "m" / "digits.csv"
    args = ["--noise-kind", "realistic", "--noise", "0.2", "--test-fraction", "0.2", "--seed", "3"]
    out = ingest("folder", str(digit_folder), *args, "--manifest", str(m))
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "true_label"]
    assert len(df) == 200
    assert df["true_label"].tolist() == _folder_class(df)  # the truth is the folder
    test = df[df["split"] == "test"]
    assert len(test) == 40 and (test["label"] == "").all()
    assert (test.groupby("true_label").size() == 4).all()  # stratified: 4 of each 20
    train = df[df["split"] == "train"]
    assert len(train) == 160
    flipped = train["label"] != train["true_label"]
    assert int(flipped.sum()) == round(0.2 * 160) == 32
    assert set(train["label"]) <= {str(c) for c in range(10)}
    assert_says(out, "32 train labels differ from true_label")
    validate_manifest(read_manifest(m), file=m, classes=[str(c) for c in range(10)], folds=2)
    # The same seed gives the same manifest; another seed other noise.
    ingest("folder", str(digit_folder), *args, "--manifest", str(tmp_path / "m" / "again.csv"))
    assert (tmp_path / "m" / "again.csv").read_bytes() == m.read_bytes()
    other = tmp_path / "m" / "other.csv"
    ingest("folder", str(digit_folder), *args[:-1], "4", "--manifest", str(other))
    assert not read_raw(other)["label"].equals(df["label"])


def test_ingest_folder_noise_without_test_split(digit_folder, tmp_path):
    m = tmp_path / "m.csv"
    ingest("folder", str(digit_folder), "--noise", "0.1", "--manifest", str(m))
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "true_label"]  # all train rows
    assert df["true_label"].tolist() == _folder_class(df)
    assert int((df["label"] != df["true_label"]).sum()) == 20


def test_ingest_folder_test_split_without_noise(digit_folder, tmp_path):
    m = tmp_path / "m.csv"
    out = ingest("folder", str(digit_folder), "--test-fraction", "0.5", "--manifest", str(m))
    df = read_raw(m)
    assert (df["split"] == "test").sum() == 100
    train = df[df["split"] == "train"]
    assert train["label"].equals(train["true_label"])
    assert_says(out, "0 train labels differ from true_label")


def test_ingest_folder_noise_over_train_and_val_keeps_the_test_folder(tmp_path):
    src = tmp_path / "imgs"
    _digit_folder(src / "train", per_class=6)
    _digit_folder(src / "val", per_class=2)
    _digit_folder(src / "test", per_class=1)
    m = tmp_path / "m.csv"
    ingest("folder", str(src), "--noise", "0.25", "--noise-kind", "realistic", "--manifest", str(m))
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "origin", "true_label"]
    train = df[df["split"] == "train"]
    assert len(train) == 80 and set(train["origin"]) == {"train", "val"}
    assert int((train["label"] != train["true_label"]).sum()) == 20  # val rows count too
    test = df[df["split"] == "test"]
    assert len(test) == 10 and (test["label"] == "").all()
    assert df["true_label"].tolist() == _folder_class(df)
    valid_manifest(m)


@pytest.mark.parametrize(
    ("setup", "args", "says"),
    [
        ("test_folder", ["--test-fraction", "0.2"], "has its own test split"),
        ("flat", ["--split", "test", "--noise", "0.1"], "--split test makes none"),
        ("flat", ["--split", "unlabeled", "--test-fraction", "0.2"], "act on train rows"),
        ("flat", ["--noise-kind", "gaussian"], "noise kind must be one of uniform, pairs"),
        ("flat", ["--noise", "1"], "noise rate must be in [0, 1), got 1.0"),
        ("flat", ["--test-fraction", "-0.5"], "--test-fraction must be in [0, 1)"),
        ("one", ["--noise", "0.5", "--noise-kind", "realistic"], "class 1 has 1"),
        ("bad", ["--noise", "0.5", "--noise-kind", "toward"], "unreadable image"),
    ],
)
def test_ingest_folder_noise_refusals(tmp_path, setup, args, says):
    src = tmp_path / "src"
    if setup == "test_folder":
        for split in ("train", "test"):
            for c in ("a", "b"):
                write_png(src / split / c / "x.png")
    else:
        for i in range(4):
            write_png(src / "0" / f"{i}.png", value=i)
            if setup != "one" or i == 0:
                write_png(src / "1" / f"{i}.png", value=50 + i)
    if setup == "bad":
        (src / "1" / "broken.png").write_bytes(b"not an image")
    out = ingest_fails(tmp_path, "folder", str(src), *args, "--manifest", str(tmp_path / "m.csv"))
    assert_says(out, says)


# --- csv ---------------------------------------------------------------------------------


@pytest.fixture
def table(tmp_path) -> Path:
    rows = [
        {"file": "imgs/1.png", "cls": "cat", "person": "p1", "quality": "007", "note": "a, b"},
        {"file": "imgs/2.png", "cls": "dog", "person": "p1", "quality": "NA", "note": ""},
        {"file": "sub/../imgs/3.png", "cls": "", "person": "p2", "quality": " 1.50 ", "note": "ü"},
    ]
    for i in (1, 2, 3):  # ingest decodes every image before it writes the manifest
        write_png(tmp_path / "raw" / "imgs" / f"{i}.png", value=i)
    return write_csv(tmp_path / "raw" / "labels.csv", rows)


def test_ingest_csv(table, tmp_path):
    m = tmp_path / "manifests" / "pets.csv"
    ingest(
        "csv",
        str(table),
        "--path-col",
        "file",
        "--label-col",
        "cls",
        "--group-col",
        "person",
        "--manifest",
        str(m),
    )
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "group", "quality", "note"]
    # Paths were relative to the table; now they are relative to the manifest.
    assert df["path"].tolist() == ["../raw/imgs/1.png", "../raw/imgs/2.png", "../raw/imgs/3.png"]
    assert df["sample_id"].tolist() == df["path"].tolist()
    assert df["label"].tolist() == ["cat", "dog", ""]
    assert df["group"].tolist() == ["p1", "p1", "p2"]
    # Extra columns are kept exactly.
    assert df["quality"].tolist() == ["007", "NA", " 1.50 "]
    assert df["note"].tolist() == ["a, b", "", "ü"]


def test_ingest_csv_id_and_split_columns(tmp_path):
    t = write_csv(
        tmp_path / "t.csv",
        [
            {"id": "x1", "img": "a.png", "y": "cat", "part": "train"},
            {"id": "x2", "img": "b.png", "y": "", "part": "test"},
        ],
    )
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    m = tmp_path / "m.csv"
    ingest(
        "csv",
        str(t),
        "--path-col",
        "img",
        "--label-col",
        "y",
        "--id-col",
        "id",
        "--split-col",
        "part",
        "--manifest",
        str(m),
    )
    df = read_raw(m)
    assert list(df.columns) == ["sample_id", "path", "label", "split"]
    assert df["sample_id"].tolist() == ["x1", "x2"]
    assert df["path"].tolist() == ["a.png", "b.png"]
    assert df["split"].tolist() == ["train", "test"]


def test_ingest_csv_missing_column(table, tmp_path):
    out = ingest_fails(
        tmp_path,
        "csv",
        str(table),
        "--path-col",
        "file",
        "--label-col",
        "kind",
        "--manifest",
        str(tmp_path / "m.csv"),
    )
    assert_says(out, f"{table}, line 1: column(s) not found: kind")
    assert_says(out, "(it has: file, cls, person, quality, note)")  # what to type instead


def test_ingest_csv_refuses_to_overwrite_a_column(tmp_path):
    t = write_csv(tmp_path / "t.csv", [{"img": "a.png", "y": "cat", "label": "old"}])
    out = ingest_fails(
        tmp_path,
        "csv",
        str(t),
        "--path-col",
        "img",
        "--label-col",
        "y",
        "--manifest",
        str(tmp_path / "m.csv"),
    )
    assert_says(out, f"{t}, line 1: column(s) label would be overwritten")


def test_ingest_csv_table_not_found(tmp_path):
    out = ingest_fails(
        tmp_path,
        "csv",
        str(tmp_path / "nope.csv"),
        "--path-col",
        "p",
        "--label-col",
        "l",
        "--manifest",
        str(tmp_path / "m.csv"),
    )
    assert_says(out, f"{tmp_path / 'nope.csv'}: table not found")


def test_ingest_csv_refuses_to_overwrite(table, tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("old")
    out = ingest_fails(
        tmp_path,
        "csv",
        str(table),
        "--path-col",
        "file",
        "--label-col",
        "cls",
        "--manifest",
        str(m),
    )
    assert_says(out, f"{m}: already exists")


# --- mnist (IDX) -------------------------------------------------------------------------


@pytest.fixture
def tiny_idx(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    """Two IDX pairs: ``t10k`` gzipped (20 images) and ``train`` plain (30), 6x5 pixels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 6, 5), dtype=np.uint8)
    labels = np.array([i % 10 for i in range(50)], dtype=np.uint8)
    d = tmp_path / "idx"
    write_idx(d / "t10k-images-idx3-ubyte.gz", images[:20])
    write_idx(d / "t10k-labels-idx1-ubyte.gz", labels[:20])
    write_idx(d / "train-images-idx3-ubyte", images[20:])
    write_idx(d / "train-labels-idx1-ubyte", labels[20:])
    return d, images, labels


def test_write_idx_header(tmp_path):
    # The helper writes the documented magic numbers (0x00000803 images, 0x00000801 labels).
    img = write_idx(tmp_path / "x-images-idx3-ubyte", np.zeros((2, 3, 4)))
    lab = write_idx(tmp_path / "x-labels-idx1-ubyte", np.zeros(2))
    assert img.read_bytes()[:16] == bytes.fromhex("00000803 00000002 00000003 00000004")
    assert lab.read_bytes()[:8] == bytes.fromhex("00000801 00000002")


def test_read_idx(tiny_idx):
    d, images, labels = tiny_idx
    assert np.array_equal(read_idx(d / "t10k-images-idx3-ubyte.gz"), images[:20])
    assert np.array_equal(read_idx(d / "train-labels-idx1-ubyte"), labels[20:])


def test_load_mnist_arrays(tiny_idx):
    d, images, labels = tiny_idx
    x, y, ids = load_mnist_arrays(d)
    assert np.array_equal(x, images)
    assert np.array_equal(y, labels)
    assert y.dtype == np.int64
    assert ids[:2] == ["t10k-00000", "t10k-00001"]
    assert ids[20:22] == ["train-00000", "train-00001"]
    assert len(set(ids)) == 50


def test_ingest_mnist(tiny_idx, tmp_path):
    d, images, labels = tiny_idx
    m = tmp_path / "m" / "mnist.csv"
    ingest("mnist", str(d), str(tmp_path / "img"), "--noise", "0.25", "--manifest", str(m))
    df = read_raw(m)
    assert len(df) == 50
    assert df["true_label"].tolist() == [str(c) for c in labels]
    assert (df["split"] == "test").sum() == 10
    train = df[df["split"] == "train"]
    assert int((train["label"] != train["true_label"]).sum()) == 10  # round(0.25 * 40)
    paths = resolve_paths(read_manifest(m), m.parent)
    for i in range(50):
        assert np.array_equal(decode(paths[i]), images[i])  # (rows, cols) = (6, 5)
    assert df["path"].iloc[20] == "../img/train-00000.png"


def test_ingest_mnist_too_few_images_to_stratify(tmp_path):
    # 10 classes cannot each give a row to a test split of 2 rows.
    d = tmp_path / "idx"
    write_idx(d / "t-images-idx3-ubyte", np.zeros((10, 4, 4)))
    write_idx(d / "t-labels-idx1-ubyte", np.arange(10))
    out = ingest_fails(
        tmp_path, "mnist", str(d), str(tmp_path / "img"), "--manifest", str(tmp_path / "m.csv")
    )
    assert_says(out, "--test-fraction")
    assert not (tmp_path / "img").exists()


def test_ingest_arrays_one_class_with_noise(tmp_path):
    with pytest.raises(InputError, match="at least 2 classes"):
        ingest_arrays(
            np.zeros((4, 2, 2), np.uint8),
            np.zeros(4, np.int64),
            ["a", "b", "c", "d"],
            tmp_path / "img",
            tmp_path / "m.csv",
            noise=0.5,
            test_fraction=0,
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("no_files", "no *-images-idx3-ubyte[.gz] files"),
        ("no_labels", "no matching labels file"),
        ("bad_magic", "not an IDX file of unsigned bytes"),
        ("short", "IDX size does not match its header [3, 4, 4]"),
        ("mismatch", "images and labels do not match"),
    ],
)
def test_ingest_mnist_bad_idx(tmp_path, setup, reason):
    d = tmp_path / "idx"
    d.mkdir()
    if setup != "no_files":
        img = write_idx(d / "t-images-idx3-ubyte", np.zeros((3, 4, 4)))
    if setup not in ("no_files", "no_labels"):
        write_idx(d / "t-labels-idx1-ubyte", np.zeros(2 if setup == "mismatch" else 3))
    if setup == "bad_magic":
        img.write_bytes(b"\x00\x00\x0d\x03" + img.read_bytes()[4:])  # 0x0D: float data
    if setup == "short":
        img.write_bytes(img.read_bytes()[:-1])
    out = ingest_fails(
        tmp_path, "mnist", str(d), str(tmp_path / "img"), "--manifest", str(tmp_path / "m.csv")
    )
    assert_says(out, reason)


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"{MNIST_DIR} not found")
def test_ingest_real_mnist(tmp_path):
    m = tmp_path / "mnist.csv"
    ingest("mnist", str(MNIST_DIR), str(tmp_path / "img"), "--noise", "0.1", "--manifest", str(m))
    df = read_raw(m)
    assert len(df) == 10_000
    assert (df["split"] == "test").sum() == 2_000
    train = df[df["split"] == "train"]
    assert int((train["label"] != train["true_label"]).sum()) == 800
    assert df["sample_id"].iloc[0] == "t10k-00000"
    x = read_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    y = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert df["true_label"].tolist() == [str(c) for c in y]
    paths = resolve_paths(read_manifest(m), m.parent)
    for i in [0, 4321, 9999]:
        pixels = decode(paths[i])
        assert pixels.shape == (28, 28)
        assert np.array_equal(pixels, x[i])


# --- every bad image at once --------------------------------------------------------------


def _photos_with_bad_files(root: Path) -> dict[str, str]:
    """Two class folders of good PNGs, and three files training cannot use:
    {file: what its reason must say}."""
    for c in ("cat", "dog"):
        for i in range(3):
            write_png(root / c / f"{i}.png", value=40 * i)
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "cat" / "notes.jpg").write_text("not an image")
    jpeg = root / "dog" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    return {"cat/empty.jpg": "empty file", "cat/notes.jpg": "not an image",
            "dog/cut.jpg": "damaged JPEG"}  # fmt: skip


def test_ingest_folder_lists_every_bad_image_at_once_and_writes_nothing(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = _photos_with_bad_files(tmp_path / "photos")
    manifest = tmp_path / "m.csv"
    # A real process: libjpeg prints to the process's stderr, which CliRunner does not see.
    result = subprocess.run(
        [sys.executable, "-m", "cleaner", "ingest", "folder", str(tmp_path / "photos"),
         "--manifest", str(manifest), "-q"],
        capture_output=True, text=True, check=False,
        env={**__import__("os").environ, "COLUMNS": "300"},
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    for name, reason in bad.items():
        line = next(x for x in out.splitlines() if name in x)
        assert reason in line, out
    assert_says(out, "3 of 9 image files cannot be used for training; nothing written")
    assert "--skip-bad-images" in out
    assert "Premature end of JPEG" not in out.replace("damaged JPEG (Premature end of JPEG", "")
    assert not manifest.exists() and not manifest.with_name("m.skipped.csv").exists()


def test_skip_bad_images_writes_the_good_ones_and_lists_the_rest(tmp_path: Path) -> None:
    bad = _photos_with_bad_files(tmp_path / "photos")
    manifest = tmp_path / "m.csv"
    out = ingest("folder", str(tmp_path / "photos"), "--manifest", str(manifest),
                 "--skip-bad-images", "-q")  # fmt: skip
    assert_says(out, "left out 3 image files training cannot use", "m.skipped.csv")
    df = read_raw(manifest)
    assert sorted(df["sample_id"]) == [f"{c}/{i}.png" for c in ("cat", "dog") for i in range(3)]
    skipped = read_raw(tmp_path / "m.skipped.csv")
    assert list(skipped.columns) == ["path", "sample_id", "reason"]
    assert sorted(skipped["sample_id"]) == sorted(bad)
    for sid, reason in bad.items():
        assert reason in skipped.set_index("sample_id").loc[sid, "reason"]


def test_ingest_csv_and_init_refuse_every_bad_image_at_once(tmp_path: Path, monkeypatch) -> None:
    bad = _photos_with_bad_files(tmp_path / "photos")
    rows = [{"file": p.relative_to(tmp_path).as_posix(), "y": p.parent.name}
            for p in sorted((tmp_path / "photos").rglob("*.*"))]  # fmt: skip
    write_csv(tmp_path / "t.csv", rows)
    result = CliRunner().invoke(app, ["ingest", "csv", str(tmp_path / "t.csv"), "--path-col",
                                      "file", "--label-col", "y", "-q"])  # fmt: skip
    assert result.exit_code == 2
    assert all(name in result.output for name in bad), result.output
    assert not (tmp_path / "data_manifests").exists() and not default_manifest("t").exists()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "photos", "--cpu"])
    assert result.exit_code == 2
    assert all(name in result.output for name in bad), result.output
    assert not (tmp_path / "data_manifests" / "photos.csv").exists()
