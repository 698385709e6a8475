"""cleaner.formats.manifest: reading with defaults, versions, hashing, validation, writing."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd
import pytest
from helpers import snapshot, write_csv

from cleaner.core.errors import InputError
from cleaner.formats.manifest import (
    SPLITS,
    apply_weights_file,
    audit_log_path,
    line_of,
    next_version_path,
    read_manifest,
    resolve_paths,
    sha256_file,
    split_version,
    validate_manifest,
    write_manifest,
)


def raw_rows(path: Path) -> list[dict[str, str]]:
    """A CSV's rows as text, read with the csv module (independent of pandas)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- read_manifest ------------------------------------------------------------------------


def test_defaults_fill_missing_columns(tmp_path):
    m = write_csv(
        tmp_path / "m.csv",
        [{"path": "img/x.png", "label": "cat"}, {"path": "img/y.png", "label": "dog"}],
    )
    df = read_manifest(m)
    assert list(df.columns) == ["sample_id", "path", "label", "split", "weight"]
    assert df["sample_id"].tolist() == ["img/x.png", "img/y.png"]
    assert df["split"].tolist() == ["train", "train"]
    assert df["weight"].tolist() == ["1.0", "1.0"]
    assert df["label"].tolist() == ["cat", "dog"]


def test_defaults_fill_blank_values(tmp_path):
    rows = [
        {"sample_id": "", "path": "a.png", "label": "x", "split": "", "weight": ""},
        {"sample_id": "id-b", "path": "b.png", "label": "x", "split": " test ", "weight": " "},
        {"sample_id": "id-c", "path": "c.png", "label": "", "split": "unlabeled", "weight": "2.5"},
    ]
    df = read_manifest(write_csv(tmp_path / "m.csv", rows))
    assert df["sample_id"].tolist() == ["a.png", "id-b", "id-c"]
    assert df["split"].tolist() == ["train", "test", "unlabeled"]
    assert df["weight"].tolist() == ["1.0", "1.0", "2.5"]
    assert list(df.columns) == ["sample_id", "path", "label", "split", "weight"]


def test_values_stay_text(tmp_path):
    # A label "07" must not become 7, and "NA" / "null" / "" must not become NaN.
    rows = [
        {"path": "a.png", "label": "07", "note": "NA"},
        {"path": "b.png", "label": "null", "note": ""},
        {"path": "c.png", "label": "1e3", "note": "nan"},
    ]
    df = read_manifest(write_csv(tmp_path / "m.csv", rows))
    assert df["label"].tolist() == ["07", "null", "1e3"]
    assert df["note"].tolist() == ["NA", "", "nan"]
    assert all(isinstance(v, str) for v in df.to_numpy().ravel())


EXTRA_VALUES = [
    "007",
    "NA",
    "",
    "1.50",
    " padded ",
    "comma, inside",
    'quote "inside"',
    "ünïcødé ✓",
    "line\nbreak",
    "=SUM(A1)",
]


def test_extra_columns_survive_a_rewrite(tmp_path):
    rows = [
        {"path": f"{i}.png", "label": "a", "person": f"p{i % 3}", "extra": v}
        for i, v in enumerate(EXTRA_VALUES)
    ]
    src = write_csv(tmp_path / "m.csv", rows, ["path", "label", "person", "extra"])
    out = write_manifest(read_manifest(src), tmp_path / "m.v2.csv")
    written = raw_rows(out)
    assert [r["extra"] for r in written] == EXTRA_VALUES
    assert [r["person"] for r in written] == [r["person"] for r in rows]
    # Filled-in columns come first (sample_id) or last (split, weight); extra ones keep order.
    assert list(written[0]) == ["sample_id", "path", "label", "person", "extra", "split", "weight"]


def test_complete_manifest_rewrites_byte_for_byte(tmp_path):
    text = (
        "sample_id,path,label,group,weight,split,extra,note\n"
        "s1,img/1.png,07,p1,1.0,train,007,\n"
        's2,img/2.png,cat,p1,0.25,test,NA,"comma, inside"\n'
        's3,/abs/3.png,,p2,1,unlabeled, padded ,"quote ""x"""\n'
        "s4,img/4.png,dog,p3,0,excluded,ünï,1e3\n"
    )
    src = tmp_path / "m.csv"
    src.write_bytes(text.encode())
    out = write_manifest(read_manifest(src), tmp_path / "m.v2.csv")
    assert out.read_bytes() == text.encode()
    assert sha256_file(out) == sha256_file(src)


def test_utf8_bom_is_not_part_of_the_first_column(tmp_path):
    # Spreadsheet programs often save CSV with a byte-order mark.
    m = tmp_path / "m.csv"
    m.write_bytes("\ufeffpath,label\nx.png,a\n".encode())
    df = read_manifest(m)
    assert df["path"].tolist() == ["x.png"]


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="manifest not found") as e:
        read_manifest(tmp_path / "nope.csv")
    assert e.value.problems[0].file == str(tmp_path / "nope.csv")


@pytest.mark.parametrize(("missing", "columns"), [("label", ["path"]), ("path", ["label"])])
def test_missing_required_column(tmp_path, missing, columns):
    m = write_csv(tmp_path / "m.csv", [{"path": "a.png", "label": "x"}], columns)
    with pytest.raises(InputError) as e:
        read_manifest(m)
    (p,) = e.value.problems
    assert (p.file, p.row) == (str(m), 1)
    assert p.reason == f"missing required column(s): {missing}"


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage\x00\xff"])
def test_unreadable_csv(tmp_path, content):
    m = tmp_path / "m.csv"
    m.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_manifest(m)
    assert e.value.problems[0].file == str(m)


def test_resolve_paths(tmp_path):
    df = pd.DataFrame({"path": ["img/a.png", "/data/b.png", "../c.png"]})
    assert resolve_paths(df, tmp_path / "m") == [
        tmp_path / "m" / "img" / "a.png",
        Path("/data/b.png"),
        tmp_path / "m" / ".." / "c.png",
    ]


def test_weights_file_replaces_the_weights_it_lists(tmp_path):
    df = pd.DataFrame({"sample_id": ["a", "b", "c"], "weight": ["1.0", "2", "1.0"]})
    path = write_csv(
        tmp_path / "w.csv",
        [{"sample_id": "c", "weight": "0.25"}, {"sample_id": "a", "weight": " 3 "}],
    )
    out = apply_weights_file(df, path)
    assert out["weight"].tolist() == ["3", "2", "0.25"]
    assert df["weight"].tolist() == ["1.0", "2", "1.0"]  # the input is not modified


def test_weights_file_lists_every_bad_row(tmp_path):
    df = pd.DataFrame({"sample_id": ["a", "b"], "weight": ["1", "1"]})
    rows = [
        {"sample_id": "a", "weight": "0.5"},
        {"sample_id": "zz", "weight": "1"},
        {"sample_id": "a", "weight": "1"},
        {"sample_id": "b", "weight": "-1"},
    ]
    path = write_csv(tmp_path / "w.csv", rows)
    with pytest.raises(InputError) as e:
        apply_weights_file(df, path)
    assert str(e.value).splitlines() == [
        f"{path}, line 3: sample_id 'zz' is not in the manifest",
        f"{path}, line 4: duplicate sample_id 'a' (first on line 2)",
        f"{path}, line 5: weight '-1' is not a number >= 0",
    ]
    with pytest.raises(InputError, match="missing column"):
        apply_weights_file(df, write_csv(tmp_path / "x.csv", [{"sample_id": "a"}]))
    with pytest.raises(InputError, match="not found"):
        apply_weights_file(df, tmp_path / "none.csv")


# --- validate_manifest (the CLI side is in test_validation.py) ----------------------------


def test_valid_manifest_passes(tiny_project):
    df = read_manifest(tiny_project.manifest)
    validate_manifest(df, file=tiny_project.manifest, classes=("a", "b"), folds=3)


def test_rows_that_need_no_label_or_image(tiny_project):
    rows = [dict(r, split="train") for r in tiny_project.rows]
    rows += [
        {"sample_id": "t", "path": "images/a0.png", "label": "", "split": "test"},
        {"sample_id": "u", "path": "images/a1.png", "label": "", "split": "unlabeled"},
        # A reviewer dropped this row; its image may have been deleted since.
        {"sample_id": "x", "path": "images/deleted.png", "label": "a", "split": "excluded"},
    ]
    tiny_project.rewrite_manifest(rows)
    df = read_manifest(tiny_project.manifest)
    seen = []
    validate_manifest(
        df,
        file=tiny_project.manifest,
        classes=("a", "b"),
        folds=3,
        on_image=lambda: seen.append(1),
    )
    assert len(seen) == len(rows) - 1  # every image but the excluded row's was opened


def test_problems_carry_file_and_line(tiny_project):
    rows = [dict(r, weight="1") for r in tiny_project.rows]
    rows[0]["label"] = "c"
    rows[3]["weight"] = "-2"
    rows[5]["path"] = "images/gone.png"
    tiny_project.rewrite_manifest(rows)
    df = read_manifest(tiny_project.manifest)
    with pytest.raises(InputError) as e:
        validate_manifest(df, file=tiny_project.manifest, classes=("a", "b"), folds=2)
    found = {(p.row, p.reason.split(" ")[0]) for p in e.value.problems}
    assert found == {(2, "label"), (5, "weight"), (7, "image")}
    assert {p.file for p in e.value.problems} == {str(tiny_project.manifest)}


def test_image_checks_can_be_skipped(tiny_project):
    tiny_project.set_cells(0, path="images/gone.png")
    df = read_manifest(tiny_project.manifest)
    validate_manifest(df, file=tiny_project.manifest, classes=("a", "b"), check_images=False)
    with pytest.raises(InputError, match="image not found"):
        validate_manifest(df, file=tiny_project.manifest, classes=("a", "b"))


def test_images_are_found_relative_to_the_manifest(tiny_project, monkeypatch):
    # The working directory does not matter: paths are relative to the manifest's folder.
    sub = tiny_project.root / "elsewhere"
    sub.mkdir()
    monkeypatch.chdir(sub)
    validate_manifest(read_manifest(tiny_project.manifest), file=tiny_project.manifest)


def test_without_classes_any_label_is_accepted(tmp_path):
    m = write_csv(tmp_path / "m.csv", [{"path": "a.png", "label": "anything"}])
    validate_manifest(read_manifest(m), file=m, check_images=False)


def test_line_of():
    assert line_of(0) == 2  # the header is line 1
    assert line_of(9) == 11


def test_splits():
    assert SPLITS == ("train", "test", "unlabeled", "excluded")


# --- versions, hashes, writing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base", "version", "next_name"),
    [
        ("digits.csv", "digits", 1, "digits.v2.csv"),
        ("digits.v2.csv", "digits", 2, "digits.v3.csv"),
        ("digits.v10.csv", "digits", 10, "digits.v11.csv"),
        ("my.data.csv", "my.data", 1, "my.data.v2.csv"),
        ("my.data.v3.csv", "my.data", 3, "my.data.v4.csv"),
        ("v2.csv", "v2", 1, "v2.v2.csv"),
        ("x.vv.csv", "x.vv", 1, "x.vv.v2.csv"),
    ],
)
def test_versions(tmp_path, name, base, version, next_name):
    path = tmp_path / "data" / name
    assert split_version(path) == (base, version)
    assert next_version_path(path) == tmp_path / "data" / next_name
    assert audit_log_path(path) == tmp_path / "data" / f"{base}.audit.jsonl"
    # Every version of one manifest shares one audit log.
    assert audit_log_path(next_version_path(path)) == audit_log_path(path)


def test_versions_accept_strings():
    assert split_version("data_manifests/mnist.v4.csv") == ("mnist", 4)
    assert next_version_path("data_manifests/mnist.csv") == Path("data_manifests/mnist.v2.csv")
    assert audit_log_path("mnist.v7.csv") == Path("mnist.audit.jsonl")


@pytest.mark.parametrize("name", ["digits.tsv", "digits", ".csv", "digits.csv.bak"])
def test_version_needs_csv_name(name):
    with pytest.raises(InputError, match=r"must end in \.csv"):
        split_version(name)


def test_sha256_file(tmp_path):
    small = tmp_path / "small.csv"
    small.write_bytes(b"path,label\na.png,x\n")
    assert sha256_file(small) == hashlib.sha256(b"path,label\na.png,x\n").hexdigest()
    # Larger than one read chunk (1 MiB), not a multiple of it.
    data = bytes(range(256)) * (10 * 1024 + 7)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    assert sha256_file(big) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_sha256_changes_with_one_byte(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_bytes(b"path,label\na.png,x\n")
    b.write_bytes(b"path,label\na.png,y\n")
    assert sha256_file(a) != sha256_file(b)


def test_write_manifest(tmp_path):
    df = pd.DataFrame({"sample_id": ["1"], "path": ["a.png"], "label": ["07"]})
    out = write_manifest(df, tmp_path / "new" / "m.csv")
    assert out == tmp_path / "new" / "m.csv"
    assert out.read_text() == "sample_id,path,label\n1,a.png,07\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.csv"]  # no temporary file left


def test_write_manifest_refuses_to_overwrite(tmp_path):
    target = tmp_path / "m.csv"
    target.write_text("path,label\nold.png,a\n")
    before = snapshot(tmp_path)
    df = pd.DataFrame({"path": ["new.png"], "label": ["b"]})
    with pytest.raises(InputError, match="already exists") as e:
        write_manifest(df, target)
    assert e.value.problems[0].file == str(target)
    assert snapshot(tmp_path) == before
