"""``cleaner review``: the local review page, over real HTTP and in headless Chromium.

Every test builds a small project by hand (PNG images, a manifest, a run folder
with ``oof.csv``, ``queue.csv`` and ``queue.json``): no model is trained. HTTP
tests talk to a server on 127.0.0.1 with ``http.client``, which sends the
request path exactly as given (``..`` and ``%2F`` included). The browser test
drives Debian's Chromium through Playwright with the keyboard only.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import http.client
import io
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import Project, assert_says, edit_queue_json, rewrite_queue, write_csv, write_png
from helpers import make_project as make_queue_project
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.errors import InputError
from cleaner.formats.prob_table import oof_table
from cleaner.formats.queue_file import QUEUE_COLUMNS
from cleaner.review.apply import read_queue_table
from cleaner.review.review_queue import ReviewQueue
from cleaner.review.server import ReviewServer, render_page, serve

CLASSES = ("cat", "dog", "owl")
EVIL_ID = "<script>alert(1)</script>&\"'"
EVIL_NOTE = '<img src=x onerror="document.title=1">'
CHROMIUM = Path("/usr/bin/chromium")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_project(root: Path, *, extra_column: bool = True) -> Project:
    """Eight images in three classes and two groups, a run, and a queue of five rows.

    The queue: ``s1`` (a cat labelled dog), a row whose id is markup, group
    ``g2``, ``s4`` and ``s6``; ``s0``, ``s2``, ``s3``, ``s5`` and ``s7`` are not in it.
    """
    ids = ["s0", "s1", EVIL_ID, "s3", "s4", "s5", "s6", "s7"]
    labels = ["cat", "dog", "cat", "dog", "owl", "owl", "cat", "dog"]
    groups = ["g1", "g1", "g1", "g2", "g2", "g3", "g3", "g3"]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(CLASSES)), size=len(ids))
    probs[1] = [0.7, 0.2, 0.1]  # s1: the model says cat
    index = [CLASSES.index(lab) for lab in labels]
    oof = oof_table(np.array(ids), np.array([0, 1] * 4), np.array(index), probs, CLASSES)
    rows = [
        ("s1", "images/img1.png", "g1", "dog", "cat", 0.05, "label", ""),
        (EVIL_ID, "images/img2.png", "g1", "cat", "dog", 0.1, "label", EVIL_NOTE),
        ("group:g2", "images/img3.png", "g2", "dog", "owl", 0.2, "group_inconsistent", "mixed"),
        ("s4", "images/img4.png", "g2", "owl", "cat", 0.3, "outlier", ""),
        ("s6", "images/img6.png", "g3", "cat", "dog", 0.4, "label", ""),
    ]
    columns = ("sample_id", "path", "group", "given_label", "suggested_label",
               "label_quality", "issue", "note")  # fmt: skip
    queue = [{"rank": r + 1, **dict(zip(columns, row, strict=True))} for r, row in enumerate(rows)]
    if extra_column:
        notes = ["", "look again", "", "", 'has "quotes", and commas']
        for row, note in zip(queue, notes, strict=True):
            row["my notes"] = note
    return make_queue_project(
        root,
        [
            {"sample_id": s, "path": f"images/img{i}.png", "label": lab, "group": g}
            for i, (s, lab, g) in enumerate(zip(ids, labels, groups, strict=True))
        ],
        queue,
        classes=CLASSES,
        queue_dir="runs/r1",
        queue_columns=(*QUEUE_COLUMNS, "my notes") if extra_column else QUEUE_COLUMNS,
        runs=(".",),  # the queue lies in its run's folder
        oof=oof,
        image_size=(24, 16),
        shade=30,
        top=5,
    )


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path)


# queue.json's example images per class; "nobody" is not in the manifest: skipped.
EXAMPLES = {"cat": ["s0", EVIL_ID], "dog": ["s3", "s7", "nobody"], "owl": ["s5"]}


def make_paired_project(root: Path, *, partner: str = "s7") -> Project:
    """make_project's queue with the ``partner`` column, row 5 (s6) a leakage row whose
    partner is ``partner``, and example images per class in queue.json."""
    p = make_project(root)
    queue = pd.read_csv(p.queue, dtype=str, keep_default_na=False)
    queue["partner"] = ""
    queue.loc[4, ["issue", "suggested_label", "partner"]] = ["leakage", "", partner]
    rewrite_queue(p.queue, queue)
    edit_queue_json(p.queue, examples=EXAMPLES)
    return p


@pytest.fixture
def paired(tmp_path: Path) -> Iterator[tuple[ReviewServer, Project]]:
    p = make_paired_project(tmp_path)
    srv, _ = serve(p.queue, port=0)
    srv.start_background()
    yield srv, p
    srv.stop()


@pytest.fixture
def server(project: Project) -> Iterator[ReviewServer]:
    srv, _ = serve(project.queue, port=0)
    srv.start_background()
    yield srv
    srv.stop()


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def request(
    srv: ReviewServer,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    token: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request: ``path`` goes on the wire exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    sent = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        sent["X-Review-Token"] = srv.token
    sent.update(headers or {})
    conn.request(method, path, None if body is None else json.dumps(body).encode(), sent)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def decide(srv: ReviewServer, row: int, decision: str, new_label: str = "") -> dict:
    status, _, data = request(
        srv, "POST", "/api/decide", {"row": row, "decision": decision, "new_label": new_label}
    )
    assert status == 200, data
    return json.loads(data)


# --- writing the CSV --------------------------------------------------------------------


def test_decision_post_rewrites_the_csv_at_once(server: ReviewServer, project: Project) -> None:
    header0, rows0 = read_rows(project.queue)
    os.chmod(project.queue, 0o644)
    result = decide(server, 0, "relabel", "cat")
    assert result["row"]["decision"] == "relabel" and result["reviewed"] == 1
    header, rows = read_rows(project.queue)  # read straight from disk, server still running
    assert header == header0 and header[-1] == "my notes"
    assert [r[1] for r in rows] == [r[1] for r in rows0]  # row order
    col = {name: k for k, name in enumerate(header)}
    assert rows[0][col["decision"]] == "relabel" and rows[0][col["new_label"]] == "cat"
    # Everything else, extra column included, is as it was.
    for k, (new, old) in enumerate(zip(rows, rows0, strict=True)):
        if k:
            assert new == old
        else:
            assert [
                v for c, v in enumerate(new) if c not in (col["decision"], col["new_label"])
            ] == [v for c, v in enumerate(old) if c not in (col["decision"], col["new_label"])]
    assert stat.S_IMODE(project.queue.stat().st_mode) == 0o644
    assert [p.name for p in project.run.iterdir() if p.name.startswith(".")] == []  # no temp left

    decide(server, 1, "keep", "ignored for keep")
    decide(server, 2, "relabel")  # blank new_label: the suggested one
    decide(server, 3, "drop")
    decide(server, 4, "unsure")
    _, rows = read_rows(project.queue)
    assert [(r[col["decision"]], r[col["new_label"]]) for r in rows] == [
        ("relabel", "cat"),
        ("keep", ""),
        ("relabel", "owl"),
        ("drop", ""),
        ("unsure", ""),
    ]


def test_undo_restores_the_previous_value_on_disk(server: ReviewServer, project: Project) -> None:
    decide(server, 3, "keep")
    decide(server, 3, "relabel", "dog")
    decide(server, 0, "drop")
    status, _, data = request(server, "POST", "/api/undo", {})
    assert status == 200
    assert json.loads(data)["row"]["i"] == 0
    status, _, data = request(server, "POST", "/api/undo", {})
    assert status == 200 and json.loads(data)["row"]["decision"] == "keep"
    header, rows = read_rows(project.queue)
    d, n = header.index("decision"), header.index("new_label")
    assert (rows[0][d], rows[0][n]) == ("", "")
    assert (rows[3][d], rows[3][n]) == ("keep", "")
    request(server, "POST", "/api/undo", {})
    status, _, data = request(server, "POST", "/api/undo", {})
    assert status == 409 and "nothing to undo" in json.loads(data)["error"]
    assert all(r[d] == "" for r in read_rows(project.queue)[1])


def test_unchanged_queue_writes_back_byte_identical(project: Project) -> None:
    """Written the way `cleaner flag` writes it, a queue survives a decide and its undo exactly."""
    before = project.queue.read_bytes()
    q = ReviewQueue(project.queue)
    assert q.render() == before
    q.decide(2, "drop")
    q.undo()
    assert project.queue.read_bytes() == before


def test_spreadsheet_format_is_kept(tmp_path: Path) -> None:
    """A BOM, ``;`` as delimiter, CRLF line ends, mixed-case headers, blank lines, reordered
    columns and a value with a line break all survive a decision."""
    p = make_project(tmp_path)
    header, rows = read_rows(p.queue)
    order = [header.index(c) for c in ("sample_id", "decision", "note", "new_label")]
    order += [k for k in range(len(header)) if k not in order]
    rows[3][header.index("note")] = "two\nlines; here"
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow([header[k].upper() if header[k] == "decision" else header[k] for k in order])
    for k, r in enumerate(rows):
        w.writerow([r[c] for c in order])
        if k == 1:
            out.write("\r\n")  # a blank line
    original = "\ufeff" + out.getvalue()
    p.queue.write_bytes(original.encode())
    q = ReviewQueue(p.queue)
    assert (q.text.delimiter, q.text.lineterminator, q.text.bom) == (";", "\r\n", True)
    q.decide(3, "relabel", "dog")
    assert q.conflicts() == []
    data = p.queue.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8")
    # Only the decided row changed: its decision and (4th column) its new label.
    lines_new, lines_old = text.split("\r\n"), original.split("\r\n")
    assert len(lines_new) == len(lines_old)
    changed = [k for k, (a, b) in enumerate(zip(lines_new, lines_old, strict=True)) if a != b]
    assert len(changed) == 1
    row = next(csv.reader([lines_new[changed[0]]], delimiter=";"))
    assert row[:2] == ["s4", "relabel"] and row[3] == "dog"
    assert "two\nlines; here" in text


def test_a_deleted_new_label_column_comes_back_at_the_end(tmp_path: Path) -> None:
    p = make_project(tmp_path, extra_column=False)
    pd.read_csv(p.queue, dtype=str, keep_default_na=False).drop(columns="new_label").to_csv(
        p.queue, index=False
    )
    before = p.queue.read_bytes()
    q = ReviewQueue(p.queue)
    assert p.queue.read_bytes() == before  # reading writes nothing
    q.decide(1, "relabel", "owl")
    assert read_rows(p.queue)[0][-1] == "new_label"
    table = read_queue_table(p.queue)  # as `cleaner apply` reads it
    assert table["new_label"].tolist() == ["", "owl", "", "", ""]
    assert table["decision"].tolist() == ["", "relabel", "", "", ""]


def test_external_edit_is_never_overwritten(server: ReviewServer, project: Project) -> None:
    decide(server, 0, "keep")
    edited = project.queue.read_text().replace("look again", "edited in a spreadsheet")
    project.queue.write_text(edited)
    status, _, data = request(
        server, "POST", "/api/decide", {"row": 1, "decision": "drop", "new_label": ""}
    )
    assert status == 409 and "changed by another program" in json.loads(data)["error"]
    assert project.queue.read_text() == edited


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"row": 0, "decision": "maybe", "new_label": ""}, 400, "unknown decision"),
        ({"row": 0, "decision": "relabel", "new_label": "horse"}, 400, "not a class"),
        ({"row": 99, "decision": "keep", "new_label": ""}, 404, "no queue row"),
        ({"row": "0", "decision": "keep", "new_label": ""}, 400, "integer"),
        ([1, 2], 400, "JSON object"),
    ],
)
def test_bad_decisions_change_nothing(
    server: ReviewServer, project: Project, body: Any, status: int, says: str
) -> None:
    before = project.queue.read_bytes()
    got, _, data = request(server, "POST", "/api/decide", body)
    assert got == status and says in json.loads(data)["error"]
    assert project.queue.read_bytes() == before


# --- what the server serves -----------------------------------------------------------


def test_image_route_serves_the_rows_image(server: ReviewServer, project: Project) -> None:
    status, headers, data = request(server, "GET", "/img/0")
    assert status == 200 and headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(data)) as im:
        shown = np.asarray(im)
    with Image.open(project.images["s1"]) as im:
        original = np.asarray(im)
    # A tiny image is enlarged by a whole factor, pixel for pixel.
    factor = shown.shape[1] // original.shape[1]
    assert factor > 1 and shown.shape[:2] == (16 * factor, 24 * factor)
    assert np.array_equal(shown[::factor, ::factor], original)
    status, _, _ = request(server, "GET", "/img/0", headers={"If-None-Match": headers["etag"]})
    assert status == 304


def test_missing_image_is_404_not_500(server: ReviewServer, project: Project) -> None:
    project.images["s6"].unlink()
    assert request(server, "GET", "/img/4")[0] == 404


def test_a_tampered_queue_path_serves_the_manifests_image(tmp_path: Path) -> None:
    """The queue's ``path`` cell is not trusted: the manifest's image of the sample is served."""
    p = make_project(tmp_path)
    secret = write_png(tmp_path / "elsewhere" / "secret.png", value=200, size=(24, 16))
    queue = pd.read_csv(p.queue, dtype=str, keep_default_na=False)
    queue.loc[0, "path"] = str(secret)
    rewrite_queue(p.queue, queue)
    srv, _ = serve(p.queue, port=0)
    srv.start_background()
    try:
        status, _, data = request(srv, "GET", "/img/0")
    finally:
        srv.stop()
    assert status == 200
    with Image.open(io.BytesIO(data)) as im:
        shown = np.asarray(im)
    with Image.open(p.images[queue.loc[0, "sample_id"]]) as im:
        original = np.asarray(im)
    factor = shown.shape[1] // original.shape[1]
    assert np.array_equal(shown[::factor, ::factor], original)


def test_deeply_nested_json_is_a_400(server: ReviewServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    body = b"[" * 32000 + b"]" * 32000
    conn.request(
        "POST",
        "/api/decide",
        body,
        {"Content-Type": "application/json", "X-Review-Token": server.token},
    )
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert resp.status == 400 and b"nested too deeply" in data


@pytest.mark.parametrize(
    "path",
    [
        "/img/../queue.csv",
        "/img/..%2F..%2Fetc%2Fpasswd",
        "/img/..%2fqueue.csv",
        "/img/%2e%2e/%2e%2e/etc/passwd",
        "/../../etc/passwd",
        "/etc/passwd",
        "//etc/passwd",
        "/queue.csv",
        "/queue.json",
        "/img/5",  # one past the last row
        "/img/-1",
        "/img/0/../1",
        "/img/0x1",
        "/img/s5",  # a sample id
        "ABSOLUTE",  # the absolute path of an image on disk
        "/img/ABSOLUTE",
        "/images/img0.png",  # an image of the manifest that the queue does not name
        "/img/images/img0.png",
        "/api/../img/0",
        "/partner/0",  # a row without a partner
        "/partner/../queue.csv",
        "/partner/s7",
        "/example/0/0",  # this queue.json has no examples
        "/example/0/-1",
        "/example/0/0/../../queue.csv",
        "/example/cat/0",
    ],
)
def test_only_queue_images_are_served(server: ReviewServer, project: Project, path: str) -> None:
    path = path.replace("ABSOLUTE", str(project.images["s0"]).lstrip("/"))
    if path.startswith(str(project.images["s0"]).lstrip("/")):
        path = "/" + path
    status, _, data = request(server, "GET", path)
    assert status == 404, (path, data[:80])
    assert b"root:" not in data and b"PNG" not in data


def test_markup_in_values_is_only_ever_json(server: ReviewServer) -> None:
    status, headers, page = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    assert "unsafe-inline" not in csp
    # The page carries no queue data at all: it is the constant template.
    assert page == render_page(server.token)
    for value in ("<script>alert", "onerror", "images/img"):
        assert value.encode() not in page
    assert page.count(b"<script>") == 1

    status, headers, data = request(server, "GET", "/api/queue")
    assert status == 200 and headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    assert b"<" not in data and b">" not in data  # \u003c: inert even if sniffed as HTML
    rows = json.loads(data)["rows"]
    assert rows[1]["sample_id"] == EVIL_ID and rows[1]["note"] == EVIL_NOTE

    status, headers, data = request(server, "GET", "/img/..%2F<script>")
    assert status == 404 and headers["content-type"].startswith("text/plain")


def test_the_page_inlines_its_package_files_pinned_by_hash(server: ReviewServer) -> None:
    """The script and stylesheet are cleaner/web's files, inlined as they are; the CSP
    admits exactly them (the browser tests fail if it does not)."""
    from importlib.resources import files

    _, headers, page = request(server, "GET", "/")
    text = page.decode()
    script = text.split("<script>", 1)[1].split("</script>", 1)[0]
    style = text.split("<style>", 1)[1].split("</style>", 1)[0]
    web = files("cleaner.review.web")
    assert script == web.joinpath("review.js").read_text()
    assert style == web.joinpath("base.css").read_text() + web.joinpath("review.css").read_text()
    csp = headers["content-security-policy"]
    for directive, code in (("script-src", script), ("style-src", style)):
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}';" in csp


def test_api_needs_the_token_the_host_and_json(server: ReviewServer, project: Project) -> None:
    before = project.queue.read_bytes()
    body = {"row": 0, "decision": "drop", "new_label": ""}
    assert request(server, "GET", "/api/queue", token=False)[0] == 403
    assert request(server, "POST", "/api/decide", body, token=False)[0] == 403
    # A DNS-rebinding page reaches 127.0.0.1 under its own host name.
    evil_host = {"Host": f"evil.example:{server.port}"}
    assert request(server, "POST", "/api/decide", body, headers=evil_host)[0] == 403
    assert request(server, "GET", "/img/0", headers=evil_host)[0] == 403
    # A form post from another site cannot set application/json without a preflight.
    text_plain = {"Content-Type": "text/plain"}
    assert request(server, "POST", "/api/decide", body, headers=text_plain)[0] == 415
    assert project.queue.read_bytes() == before
    ok_host = {"Host": f"localhost:{server.port}"}
    assert request(server, "GET", "/api/queue", headers=ok_host)[0] == 200


def test_listens_on_loopback_only(server: ReviewServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.url == f"http://127.0.0.1:{server.port}/?token={server.token}"


# --- behind an SSH tunnel: --allow-host -----------------------------------------------------

TUNNEL = {"Host": "localhost:9000"}  # what the browser sends behind ssh -L 9000:localhost:PORT


def test_a_tunnel_host_is_refused_without_allow_host(server: ReviewServer) -> None:
    assert request(server, "GET", "/", headers=TUNNEL)[0] == 403
    assert request(server, "GET", "/api/queue", headers=TUNNEL)[0] == 403


@pytest.mark.parametrize("allowed", ["localhost:9000", "LocalHost:9000"])
def test_allow_host_admits_that_host_and_still_needs_the_token(
    project: Project, allowed: str
) -> None:
    srv, url = serve(project.queue, port=0, allow_hosts=[allowed])
    srv.start_background()
    try:
        assert srv.server_address[0] == "127.0.0.1"  # the bind is unchanged
        assert url == f"http://127.0.0.1:{srv.port}/?token={srv.token}"
        assert srv.allowed_urls == [f"http://localhost:9000/?token={srv.token}"]
        status, _, page = request(srv, "GET", "/", headers=TUNNEL)
        assert status == 200 and srv.token.encode() in page
        assert request(srv, "GET", "/api/queue", headers=TUNNEL)[0] == 200
        assert request(srv, "GET", "/img/0", headers=TUNNEL)[0] == 200
        # The token is still required through the tunnel.
        before = project.queue.read_bytes()
        body = {"row": 0, "decision": "drop", "new_label": ""}
        assert request(srv, "GET", "/api/queue", headers=TUNNEL, token=False)[0] == 403
        assert request(srv, "POST", "/api/decide", body, headers=TUNNEL, token=False)[0] == 403
        assert project.queue.read_bytes() == before
        assert request(srv, "POST", "/api/decide", body, headers=TUNNEL)[0] == 200
        # The usual names still work; hosts and ports not listed are still refused.
        assert (
            request(srv, "GET", "/api/queue", headers={"Host": f"localhost:{srv.port}"})[0] == 200
        )
        for host in ("localhost:9001", "evil.example:9000", "localhost", "localhost:9000.evil"):
            assert request(srv, "GET", "/api/queue", headers={"Host": host})[0] == 403, host
    finally:
        srv.stop()


def test_allow_host_on_port_80_takes_the_bare_name(project: Project) -> None:
    srv, _ = serve(project.queue, port=0, allow_hosts=["review.internal:80", "[::1]:9000"])
    srv.start_background()
    try:
        for host in ("review.internal", "review.internal:80", "[::1]:9000"):
            assert request(srv, "GET", "/api/queue", headers={"Host": host})[0] == 200, host
        assert request(srv, "GET", "/api/queue", headers={"Host": "[::1]"})[0] == 403
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("*", "no wildcards"),
        ("*:9000", "no wildcards"),
        ("*.example.com:9000", "no wildcards"),
        ("localhost", "expected HOST:PORT"),
        ("http://localhost:9000", "expected HOST:PORT"),
        ("localhost:9000/", "the port must be a number from 1 to 65535"),
        (":9000", "expected HOST:PORT"),
        ("local host:9000", "expected HOST:PORT"),
        ("localhost:0", "the port must be a number from 1 to 65535"),
        ("localhost:65536", "the port must be a number from 1 to 65535"),
        ("localhost:-1", "the port must be a number from 1 to 65535"),
        ("::1:9000", "expected HOST:PORT"),
    ],
)
def test_cli_refuses_a_bad_allow_host(
    project: Project,
    runner: CliRunner,
    monkeypatch: pytest.MonkeyPatch,
    value: str,
    says: str,
) -> None:
    monkeypatch.setattr(ReviewServer, "serve_forever", _interrupted)
    before = project.queue.read_bytes()
    result = runner.invoke(
        app,
        ["review", str(project.queue), "--port", "0", "--no-browser", "--allow-host", value],
    )
    assert result.exit_code == 2, result.output
    assert_says(result.output, "error:", f"--allow-host {value!r}", says)
    assert "Traceback" not in result.output
    assert project.queue.read_bytes() == before


def test_cli_allow_host_prints_the_tunnel_urls(
    project: Project, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[set[str]] = []

    def interrupted(self: ReviewServer, *args: Any, **kwargs: Any) -> None:
        seen.append(set(self.hosts))
        raise KeyboardInterrupt

    monkeypatch.setattr(ReviewServer, "serve_forever", interrupted)
    args = ["review", str(project.queue), "--port", "0", "--no-browser"]
    args += ["--allow-host", "localhost:9000", "--allow-host", "127.0.0.1:9001"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert_says(
        result.output,
        "http://127.0.0.1:",
        "open http://localhost:9000/",
        "open http://127.0.0.1:9001/",
        "stopped",
    )
    assert {"localhost:9000", "127.0.0.1:9001"} <= seen[0]


# --- the model's classes ----------------------------------------------------------------


def test_rows_carry_out_of_fold_probabilities(server: ReviewServer, project: Project) -> None:
    data = json.loads(request(server, "GET", "/api/queue")[2])
    assert data["classes"] == list(CLASSES) and data["total"] == 5 and data["reviewed"] == 0
    probs = project.oof.set_index("sample_id")[[f"p:{c}" for c in CLASSES]]
    rows = data["rows"]

    def dense(top: list[list[float]]) -> list[float]:
        out = [0.0] * len(CLASSES)
        for k, p in top:
            out[int(k)] = p
        return out

    assert rows[0]["top"] == [[0, 0.7], [1, 0.2], [2, 0.1]]  # most likely first
    np.testing.assert_allclose(dense(rows[1]["top"]), probs.loc[EVIL_ID], atol=1e-5)
    # A group row shows the mean over the group's train images.
    group = rows[2]
    assert group["is_group"] and group["members"] == 2
    np.testing.assert_allclose(dense(group["top"]), probs.loc[["s3", "s4"]].mean(), atol=1e-5)
    assert "2 of the group's 2" in group["probs_from"]
    assert data["warnings"] == []


def test_a_missing_run_only_costs_the_probabilities(project: Project) -> None:
    shutil.rmtree(project.run / "fold-0", ignore_errors=True)
    (project.run / "oof.csv").unlink()
    q = ReviewQueue(project.queue)
    assert all(r.top == () for r in q.rows)
    assert any("oof.csv not found" in w for w in q.warnings)


def test_conflicting_decisions_are_shown_not_refused(server: ReviewServer) -> None:
    decide(server, 2, "relabel", "owl")  # group g2: s3 and s4
    result = decide(server, 3, "keep")  # s4 alone
    assert any("two decisions" in w for w in result["warnings"])
    assert decide(server, 3, "relabel", "owl")["warnings"] == []


# --- the command ----------------------------------------------------------------------


def _interrupted(self: ReviewServer, *args: Any, **kwargs: Any) -> None:
    raise KeyboardInterrupt  # Ctrl-C at once: the command returns instead of serving


def _break(project: Project, column: str, value: str, row: int = 1) -> None:
    header, rows = read_rows(project.queue)
    rows[row][header.index(column)] = value
    write_csv(project.queue, [dict(zip(header, r, strict=True)) for r in rows], header)


@pytest.mark.parametrize(
    ("breakage", "says"),
    [
        (lambda p: _break(p, "decision", "maybe"), "line 3: unknown decision 'maybe'"),
        (
            lambda p: (_break(p, "decision", "relabel"), _break(p, "new_label", "horse")),
            "line 3: new_label 'horse' is not a class",
        ),
        (lambda p: _break(p, "sample_id", "nobody", 0), "line 2: sample_id 'nobody' is not in"),
        (
            lambda p: (_break(p, "sample_id", "group:g9", 4), _break(p, "decision", "keep", 4)),
            "line 6: group 'g9' is not in the manifest",
        ),
        (
            lambda p: p.manifest.write_text(p.manifest.read_text() + "s8,images/img0.png,cat,g3\n"),
            "a queue from another manifest version",
        ),
        (lambda p: (p.queue.parent / "queue.json").unlink(), "queue.json: not found"),
    ],
)
def test_cli_refuses_an_invalid_queue(
    project: Project, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, breakage: Any, says: str
) -> None:
    monkeypatch.setattr(ReviewServer, "serve_forever", _interrupted)  # a pass must not hang
    breakage(project)
    before = project.queue.read_bytes()
    result = runner.invoke(app, ["review", str(project.queue), "--port", "0", "--no-browser"])
    assert result.exit_code == 2, result.output
    assert_says(result.output, "error:", says)
    if "queue.json" not in says:
        assert_says(result.output, str(project.queue))
    assert project.queue.read_bytes() == before


def test_refusal_names_the_real_file_line(project: Project) -> None:
    """A blank line and a note over two lines push the bad row down the file."""
    _break(project, "note", "first\nsecond", 0)
    lines = project.queue.read_text().split("\n")
    lines.insert(1, "")
    project.queue.write_text("\n".join(lines).replace("s6,", "nobody,", 1))
    with pytest.raises(InputError) as e:
        ReviewQueue(project.queue)
    assert [(p.row, p.reason) for p in e.value.problems] == [
        (8, "sample_id 'nobody' is not in the manifest")
    ]


def test_cli_prints_the_url_and_stops_on_ctrl_c(
    project: Project, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ReviewServer, "serve_forever", _interrupted)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = runner.invoke(app, ["review", str(project.queue), "--port", "0", "--no-browser"])
    assert result.exit_code == 0, result.output
    assert_says(result.output, "http://127.0.0.1:", "0 of 5 rows reviewed", "stopped")
    assert opened == []


def test_cli_says_when_the_port_is_taken(project: Project, runner: CliRunner) -> None:
    srv, _ = serve(project.queue, port=0)
    try:
        result = runner.invoke(
            app, ["review", str(project.queue), "--port", str(srv.port), "--no-browser"]
        )
    finally:
        srv.server_close()
    assert result.exit_code == 2
    assert_says(result.output, f"cannot listen on 127.0.0.1:{srv.port}", "--port 0")


# --- in a real browser --------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser_page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs the playwright package (pip install playwright)"
    )
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "response",
            lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        page.errors = errors  # type: ignore[attr-defined]
        yield page
        browser.close()


def settle(page: Any) -> None:
    """Wait until every decision the page sent has been answered."""
    page.wait_for_selector('body[data-busy="0"]', state="attached", timeout=10_000)


@pytest.mark.slow
def test_keyboard_review_in_chromium(
    browser_page: Any, server: ReviewServer, project: Project
) -> None:
    page = browser_page
    page.goto(server.url)
    settle(page)
    assert page.inner_text("#position") == "row 1 of 5"
    assert page.inner_text("#n-total") == "5"
    assert page.inner_text("#suggested") == "cat"
    top3 = page.locator("#top3 li .name").all_inner_texts()
    assert top3 == ["cat", "dog", "owl"]
    # (wait_for_function would need eval, which the page's CSP rightly forbids)
    page.wait_for_selector("#image:not(.loading)", timeout=10_000)
    assert page.locator("#image").evaluate("img => img.naturalWidth") > 0

    page.keyboard.press("r")  # row 1 (s1): accept the suggestion, cat
    settle(page)
    # Row 2 shows the markup id as text; nothing of it became markup.
    assert page.inner_text("#sid") == EVIL_ID
    assert page.inner_text("#note") == EVIL_NOTE
    assert page.locator("script").count() == 1
    assert page.locator("img:not(#partner)").count() == 1  # no example images in this queue
    assert page.title() == "review: relabel queue: manifest.csv"
    page.keyboard.press("1")  # row 2, given cat: class 1 (cat) is its own label: keep
    settle(page)
    page.keyboard.press("ArrowLeft")
    assert page.inner_text("#decision") == "keep the given label"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("3")  # row 3 (group g2): class 3 of 3, owl
    settle(page)
    page.keyboard.press("d")  # row 4: drop
    settle(page)
    page.keyboard.press("u")  # row 5: unsure
    settle(page)
    assert page.inner_text("#n-reviewed") == "5"
    page.keyboard.press("z")  # undo row 5: back to not reviewed, and shown
    settle(page)
    assert page.inner_text("#position") == "row 5 of 5"
    assert page.inner_text("#decision") == "not reviewed yet"
    assert page.inner_text("#n-reviewed") == "4"
    page.keyboard.press("/")  # type-ahead for a name that starts with a command key
    page.keyboard.type("do")
    page.keyboard.press("Enter")  # row 5: relabel to dog
    settle(page)
    for key in ("ArrowLeft", "ArrowUp", "ArrowDown", "ArrowRight", "ArrowLeft"):
        page.keyboard.press(key)
    assert page.inner_text("#position") == "row 4 of 5"
    assert page.inner_text("#decision") == "drop (excluded from training)"
    page.keyboard.type("w")  # any other letter opens the type-ahead: "w" matches only owl
    assert page.input_value("#ta-input") == "w"
    page.keyboard.press("Enter")  # row 4, given owl: owl is its own label, drop becomes keep
    settle(page)
    page.keyboard.press("Escape")

    header, rows = read_rows(project.queue)
    d, n = header.index("decision"), header.index("new_label")
    assert [(r[d], r[n]) for r in rows] == [
        ("relabel", "cat"),
        ("keep", ""),
        ("relabel", "owl"),
        ("keep", ""),
        ("relabel", "dog"),
    ]
    assert [r[-1] for r in rows] == ["", "look again", "", "", 'has "quotes", and commas']
    assert page.inner_text("#n-reviewed") == "5"
    assert page.errors == []  # type: ignore[attr-defined]


def test_many_classes_send_only_the_most_likely() -> None:
    from cleaner.review.row_info import TOP_CLASSES, _top

    p = np.random.default_rng(1).dirichlet(np.ones(1000))
    top = _top(p)
    assert len(top) == TOP_CLASSES
    assert [k for k, _ in top] == np.argsort(-p)[:TOP_CLASSES].tolist()


def with_kind_attribute(project: Project) -> None:
    """Composite labels: queue.json gets an attribute table of ``kind`` (owl: bird, else mammal)."""
    from cleaner.formats.attributes import attribute_table

    kinds = {"cat": "mammal", "dog": "mammal", "owl": "bird"}
    table = attribute_table(np.array([0, 1, 2]), {"kind": [kinds[c] for c in CLASSES]}, 3)
    edit_queue_json(project.queue, attributes=table)


def test_an_attribute_suggestion_is_accepted(project: Project) -> None:
    """With composite labels the group row's suggestion is ``attribute=value``."""
    with_kind_attribute(project)
    q = pd.read_csv(project.queue, dtype=str, keep_default_na=False)
    q.loc[q["sample_id"] == "group:g2", "suggested_label"] = "kind=bird"
    rewrite_queue(project.queue, q)
    review = ReviewQueue(project.queue)
    row = int(np.flatnonzero((q["sample_id"] == "group:g2").to_numpy())[0])
    review.decide(row, "relabel", "")
    assert review.decision(row) == ("relabel", "kind=bird")
    with pytest.raises(ValueError, match="is not a class"):
        review.decide(row, "relabel", "kind=fish")


def test_an_attribute_relabel_is_no_warning_and_apply_takes_it(project: Project) -> None:
    """``kind=bird`` is a relabel that ``cleaner apply`` takes with the queue's attribute
    table: the page checks with the same table, so it warns of nothing."""
    from cleaner.formats.manifest import read_manifest
    from cleaner.review.apply import apply_queue

    with_kind_attribute(project)
    review = ReviewQueue(project.queue)
    assert review.rows[0].sample_id == "s1"  # a dog
    result = review.decide(0, "relabel", "kind=bird")
    assert review.decision(0) == ("relabel", "kind=bird")
    assert not [w for w in result["warnings"] if "is not a class" in w], result["warnings"]
    assert review.conflicts() == []
    # Reopened from the CSV it wrote, the page still warns of nothing.
    assert ReviewQueue(project.queue).conflicts() == []
    summary = apply_queue(project.queue)
    assert summary.counts["relabel"] == 1 and summary.new_manifest is not None
    new = read_manifest(summary.new_manifest).set_index("sample_id")["label"]
    assert new["s1"] == "owl"  # the one bird class


# --- what each issue kind offers ----------------------------------------------------------


def served_image(srv: ReviewServer, path: str) -> np.ndarray:
    status, headers, data = request(srv, "GET", path)
    assert status == 200 and headers["content-type"] == "image/png", (path, status)
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def is_image_of(shown: np.ndarray, original: Path) -> bool:
    """Whether a served (whole-factor enlarged) image is ``original``, pixel for pixel."""
    with Image.open(original) as im:
        pixels = np.asarray(im)
    factor = shown.shape[1] // pixels.shape[1]
    return shown.shape[:2] == (pixels.shape[0] * factor, pixels.shape[1] * factor) and bool(
        np.array_equal(shown[::factor, ::factor], pixels)
    )


def test_an_outlier_row_has_no_suggestion_to_accept(server: ReviewServer, project: Project) -> None:
    """Row 4 (s4) is an outlier whose older-style queue still has suggested_label = cat."""
    row = json.loads(request(server, "GET", "/api/queue")[2])["rows"][3]
    assert (row["issue"], row["suggested"], row["suggests"]) == ("outlier", "", False)
    assert row["actions"] == ["keep", "relabel", "drop", "unsure"]
    assert row["actions_text"] == "keep \u00b7 drop \u00b7 unsure \u00b7 relabel (name the class)"
    before = project.queue.read_bytes()
    status, _, data = request(
        server, "POST", "/api/decide", {"row": 3, "decision": "relabel", "new_label": ""}
    )
    assert status == 400
    assert json.loads(data)["error"] == (
        "an outlier row has no suggested label: write the class in new_label"
    )
    assert project.queue.read_bytes() == before
    assert decide(server, 3, "relabel", "dog")["row"]["new_label"] == "dog"  # named: fine


def test_a_leakage_row_is_only_kept_or_dropped(
    paired: tuple[ReviewServer, Project],
) -> None:
    srv, p = paired
    row = json.loads(request(srv, "GET", "/api/queue")[2])["rows"][4]
    assert (row["issue"], row["actions"], row["partner"]) == ("leakage", ["keep", "drop"], "s7")
    before = p.queue.read_bytes()
    for decision, label in (("relabel", "dog"), ("relabel", ""), ("unsure", "")):
        status, _, data = request(
            srv, "POST", "/api/decide", {"row": 4, "decision": decision, "new_label": label}
        )
        assert status == 400, data
        assert json.loads(data)["error"] == f"a leakage row is kept or dropped, not {decision}"
    assert p.queue.read_bytes() == before
    assert decide(srv, 4, "drop")["row"]["decision"] == "drop"


def test_partner_and_examples_are_the_manifests_images(
    paired: tuple[ReviewServer, Project],
) -> None:
    srv, p = paired
    data = json.loads(request(srv, "GET", "/api/queue")[2])
    assert data["examples"] == [2, 2, 1]  # cat, dog, owl; "nobody" skipped
    assert data["rows"][4]["has_partner_image"] and not data["rows"][0]["has_partner_image"]
    assert is_image_of(served_image(srv, "/partner/4"), p.images["s7"])
    assert is_image_of(served_image(srv, "/example/0/1"), p.images[EVIL_ID])
    assert is_image_of(served_image(srv, "/example/1/1"), p.images["s7"])
    for path in ("/partner/0", "/partner/5", "/example/1/2", "/example/2/1", "/example/3/0"):
        assert request(srv, "GET", path)[0] == 404, path
    evil_host = {"Host": f"evil.example:{srv.port}"}
    assert request(srv, "GET", "/partner/4", headers=evil_host)[0] == 403
    assert request(srv, "GET", "/example/0/0", headers=evil_host)[0] == 403


def test_a_partner_is_a_sample_id_never_a_path(tmp_path: Path) -> None:
    """A partner cell holding a path (a hand-edited queue) serves nothing."""
    p = make_paired_project(tmp_path, partner="images/img0.png")
    q = ReviewQueue(p.queue)
    assert q.rows[4].partner_image is None and q.partner_image(4) is None
    assert q.row(4)["partner"] == "images/img0.png" and not q.row(4)["has_partner_image"]


def test_an_old_queue_without_partner_or_examples_still_loads(project: Project) -> None:
    queue = pd.read_csv(project.queue, dtype=str, keep_default_na=False)
    queue.drop(columns=[c for c in ("partner",) if c in queue.columns]).to_csv(
        project.queue, index=False
    )
    header = read_rows(project.queue)[0]
    q = ReviewQueue(project.queue)
    assert [r.partner for r in q.rows] == [""] * 5
    assert q.snapshot()["examples"] == [0, 0, 0]
    q.decide(3, "drop")
    assert read_rows(project.queue)[0] == header  # no column appears


def _probs_queue(project: Project, *, probs: Path | None, sha: str = "") -> None:
    """``flag --probs``'s queue.json: no runs, the probability file (or none)."""
    edit_queue_json(
        project.queue, runs=(), probs=probs, probs_sha256=sha, flag={"method": "self_confidence"}
    )


def test_probabilities_from_a_probs_file(project: Project) -> None:
    """``flag --probs FILE``: no runs; fold and pred are optional in the file."""
    probs = project.root / "probs.csv"
    project.oof.drop(columns=["fold", "pred"]).to_csv(probs, index=False)
    _probs_queue(project, probs=probs, sha=_sha(probs))
    q = ReviewQueue(project.queue)
    assert q.meta.runs == () and q.meta.probs == probs
    assert q.warnings == []
    assert q.rows[0].top[0] == (0, 0.7) and q.rows[0].probs_from == "from probs.csv"
    # Changed since the queue was made: not the probabilities it was ranked by.
    probs.write_text(probs.read_text().replace("0.7", "0.6"))
    q = ReviewQueue(project.queue)
    assert all(r.top == () for r in q.rows)
    assert any("changed since the queue was made" in w for w in q.warnings)


def test_no_runs_and_no_probs_file_only_costs_the_probabilities(project: Project) -> None:
    _probs_queue(project, probs=None)
    q = ReviewQueue(project.queue)
    assert all(r.top == () for r in q.rows) and q.warnings == []
    assert q.snapshot()["total"] == 5


@pytest.mark.slow
def test_each_kind_offers_its_own_decisions_in_chromium(
    browser_page: Any, paired: tuple[ReviewServer, Project]
) -> None:
    srv, p = paired
    page = browser_page
    page.goto(srv.url)
    settle(page)
    page.wait_for_load_state("networkidle")
    # Row 1 (s1, given dog, suggested cat): examples of both classes beside it.
    assert page.locator("#examples h2").all_text_contents() == [
        "examples of dog",
        "examples of cat",
    ]
    widths = page.locator("#examples img").evaluate_all("els => els.map(e => e.naturalWidth)")
    assert len(widths) == 4 and all(w > 0 for w in widths)
    assert page.locator("#partner").is_hidden()

    before = p.queue.read_bytes()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#position") == "row 4 of 5"  # s4, an outlier
    assert page.locator("#accept-btn").is_hidden() and page.locator("#suggested-box").is_hidden()
    assert page.locator("#nosugg").is_visible()
    assert "relabel (name the class)" in page.inner_text("#actions")
    for key in ("Enter", "r"):
        page.keyboard.press(key)
        settle(page)
        assert "has no suggestion" in page.inner_text("#toast")
    assert page.inner_text("#position") == "row 4 of 5"
    assert page.inner_text("#decision") == "not reviewed yet"
    assert p.queue.read_bytes() == before

    page.keyboard.press("ArrowRight")  # row 5: s6, leaked, partner s7
    page.wait_for_load_state("networkidle")
    assert page.locator("#partner").is_visible()
    assert page.locator("#partner").evaluate("img => img.naturalWidth") > 0
    assert page.inner_text("#partner-cap") == "partner: s7"
    assert page.locator("footer button[data-action=unsure]").is_disabled()
    for key in ("u", "r", "2", "c", "/"):
        page.keyboard.press(key)
        settle(page)
        assert page.locator("#ta").is_hidden()
    assert "keep \u00b7 drop" in page.inner_text("#toast")
    assert p.queue.read_bytes() == before
    page.keyboard.press("d")
    settle(page)
    header, rows = read_rows(p.queue)
    assert [r[header.index("decision")] for r in rows] == ["", "", "", "", "drop"]
    assert page.errors == []  # type: ignore[attr-defined]
