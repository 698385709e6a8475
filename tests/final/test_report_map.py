"""The retrain report shows the oof run's map of the data (``flag``'s map.png) beside it.

No model is trained: ``write_figures`` and ``render_report`` get a record by hand.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cleaner.final.report import render_report, write_figures
from cleaner.formats.metrics_file import RetrainMetrics


def metrics() -> RetrainMetrics:
    return RetrainMetrics(
        manifest="m.csv",
        manifest_sha256="0" * 64,
        mode="full",
        reweight="none",
        weight_rule="1 each",
        tta=False,
        train_rows=10,
        test_rows=0,
        classes=["a", "b"],
    )


def test_the_oof_runs_map_is_copied_beside_the_report(tmp_path: Path) -> None:
    oof, final = tmp_path / "oof", tmp_path / "final"
    oof.mkdir()
    final.mkdir()
    png = b"\x89PNG\r\n\x1a\n a map"
    (oof / "map.png").write_bytes(png)  # flag wrote its queue into the oof run
    record = metrics()
    record = dataclasses.replace(record, figures=write_figures(record, final, oof))
    assert record.figures == ["map.png"]
    assert (final / "map.png").read_bytes() == png
    assert "![map](map.png)" in render_report(record, final)


def test_no_map_without_one(tmp_path: Path) -> None:
    (tmp_path / "final").mkdir()
    assert write_figures(metrics(), tmp_path / "final", tmp_path / "oof") == []
    assert write_figures(metrics(), tmp_path / "final", None) == []
