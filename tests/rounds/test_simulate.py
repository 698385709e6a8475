"""The simulated annotator: answers from other columns until one class leads, from a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cleaner.rounds.select import label_counts
from cleaner.rounds.simulate import SimulatedAnnotator

CLASSES = ["cat", "dog", "frog"]
# The row's first label (annotator_1) and the columns answers come from, as CIFAR-10N.
TABLE = pd.DataFrame(
    {
        "annotator_1": ["cat", "cat", "cat", "cat", "dog"],
        "annotator_2": ["cat", "dog", "dog", "dog", ""],
        "annotator_3": ["dog", "dog", "frog", "cat", "cat"],
        "cifar_label": ["cat", "cat", "cat", "cat", "cat"],
    }
)
ANSWERS = ["annotator_2", "annotator_3", "cifar_label"]


def first_labels() -> np.ndarray:
    """(N, K) counts of annotator_1's labels."""
    codes = TABLE["annotator_1"].map(CLASSES.index).to_numpy()
    return label_counts(codes[:, None], len(CLASSES))


def test_one_ask_draws_columns_until_one_class_leads() -> None:
    sim = SimulatedAnnotator.from_columns(TABLE, ANSWERS, classes=CLASSES)
    answers = sim.ask(range(5), label_counts=first_labels(), taken=np.zeros(5, int))
    got = [(a.row, a.annotator, CLASSES[a.label]) for a in answers]
    assert got == [
        (0, "annotator_2", "cat"),  # cat 2 : 0, settled
        (1, "annotator_2", "dog"),  # cat 1 : dog 1, a tie: ask on
        (1, "annotator_3", "dog"),  # dog leads
        (2, "annotator_2", "dog"),
        (2, "annotator_3", "frog"),  # one each: ask on
        (2, "cifar_label", "cat"),  # cat leads
        (3, "annotator_2", "dog"),
        (3, "annotator_3", "cat"),  # cat leads 2 : 1
        (4, "annotator_3", "cat"),  # annotator_2 gave no label here: skipped
        (4, "cifar_label", "cat"),
    ]


def test_the_next_ask_goes_on_from_the_answers_already_taken() -> None:
    sim = SimulatedAnnotator.from_columns(TABLE, ANSWERS, classes=CLASSES, until_lead=False)
    labels = np.column_stack(
        [TABLE[c].map(lambda x: CLASSES.index(x) if x else np.nan) for c in TABLE.columns]
    ).astype(float)
    # Row 1 already has annotator_1 and annotator_2 on file: one answer was taken.
    have = labels.copy()
    have[:, 2:] = np.nan
    taken = sim.taken(have, list(TABLE.columns))
    np.testing.assert_array_equal(taken, [1, 1, 1, 1, 0])
    counts = label_counts(have, len(CLASSES))
    answers = sim.ask([1, 4], label_counts=counts, taken=taken)
    assert [(a.row, a.annotator) for a in answers] == [(1, "annotator_3"), (4, "annotator_3")]
    np.testing.assert_array_equal(sim.remaining(taken), [2, 2, 2, 2, 2])
    # Columns run out: no answer, no error.
    assert sim.ask([0], label_counts=counts, taken=np.full(5, 3)) == []


def test_it_says_it_is_a_simulation() -> None:
    sim = SimulatedAnnotator.from_columns(TABLE, ANSWERS, classes=CLASSES)
    assert sim.name == "simulated from annotator_2, annotator_3, cifar_label"
    assert sim.source == sim.name
    noisy = SimulatedAnnotator.from_columns(
        TABLE, ["cifar_label"], classes=CLASSES, error_rate=0.1, seed=7
    )
    assert noisy.name == "simulated from cifar_label (10% of answers flipped, seed 7)"


def test_the_same_seed_gives_the_same_answers() -> None:
    rng = np.random.default_rng(0)
    n = 400
    table = {f"a{j}": rng.integers(0, 5, n) for j in range(4)}

    def answers(seed: int) -> list[tuple[int, str, int]]:
        sim = SimulatedAnnotator.from_columns(
            table, list(table), seed=seed, shuffle=True, error_rate=0.2
        )
        counts = np.zeros((n, 5), dtype=int)
        return [
            (a.row, a.annotator, a.label)
            for a in sim.ask(range(n), label_counts=counts, taken=np.zeros(n, int))
        ]

    assert answers(3) == answers(3)
    assert answers(3) != answers(4)


def test_a_truth_column_with_flips_answers_once_per_ask() -> None:
    truth = np.arange(1000) % 4
    sim = SimulatedAnnotator.from_columns(
        {"truth": truth}, ["truth"], seed=0, error_rate=0.25, until_lead=False
    )
    answers = sim.ask(range(1000), label_counts=np.zeros((1000, 4), int), taken=np.zeros(1000, int))
    assert len(answers) == 1000
    flipped = np.mean([a.label != truth[a.row] for a in answers])
    assert flipped == pytest.approx(0.25, abs=0.05)


def test_labels_not_among_the_classes_are_refused() -> None:
    with pytest.raises(ValueError, match="not among the classes"):
        SimulatedAnnotator.from_columns(
            pd.DataFrame({"x": ["cat", "horse"]}), ["x"], classes=CLASSES
        )
