"""A reviewer's answer in a manifest with several labels per row: one more annotation."""

from __future__ import annotations

import pandas as pd

from cleaner.formats.audit import replay_audit
from cleaner.review.answers import consensus
from cleaner.review.apply import Decision, apply_decisions

CONTEXT = {"reviewer": "kim", "time": "2026-12-05T07:00:00+00:00", "run": "", "manifest_sha256": ""}


def _manifest(annotated: bool) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "sample_id": ["r1", "r2", "r3"],
            "path": ["1.png", "2.png", "3.png"],
            "label": ["cat", "cat", "dog"],
            "group": "",
            "weight": "1",
            "split": "train",
        }
    )
    if annotated:
        df["annotator:a"] = ["cat", "cat", "dog"]
        df["annotator:b"] = ["dog", "cat", ""]
    return df


DECISIONS = {
    0: Decision(2, "r1", "relabel", "dog", 0.1),
    1: Decision(3, "r2", "relabel", "dog", 0.2),
    2: Decision(4, "r3", "keep", "", 0.9),
}


def test_the_consensus_is_the_majority_and_a_tie_goes_to_the_answer() -> None:
    assert consensus(["cat", "dog"], "dog") == "dog"
    assert consensus(["cat", "cat"], "dog") == "cat"
    assert consensus(["cat", ""], "dog") == "dog"  # 1:1, the newest answer
    assert consensus([], "dog") == "dog"


def test_an_answer_is_one_more_annotation_and_the_label_their_consensus() -> None:
    new, records = apply_decisions(_manifest(True), DECISIONS, context=CONTEXT)
    assert new["annotator:kim"].tolist() == ["dog", "dog", "dog"]
    # r1: cat, dog + kim's dog -> dog; r2: cat, cat + dog -> cat; r3: dog + kept dog -> dog
    assert new["label"].tolist() == ["dog", "cat", "dog"]
    assert [r["new_label"] for r in records] == ["dog", "cat", "dog"]
    assert [r["columns"] for r in records] == [{"annotator:kim": "dog"}] * 3
    replayed = replay_audit(_manifest(True), records)
    pd.testing.assert_frame_equal(replayed, new)


def test_without_annotator_columns_a_decision_sets_the_label_as_always() -> None:
    new, records = apply_decisions(_manifest(False), DECISIONS, context=CONTEXT)
    assert new["label"].tolist() == ["dog", "dog", "dog"]
    assert "annotator:kim" not in new.columns and all("columns" not in r for r in records)
