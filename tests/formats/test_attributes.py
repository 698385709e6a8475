"""Composite labels: attribute tables, summed probabilities, one-attribute changes."""

from __future__ import annotations

import numpy as np
import pytest

from cleaner.formats.attributes import AttributeTable, attribute_table, just_under_edge

# 4 classes = colour (red, blue) x size (big, small): class = colour * 2 + size
LABELS = np.array([0, 1, 2, 3, 0, 3])
COLOUR = ["red", "red", "blue", "blue", "red", "blue"]
SIZE = ["big", "small", "big", "small", "big", "small"]


def table() -> AttributeTable:
    return attribute_table(LABELS, {"colour": COLOUR, "size": SIZE}, 4)


def test_table_learns_each_class_values() -> None:
    t = table()
    assert t.names == ("colour", "size")
    assert t.values == (("blue", "red"), ("big", "small"))
    assert t.codes.tolist() == [[1, 0], [1, 1], [0, 0], [0, 1]]
    assert t.labels(np.array([0, 3]), 0).tolist() == [1, 0]


def test_attribute_probabilities_sum_over_the_other_attributes() -> None:
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(table().probs(probs, 0), [[0.7, 0.3], [0.2, 0.8]])
    np.testing.assert_allclose(table().probs(probs, 1), [[0.4, 0.6], [0.8, 0.2]])


def test_change_one_attribute_keeps_the_others() -> None:
    t = table()
    # red-big (0) -> blue (value 0 of colour) keeps big: class 2; blue-small (3) -> big: class 2
    assert t.change(np.array([0, 3]), 0, np.array([0, 0])).tolist() == [2, 3]
    assert t.change(np.array([3]), 1, np.array([0])).tolist() == [2]


def test_missing_class_cannot_be_reached() -> None:
    t = attribute_table(
        np.array([0, 1, 2]), {"colour": ["red", "red", "blue"], "size": ["big", "small", "big"]}, 4
    )
    assert t.codes[3].tolist() == [-1, -1]
    assert t.change(np.array([1]), 0, np.array([0])).tolist() == [-1]  # blue-small never seen


def test_specs_and_json_round_trip() -> None:
    t = table()
    assert t.parse_spec("size=small") == (1, 1)
    assert t.parse_spec(" colour = red ") == (0, 1)
    assert t.parse_spec("size=huge") is None and t.parse_spec("3") is None
    back = AttributeTable.from_json(t.to_json())
    assert back.names == t.names and back.values == t.values
    assert np.array_equal(back.codes, t.codes)


def test_a_column_that_is_not_an_attribute_of_the_class() -> None:
    with pytest.raises(ValueError, match="class 0 carries several values of 'colour'"):
        attribute_table(np.array([0, 0]), {"colour": ["red", "blue"]}, 2)


def test_attribute_relabel_changes_one_attribute_and_its_column_and_replays() -> None:
    import pandas as pd

    from cleaner.review.apply import Decision, apply_decisions, replay_audit

    manifest = pd.DataFrame(
        {
            "sample_id": ["a", "b", "c"],
            "path": ["a.png", "b.png", "c.png"],
            "label": ["0", "1", "3"],
            "split": ["train"] * 3,
            "weight": ["1.0"] * 3,
            "colour": ["red", "red", "blue"],
            "size": ["big", "small", "small"],
        }
    )
    t = attribute_table(
        np.array([0, 1, 3, 2]),
        {"colour": ["red", "red", "blue", "blue"], "size": ["big", "small", "small", "big"]},
        4,
    )
    decided = {
        0: Decision(2, "group:g", "relabel", "colour=blue"),
        1: Decision(2, "group:g", "relabel", "colour=blue"),
    }
    new, records = apply_decisions(manifest, decided, classes=("0", "1", "2", "3"), attributes=t)
    assert new["label"].tolist() == ["2", "3", "3"]  # each keeps its own size
    assert new["colour"].tolist() == ["blue", "blue", "blue"]
    assert new["size"].tolist() == manifest["size"].tolist()
    assert records[0]["columns"] == {"colour": "blue"}
    pd.testing.assert_frame_equal(replay_audit(manifest, records), new)


def test_just_under_an_edge_and_suggested_into_the_next_band() -> None:
    ages = np.array([57, 58, 59, 56, 60, 29, 27, 26, 58, 45])
    suggested = np.array([2, 2, 2, 2, 2, 1, 1, 1, 0, 2])
    got = just_under_edge(ages, suggested, edges=(30, 60), margin=3)
    # 57-59 -> band 2 and 27-29 -> band 1 are boundary cases; 56, 26 are too far;
    # 60 is already band 2; 58 -> band 0 is a real disagreement; 45 -> 2 too.
    assert got.tolist() == [True, True, True, False, False, True, True, False, False, False]
