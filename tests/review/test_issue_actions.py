"""Each queue issue kind takes only the decisions that fit it (``cleaner.formats.issue_kinds``).

``parse_decisions`` is the one check: ``cleaner apply`` and ``cleaner review``
both go through it (their end-to-end tests are in test_apply.py and
test_review_server.py); here it is called on small tables made in the test.
"""

from __future__ import annotations

import pytest
from test_apply import decisions_frame, manifest_frame

from cleaner.core.errors import InputError
from cleaner.formats.issue_kinds import actions_text, allowed_decisions, has_suggestion, refusal
from cleaner.review.apply import parse_decisions

CLASSES = ("a", "b")
MANIFEST = manifest_frame(("s1", "a", "train"), ("t1", "", "test"))


def parse(issue: str, decision: str, new_label: str = "", suggested: str = "b") -> list:
    """One queue row about s1 (an older queue's suggested_label filled in), parsed."""
    table = decisions_frame(
        {
            "sample_id": "s1",
            "decision": decision,
            "new_label": new_label,
            # Filled as older queues filled it, even where the kind has no suggestion.
            "suggested_label": suggested,
            "label_quality": "0.1",
            "issue": issue,
        }
    )
    decisions, _ = parse_decisions(table, file="q.csv", classes=CLASSES, manifest=MANIFEST)
    return decisions


@pytest.mark.parametrize("issue", ["outlier", "near_duplicate", "leakage", " Outlier "])
def test_a_kind_without_a_suggestion_has_none_to_accept(issue: str) -> None:
    with pytest.raises(InputError) as e:
        parse(issue, "relabel")
    (problem,) = e.value.problems
    assert problem.row == 2
    if issue.strip().lower() == "leakage":
        assert problem.reason == "a leakage row is kept or dropped, not relabel"
    else:
        article = "an" if issue.strip().lower() == "outlier" else "a"
        assert problem.reason == (
            f"{article} {issue.strip()} row has no suggested label: write the class in new_label"
        )


@pytest.mark.parametrize("decision", ["relabel", "unsure", "UNSURE "])
def test_a_leakage_row_is_only_kept_or_dropped(decision: str) -> None:
    with pytest.raises(InputError, match=r"line 2: a leakage row is kept or dropped, not "):
        parse("leakage", decision, new_label="b")


@pytest.mark.parametrize(
    ("issue", "decision", "new_label", "expected"),
    [
        ("outlier", "relabel", "b", ("relabel", "b")),  # the class written out
        ("near_duplicate", "unsure", "", ("unsure", "")),
        ("leakage", "keep", "", ("keep", "")),
        ("leakage", "drop", "", ("drop", "")),
        ("label", "relabel", "", ("relabel", "b")),  # blank: the suggestion
        ("group_inconsistent", "relabel", "", ("relabel", "b")),
        ("", "relabel", "", ("relabel", "b")),  # no issue column value: every decision
    ],
)
def test_decisions_that_fit_are_taken(
    issue: str, decision: str, new_label: str, expected: tuple[str, str]
) -> None:
    (d,) = parse(issue, decision, new_label)
    assert (d.action, d.new_label) == expected


def test_a_table_without_an_issue_column_takes_every_decision() -> None:
    table = decisions_frame({"sample_id": "s1", "decision": "relabel", "suggested_label": "b"})
    assert "issue" not in table.columns
    (d,) = parse_decisions(table, file="q.csv", classes=CLASSES, manifest=MANIFEST)[0]
    assert d.new_label == "b"


def test_the_table_and_its_words() -> None:
    assert allowed_decisions("leakage") == ("keep", "drop")
    assert not has_suggestion("near_duplicate") and has_suggestion("gender")
    assert (
        actions_text("outlier") == "keep \u00b7 drop \u00b7 unsure \u00b7 relabel (name the class)"
    )
    assert actions_text("leakage") == "keep \u00b7 drop"
    assert actions_text("label").endswith("relabel (suggested or any class)")
    assert refusal("outlier", "relabel", " b ") is None
    assert refusal("label", "relabel", "") is None
