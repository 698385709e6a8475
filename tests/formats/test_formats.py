"""The documented file formats, pinned: ``queue.csv``, ``queue.json``, the audit log and
the run folder's ``oof.csv``.

``tests/data/formats/`` holds one small reference file of each, as ``cleaner
oof``, ``cleaner flag`` and ``cleaner apply`` write them (README, "Files"). Each
is (a) read with the format's readers and its fields checked, and (b) written
again from the same content through the format's writer, byte for byte: a
change to a writer that changes the bytes fails here, so the format cannot
drift silently. The queue, queue.json and audit log tell one story: a queue
made from ``faces.csv`` (v1), reviewed, and applied to give ``faces.v2.csv``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from helpers import REPO, TEST_DATA, write_csv

from cleaner.core.config import PipelineConfig
from cleaner.formats.attributes import AttributeTable
from cleaner.formats.audit import (
    AUDIT_FIELDS,
    COMMIT_FIELDS,
    append_records,
    audit_record,
    read_audit_log,
    replay_audit,
)
from cleaner.formats.prob_table import (
    OOF_COLUMNS,
    PROB_PREFIX,
    oof_table,
    read_prob_columns,
    write_table,
)
from cleaner.formats.queue_file import (
    QUEUE_COLUMNS,
    QueueMeta,
    QueueText,
    queue_meta_text,
    read_queue_meta,
    read_queue_table,
    write_queue_csv,
    write_queue_meta,
)
from cleaner.formats.runs import load_probs
from cleaner.formats.scores import read_scores

FORMATS = TEST_DATA / "formats"
README = REPO / "README.md"

# The manifest version the queue was made from, and the one the review made.
MANIFEST_V1 = """\
sample_id,path,label,person,gender,weight,split
s01,images/s01.jpg,wear-m,P1,m,1.0,train
s02,images/s02.jpg,wear-m,P1,m,1.0,train
s03,images/s03.jpg,none-f,P2,f,1.0,train
s04,images/s04.jpg,none-f,P2,f,1.0,train
s05,images/s05.jpg,wear-m,P3,m,1.0,train
s06,images/s06.jpg,none-m,P3,m,1.0,train
t01,images/t01.jpg,,T1,,1.0,test
"""
# What the review changed, by hand: the next version is v1 with these cells.
CHANGES = {
    "s01": {"weight": "0.5"},  # unsure: 1.0 x 0.5
    "s02": {"label": "none-m"},  # relabel to the suggestion
    "s03": {"split": "excluded"},  # drop: the row stays
    "s05": {"label": "wear-f", "gender": "f"},  # group:P3 relabel gender=f ...
    "s06": {"label": "none-f", "gender": "f"},  # ... each row keeps its mask
}


def _changed(manifest: str, changes: dict[str, dict[str, str]]) -> str:
    table = pd.read_csv(io.StringIO(manifest), dtype=str, keep_default_na=False)
    for sid, cells in changes.items():
        for col, value in cells.items():
            table.loc[table["sample_id"] == sid, col] = value
    return table.to_csv(index=False, lineterminator="\n")


MANIFEST_V2 = _changed(MANIFEST_V1, CHANGES)
V1_SHA = hashlib.sha256(MANIFEST_V1.encode()).hexdigest()
V2_SHA = hashlib.sha256(MANIFEST_V2.encode()).hexdigest()

# queue.csv as flag builds it: leakage first, then best first; decisions blank.
# rank, sample_id, path, group, given, suggested, quality, issue, note, partner
QUEUE_ROWS = [
    (1, "s03", "images/s03.jpg", "P2", "none-f", "", 0.8123456789, "leakage",
     "same file as test row t01", "t01"),
    (2, "s02", "images/s02.jpg", "P1", "wear-m", "none-m", 0.0123456789, "label", "", ""),
    (3, "group:P3", "images/s05.jpg", "P3", "gender=m", "gender=f", 0.0456789, "group_inconsistent",
     "gender: given m, model says f", ""),
    (4, "s01", "images/s01.jpg", "P1", "wear-m", "wear-f", 0.0987654321, "label", "", ""),
    (5, "s04", "images/s04.jpg", "P2", "none-f", "", 0.25, "outlier",
     "atypical image (outlier score 0.912)", ""),
]  # fmt: skip
# What the reviewer decided, by rank: (decision, new_label).
DECISIONS = {1: ("drop", ""), 2: ("relabel", ""), 3: ("relabel", ""), 4: ("unsure", ""),
             5: ("keep", "")}  # fmt: skip


def queue_frame() -> pd.DataFrame:
    """The queue rows with the types build_queue gives them (rank int, quality float)."""
    rows = [
        dict(zip(("rank", "sample_id", "path", "group", "given_label", "suggested_label",
                  "label_quality", "issue", "note", "partner"), r, strict=True))
        | {"decision": "", "new_label": ""}
        for r in QUEUE_ROWS
    ]  # fmt: skip
    return pd.DataFrame(rows)[list(QUEUE_COLUMNS)]


def queue_meta(folder: Path) -> QueueMeta:
    """queue.json's content for a queue in ``folder`` = ``runs/convnext`` of a project."""
    project = folder.parent.parent
    flag = {
        "method": "self_confidence",
        "top": 4,
        "group_label": False,
        "group_columns": ["gender"],
        "attributes": ["mask", "gender"],
        "boundary_column": "",
        "boundary_attribute": "",
        "boundary_edges": [],
        "boundary_margin": 0.0,
    }
    trust = {"n": 6, "accuracy": 0.8333333333333334, "macro_f1": 0.8,
             "majority_rate": 0.3333333333333333, "p_value": 0.000123, "ece": 0.0625}  # fmt: skip
    return QueueMeta(
        manifest=project / "data_manifests" / "faces.csv",
        manifest_sha256=V1_SHA,
        classes=("wear-m", "wear-f", "none-m", "none-f"),
        runs=(str(folder),),
        group_column="person",
        attributes=AttributeTable(
            ("mask", "gender"),
            (("none", "wear"), ("f", "m")),
            np.array([[1, 1], [1, 0], [0, 1], [0, 0]]),
        ),
        examples={"wear-m": ("s01",), "none-f": ("s04", "s03")},
        flag=flag,
        method="self_confidence",
        top=4,
        trust=trust,
        created="2026-01-05T09:00:00+00:00",
        noise={"estimated_wrong_labels": 2, "interval_95": [1, 3], "model_disagrees": 1,
               "train_rows": 6,
               "note": "cleanlab counts the labels its out-of-fold model cannot explain"},
        issue_counts={"label": 3, "dark": 1},
        image_quality={"images": 6, "flagged": {"dark": 1, "blurry": 0},
                       "limits": {"dark": 0.32, "blurry": 0.157},
                       "cleanvision_thresholds": {"dark": 0.32, "blurry": 0.29},
                       "grayscale_share": 0.0, "dataset_median": {"brightness_p99": 0.88}},
    )  # fmt: skip


def project(root: Path) -> Path:
    """``root/data_manifests/faces.csv`` (v1) and the queue folder ``root/runs/convnext``."""
    (root / "data_manifests").mkdir(parents=True)
    (root / "data_manifests" / "faces.csv").write_text(MANIFEST_V1, encoding="utf-8")
    folder = root / "runs" / "convnext"
    folder.mkdir(parents=True)
    return folder


def audit_records() -> list[dict[str, Any]]:
    """The records apply builds for DECISIONS, in manifest order."""
    context = {
        "reviewer": "jürgen",  # written as UTF-8, not escaped
        "time": "2026-01-05T10:00:00+00:00",
        "run": "runs/convnext",
        "manifest_sha256": V1_SHA,
    }
    # sample_id, old, new, action, quality, queue_row, split, weight, columns
    rows = [
        ("s01", "wear-m", "wear-m", "unsure", 0.0987654, "s01", "train", "0.5", None),
        ("s02", "wear-m", "none-m", "relabel", 0.0123457, "s02", "train", "1.0", None),
        ("s03", "none-f", "none-f", "drop", 0.812346, "s03", "excluded", "1.0", None),
        ("s04", "none-f", "none-f", "keep", 0.25, "s04", "train", "1.0", None),
        ("s05", "wear-m", "wear-f", "relabel", 0.0456789, "group:P3", "train", "1.0",
         {"gender": "f"}),
        ("s06", "none-m", "none-f", "relabel", 0.0456789, "group:P3", "train", "1.0",
         {"gender": "f"}),
    ]  # fmt: skip
    return [
        audit_record(sid, old_label=old, new_label=new, action=action, context=context,
                     label_quality=q, queue_row=row, split=split, weight=weight, columns=cols)
        for sid, old, new, action, q, row, split, weight, cols in rows
    ]  # fmt: skip


def readme_section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"### {title}")
    return text[start : text.index("\n#", start + 1)]


# --- queue.csv ----------------------------------------------------------------------------


def test_queue_csv_reads_as_documented() -> None:
    table = read_queue_table(FORMATS / "queue.csv")
    assert tuple(table.columns) == QUEUE_COLUMNS
    assert table.attrs["lines"] == [2, 3, 4, 5, 6]
    expected = queue_frame()
    assert table["sample_id"].tolist() == expected["sample_id"].tolist()
    assert table["label_quality"].tolist() == ["0.812346", "0.0123457", "0.0456789",
                                               "0.0987654", "0.25"]  # fmt: skip
    for col in ("rank", "path", "group", "given_label", "suggested_label", "issue", "note"):
        assert table[col].tolist() == expected[col].astype(str).tolist(), col
    assert (table[["decision", "new_label"]] == "").all().all()
    assert table["partner"].tolist() == ["t01", "", "", "", ""]


def test_queue_csv_writes_the_reference_bytes(tmp_path: Path) -> None:
    write_queue_csv(queue_frame(), tmp_path / "queue.csv")
    assert (tmp_path / "queue.csv").read_bytes() == (FORMATS / "queue.csv").read_bytes()


def test_queue_csv_decisions_are_written_back_in_place(tmp_path: Path) -> None:
    """The lenient round trip (review page, Label Studio import): only decision cells change."""
    raw = QueueText.read(FORMATS / "queue.csv")
    assert raw.render() == (FORMATS / "queue.csv").read_bytes()
    raw.check_rows(read_queue_table(FORMATS / "queue.csv"), "queue.csv")
    decided = raw.with_decisions({rank - 1: d for rank, d in DECISIONS.items()})
    (tmp_path / "queue.csv").write_bytes(decided.render())
    table = read_queue_table(tmp_path / "queue.csv")
    assert list(zip(table["decision"], table["new_label"], strict=True)) == list(DECISIONS.values())
    before = read_queue_table(FORMATS / "queue.csv").drop(columns=["decision", "new_label"])
    pd.testing.assert_frame_equal(table.drop(columns=["decision", "new_label"]), before)


def test_readme_lists_the_queue_columns_in_order() -> None:
    section = readme_section("Relabel queue (`queue.csv`)")
    found = re.search(r"`(rank, [^`]+)`", section)
    assert found is not None
    assert tuple(c.strip() for c in found.group(1).split(",")) == QUEUE_COLUMNS


# --- queue.json ---------------------------------------------------------------------------


def test_queue_json_reads_as_documented(tmp_path: Path) -> None:
    folder = project(tmp_path)
    shutil.copy(FORMATS / "queue.json", folder / "queue.json")
    meta = read_queue_meta(folder / "queue.csv")
    expected = queue_meta(folder)
    # Paths resolve against queue.json's own folder, wherever the project lies.
    assert meta.manifest == tmp_path / "data_manifests" / "faces.csv"
    assert meta.runs == (str(folder),)
    assert meta.attributes is not None and expected.attributes is not None
    assert meta.attributes.to_json() == expected.attributes.to_json()
    assert dataclasses.replace(meta, attributes=None) == dataclasses.replace(
        expected, attributes=None
    )


def test_queue_json_writes_the_reference_bytes(tmp_path: Path) -> None:
    folder = project(tmp_path)
    write_queue_meta(folder / "queue.json", queue_meta(folder))
    assert (folder / "queue.json").read_bytes() == (FORMATS / "queue.json").read_bytes()
    assert queue_meta_text(queue_meta(folder), folder) == (FORMATS / "queue.json").read_text()


def test_readme_names_the_queue_json_keys() -> None:
    row = next(
        line
        for line in readme_section("Run folder (`runs/RUN/`)").splitlines()
        if line.startswith("| `queue.json`")
    )
    text = (FORMATS / "queue.json").read_text(encoding="utf-8")
    for key in ("probs", "probs_sha256", "flag", "trust", "examples"):
        assert f"`{key}`" in row and f'"{key}":' in text, key
    for key in ("accuracy", "macro_f1", "majority_rate", "p_value", "ece"):
        assert key in row and f'"{key}":' in text, key


# --- the audit log ------------------------------------------------------------------------


def test_audit_log_reads_and_replays_as_documented(tmp_path: Path) -> None:
    folder = project(tmp_path).parent.parent / "data_manifests"
    (folder / "faces.v2.csv").write_text(MANIFEST_V2, encoding="utf-8")
    shutil.copy(FORMATS / "faces.audit.jsonl", folder / "faces.audit.jsonl")
    records = read_audit_log(folder / "faces.audit.jsonl")
    commit = {"version": "faces.v2.csv", "version_sha256": V2_SHA}
    assert records == [r | commit for r in audit_records()]
    for r in records:
        assert set(AUDIT_FIELDS) | set(COMMIT_FIELDS) | {"queue_row", "split", "weight"} <= set(r)
    v1, v2 = (pd.read_csv(io.StringIO(t), dtype=str, keep_default_na=False)
              for t in (MANIFEST_V1, MANIFEST_V2))  # fmt: skip
    pd.testing.assert_frame_equal(replay_audit(v1, records), v2, check_dtype=False)
    # A line whose version was never committed does not count.
    (folder / "faces.v2.csv").write_text(MANIFEST_V1, encoding="utf-8")
    assert read_audit_log(folder / "faces.audit.jsonl") == []


def test_audit_log_writes_the_reference_bytes(tmp_path: Path) -> None:
    folder = project(tmp_path).parent.parent / "data_manifests"
    append_records(
        folder / "faces.audit.jsonl",
        audit_records(),
        version=folder / "faces.v2.csv",
        version_sha256=V2_SHA,
        version_data=MANIFEST_V2.encode(),
    )
    log = (folder / "faces.audit.jsonl").read_bytes()
    assert log == (FORMATS / "faces.audit.jsonl").read_bytes()
    assert (folder / "faces.v2.csv").read_text(encoding="utf-8") == MANIFEST_V2


def test_readme_names_the_audit_fields() -> None:
    section = readme_section("Audit log (`data_manifests/NAME.audit.jsonl`)")
    # What the first paragraph names in backticks: the fields (and a command, a value).
    named = {
        word.removesuffix(" (UTC)")
        for quoted in re.findall(r"`([^`]+)`", section.split("\n\n")[1])
        for word in re.split(r",\s*", quoted)
    }
    assert set(AUDIT_FIELDS) | {"queue_row", "split", "weight", *COMMIT_FIELDS} <= named


# --- the run folder's oof.csv -------------------------------------------------------------

# oof.csv as oof merges the folds: every train row once, in manifest order (the ids are
# text: leading zeros stay); probabilities to 8 significant digits, in the classes' order.
OOF_CLASSES = ("cat", "dog", "owl")
OOF_IDS = ("s01", "007", "s03", "s04", "s05")
OOF_FOLDS = (0, 1, 2, 0, 1)
OOF_LABELS = (0, 1, 2, 1, 0)  # class index of the given label
OOF_PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.6, 0.3, 0.1],  # 007: given dog, the model says cat
        [0.05, 0.15, 0.8],
        [0.123456789, 0.54321, 0.333333211],  # written to 8 digits
        [0.0, 0.25, 0.75],  # s05: given cat, the model says owl
    ]
)
OOF_PREDS = ("cat", "cat", "owl", "dog", "owl")


def test_oof_csv_writes_the_reference_bytes(tmp_path: Path) -> None:
    table = oof_table(
        np.array(OOF_IDS, dtype=object),
        np.array(OOF_FOLDS),
        np.array(OOF_LABELS),
        OOF_PROBS,
        OOF_CLASSES,
    )
    write_table(tmp_path / "oof.csv", table)
    assert (tmp_path / "oof.csv").read_bytes() == (FORMATS / "oof.csv").read_bytes()


def test_oof_csv_reads_leniently_and_forgivingly() -> None:
    """``retrain --reweight``'s reader (every row, by id) and the review page's (a few ids)."""
    table = pd.read_csv(FORMATS / "oof.csv", dtype=str, keep_default_na=False)
    assert table["fold"].tolist() == [str(k) for k in OOF_FOLDS]
    assert table["pred"].tolist() == list(OOF_PREDS)  # the most likely class
    scores = read_scores(FORMATS / "oof.csv")
    assert scores.sample_ids.tolist() == list(OOF_IDS)
    assert scores.labels.tolist() == list(OOF_LABELS)
    np.testing.assert_allclose(scores.probs, OOF_PROBS, rtol=0, atol=1e-8)
    probs, warning = read_prob_columns(FORMATS / "oof.csv", OOF_CLASSES, {"007", "s04", "nobody"})
    assert warning is None
    assert sorted(probs) == ["007", "s04"]
    np.testing.assert_allclose(probs["007"], OOF_PROBS[1], rtol=0, atol=1e-8)
    np.testing.assert_allclose(probs["s04"], OOF_PROBS[3], rtol=0, atol=1e-8)


def test_oof_csv_reads_strictly_against_its_manifest(tmp_path: Path) -> None:
    """``flag --probs``'s reader: the manifest's train rows, their labels, the classes."""
    manifest = write_csv(
        tmp_path / "manifest.csv",
        [
            *(
                {"sample_id": sid, "path": f"images/{sid}.png", "label": OOF_CLASSES[k]}
                for sid, k in zip(OOF_IDS, OOF_LABELS, strict=True)
            ),
            {"sample_id": "t01", "path": "images/t01.png", "label": "", "split": "test"},
        ],
    )
    run = load_probs(FORMATS / "oof.csv", manifest, PipelineConfig())
    assert run.classes == OOF_CLASSES
    assert run.sample_ids.tolist() == list(OOF_IDS)  # the test row has no probabilities
    assert run.labels.tolist() == list(OOF_LABELS)
    np.testing.assert_allclose(run.pred_probs, OOF_PROBS, rtol=0, atol=1e-8)


def test_readme_names_the_oof_csv_columns() -> None:
    row = next(
        line
        for line in readme_section("Run folder (`runs/RUN/`)").splitlines()
        if line.startswith("| `oof.csv`")
    )
    assert "`sample_id, fold, label, pred, p:CLASS...`" in row
    header = (FORMATS / "oof.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == [*OOF_COLUMNS, *(f"{PROB_PREFIX}{c}" for c in OOF_CLASSES)]
