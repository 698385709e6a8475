"""Did cleaning help, measured on the audit slice (``flag --audit``), without a test split.

Hand-made records and runs for the figures; then the digits loop end to end: flag with
an audit slice, a simulated review, apply, and ``retrain --mode folds``'s report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import assert_says, copy_trained_digits, invoke
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.demo import simulate_review
from cleaner.final.audit_scores import audit_rows, audit_scores, measure_plan
from cleaner.formats.audit import read_audit_log

CLASSES = ("a", "b")


def _record(sid: str, old: str, new: str, action: str, **more: Any) -> dict[str, Any]:
    return {"sample_id": sid, "old_label": old, "new_label": new, "action": action, **more}


def _manifest(labels: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": list(labels), "label": list(labels.values())})


def test_audit_rows_are_the_marked_decisions_still_in_effect() -> None:
    records = [
        _record("s1", "a", "a", "keep", audit="added", run="r"),
        _record("s2", "a", "b", "relabel", audit="ranked", run="r"),
        _record("s3", "a", "b", "relabel"),  # a ranked row, not drawn: not audit
        _record("s4", "b", "b", "drop", audit="added", run="r"),
        _record("s5", "a", "a", "keep", audit="added", run="r"),  # relabelled by hand since
        _record("s6", "b", "b", "unsure", audit="ranked", run="r"),
    ]
    rows = audit_rows(records, _manifest({"s1": "a", "s2": "b", "s3": "b", "s4": "b",
                                          "s5": "b", "s6": "b"}))  # fmt: skip
    assert list(rows["sample_id"]) == ["s1", "s2", "s4", "s6"]
    assert list(rows["truth"]) == ["a", "b", "", ""]  # drop and unsure name no class
    assert list(rows["audit"]) == ["added", "ranked", "added", "ranked"]


def _run(path: Path, ids: list[str], predicted: list[str]) -> Path:
    """An oof run folder holding only oof.csv, predicting ``predicted`` for ``ids``."""
    path.mkdir(parents=True)
    probs = np.array([[0.9, 0.1] if p == "a" else [0.2, 0.8] for p in predicted])
    table = pd.DataFrame({"sample_id": ids, "fold": 0, "label": predicted, "pred": predicted})
    for k, c in enumerate(CLASSES):
        table[f"p:{c}"] = probs[:, k]
    table.to_csv(path / "oof.csv", index=False)
    return path


def test_the_figures_by_hand(tmp_path: Path) -> None:
    # 10 rows drawn: 4 labels wrong (2 fixed by the queue, ranked; 2 left, added).
    truth = ["a"] * 5 + ["b"] * 5
    old = ["a", "a", "a", "b", "b", "b", "b", "b", "a", "a"]  # wrong: rows 3, 4, 8, 9
    audit = ["added"] * 3 + ["ranked", "ranked"] + ["added"] * 5
    ids = [f"s{i}" for i in range(10)]
    records = [
        _record(s, o, t, "keep" if o == t else "relabel", audit=a, run="before")
        for s, o, t, a in zip(ids, old, truth, audit, strict=True)
    ]
    rows = audit_rows(records, _manifest(dict(zip(ids, truth, strict=True))))
    # before: right on 8 of 10; after cleaning (folds): right on 9 of 10
    _run(tmp_path / "before", ids, [*truth[:8], "a", "a"])
    cv = _run(tmp_path / "cv", ids, [*truth[:9], "a"])
    got = audit_scores(rows, CLASSES, project=tmp_path, cv_run=cv)
    assert got is not None
    assert (got.rows, got.left_out, got.ranked, got.model_rows) == (10, 0, 2, 10)
    assert got.labels_before == pytest.approx(0.6)  # 6 of 10 labels were right
    assert got.labels_after == pytest.approx(0.8)  # the queue fixed the 2 ranked ones
    assert got.labels_gain_ci[0] >= 0  # cleaning only fixed labels here: never a loss
    assert got.model_before == pytest.approx(0.8) and got.model_after == pytest.approx(0.9)
    assert got.model_gain_ci is not None and got.model_gain_ci[0] <= 0.1 <= got.model_gain_ci[1]
    assert got.before_runs == [str(tmp_path / "before")]
    # Without --mode folds: the model before only.
    alone = audit_scores(rows, CLASSES, project=tmp_path)
    assert alone is not None and alone.model_after is None and alone.model_gain_ci is None
    assert alone.model_before == pytest.approx(0.8)
    # The run that flagged them is gone: no model figure, the labels' still.
    gone = audit_scores(rows.assign(run="nowhere"), CLASSES, project=tmp_path, cv_run=cv)
    assert gone is not None and gone.model_before is None and gone.model_rows == 0
    assert gone.labels_before == pytest.approx(0.6)
    # Nothing that names a class: nothing to measure.
    assert audit_scores(rows.assign(truth=""), CLASSES, project=tmp_path) is None


def test_retrain_says_up_front_what_it_can_measure() -> None:
    none = measure_plan(pd.DataFrame(), mode="full", test_rows=0, test_truth=False,
                        baselines=True)  # fmt: skip
    assert_says("\n".join(none), "no audit rows decided", "--audit 100", "test rows: none")
    rows = pd.DataFrame({"truth": ["a", "b", ""]})
    full = measure_plan(rows, mode="full", test_rows=30, test_truth=True, baselines=True)
    assert_says("\n".join(full), "2 audit rows", "needs `--mode folds`",
                "30 with true_label")  # fmt: skip
    folds = measure_plan(rows, mode="folds", test_rows=30, test_truth=False, baselines=True)
    assert_says("\n".join(folds), "before and after, out of fold", "none with true_label")


@pytest.mark.slow
def test_the_loop_answers_did_cleaning_help(
    tmp_path_factory: pytest.TempPathFactory, trained_digits: Path
) -> None:
    project = copy_trained_digits(trained_digits, tmp_path_factory.mktemp("audit") / "p")
    run, manifest = project.run, project.manifest
    refused = CliRunner().invoke(app, ["flag", str(run), "--audit", "-1", "--quiet"])
    assert refused.exit_code == 2 and not (run / "queue.csv").exists()
    assert_says(refused.output, "--audit must be 0 or more")
    out = invoke("flag", str(run), "--audit", "60", "--top", "100", "--quiet")
    assert_says(out, "audit slice: 60 train rows drawn at random")
    meta = json.loads((run / "queue.json").read_text())
    added, ranked = meta["audit"]["added"], meta["audit"]["ranked"]
    assert len(added) + len(ranked) == 60 and not set(added) & set(ranked)
    queue = pd.read_csv(run / "queue.csv", dtype=str, keep_default_na=False)
    rows = queue[queue["issue"] == "audit"]
    assert set(rows["sample_id"]) == set(added) and set(ranked) <= set(queue["sample_id"])
    assert (rows["suggested_label"] == "").all()  # the reviewer names the class unprompted
    assert rows.index.min() < len(queue) / 2  # spread through the queue, not appended
    simulate_review(run / "queue.csv", manifest)  # a stand-in reviewer: the true labels
    invoke("apply", str(run / "queue.csv"), "--reviewer", "t")
    marked = {
        r["sample_id"]: r.get("audit") for r in read_audit_log(project.root / "digits.audit.jsonl")
    }
    assert {s for s, a in marked.items() if a == "added"} == set(added)
    assert {s for s, a in marked.items() if a == "ranked"} == set(ranked)
    final = project.root / "final"
    v2 = str(project.root / "digits.v2.csv")
    out = invoke("retrain", str(project.pipeline), "--manifest", v2, "--mode", "folds",
                 "--no-baselines", "--out", str(final), "--quiet")  # fmt: skip
    assert_says(out, "did cleaning help: 60 rows drawn at random")
    audit = json.loads((final / "metrics.json").read_text())["audit"]
    truth = pd.read_csv(manifest, dtype=str).set_index("sample_id")
    drawn = truth.loc[added + ranked]
    assert audit["rows"] == 60 and audit["labels_before"] == pytest.approx(
        (drawn["label"] == drawn["true_label"]).mean()
    )
    # Every wrong label the queue held was fixed; an added row kept its label but for the audit.
    fixed = drawn.loc[ranked]
    assert audit["labels_after"] == pytest.approx(
        ((drawn["label"] == drawn["true_label"]) | drawn.index.isin(fixed.index)).mean()
    )
    assert audit["model_before"] is not None and audit["model_after"] is not None
    report = (final / "report.md").read_text()
    assert_says(report, "## Did cleaning help? Rows drawn at random", "| labels right |",
                "model accuracy against the reviewer, out of fold (60 rows)")  # fmt: skip
