"""Weights and factors outside their documented finite range are refused at the edge.

A weight of 1e308 used to pass validation and crash training ("loss became
inf"); ``apply --unsure-factor inf`` wrote weight inf, which every later step
refused.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import TinyProject, flat, snapshot
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.manifest import MAX_WEIGHT


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output + repr(result.exception)
    return flat(result.output)


def test_a_huge_weight_is_refused_before_training(tiny_project: TinyProject) -> None:
    rows = [dict(r, weight="1") for r in tiny_project.rows]
    rows[2]["weight"] = "1e308"
    tiny_project.rewrite_manifest(rows)
    before = snapshot(tiny_project.root)
    out = _refused("oof", str(tiny_project.pipeline), "--out", str(tiny_project.root / "run"))
    assert "line4" in out and f"above{MAX_WEIGHT:g}" in out
    assert snapshot(tiny_project.root) == before


def test_a_weights_file_above_the_range_is_refused(tiny_project: TinyProject) -> None:
    weights = tiny_project.root / "w.csv"
    sid = tiny_project.rows[0]["path"]
    weights.write_text(f"sample_id,weight\n{sid},1e9\n")
    out = _refused(
        "oof", str(tiny_project.pipeline), "--out", str(tiny_project.root / "run"),
        "--set", f'data.weights="{weights.as_posix()}"',
    )  # fmt: skip
    assert "isabove" in out and str(weights).replace(" ", "") in out


def test_unsure_factor_above_one_or_infinite_is_refused(tmp_path: Path) -> None:
    queue = tmp_path / "queue.csv"
    queue.write_text("rank,sample_id\n")
    for factor in ("inf", "2"):
        out = _refused("apply", str(queue), "--unsure-factor", factor)
        assert "--unsure-factormustbeatmost1" in out
    assert "mustbepositive" in _refused("apply", str(queue), "--unsure-factor", "nan")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_write_error_is_one_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A full disk or read-only folder (injected: CI runs as root) names the path, exit 2."""
    import cleaner.atomic

    def refuse(src: str, dst: str) -> None:
        raise OSError(code, os.strerror(code), str(dst))

    # Every rename into place fails: the image folder's, then the manifest's.
    monkeypatch.setattr(cleaner.atomic.os, "replace", refuse)
    manifest, images = tmp_path / "digits.csv", tmp_path / "images"
    out = _refused("ingest", "digits", str(images), "--manifest", str(manifest))
    assert f"error:{images}:{os.strerror(code)}".replace(" ", "") in out
    assert not manifest.exists() and not images.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_ids_that_differ_only_by_spaces_are_refused_at_oof_and_ingest(
    tiny_project: TinyProject,
) -> None:
    rows = [dict(r, sample_id=f"id{i}") for i, r in enumerate(tiny_project.rows)]
    rows[3]["sample_id"] = "id0 "
    tiny_project.rewrite_manifest(rows)
    out = _refused("oof", str(tiny_project.pipeline), "--out", str(tiny_project.root / "run"))
    assert "line5" in out and "'id0'(line2)onlybyspaces" in out
    table = tiny_project.root / "table.csv"
    tiny_project.manifest.rename(table)
    out = _refused(
        "ingest", "csv", str(table), "--path-col", "path", "--label-col", "label",
        "--id-col", "sample_id", "--manifest", str(tiny_project.root / "m.csv"),
    )  # fmt: skip
    assert "onlybyspaces" in out and not (tiny_project.root / "m.csv").exists()
