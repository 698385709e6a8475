"""The mask competition: cleaner.ingest.mask (``ingest mask``) and .synth (``synth mask``).

No model is trained here: the synthetic set is 20 + 3 persons of 32 px photos.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import assert_says, invoke, snapshot, write_csv, write_png
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.formats.manifest import read_manifest, resolve_paths, validate_manifest
from cleaner.ingest.mask import (
    CLASSES,
    MASK_FILES,
    MASKS,
    Person,
    age_band,
    class_index,
    decompose,
    folder_name,
    ingest_mask,
    parse_folder,
    sort_files,
)
from cleaner.ingest.synth import synth_mask

PEOPLE, EVAL_PEOPLE, FLIPS, SWAPS, SIZE = 20, 3, 0.1, 0.2, 32
N_FLIPPED, N_SWAPPED = round(PEOPLE * FLIPS), round(PEOPLE * SWAPS)  # 2 and 4 persons
STEMS = tuple(MASK_FILES)
EXTRA_COLUMNS = ["mask", "gender", "age", "age_band", "race"]


def read_raw(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def fails(root: Path, *args: str) -> str:
    """Run the CLI; it must exit 2 with an error and change nothing under ``root``."""
    before = snapshot(root)
    dirs = sorted(p for p in root.rglob("*") if p.is_dir())
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "error:" in result.output
    assert snapshot(root) == before
    assert sorted(p for p in root.rglob("*") if p.is_dir()) == dirs
    return result.output


def synth_args(out: Path, seed: int = 7) -> list[str]:
    return [
        *("synth", "mask", str(out), "--people", str(PEOPLE)),
        *("--gender-flips", str(FLIPS), "--mask-swaps", str(SWAPS)),
        *("--size", str(SIZE), "--eval-people", str(EVAL_PEOPLE), "--seed", str(seed)),
    ]


def tokens_label(sample_path: str) -> int:
    """The class the layout gives a train image: folder tokens and file name."""
    folder, name = sample_path.split("/")[-2:]
    person = parse_folder(folder)
    assert person is not None
    return person.label(name.rpartition(".")[0])


# --- classes --------------------------------------------------------------------------------


def test_class_index_and_decompose_round_trip():
    seen = set()
    for c in range(18):
        parts = decompose(c)
        assert class_index(*parts) == c
        seen.add(parts)
    assert seen == {(m, g, a) for m in range(3) for g in range(2) for a in range(3)}
    assert class_index(0, 0, 0) == 0
    assert class_index(1, 0, 1) == 7  # incorrect, male, 30-59
    assert class_index(2, 1, 2) == 17  # not wear, female, >= 60
    assert tuple(str(c) for c in range(18)) == CLASSES


@pytest.mark.parametrize("parts", [(3, 0, 0), (0, 2, 0), (0, 0, 3), (-1, 0, 0)])
def test_class_index_rejects_out_of_range(parts):
    with pytest.raises(ValueError, match="must be in"):
        class_index(*parts)


@pytest.mark.parametrize("c", [-1, 18])
def test_decompose_rejects_out_of_range(c):
    with pytest.raises(ValueError, match=r"0\.\.17"):
        decompose(c)


@pytest.mark.parametrize(
    ("age", "band"), [(0, 0), (18, 0), (29, 0), (30, 1), (59, 1), (60, 2), (99, 2)]
)
def test_age_band(age, band):
    assert age_band(age) == band


def test_age_band_rejects_negative():
    with pytest.raises(ValueError, match="negative"):
        age_band(-1)


def test_parse_folder():
    p = parse_folder("000001_female_Asian_45")
    assert p == Person("000001_female_Asian_45", "000001", "female", "Asian", 45)
    assert p.label("mask3") == class_index(0, 1, 1) == 4
    assert p.label("normal") == 16
    assert folder_name(p.id, p.gender, p.race, p.age) == p.folder
    assert parse_folder("006959_Male_Asian_60").gender == "male"  # type: ignore[union-attr]
    for bad in ("000001_femal_Asian_45", "000001_female_Asian", "000001_female_Asian_4x"):
        assert parse_folder(bad) is None
    assert parse_folder("000001_female_South_Asian_45") is None


def test_sort_files():
    names = [f"{s}.jpg" for s in STEMS if s != "normal"]
    names += ["normal.PNG", "mask1.png", "mask6.jpg", "notes.txt", "._mask2.jpg", ".DS_Store"]
    files = sort_files(names)
    assert files.images == (
        *("mask1.jpg", "mask1.png", "mask2.jpg", "mask3.jpg", "mask4.jpg", "mask5.jpg"),
        *("incorrect_mask.jpg", "normal.PNG"),
    )
    assert files.missing == ()
    assert files.extra == ("mask6.jpg", "notes.txt")  # hidden files are ignored
    assert files.duplicated == ("mask1",)
    assert sort_files(["mask1.jpeg"]).missing == STEMS[1:]


# --- synth mask -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, str]:
    """``cleaner synth mask`` with 20 train and 3 eval persons, once for this module."""
    out = tmp_path_factory.mktemp("synth") / "data"
    return out, invoke(*synth_args(out))


def test_synth_layout(synth):
    data, _ = synth
    assert sorted(p.name for p in data.iterdir()) == ["eval", "train", "truth.csv"]
    assert sorted(p.name for p in (data / "train").iterdir()) == ["images", "train.csv"]
    assert sorted(p.name for p in (data / "eval").iterdir()) == ["images", "info.csv"]
    folders = sorted(p for p in (data / "train" / "images").iterdir())
    assert len(folders) == PEOPLE
    persons = [parse_folder(f.name) for f in folders]
    assert all(persons), [f.name for f in folders]
    assert [p.id for p in persons if p] == [f"{i:06d}" for i in range(1, PEOPLE + 1)]
    for f in folders:
        assert f.is_dir()
        assert sorted(p.name for p in f.iterdir()) == sorted(f"{s}.png" for s in STEMS)
    train = read_raw(data / "train" / "train.csv")
    assert list(train.columns) == ["id", "gender", "race", "age", "path"]
    assert train["path"].tolist() == [f.name for f in folders]
    assert train.apply(lambda r: folder_name(r.id, r.gender, r.race, r.age), axis=1).tolist() == [
        f.name for f in folders
    ]
    info = read_raw(data / "eval" / "info.csv")
    assert list(info.columns) == ["ImageID", "ans"]
    assert len(info) == 7 * EVAL_PEOPLE
    assert set(info["ans"]) == {"0"}
    assert sorted(info["ImageID"]) == sorted(p.name for p in (data / "eval" / "images").iterdir())
    with Image.open(folders[0] / "normal.png") as im:
        assert (im.size, im.mode) == ((SIZE, SIZE), "RGB")


def test_synth_truth_and_noise(synth):
    data, out = synth
    truth = read_raw(data / "truth.csv")
    images = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    assert len(truth) == len(images) == 7 * (PEOPLE + EVAL_PEOPLE)
    assert sorted(truth["path"]) == images
    train = truth[truth["split"] == "train"]
    flipped = train[train["noise"] == "gender_flip"]
    swapped = train[train["noise"] == "mask_swap"]
    assert flipped["person"].nunique() == N_FLIPPED == 2
    assert len(flipped) == 7 * N_FLIPPED
    assert swapped["person"].nunique() == N_SWAPPED == 4
    assert len(swapped) == 2 * N_SWAPPED
    assert not set(flipped["person"]) & set(swapped["person"])
    assert (truth.loc[truth["split"] == "test", "noise"] == "none").all()
    for row in train.itertuples():
        person = parse_folder(row.path.split("/")[2])
        stem = row.path.rsplit("/", 1)[1].removesuffix(".png")
        assert person is not None
        # The layout's tokens are the noisy labels; the truth differs exactly where noise is.
        assert (person.gender != row.true_gender) == (row.noise == "gender_flip")
        assert (MASKS[MASK_FILES[stem]] != row.true_mask) == (row.noise == "mask_swap")
        assert int(row.given_label) == person.label(stem)
        assert (row.given_label != row.true_label) == (row.noise != "none")
        assert str(person.age_band) == row.age_band
    assert_says(out, "gender_flip", "mask_swap", f"next: cleaner ingest mask {data}")


def test_synth_same_seed_same_bytes(synth, tmp_path):
    data, _ = synth
    invoke(*synth_args(tmp_path / "again"))
    assert snapshot(tmp_path / "again") == snapshot(data)
    invoke(*synth_args(tmp_path / "other", seed=8))
    assert read_raw(tmp_path / "other" / "truth.csv")["true_label"].tolist() != (
        read_raw(data / "truth.csv")["true_label"].tolist()
    )


def test_synth_into_an_empty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    synth_mask(tmp_path / "d", people=2, gender_flips=0.5, mask_swaps=0.5, eval_people=0, size=16)
    truth = read_raw(tmp_path / "d" / "truth.csv")
    assert len(truth) == 14
    assert set(truth["noise"]) == {"gender_flip", "mask_swap", "none"}
    assert read_raw(tmp_path / "d" / "eval" / "info.csv").empty


def test_synth_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_text("keep")
    out = fails(tmp_path, "synth", "mask", str(tmp_path / "d"))
    assert_says(out, f"{tmp_path / 'd'}: exists and is not an empty folder")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--gender-flips", "1.5"], "gender flip rate must be in [0, 1], got 1.5"),
        (["--mask-swaps", "-0.1"], "mask swap rate must be in [0, 1], got -0.1"),
        (["--people", "0"], "people must be at least 1, got 0"),
        (["--size", "8"], "image size must be in 16..512 px, got 8"),
        (["--seed", "-1"], "seed must not be negative, got -1"),
        (["--gender-flips", "0.6", "--mask-swaps", "0.5"], "together exceed the 40 people"),
    ],
)
def test_synth_bad_arguments_write_nothing(tmp_path, args, reason):
    out = fails(tmp_path, "synth", "mask", str(tmp_path / "d"), *args)
    assert_says(out, reason)
    assert not (tmp_path / "d").exists()


# --- ingest mask of the synthetic set -------------------------------------------------------


@pytest.fixture(scope="module")
def ingested(synth) -> tuple[Path, str]:
    data, _ = synth
    manifest = data.parent / "m" / "mask.csv"
    return manifest, invoke("ingest", "mask", str(data), "--manifest", str(manifest))


def test_ingest_synth_train_rows(synth, ingested):
    data, _ = synth
    manifest, out = ingested
    df = read_raw(manifest)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "group", *EXTRA_COLUMNS]
    train = df[df["split"] == "train"]
    assert len(train) == 7 * PEOPLE
    assert train["path"].iloc[0] == "../data/train/images/" + train["sample_id"].iloc[0]
    # Labels are what the folder and file names say: the noisy ones.
    assert train["path"].map(tokens_label).astype(str).tolist() == train["label"].tolist()
    truth = read_raw(data / "truth.csv").set_index("path")
    rel = train["path"].str.removeprefix("../data/")
    assert truth.loc[rel, "given_label"].tolist() == train["label"].tolist()
    noisy = (truth.loc[rel, "noise"] != "none").to_numpy()
    assert ((truth.loc[rel, "true_label"].to_numpy() != train["label"].to_numpy()) == noisy).all()
    assert noisy.sum() == 7 * N_FLIPPED + 2 * N_SWAPPED
    assert truth.loc[rel, "person"].tolist() == train["group"].tolist()
    first = train.iloc[0]
    person = parse_folder(first["sample_id"].split("/")[0])
    assert person is not None
    assert first[EXTRA_COLUMNS].tolist() == [
        "wear",
        person.gender,
        str(person.age),
        str(person.age_band),
        person.race,
    ]
    assert set(train["mask"]) == set(MASKS)
    assert_says(out, f"{data}: {PEOPLE} persons, 140 train images, 21 eval images")
    assert_says(out, "the layout is complete")


def test_ingest_synth_test_rows(synth, ingested):
    data, _ = synth
    manifest, _ = ingested
    df = read_raw(manifest)
    test = df[df["split"] == "test"]
    info = read_raw(data / "eval" / "info.csv")
    assert test["sample_id"].tolist() == info["ImageID"].tolist()  # info.csv's order
    assert (test["label"] == "").all()
    assert (test[["group", *EXTRA_COLUMNS]] == "").all().all()
    assert test["path"].tolist() == ["../data/eval/images/" + i for i in info["ImageID"]]


def test_ingest_synth_manifest_is_valid(ingested):
    manifest, _ = ingested
    df = read_manifest(manifest)
    validate_manifest(df, file=manifest, classes=CLASSES, group="group")
    assert all(p.is_file() for p in resolve_paths(df, manifest.parent))


# --- ingest mask: layouts that do not fit ---------------------------------------------------

GOOD = ("000001_female_Asian_45", "000002_male_Asian_61", "000003_male_Asian_20")
EVAL_IDS = ("a1.jpg", "b2.png", "c3.jpeg")


@pytest.fixture
def data(tmp_path) -> Path:
    """A tiny valid layout: 3 persons with 7 photos each, 3 eval images, both CSV files."""
    root = tmp_path / "data"
    for i, folder in enumerate(GOOD):
        for j, stem in enumerate(STEMS):
            write_png(root / "train" / "images" / folder / f"{stem}.jpg", value=10 * i + j)
    rows = [
        {"id": p.id, "gender": p.gender, "race": p.race, "age": p.age, "path": p.folder}
        for p in map(parse_folder, GOOD)
        if p
    ]
    write_csv(root / "train" / "train.csv", rows)
    for k, image_id in enumerate(EVAL_IDS):
        write_png(root / "eval" / "images" / image_id, value=100 + k)
    write_csv(root / "eval" / "info.csv", [{"ImageID": i, "ans": 0} for i in EVAL_IDS])
    return root


def test_ingest_tiny_layout(data, tmp_path):
    manifest, report = ingest_mask(data, tmp_path / "m.csv")
    df = read_raw(manifest)
    assert report.findings == ()
    assert (report.persons, report.train_images, report.test_images) == (3, 21, 3)
    assert df["group"].tolist()[:8] == ["000001"] * 7 + ["000002"]
    assert df["sample_id"].iloc[6] == "000001_female_Asian_45/normal.jpg"
    assert df["label"].tolist()[:7] == ["4"] * 5 + ["10", "16"]
    assert df["sample_id"].tolist()[-3:] == list(EVAL_IDS)


def test_bad_folder_name_is_reported_and_skipped(data, tmp_path):
    images = data / "train" / "images"
    for stem in STEMS:
        write_png(images / "000004_femal_Asian_30" / f"{stem}.jpg")
    (images / "readme.txt").write_text("not a person")
    manifest, report = ingest_mask(data, tmp_path / "m.csv")
    skipped = report.of_kind("skipped folder")
    assert [(f.file, f.reason) for f in skipped] == [
        ("train/images/000004_femal_Asian_30", "not <id>_<gender>_<race>_<age>; skipped"),
        ("train/images/readme.txt", "not a folder; skipped"),
    ]
    df = read_raw(manifest)
    assert not df["sample_id"].str.contains("femal_").any()
    assert report.persons == 3
    out = invoke("ingest", "mask", str(data), "--manifest", str(tmp_path / "m2.csv"))
    assert_says(out, "skipped folder", "000004_femal_Asian_30", "readme.txt", "3 persons")


def test_missing_file_is_reported_and_the_rest_ingested(data, tmp_path):
    (data / "train" / "images" / GOOD[1] / "normal.jpg").unlink()
    manifest, report = ingest_mask(data, tmp_path / "m.csv")
    assert [(f.kind, f.file, f.reason) for f in report.findings] == [
        ("missing files", f"train/images/{GOOD[1]}", "no normal; ingested the other 6")
    ]
    df = read_raw(manifest)
    assert (df["group"] == "000002").sum() == 6
    assert report.train_images == 20
    out = invoke("ingest", "mask", str(data), "--manifest", str(tmp_path / "m2.csv"))
    assert_says(out, "missing files", "no normal; ingested the other 6")


def test_extra_and_duplicate_files_are_reported(data, tmp_path):
    folder = data / "train" / "images" / GOOD[0]
    write_png(folder / "mask6.jpg")
    write_png(folder / "mask1.png")
    (folder / "notes.txt").write_text("x")
    (folder / "._mask1.jpg").write_bytes(b"macOS metadata")
    manifest, report = ingest_mask(data, tmp_path / "m.csv")
    assert [(f.kind, f.reason) for f in report.findings] == [
        ("extra files", "not ingested: mask6.jpg, notes.txt"),
        ("duplicate files", "more than one photo of mask1; all ingested"),
    ]
    df = read_raw(manifest)
    assert df["sample_id"].tolist()[:2] == [f"{GOOD[0]}/mask1.jpg", f"{GOOD[0]}/mask1.png"]
    assert report.train_images == 22


def test_train_csv_is_compared_with_the_folders(data, tmp_path):
    rows = read_raw(data / "train" / "train.csv").to_dict("records")
    rows[0]["gender"] = "male"  # line 2
    rows[1]["path"] = "000009_male_Asian_61"  # line 3: no such folder; GOOD[1] unlisted
    rows[2]["age"] = "020"  # the same age
    (data / "train" / "train.csv").unlink()
    write_csv(data / "train" / "train.csv", rows)
    _, report = ingest_mask(data, tmp_path / "m.csv")
    assert [str(f) for f in report.of_kind("train.csv")] == [
        "train/train.csv, line 2: gender 'male' disagrees with folder "
        f"'{GOOD[0]}'; the folder is used",
        "train/train.csv, line 3: folder '000009_male_Asian_61' not found or skipped",
        f"train/train.csv: folder '{GOOD[1]}' is not listed",
    ]


def test_no_eval_folder_gives_train_rows_only(data, tmp_path):
    shutil.rmtree(data / "eval")
    (data / "train" / "train.csv").unlink()
    manifest, report = ingest_mask(data, tmp_path / "m.csv")
    assert set(read_raw(manifest)["split"]) == {"train"}
    assert [f.kind for f in report.findings] == ["train.csv", "eval"]


def test_missing_eval_image_is_an_error_and_writes_nothing(data, tmp_path):
    (data / "eval" / "images" / "b2.png").unlink()
    out = fails(
        tmp_path, "ingest", "mask", str(data), "--manifest", str(tmp_path / "m" / "mask.csv")
    )
    info = data / "eval" / "info.csv"
    assert_says(out, f"{info}, line 3: image not found: {data / 'eval' / 'images' / 'b2.png'}")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([{"Image": "a1.jpg", "ans": 0}], "line 1: no ImageID column"),
        ([{"ImageID": "a1.jpg"}, {"ImageID": "a1.jpg"}], "line 3: duplicate ImageID 'a1.jpg'"),
        ([{"ImageID": "a1.jpg"}, {"ImageID": ""}], "line 3: empty ImageID"),
    ],
)
def test_bad_info_csv(data, tmp_path, rows, reason):
    (data / "eval" / "info.csv").unlink()
    write_csv(data / "eval" / "info.csv", rows)
    out = fails(tmp_path, "ingest", "mask", str(data), "--manifest", str(tmp_path / "m.csv"))
    assert_says(out, f"{data / 'eval' / 'info.csv'}, {reason}")


def test_existing_manifest_is_refused(data, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nkeep.png,a\n")
    out = fails(tmp_path, "ingest", "mask", str(data), "--manifest", str(manifest))
    assert_says(out, f"{manifest}: already exists")


def test_not_the_layout(tmp_path):
    (tmp_path / "data").mkdir()
    out = fails(tmp_path, "ingest", "mask", str(tmp_path / "data"))
    assert_says(out, f"{tmp_path / 'data' / 'train' / 'images'}: not a folder")
    write_png(tmp_path / "data" / "train" / "images" / "person1" / "mask1.jpg")
    out = fails(tmp_path, "ingest", "mask", str(tmp_path / "data"))
    assert_says(out, "no folder named <id>_<gender>_<race>_<age>")
    with pytest.raises(InputError, match="not a folder"):
        ingest_mask(tmp_path / "nope", tmp_path / "m.csv")


def test_default_manifest_and_relative_paths(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    invoke("ingest", "mask", "data")
    df = read_raw(tmp_path / "data_manifests" / "mask.csv")
    assert df["path"].iloc[0] == f"../data/train/images/{GOOD[0]}/mask1.jpg"
    assert df["path"].iloc[-1] == "../data/eval/images/c3.jpeg"


def test_duplicate_id_and_unlisted_eval_image_are_reported(data, tmp_path):
    images = data / "train" / "images"
    shutil.copytree(images / GOOD[0], images / "000001_male_Asian_45")
    write_png(data / "eval" / "images" / "d4.png")
    manifest, report = ingest_mask(data, tmp_path / "m.csv")
    assert [str(f) for f in report.of_kind("duplicate id")] == [
        "train/images: id '000001' names 2 folders "
        "(000001_female_Asian_45, 000001_male_Asian_45); they form one group"
    ]
    assert [str(f) for f in report.of_kind("eval")] == [
        "eval/images: 1 image(s) not in info.csv, not ingested: d4.png"
    ]
    df = read_raw(manifest)
    assert (df["group"] == "000001").sum() == 14
    assert "d4.png" not in set(df["sample_id"])
