"""Bulk decisions in ``cleaner review``: several rows as one step, all or none, one undo.

The project is ``test_review_server``'s (five queue rows: ``s1`` and ``s6`` label rows
whose suggestion the model gives 0.70 and 0.81, a markup id whose suggestion it gives
0.18, group ``g2`` and the outlier ``s4``); its fixtures and helpers are imported, not
copied. The HTTP tests post to ``/api/decide_many`` and read the CSV back after every
step; the browser test drives the page's filter, threshold, cards and keys in Chromium.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_review_server as review_tests
from helpers import Project
from test_review_server import read_rows, request, settle

from cleaner.review.review_queue import ReviewQueue, RowsRefused
from cleaner.review.server import ReviewServer

# test_review_server's fixtures, found by pytest under these names: its project (five
# queue rows), a review server on it, and a page in Debian's Chromium.
project = review_tests.project
server = review_tests.server
browser_page = review_tests.browser_page


def cells(path: Path) -> list[tuple[str, str]]:
    """Every row's (decision, new_label) as the file on disk holds them."""
    header, rows = read_rows(path)
    d, n = header.index("decision"), header.index("new_label")
    return [(r[d], r[n]) for r in rows]


def decide_many(srv: ReviewServer, items: list[dict[str, Any]]) -> tuple[int, dict]:
    status, _, data = request(srv, "POST", "/api/decide_many", {"decisions": items})
    return status, json.loads(data)


def count_writes(q: ReviewQueue) -> list[int]:
    """Count the queue's writes of its CSV from now on (one entry per write)."""
    writes: list[int] = []
    write: Callable[[], None] = q._write

    def counted() -> None:
        write()
        writes.append(1)

    q._write = counted  # type: ignore[method-assign]
    return writes


BLANK = [("", "")] * 5


def test_a_bulk_decision_is_one_write_and_one_undo(server: ReviewServer, project: Project) -> None:
    original = project.queue.read_bytes()
    writes = count_writes(server.queue)
    request(server, "POST", "/api/decide", {"row": 1, "decision": "keep"})
    assert len(writes) == 1
    status, result = decide_many(
        server,
        [
            {"row": 0, "decision": "relabel", "new_label": None},  # blank: the suggestion
            {"row": 2, "decision": "drop"},
            {"row": 3, "decision": "unsure", "new_label": "ignored unless relabel"},
            {"row": 4, "decision": "relabel", "new_label": "owl"},
        ],
    )
    assert status == 200, result
    assert len(writes) == 2  # the four rows: one write
    after = [("relabel", "cat"), ("keep", ""), ("drop", ""), ("unsure", ""), ("relabel", "owl")]
    assert cells(project.queue) == after
    assert [r["i"] for r in result["rows"]] == [0, 2, 3, 4]
    assert result["row"]["i"] == 0 and result["reviewed"] == 5

    status, _, data = request(server, "POST", "/api/undo", {})
    assert status == 200
    undone = json.loads(data)
    assert [r["i"] for r in undone["rows"]] == [0, 2, 3, 4]
    assert all(r["decision"] == "" for r in undone["rows"])
    assert len(writes) == 3  # the undo of four rows: one write too
    assert cells(project.queue) == [("", ""), ("keep", ""), *BLANK[2:]]  # the keep stays
    request(server, "POST", "/api/undo", {})
    assert project.queue.read_bytes() == original  # byte for byte


def test_one_refused_row_writes_nothing_and_names_each(
    server: ReviewServer, project: Project
) -> None:
    before = project.queue.read_bytes()
    writes = count_writes(server.queue)
    status, result = decide_many(
        server,
        [
            {"row": 0, "decision": "relabel", "new_label": ""},  # fine alone
            {"row": 3, "decision": "relabel", "new_label": ""},  # an outlier: no suggestion
            {"row": 4, "decision": "relabel", "new_label": "fish"},  # not a class
            {"row": 99, "decision": "drop"},
        ],
    )
    assert status == 400
    assert [i for i, _ in result["refused"]] == [3, 4, 99]
    message = result["error"]
    assert message.startswith("nothing was written: 3 of 4 rows refused")
    assert "row 3: #4 's4': an outlier row has no suggested label" in message
    assert "row 4: #5 's6': new_label 'fish' is not a class" in message
    assert "row 99: no such queue row" in message
    assert writes == [] and project.queue.read_bytes() == before
    assert [server.queue.decision(i) for i in range(5)] == BLANK  # in memory too
    status, _, _ = request(server, "POST", "/api/undo", {})
    assert status == 409  # the refused step left nothing to undo


def test_rows_already_so_decided_are_no_step(server: ReviewServer, project: Project) -> None:
    assert decide_many(server, [{"row": 2, "decision": "drop"}])[0] == 200
    writes = count_writes(server.queue)
    status, _ = decide_many(server, [{"row": 2, "decision": "DROP "}])  # as apply reads it
    assert status == 200 and writes == []
    # Only the changed row joins the step: undo restores row 4, and row 2 stays dropped.
    decide_many(server, [{"row": 2, "decision": "drop"}, {"row": 4, "decision": "keep"}])
    request(server, "POST", "/api/undo", {})
    assert cells(project.queue) == [("", ""), ("", ""), ("drop", ""), ("", ""), ("", "")]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"decisions": []}, "no rows to decide"),
        ({"decisions": {"row": 1}}, "a list of objects"),
        ({"decisions": [1, 2]}, "a list of objects"),
        ({"decisions": [{"row": "1", "decision": "keep"}]}, "row must be an integer"),
        ({"decisions": [{"row": 1, "decision": 3}]}, "must be strings"),
        (
            {"decisions": [{"row": 1, "decision": "keep"}, {"row": 1, "decision": "drop"}]},
            "rows named twice: 1",
        ),
    ],
)
def test_malformed_bulk_requests_change_nothing(
    server: ReviewServer, project: Project, body: dict, says: str
) -> None:
    before = project.queue.read_bytes()
    status, _, data = request(server, "POST", "/api/decide_many", body)
    assert status == 400 and says in json.loads(data)["error"]
    assert project.queue.read_bytes() == before


def test_a_file_changed_since_is_not_written_over(server: ReviewServer, project: Project) -> None:
    project.queue.write_bytes(project.queue.read_bytes() + b"\n")  # a spreadsheet saved it
    changed = project.queue.read_bytes()
    status, result = decide_many(server, [{"row": 0, "decision": "keep"}])
    assert status == 409 and "changed by another program" in result["error"]
    assert project.queue.read_bytes() == changed
    assert server.queue.decision(0) == ("", "")


def test_the_api_method_refuses_alike(project: Project) -> None:
    q = ReviewQueue(project.queue)
    with pytest.raises(RowsRefused) as refused:
        q.decide_many([(0, "keep", ""), (3, "relabel", "")])
    assert refused.value.refused == [
        (3, "#4 's4': an outlier row has no suggested label: write the class in new_label")
    ]
    assert cells(project.queue) == BLANK


def test_rows_carry_the_models_probability_of_their_suggestion(project: Project) -> None:
    rows = ReviewQueue(project.queue).snapshot()["rows"]
    assert [r["suggested_p"] for r in rows] == [0.7, 0.1779, 0.15683, None, 0.81261]


@pytest.mark.slow
def test_bulk_actions_in_chromium(
    browser_page: Any, server: ReviewServer, project: Project
) -> None:
    page = browser_page
    page.goto(server.url)
    settle(page)
    original = project.queue.read_bytes()

    # Accept the suggestions of the label rows the model gives at least 75%, then 50%:
    # the button says how many rows it will change before it is pressed.
    page.select_option("#f-issue", "label")
    assert page.inner_text("#f-count") == "3 of 5 rows"
    page.fill("#bulk-p", "75")
    assert page.inner_text("#bulk-accept") == "accept 1 row"  # s6 (0.81)
    page.fill("#bulk-p", "50")
    assert page.inner_text("#bulk-accept") == "accept 2 rows"  # and s1 (0.70)
    page.click("#bulk-accept")
    settle(page)
    accepted = [("relabel", "cat"), ("", ""), ("", ""), ("", ""), ("relabel", "dog")]
    assert cells(project.queue) == accepted
    assert page.inner_text("#bulk-accept") == "accept 0 rows"
    assert page.locator("#bulk-accept").is_disabled()

    # Every row, as cards: ctrl-click one, shift-click another, and the rows between.
    page.select_option("#f-issue", "")
    page.keyboard.press("g")
    cards = page.locator("#cards .card")
    assert cards.count() == 5
    cards.nth(1).click(modifiers=["Control"])
    cards.nth(3).click(modifiers=["Shift"])
    assert page.inner_text("#sel-count") == "3"
    assert page.locator("#cards .card.sel").count() == 3
    page.keyboard.press("Shift+R")  # the outlier s4 has no suggestion: nothing changes
    settle(page)
    assert "#4 has no suggestion" in page.inner_text("#toast")
    assert cells(project.queue) == accepted
    page.keyboard.press("Shift+D")  # drop the three in one step
    settle(page)
    dropped = [accepted[0], ("drop", ""), ("drop", ""), ("drop", ""), accepted[4]]
    assert cells(project.queue) == dropped
    assert page.locator("#selbar").is_hidden()  # the selection was decided: cleared
    assert page.locator("#cards .card.drop").count() == 3

    page.keyboard.press("z")  # one undo: all three rows as they were
    settle(page)
    assert cells(project.queue) == accepted
    assert "3 rows are as they were" in page.inner_text("#toast")
    page.keyboard.press("z")  # and the bulk accept, both rows
    settle(page)
    assert project.queue.read_bytes() == original

    # One image again, on the markup row (given cat, class 1): its own class's key keeps it.
    page.keyboard.press("g")
    assert page.inner_text("#position") == "row 1 of 5"  # the undo showed the first it restored
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#position") == "row 2 of 5"
    assert page.inner_text("#given") == "cat"
    page.keyboard.press("1")
    settle(page)
    assert cells(project.queue)[1] == ("keep", "")
    assert page.errors == []  # type: ignore[attr-defined]
