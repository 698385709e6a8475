"""``cleaner review``: a local page to review a relabel queue with the keyboard.

The page shows one queue row at a time (its image large, the given and the
suggested label, the model's top classes) and writes every decision to the
queue CSV at once, so closing the browser loses nothing and the same file
still opens in a spreadsheet and goes to ``cleaner apply``.

Writing the CSV: the file is rewritten whole on every decision, to a
temporary file in the same folder that is then renamed over it
(``os.replace``). Header, columns (extra ones included), row order, blank
lines, the delimiter (``,``, ``;`` or tab), a UTF-8 BOM, the line ending and
the file mode are kept as read; only the ``decision`` and ``new_label``
cells of the decided row change. Values are quoted where CSV needs it, so a
file quoted throughout comes back with minimal quoting. A CSV that another
program changed since it was read is not overwritten (HTTP 409). Each write
holds the project lock of the queue's folder (:mod:`cleaner.core.project_lock`)
from that check to its rename, so of two review pages of one queue deciding
at once, one writes and the other answers 409: no decision reported written
is lost. A lock held longer than the wait answers 503, nothing written.

Security: the server binds 127.0.0.1 only and answers only requests whose
``Host`` is ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding page
cannot read or write the queue), or one that ``--allow-host HOST:PORT``
names, such as ``localhost:9000`` behind ``ssh -L 9000:localhost:8765``
(an exact name and port: no wildcard; the bind and the token stay).
Images are served by queue row number
(``/img/<row>``), never by a path from the request, so only images the queue
names can be read. A near duplicate's or leakage row's partner (``/partner/<row>``)
and the classes' example images (``/example/<class>/<k>``, from queue.json) are
the manifest's image of that sample id, never a path from the queue. Every
route needs a per-server token, as Jupyter does it: the printed URL carries it
(``/?token=...``), the page answers only a request that has it (another local
user cannot read it by asking) and sets it as a cookie (HttpOnly,
SameSite=Strict) for its images; the API takes it in a custom header,
which other web pages cannot send. The page itself holds no queue
data: the script fetches it as JSON and builds the DOM with ``textContent``,
and a Content-Security-Policy admits only the page's own script and style
(by hash) and same-origin images and requests.

The page, its stylesheet and its script are package files in ``cleaner/web``
(``review.html``, ``base.css`` + ``review.css``, ``review.js``), inlined into
the one page this server sends.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import pandas as pd

from cleaner.core.errors import InputError, WriteError
from cleaner.core.project_lock import ProjectLocked, project_lock
from cleaner.formats.manifest import id_matcher, line_of, resolve_paths, sha256_file
from cleaner.formats.queue_file import (
    QueueChanged,
    QueueMeta,
    QueueText,
    queue_csv_path,
    replace_queue,
)
from cleaner.formats.run_files import RunFiles
from cleaner.formats.runs import read_prob_columns
from cleaner.ranking.issue_kinds import (
    GROUP_PREFIX,
    actions_text,
    allowed_decisions,
    has_suggestion,
)
from cleaner.review import web
from cleaner.review.apply import CheckedQueue, check_queue, expand_decisions, parse_decisions
from cleaner.review.gallery import thumbnail_data_uri

HOST = "127.0.0.1"  # never another interface: the page can change the queue
DEFAULT_PORT = 8765
IMAGE_SIDE = 1024  # longest side of a served image; tiny images are enlarged to it
MAX_BODY = 64 * 1024  # a decision is a few dozen bytes
# Classes per row sent to the page: all of them up to 10 (digits 0-9 get a key
# each), else the most likely ones, which are all that 1-9 can pick. Keeps the
# page's JSON small with a thousand classes.
TOP_CLASSES = 10
EXAMPLES_PER_CLASS = 4  # example images shown per class beside the one under review
_IMG_ROUTE = re.compile(r"/img/(\d{1,9})")
_PARTNER_ROUTE = re.compile(r"/partner/(\d{1,9})")
_EXAMPLE_ROUTE = re.compile(r"/example/(\d{1,9})/(\d{1,2})")
_TOKEN_HEADER = "X-Review-Token"
# HOST:PORT for --allow-host: a DNS name or IPv4 address, or an IPv6 address in brackets,
# exactly as a browser sends it in the Host header.
_HOST_NAME = re.compile(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)
_HOST_IPV6 = re.compile(r"\[[0-9a-f:.]{2,45}\]")


def parse_allowed_host(value: str) -> str:
    """A checked ``--allow-host`` value, lower-cased: ``HOST:PORT``, port 1-65535.

    Raises :class:`InputError` for anything else: a wildcard, a scheme or a
    path, a missing or out-of-range port.
    """
    text = value.strip().lower()
    where = f"--allow-host {value!r}"
    if "*" in text:
        raise InputError(f"{where}: no wildcards; name the exact HOST:PORT the browser uses")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (_HOST_NAME.fullmatch(host) or _HOST_IPV6.fullmatch(host)):
        raise InputError(
            f"{where}: expected HOST:PORT as the browser's address bar shows it, "
            "e.g. localhost:9000 (no http://, no path)"
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"{where}: the port must be a number from 1 to 65535")
    return f"{host}:{int(port)}"


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


@dataclass(frozen=True)
class RowInfo:
    """What the page shows about one queue row besides its decision."""

    rank: str
    sample_id: str
    path: str
    group: str
    given: str
    suggested: str
    quality: str
    issue: str
    note: str
    is_group: bool
    members: int | None  # train rows of the group, for group:ID rows
    image: Path | None
    top: tuple[tuple[int, float], ...]  # (class index, probability), most likely first
    probs_from: str  # where the probabilities come from, in words
    partner: str = ""  # the other image of a near_duplicate or leakage row
    partner_image: Path | None = None  # the manifest's image of ``partner``


def _file_probs(
    path: Path, sha256: str, classes: Sequence[str], wanted: set[str]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The probabilities of ``flag --probs FILE`` (the oof.csv layout), unless the file
    changed since the queue was made: then they are not the ones it was ranked by."""
    if not path.is_file():
        return {}, [f"{path} not found: no model probabilities"]
    if sha256 and sha256_file(path) != sha256:
        return {}, [f"{path} changed since the queue was made (sha256): no model probabilities"]
    found, warning = read_prob_columns(path, classes, wanted)
    return found, [warning] if warning else []


def _run_probs(
    meta: QueueMeta, wanted: set[str]
) -> tuple[dict[str, np.ndarray], dict[str, int], list[str]]:
    """Probabilities averaged over the queue's runs (as ``flag`` does), how many runs
    each id had, and warnings for runs that could not be read. A queue made from a
    probabilities file (``runs`` empty, ``probs`` set) has that file's."""
    if not meta.runs and meta.probs is not None:
        found, warnings = _file_probs(meta.probs, meta.probs_sha256, meta.classes, wanted)
        return found, dict.fromkeys(found, 1), warnings
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = defaultdict(int)
    warnings = []
    for run in meta.runs:
        run_dir = Path(run)
        tables = [RunFiles(run_dir).oof, RunFiles(run_dir).unlabeled]
        if not tables[0].is_file():
            warnings.append(f"{tables[0]} not found: no model probabilities from run {run}")
            continue
        for table in tables:
            if not table.is_file():
                continue
            found, warning = read_prob_columns(table, meta.classes, wanted)
            if warning:
                warnings.append(warning)
            for sid, p in found.items():
                sums[sid] = sums[sid] + p if sid in sums else p.copy()
                counts[sid] += 1
    return {sid: s / counts[sid] for sid, s in sums.items()}, dict(counts), warnings


def _top(p: np.ndarray) -> tuple[tuple[int, float], ...]:
    order = np.argsort(-p, kind="stable")[:TOP_CLASSES]
    return tuple((int(k), round(float(p[k]), 5)) for k in order)


def _manifest_images(manifest: pd.DataFrame, root: Path) -> dict[str, Path]:
    """sample_id -> the manifest's image: what partners and examples are served from."""
    return dict(zip(manifest["sample_id"], resolve_paths(manifest, root), strict=True))


def _group_members(manifest: pd.DataFrame, group_col: str) -> dict[str, list[str]]:
    """Group value -> its train sample ids: what a ``group:ID`` row's decision covers."""
    if not group_col or group_col not in manifest.columns:
        return {}
    train = manifest[manifest["split"] == "train"]
    return {str(g): list(ids) for g, ids in train.groupby(group_col)["sample_id"]}


def _row_image(
    sid: str,
    cell: str,
    members: list[str] | None,
    by_id: dict[str, Path],
    match: Callable[[str], str | None],
    root: Path,
) -> Path | None:
    """The image a row shows: only ever a manifest image, never a path the queue's
    cell names (a tampered queue could name any file). A sample's own image, or for a
    group row (``members`` its train ids) the member the cell names, else its first."""
    if members is None:
        return by_id.get(match(sid) or "")
    member_paths = [by_id[m] for m in members]
    named = (Path(cell) if os.path.isabs(cell) else root / cell) if cell else None
    return named if named in member_paths else (member_paths[0] if member_paths else None)


def _row_probs(
    sid: str,
    members: list[str] | None,
    probs: dict[str, np.ndarray],
    n_runs: dict[str, int],
    origin: str,
) -> tuple[np.ndarray | None, str]:
    """A row's ``(K,)`` probabilities and where they come from, in words: a sample's
    own (mean of the runs that have it), or a group row's mean over its train images."""
    if members is not None:
        have = [probs[m] for m in members if m in probs]
        if not have:
            return None, ""
        source = f"mean over {len(have)} of the group's {len(members)} train images"
        return np.mean(have, axis=0), source
    if sid not in probs:
        return None, ""
    runs = n_runs.get(sid, 1)
    return probs[sid], origin + (f", mean of {runs} runs" if runs > 1 else "")


def _row_infos(
    table: pd.DataFrame, meta: QueueMeta, manifest: pd.DataFrame
) -> tuple[list[RowInfo], list[str]]:
    root = meta.manifest.parent
    by_id = _manifest_images(manifest, root)
    match = id_matcher(by_id)  # the queue's ids as a spreadsheet left them
    members = _group_members(manifest, meta.group_column)
    ids = [_text(s) for s in table["sample_id"]]
    group_of = {
        s: members.get(s[len(GROUP_PREFIX) :], []) for s in ids if s.startswith(GROUP_PREFIX)
    }
    # The manifest's id of each sample row, by the id rule (a spreadsheet trims cells).
    own = {s: match(s) or s for s in ids if not s.startswith(GROUP_PREFIX)}
    wanted = set(own.values()).union(*group_of.values())
    probs, n_runs, warnings = _run_probs(meta, wanted)
    origin = "out-of-fold" if meta.runs else f"from {meta.probs.name}" if meta.probs else ""
    columns = {c: table[c].tolist() for c in table.columns}
    infos = []
    for i, sid in enumerate(ids):
        cell = {c: _text(values[i]) for c, values in columns.items()}  # missing ones: blank
        mine = group_of.get(sid)  # None for a sample's row
        p, source = _row_probs(own.get(sid, sid), mine, probs, n_runs, origin)
        issue = cell.get("issue", "")
        partner = cell.get("partner", "")  # older queues have no such column
        infos.append(
            RowInfo(
                rank=cell.get("rank", ""),
                sample_id=sid,
                path=cell.get("path", ""),
                group=cell.get("group", ""),
                given=cell.get("given_label", ""),
                # By the kind: an older queue may still carry one on an outlier row.
                suggested=cell.get("suggested_label", "") if has_suggestion(issue) else "",
                quality=cell.get("label_quality", ""),
                issue=issue,
                note=cell.get("note", ""),
                is_group=mine is not None,
                members=None if mine is None else len(mine),
                image=_row_image(sid, cell.get("path", ""), mine, by_id, match, root),
                top=() if p is None else _top(p),
                probs_from=source,
                partner=partner,
                partner_image=by_id.get(match(partner) or "") if partner else None,
            )
        )
    return infos, warnings


def _check_ids(checked: CheckedQueue, file: str) -> None:
    """Every row's sample or group must be in the manifest, decided or not.

    ``cleaner apply`` checks only decided rows; here every row is about to be
    decided, and a decision on an unknown id would only fail later, in apply.
    So every row goes through apply's own check as if kept (keep fits every kind).
    """
    parse_decisions(
        checked.table.assign(decision="keep", new_label=""),
        file=file,
        classes=checked.meta.classes,
        manifest=checked.manifest,
        group=checked.meta.group_column,
        attributes=checked.meta.attributes,
    )


class ReviewQueue:
    """A checked queue CSV, its decisions in memory, and every change written at once.

    Thread-safe: the HTTP server calls it from one thread per request.
    """

    def __init__(self, queue_csv: str | Path) -> None:
        self.path = queue_csv_path(queue_csv)
        checked = check_queue(self.path)  # refuses what `cleaner apply` would refuse
        # The one reader and writer of a person's queue (queue_file.QueueText): cells are
        # changed, the rest is written back as the spreadsheet saved it.
        self.text = QueueText.read(self.path)
        self.meta = checked.meta
        self._manifest = checked.manifest
        _check_ids(checked, str(self.path))
        self._table = checked.table.copy()
        self.text.check_rows(self._table, str(self.path))
        self.rows, self.warnings = _row_infos(self._table, self.meta, self._manifest)
        # Per class (in class order), the images of queue.json's examples that the
        # manifest has; ids it lacks are skipped: examples only illustrate.
        by_id = _manifest_images(self._manifest, self.meta.manifest.parent)
        self.examples = [
            [by_id[e] for e in self.meta.examples.get(c, ()) if e in by_id][:EXAMPLES_PER_CLASS]
            for c in self.meta.classes
        ]
        self._position = {sid: k for k, sid in enumerate(self._manifest["sample_id"])}
        group = self.meta.group_column
        if group and group in self._manifest.columns:
            for k, g in enumerate(self._manifest[group]):
                self._position.setdefault(f"{GROUP_PREFIX}{g}", k)
        self._lock = threading.Lock()
        self._history: list[tuple[int, str, str]] = []  # (row, old decision, old new_label)
        self._on_disk = self.text.sha256
        self._render_image = lru_cache(maxsize=64)(_image_bytes)

    def __len__(self) -> int:
        return len(self.rows)

    def decision(self, i: int) -> tuple[str, str]:
        """Row ``i``'s decision (lower case) and new_label, as ``cleaner apply`` reads them."""
        return (
            self.text.cell(i, "decision").strip().lower(),
            self.text.cell(i, "new_label").strip(),
        )

    @property
    def reviewed(self) -> int:
        return sum(bool(self.decision(i)[0]) for i in range(len(self.rows)))

    def conflicts(self) -> list[str]:
        """Samples that two queue rows decide differently (``cleaner apply`` refuses those)."""
        try:
            decisions, _ = parse_decisions(
                self._table,
                file=str(self.path),
                classes=self.meta.classes,
                manifest=self._manifest,
                group=self.meta.group_column,
                attributes=self.meta.attributes,
            )
            expand_decisions(
                decisions,
                self._manifest,
                file=str(self.path),
                group=self.meta.group_column,
                attributes=self.meta.attributes,
            )
        except InputError as e:
            return [str(p) for p in e.problems]
        return []

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as the page shows it (JSON-ready)."""
        info = self.rows[i]
        decision, new_label = self.decision(i)
        return {
            "i": i,
            "rank": info.rank,
            "sample_id": info.sample_id,
            "path": info.path,
            "group": info.group,
            "given": info.given,
            "suggested": info.suggested,
            "quality": info.quality,
            "issue": info.issue,
            "note": info.note,
            "is_group": info.is_group,
            "members": info.members,
            "has_image": info.image is not None,
            "top": info.top,
            "probs_from": info.probs_from,
            "decision": decision,
            "new_label": new_label,
            # What the page offers for this row: the same table apply checks against.
            "suggests": has_suggestion(info.issue),
            "actions": list(allowed_decisions(info.issue)),
            "actions_text": actions_text(info.issue),
            "partner": info.partner,
            "has_partner_image": info.partner_image is not None,
        }

    def snapshot(self) -> dict[str, Any]:
        """Everything the page needs at start."""
        with self._lock:
            return {
                "title": f"relabel queue: {self.meta.manifest.name}",
                "file": str(self.path),
                "classes": list(self.meta.classes),
                "rows": [self.row(i) for i in range(len(self.rows))],
                "reviewed": self.reviewed,
                "total": len(self.rows),
                "warnings": self.warnings + self.conflicts(),
                "examples": [len(e) for e in self.examples],  # per class index
            }

    def _result(self, i: int) -> dict[str, Any]:
        return {
            "row": self.row(i),
            "reviewed": self.reviewed,
            "total": len(self.rows),
            "warnings": self.warnings + self.conflicts(),
        }

    def decide(self, i: int, decision: str, new_label: str = "") -> dict[str, Any]:
        """Set row ``i``'s decision and write the CSV; ``decision=""`` clears it.

        ``new_label`` counts only for ``relabel``, where it must be a class (or
        ``attribute=value`` with composite labels);
        blank means the suggested label, for kinds that have one. The checks are
        ``cleaner apply``'s own (:func:`cleaner.review.apply.parse_decisions`), so the
        page cannot write what apply would refuse. Raises ``ValueError`` for bad
        input, :class:`QueueChanged` if the file changed under us.
        """
        decision, new_label = decision.strip().lower(), new_label.strip()
        if not 0 <= i < len(self.rows):
            raise IndexError(f"no queue row {i}")
        with self._lock:
            new_label = self._checked(i, decision, new_label) if decision else ""
            if self.decision(i) != (decision, new_label):
                self._history.append((i, *self._store(i, decision, new_label)))
            return self._result(i)

    def _checked(self, i: int, decision: str, new_label: str) -> str:
        """Row ``i`` with this decision, through apply's checks: the new_label to write."""
        one = self._table.iloc[[i]].assign(decision=decision, new_label=new_label)
        lines = self._table.attrs.get("lines") or [line_of(k) for k in range(len(self._table))]
        one.attrs["lines"] = [lines[i]]
        # The one manifest row the decision is about (a group's first): parse_decisions
        # then costs nothing on a manifest of a million rows.
        at = self._position.get(self.rows[i].sample_id)
        try:
            (checked,), _ = parse_decisions(
                one,
                file=str(self.path),
                classes=self.meta.classes,
                manifest=self._manifest.iloc[[] if at is None else [at]],
                group=self.meta.group_column,
                attributes=self.meta.attributes,
            )
        except InputError as e:
            raise ValueError("; ".join(p.reason for p in e.problems)) from None
        # Only a relabel keeps a new_label: apply ignores it otherwise, and a stale one misleads.
        return checked.new_label if checked.action == "relabel" else ""

    def undo(self) -> dict[str, Any]:
        """Restore the row changed last to what it was before, and write the CSV."""
        with self._lock:
            if not self._history:
                raise LookupError("nothing to undo")
            i, decision, new_label = self._history[-1]
            self._store(i, decision, new_label)
            self._history.pop()
            return self._result(i)

    def _store(self, i: int, decision: str, new_label: str) -> tuple[str, str]:
        """Set row ``i``'s cells and write the CSV; returns the cells as they were.

        A write that fails leaves the row as it was, in memory as on disk.
        """
        old = (self.text.cell(i, "decision"), self.text.cell(i, "new_label"))
        before = self.text
        self.text = before.with_decisions({i: (decision, new_label)})
        try:
            self._write()
        except BaseException:
            self.text = before
            raise
        self._table.loc[self._table.index[i], ["decision", "new_label"]] = [decision, new_label]
        return old

    def render(self) -> bytes:
        """The CSV as it would be written now."""
        return self.text.render()

    def _write(self) -> None:
        # The folder's lock from the check to the rename: another writer of this queue
        # (a second review page, an import) either wrote before the check, which then
        # sees it, or waits for this write and then sees it itself.
        data = self.render()
        with project_lock(self.path.parent, f"cleaner review {self.path}"):
            replace_queue(
                self.path,
                data,
                expected=self._on_disk,
                changed=f"{self.path} was changed by another program since `cleaner review` "
                "read it; nothing was written. Stop `cleaner review` and start it again to "
                "go on from the file as it is now.",
            )
        self._on_disk = hashlib.sha256(data).digest()

    def image(self, i: int) -> tuple[str, bytes] | None:
        """Row ``i``'s image as ``(mime type, bytes)``, at most ``IMAGE_SIDE`` pixels;
        ``None`` when the row has none or it is missing or unreadable."""
        if not 0 <= i < len(self.rows) or self.rows[i].image is None:
            return None
        return self._render_image(self.rows[i].image)

    def partner_image(self, i: int) -> tuple[str, bytes] | None:
        """Like :meth:`image`, for the manifest's image of row ``i``'s partner."""
        if not 0 <= i < len(self.rows) or self.rows[i].partner_image is None:
            return None
        return self._render_image(self.rows[i].partner_image)

    def example_image(self, c: int, k: int) -> tuple[str, bytes] | None:
        """Like :meth:`image`, for example ``k`` of class ``c`` (queue.json's ``examples``)."""
        if not 0 <= c < len(self.examples) or not 0 <= k < len(self.examples[c]):
            return None
        return self._render_image(self.examples[c][k])


def _image_bytes(path: Path) -> tuple[str, bytes] | None:
    # Re-encoded, never sent as is: EXIF rotation, 16-bit and TIFF images then
    # show in any browser, and a huge photo costs the page only IMAGE_SIDE pixels.
    uri = thumbnail_data_uri(path, size=IMAGE_SIDE)
    if uri is None:
        return None
    head, payload = uri.split(",", 1)
    return head[len("data:") :].split(";", 1)[0], base64.b64decode(payload)


# --- the page -----------------------------------------------------------------------

# The page and its stylesheet and script are package files (cleaner/web); the
# stylesheet and script are inlined, pinned by hash in the CSP.
_STYLE = web.stylesheet("review.css")
_SCRIPT = web.read("review.js")

CSP = (
    "default-src 'none'; img-src 'self'; connect-src 'self'; "
    f"script-src {web.csp_hash(_SCRIPT)}; style-src {web.csp_hash(_STYLE)}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def render_page(token: str) -> bytes:
    """The review page (``web/review.html``); the token is the only value in it that
    is not a constant."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise ValueError("the token must be URL-safe base64")
    page = web.template("review.html").substitute(token=token, style=_STYLE, script=_SCRIPT)
    return page.encode()


def _json_bytes(value: Any) -> bytes:
    # <, > and & as \\u escapes: the JSON stays inert even if something ever
    # sniffed it as HTML.
    text = json.dumps(value, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


# --- the server ---------------------------------------------------------------------


class ReviewServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` on 127.0.0.1 serving one :class:`ReviewQueue`."""

    daemon_threads = True

    def __init__(
        self, queue: ReviewQueue, port: int = DEFAULT_PORT, allow_hosts: Sequence[str] = ()
    ) -> None:
        self.queue = queue
        self.token = secrets.token_urlsafe(24)
        self.page = render_page(self.token)
        # Checked before binding: a bad value leaves no socket behind.
        self.allowed = list(dict.fromkeys(parse_allowed_host(h) for h in allow_hosts))
        super().__init__((HOST, port), _Handler)
        self.port = int(self.server_address[1])
        self.hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}", *self.allowed}
        # A browser leaves the default port out of the Host header.
        self.hosts |= {h.removesuffix(":80") for h in self.allowed if h.endswith(":80")}

    @property
    def url(self) -> str:
        """The page's address with the token: the one way in (Jupyter's way)."""
        return f"http://{HOST}:{self.port}/?token={self.token}"

    @property
    def allowed_urls(self) -> list[str]:
        """The page's address through each ``--allow-host`` (a tunnel, a port forward)."""
        return [f"http://{h}/?token={self.token}" for h in self.allowed]

    @property
    def cookie(self) -> str:
        """The cookie that carries the token after the page was opened with it; named
        after the port, since cookies are shared by every port of a host."""
        return f"cleaner-review-{self.port}"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread; stop with :meth:`stop`."""
        # A short poll interval makes stop() quick; idle polling costs nothing here.
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="cleaner-review"
        )
        thread.daemon = True
        thread.start()
        return thread

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that drops a connection (a superseded image preload) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop a server started with :meth:`start_background` and close its socket."""
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "cleaner-review"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per image request would bury the URL the user needs."""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        # Other sites may not even embed the queue's images.
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Frame-Options", "DENY")
        for k, v in (headers or {"Cache-Control": "no-store"}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: int, message: str) -> None:
        self._send(status, message.encode() + b"\n", "text/plain; charset=utf-8")

    def _json(self, status: int, value: Any) -> None:
        self._send(status, _json_bytes(value), "application/json; charset=utf-8")

    def _host_ok(self) -> bool:
        # Host names are case-insensitive; the allowed ones are kept lower-cased.
        if self.headers.get("Host", "").lower() in self.server.hosts:
            return True
        self._text(HTTPStatus.FORBIDDEN, "forbidden: unexpected Host header")
        return False

    def _sent_tokens(self) -> list[str]:
        """The tokens the request carries: the API's header, the page's cookie (images,
        reloads) and, for the page, the ``?token=`` of the printed URL."""
        sent = [self.headers.get(_TOKEN_HEADER, "")]
        cookies = SimpleCookie()
        with contextlib.suppress(CookieError):
            cookies.load(self.headers.get("Cookie", ""))
        if self.server.cookie in cookies:
            sent.append(cookies[self.server.cookie].value)
        return sent

    def _has_token(self, *extra: str) -> bool:
        want = self.server.token.encode()
        return any(hmac.compare_digest(t.encode(), want) for t in (*self._sent_tokens(), *extra))

    def _token_ok(self) -> bool:
        if self._has_token():
            return True
        self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong token: reload the page"})
        return False

    def _page(self, query: str) -> None:
        """The page, only to a request that has the token: it holds the token, which
        any local process could otherwise read by asking (a shared GPU machine)."""
        given = parse_qs(query).get("token", [""])[0]
        if not self._has_token(given):
            self._text(
                HTTPStatus.FORBIDDEN,
                "forbidden: open the address `cleaner review` printed; it carries the token",
            )
            return
        cookie = f"{self.server.cookie}={self.server.token}; Path=/; HttpOnly; SameSite=Strict"
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
        self._send(
            HTTPStatus.OK,
            self.server.page,
            "text/html; charset=utf-8",
            headers | {"Set-Cookie": cookie},
        )

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        # The raw path, never unquoted or normalised: only the exact routes
        # below exist, so "..", "%2F" and absolute paths match nothing.
        path, _, query = self.path.partition("?")
        if path == "/":
            self._page(query)
        elif path == "/favicon.ico":
            # Browsers ask on their own; a 404 would be a console error on every load.
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        elif not self._token_ok():  # images too: they are the queue's data
            return
        elif path == "/api/queue":
            self._json(HTTPStatus.OK, self.server.queue.snapshot())
        elif (m := _IMG_ROUTE.fullmatch(path)) is not None:
            i = int(m.group(1))
            self._image(f"img-{i}", lambda: self.server.queue.image(i))
        elif (m := _PARTNER_ROUTE.fullmatch(path)) is not None:
            i = int(m.group(1))
            self._image(f"partner-{i}", lambda: self.server.queue.partner_image(i))
        elif (m := _EXAMPLE_ROUTE.fullmatch(path)) is not None:
            c, k = int(m.group(1)), int(m.group(2))
            self._image(f"example-{c}-{k}", lambda: self.server.queue.example_image(c, k))
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found")

    def _image(self, key: str, find: Callable[[], tuple[str, bytes] | None]) -> None:
        etag = f'"{self.server.token[:12]}-{key}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        found = find()
        if found is None:
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        mime, data = found
        self._send(HTTPStatus.OK, data, mime, {"Cache-Control": "no-cache", "ETag": etag})

    def do_POST(self) -> None:
        if not self._host_ok() or not self._token_ok():
            return
        path = self.path.split("?", 1)[0]
        if path not in ("/api/decide", "/api/undo"):
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        if self.headers.get_content_type() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "bad Content-Length"})
            return
        try:
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except RecursionError:  # thousands of nested brackets: malformed, not a crash
                raise ValueError("malformed JSON: nested too deeply") from None
            if not isinstance(body, dict):
                raise ValueError("send a JSON object")
            queue = self.server.queue
            if path == "/api/undo":
                result = queue.undo()
            else:
                row, decision, label = body.get("row"), body.get("decision"), body.get("new_label")
                if not isinstance(row, int) or isinstance(row, bool):
                    raise ValueError("row must be an integer")
                if not isinstance(decision, str) or not isinstance(label, str | None):
                    raise ValueError("decision and new_label must be strings")
                result = queue.decide(row, decision, label or "")
        except IndexError as e:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(e)})
        except (LookupError, QueueChanged) as e:  # nothing to undo; the file changed
            self._json(HTTPStatus.CONFLICT, {"error": str(e)})
        except ProjectLocked as e:  # another command writes the folder: try again later
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(e)})
        except ValueError as e:  # json.JSONDecodeError is one
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except WriteError as e:  # names the file and why
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(e)})
        except OSError as e:
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"could not write {self.server.queue.path}: {e}"},
            )
        else:
            self._json(HTTPStatus.OK, result)


def serve(
    queue_csv: str | Path, port: int = DEFAULT_PORT, allow_hosts: Sequence[str] = ()
) -> tuple[ReviewServer, str]:
    """Check the queue and bind a review server on 127.0.0.1; ``port=0`` picks a free port.

    ``allow_hosts`` (``HOST:PORT`` each, :func:`parse_allowed_host`) are
    further ``Host`` headers to answer, for a page opened through an SSH
    tunnel or a port forward; the server still binds 127.0.0.1 only and the
    API still needs the token.

    Returns the server (not yet serving: call ``serve_forever`` or
    :meth:`ReviewServer.start_background`) and its URL. Raises
    :class:`InputError` for a queue that does not validate or a port that is
    taken.
    """
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {port}")
    for h in allow_hosts:  # before the queue is read: the cheap check first
        parse_allowed_host(h)
    queue = ReviewQueue(queue_csv)
    try:
        server = ReviewServer(queue, port, allow_hosts)
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise InputError(
                f"cannot listen on {HOST}:{port} ({e.strerror}): "
                "pass another --port, or --port 0 for a free one"
            ) from None
        raise
    return server, server.url
