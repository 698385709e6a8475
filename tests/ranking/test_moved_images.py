"""Images that moved: the commands that show them say which are missing, before writing (#30)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
from helpers import invoke, snapshot, write_csv, write_png
from typer.testing import CliRunner

from cleaner.cli import app

ROWS = [{"sample_id": f"s{i}", "path": f"images/s{i}.png", "label": "ab"[i % 2]} for i in range(8)]


def _project(root: Path) -> tuple[Path, Path]:
    for i, row in enumerate(ROWS):
        write_png(root / row["path"], value=30 * i)
    manifest = write_csv(root / "m.csv", ROWS)
    probs = pd.DataFrame(
        {"sample_id": [r["sample_id"] for r in ROWS], "fold": 0,
         "label": [r["label"] for r in ROWS], "pred": "a", "p:a": 0.7, "p:b": 0.3}
    )  # fmt: skip
    probs.to_csv(root / "probs.csv", index=False)
    return manifest, root / "probs.csv"


def _flag(manifest: Path, probs: Path, out: Path) -> list[str]:
    return ["flag", "--probs", str(probs), "--manifest", str(manifest), "--out", str(out),
            "--top", "4", "--force", "-q"]  # fmt: skip


def _refused(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output + repr(result.exception)
    return " ".join(result.output.split())


def test_flag_and_review_name_the_images_that_moved(tmp_path: Path) -> None:
    manifest, probs = _project(tmp_path)
    invoke(*_flag(manifest, probs, tmp_path / "q"))
    shutil.move(tmp_path / "images", tmp_path / "elsewhere")
    before = snapshot(tmp_path)
    for args in (
        _flag(manifest, probs, tmp_path / "q2"),
        ["review", str(tmp_path / "q" / "queue.csv"), "--port", "0", "--no-browser"],
    ):
        out = _refused(args)
        assert "8 of its 8 images are not where it says" in out, out
        assert "did the images or the manifest move?" in out
        assert "m.csv, line 2: image not found" in out
    assert snapshot(tmp_path) == before  # nothing written


def test_one_missing_image_is_named_alone(tmp_path: Path) -> None:
    manifest, probs = _project(tmp_path)
    (tmp_path / "images" / "s3.png").unlink()
    out = _refused(_flag(manifest, probs, tmp_path / "q"))
    assert "1 of its 8 images" in out and "line 5: image not found" in out
    assert "line 2:" not in out and not (tmp_path / "q").exists()
