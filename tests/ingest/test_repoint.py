"""``cleaner repoint``: a manifest pointed at its moved images, as a new, logged version (#30)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import assert_says, copy_trained_digits, invoke, snapshot, write_csv, write_png
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.formats.audit import decided_in_manifest, read_audit_log, replay_audit
from cleaner.formats.manifest import read_manifest
from cleaner.formats.repoint import image_root, repoint_chain, repoint_paths
from cleaner.rounds.round import past_rounds

ROWS = [{"sample_id": f"s{i}", "path": f"images/{'ab'[i % 2]}/s{i}.png", "label": "ab"[i % 2],
         "split": "train", "weight": "1.0"} for i in range(8)]  # fmt: skip


def test_image_root_and_the_paths_under_it() -> None:
    assert image_root(["images/a/1.png", "images/b/2.png"]) == "images"
    assert image_root(["../data/x/1.jpg", "../data/x/y/2.jpg"]) == "../data/x"
    assert image_root(["1.png", "2.png"]) == "."
    assert image_root(["/mnt/a/1.png", "/mnt/b/2.png"]) == "/mnt"
    with pytest.raises(InputError, match="mixes absolute and relative"):
        image_root(["/mnt/a/1.png", "a/2.png"])
    assert repoint_paths(["images/a/1.png"], "images", "../new") == ["../new/a/1.png"]
    assert repoint_paths(["1.png"], ".", "imgs") == ["imgs/1.png"]
    assert repoint_paths(["/mnt/a/1.png"], "/mnt", "/data") == ["/data/a/1.png"]
    with pytest.raises(InputError) as e:  # every path not under --from is named, by line
        repoint_paths(["images/1.png", "other/2.png", "imagesX/3.png"], "images", "new")
    assert [(p.row, p.reason) for p in e.value.problems] == [
        (3, "other/2.png is not under images"),
        (4, "imagesX/3.png is not under images"),
    ]


def _project(root: Path) -> Path:
    for i, row in enumerate(ROWS):
        write_png(root / row["path"], value=30 * i)
    return write_csv(root / "m.csv", ROWS)


def _refused(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output + repr(result.exception)
    return " ".join(result.output.split())


def test_repoint_writes_the_next_version_and_one_log_line(tmp_path: Path) -> None:
    manifest = _project(tmp_path / "p")
    shutil.move(tmp_path / "p" / "images", tmp_path / "disk2")
    before = snapshot(tmp_path)
    # Refused, nothing written: a folder without the images, no folder, nothing to change.
    out = _refused(["repoint", str(manifest), str(tmp_path)])
    assert "8 of the 8 images are not there; nothing was written" in out
    assert f"m.csv, line 2: would be {tmp_path}/a/s0.png: not found" in out
    assert "not a folder" in _refused(["repoint", str(manifest), str(tmp_path / "none")])
    assert snapshot(tmp_path) == before
    out = invoke("repoint", str(manifest), str(tmp_path / "disk2"))
    assert_says(out, "wrote", "m.v2.csv", "8 image paths under images now under ../disk2")
    v2 = read_manifest(tmp_path / "p" / "m.v2.csv")
    assert list(v2["path"]) == [r["path"].replace("images/", "../disk2/") for r in ROWS]
    old = read_manifest(manifest)
    assert v2.drop(columns="path").equals(old.drop(columns="path"))  # only the paths moved
    (line,) = read_audit_log(tmp_path / "p" / "m.audit.jsonl")
    assert line["action"] == "repoint" and line["sample_id"] == ""
    assert (line["old_root"], line["new_root"], line["rows"]) == ("images", "../disk2", 8)
    assert line["version"] == "m.v2.csv"
    # The line replays, decides no sample, and is no round of cleaning.
    assert list(replay_audit(old, [line])["path"]) == list(v2["path"])
    assert decided_in_manifest(v2, tmp_path / "p" / "m.audit.jsonl") == set()
    assert past_rounds(manifest) == ()
    assert repoint_chain(manifest, [line]) == [manifest, tmp_path / "p" / "m.v2.csv"]
    # An older version is refused, naming the newest; the same folder again is nothing to do.
    assert_says(_refused(["repoint", str(manifest), str(tmp_path / "disk2")]), "m.v2.csv is newer")
    out = _refused(["repoint", str(tmp_path / "p" / "m.v2.csv"), str(tmp_path / "disk2")])
    assert "under ../disk2 already: nothing to do" in out


def test_a_queue_made_before_the_move_applies_after_it(tmp_path: Path) -> None:
    manifest = _project(tmp_path)
    probs = pd.DataFrame(
        {"sample_id": [r["sample_id"] for r in ROWS], "fold": 0,
         "label": [r["label"] for r in ROWS], "pred": "a", "p:a": 0.7, "p:b": 0.3}
    )  # fmt: skip
    probs.to_csv(tmp_path / "probs.csv", index=False)
    invoke("flag", "--probs", str(tmp_path / "probs.csv"), "--manifest", str(manifest),
           "--out", str(tmp_path / "q"), "--top", "4", "--force", "-q")  # fmt: skip
    queue = pd.read_csv(tmp_path / "q" / "queue.csv", dtype=str, keep_default_na=False)
    queue.loc[0, "decision"] = "drop"
    queue.to_csv(tmp_path / "q" / "queue.csv", index=False)
    shutil.move(tmp_path / "images", tmp_path / "moved")
    invoke("repoint", str(manifest), str(tmp_path / "moved"))
    assert "applied" not in invoke("status", str(tmp_path))  # a repoint applies no queue
    invoke("apply", str(tmp_path / "q" / "queue.csv"))  # onto v2: its paths, its labels
    v3 = read_manifest(tmp_path / "m.v3.csv")
    assert v3["path"].str.startswith("moved/").all()
    assert v3.set_index("sample_id").loc[queue.loc[0, "sample_id"], "split"] == "excluded"
    logged = read_audit_log(tmp_path / "m.audit.jsonl")
    assert [r["action"] for r in logged] == ["repoint", "drop"]
    # status counts the queue as applied (to the version the repoint made).
    out = invoke("status", str(tmp_path))
    assert "q/queue.csv 1/4 applied" in out


def test_a_run_of_the_version_before_still_flags(
    tmp_path_factory: pytest.TempPathFactory, trained_digits: Path
) -> None:
    project = copy_trained_digits(trained_digits, tmp_path_factory.mktemp("repoint") / "p")
    moved = project.root.parent / "disk2"
    shutil.move(project.root / "images", moved)
    out = _refused(["flag", str(project.run), "-q"])  # the hint names the command
    assert f"cleaner repoint {project.manifest} NEW_FOLDER" in out
    invoke("repoint", str(project.manifest), str(moved))
    invoke("flag", str(project.run), "--top", "20", "-q")
    meta = json.loads((project.run / "queue.json").read_text())
    assert meta["manifest"].endswith("digits.v2.csv")
