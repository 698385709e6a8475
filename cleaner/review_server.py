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
program changed since it was read is not overwritten (HTTP 409).

Security: the server binds 127.0.0.1 only and answers only requests whose
``Host`` is ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding page
cannot read or write the queue), or one that ``--allow-host HOST:PORT``
names, such as ``localhost:9000`` behind ``ssh -L 9000:localhost:8765``
(an exact name and port: no wildcard; the bind and the token stay).
Images are served by queue row number
(``/img/<row>``), never by a path from the request, so only images the queue
names can be read. A near duplicate's or leakage row's partner (``/partner/<row>``)
and the classes' example images (``/example/<class>/<k>``, from queue.json) are
the manifest's image of that sample id, never a path from the queue. The API
needs a per-server token from the page in a custom header, which other web
pages cannot send. The page itself holds no queue
data: the script fetches it as JSON and builds the DOM with ``textContent``,
and a Content-Security-Policy admits only the page's own script and style
(by hash) and same-origin images and requests.
"""

from __future__ import annotations

import base64
import csv
import errno
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import stat
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cleaner.atomic import atomic_path
from cleaner.errors import InputError, Problem, not_utf8
from cleaner.gallery import thumbnail_data_uri
from cleaner.issue_kinds import GROUP_PREFIX, actions_text, allowed_decisions, has_suggestion
from cleaner.manifest import id_matcher, line_of, resolve_paths, sha256_file
from cleaner.review import (
    QueueMeta,
    check_queue,
    expand_decisions,
    parse_decisions,
    sniff_delimiter,
)
from cleaner.runs import PROB_PREFIX

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


class QueueChanged(RuntimeError):
    """The queue CSV on disk is not the one this server read or last wrote."""


@dataclass(frozen=True)
class CsvFormat:
    """How a queue CSV was written, so that it is written back the same way."""

    delimiter: str = ","
    lineterminator: str = "\n"
    bom: bool = False


def _read_raw(path: Path) -> tuple[bytes, str, CsvFormat]:
    if not path.is_file():
        raise InputError([Problem(str(path), "queue file not found")])
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError([not_utf8(path, "queue as CSV UTF-8 from the spreadsheet")]) from None
    first = text.split("\n", 1)[0]
    fmt = CsvFormat(
        delimiter=sniff_delimiter(first),
        lineterminator="\r\n" if first.endswith("\r") else "\n",
        bom=data.startswith(b"\xef\xbb\xbf"),
    )
    return data, text, fmt


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


def _prob_columns(classes: Sequence[str]) -> list[str]:
    return [f"{PROB_PREFIX}{c}" for c in classes]


def _read_prob_table(
    path: Path, classes: Sequence[str], wanted: set[str]
) -> tuple[dict[str, np.ndarray], str | None]:
    """``sample_id -> (K,)`` for the wanted ids of an oof.csv / unlabeled.csv, or a warning.

    Only the needed columns are parsed: a queue names a few hundred rows of a
    table that may hold a million.
    """
    cols = ["sample_id", *_prob_columns(classes)]
    try:
        header = list(pd.read_csv(path, nrows=0).columns)
        missing = [c for c in cols if c not in header]
        if missing:
            return {}, f"{path}: no column(s) {', '.join(missing[:3])}: no model probabilities"
        table = pd.read_csv(path, usecols=cols, dtype={"sample_id": str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        return {}, f"{path}: not readable ({e}): no model probabilities from it"
    table = table[table["sample_id"].isin(wanted)]
    probs = table[cols[1:]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(probs).all(axis=1)
    return dict(zip(table["sample_id"][ok], probs[ok], strict=True)), None


def _file_probs(
    path: Path, sha256: str, classes: Sequence[str], wanted: set[str]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The probabilities of ``flag --probs FILE`` (the oof.csv layout), unless the file
    changed since the queue was made: then they are not the ones it was ranked by."""
    if not path.is_file():
        return {}, [f"{path} not found: no model probabilities"]
    if sha256 and sha256_file(path) != sha256:
        return {}, [f"{path} changed since the queue was made (sha256): no model probabilities"]
    found, warning = _read_prob_table(path, classes, wanted)
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
        tables = [run_dir / "oof.csv", run_dir / "unlabeled.csv"]
        if not tables[0].is_file():
            warnings.append(f"{tables[0]} not found: no model probabilities from run {run}")
            continue
        for table in tables:
            if not table.is_file():
                continue
            found, warning = _read_prob_table(table, meta.classes, wanted)
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


def _row_infos(
    table: pd.DataFrame, meta: QueueMeta, manifest: pd.DataFrame
) -> tuple[list[RowInfo], list[str]]:
    root = meta.manifest.parent
    by_id = _manifest_images(manifest, root)
    match = id_matcher(by_id)  # the queue's ids as a spreadsheet left them
    group_col = meta.group_column
    members: dict[str, list[str]] = {}
    if group_col and group_col in manifest.columns:
        train = manifest[manifest["split"] == "train"]
        members = {str(g): list(ids) for g, ids in train.groupby(group_col)["sample_id"]}
    ids = [_text(s) for s in table["sample_id"]]
    wanted = {s for s in ids if not s.startswith(GROUP_PREFIX)}
    for s in ids:
        if s.startswith(GROUP_PREFIX):
            wanted.update(members.get(s[len(GROUP_PREFIX) :], []))
    probs, n_runs, warnings = _run_probs(meta, wanted)
    origin = "out-of-fold" if meta.runs else f"from {meta.probs.name}" if meta.probs else ""
    blank = [""] * len(table)
    get = {c: table[c].tolist() for c in table.columns}
    infos = []
    for i, sid in enumerate(ids):
        raw_path = _text(get.get("path", blank)[i])
        is_group = sid.startswith(GROUP_PREFIX)
        # Only the manifest's images are served, never a path the queue's cell names
        # (a tampered queue could name any file): a sample's own image, or for a
        # group row the member the cell names (else its first member).
        image = by_id.get(match(sid) or "")
        if is_group:
            member_paths = [by_id[m] for m in members.get(sid[len(GROUP_PREFIX) :], [])]
            cell = (
                (Path(raw_path) if os.path.isabs(raw_path) else root / raw_path)
                if raw_path
                else None
            )
            image = cell if cell in member_paths else (member_paths[0] if member_paths else None)
        p: np.ndarray | None = None
        source = ""
        n_members: int | None = None
        if is_group:
            mine = members.get(sid[len(GROUP_PREFIX) :], [])
            n_members = len(mine)
            have = [probs[m] for m in mine if m in probs]
            if have:
                p = np.mean(have, axis=0)
                source = f"mean over {len(have)} of the group's {len(mine)} train images"
        elif sid in probs:
            p = probs[sid]
            runs = n_runs.get(sid, 1)
            source = origin + (f", mean of {runs} runs" if runs > 1 else "")
        issue = _text(get.get("issue", blank)[i])
        partner = _text(get.get("partner", blank)[i])  # older queues have no such column
        infos.append(
            RowInfo(
                rank=_text(get.get("rank", blank)[i]),
                sample_id=sid,
                path=raw_path,
                group=_text(get.get("group", blank)[i]),
                given=_text(get.get("given_label", blank)[i]),
                # By the kind: an older queue may still carry one on an outlier row.
                suggested=_text(get.get("suggested_label", blank)[i])
                if has_suggestion(issue)
                else "",
                quality=_text(get.get("label_quality", blank)[i]),
                issue=issue,
                note=_text(get.get("note", blank)[i]),
                is_group=is_group,
                members=n_members,
                image=image,
                top=() if p is None else _top(p),
                probs_from=source,
                partner=partner,
                partner_image=by_id.get(partner) if partner else None,
            )
        )
    return infos, warnings


def _check_ids(table: pd.DataFrame, manifest: pd.DataFrame, meta: QueueMeta, file: str) -> None:
    """Every row's sample or group must be in the manifest, decided or not.

    ``cleaner apply`` checks only decided rows; here every row is about to be
    decided, and a decision on an unknown id would only fail later, in apply.
    """
    match = id_matcher(manifest["sample_id"])
    group = meta.group_column
    groups = set(manifest[group]) if group and group in manifest.columns else set()
    # read_queue_table records where each row starts (blank lines, multi-line notes)
    lines = table.attrs.get("lines") or [line_of(i) for i in range(len(table))]
    problems = []
    for line, raw in zip(lines, table["sample_id"], strict=True):
        sid = raw.strip()
        if sid.startswith(GROUP_PREFIX):
            if sid[len(GROUP_PREFIX) :] not in groups:
                reason = f"group {sid[len(GROUP_PREFIX) :]!r} is not in the manifest"
                problems.append(Problem(file, reason, line))
        elif match(raw) is None:
            problems.append(Problem(file, f"sample_id {sid!r} is not in the manifest", line))
    if problems:
        raise InputError(problems)


class ReviewQueue:
    """A checked queue CSV, its decisions in memory, and every change written at once.

    Thread-safe: the HTTP server calls it from one thread per request.
    """

    def __init__(self, queue_csv: str | Path) -> None:
        self.path = Path(queue_csv)
        checked = check_queue(self.path)  # refuses what `cleaner apply` would refuse
        data, text, self.format = _read_raw(self.path)
        self.meta = checked.meta
        self._manifest = checked.manifest
        _check_ids(checked.table, checked.manifest, checked.meta, str(self.path))
        self._table = checked.table.copy()
        records = list(csv.reader(io.StringIO(text), delimiter=self.format.delimiter))
        if not records:
            raise InputError([Problem(str(self.path), "empty file", 1)])
        self._header = records[0]
        self._records = records[1:]  # [] for a blank line, kept as one
        self._data_rows = [k for k, r in enumerate(self._records) if r]
        names = [h.strip().lower() for h in self._header]
        self._sid_col = names.index("sample_id")
        self._decision_col = names.index("decision")
        if "new_label" not in names:
            # Deleted in a spreadsheet: appended, on disk only from the first decision.
            self._header.append("new_label")
            names.append("new_label")
            for record in self._records:
                if record:
                    record.extend([""] * (len(self._header) - len(record)))
        self._label_col = names.index("new_label")
        raw_ids = [self._cell(i, self._sid_col) for i in range(len(self._data_rows))]
        if raw_ids != self._table["sample_id"].tolist():
            raise InputError(
                [
                    Problem(
                        str(self.path),
                        "rows could not be read the same way twice (a quoting problem?): "
                        "save it again as CSV from the spreadsheet",
                    )
                ]
            )
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
        self._on_disk = hashlib.sha256(data).digest()
        self._render_image = lru_cache(maxsize=64)(_image_bytes)

    def __len__(self) -> int:
        return len(self.rows)

    def _cell(self, i: int, col: int) -> str:
        record = self._records[self._data_rows[i]]
        return record[col] if col < len(record) else ""

    def _set_cell(self, i: int, col: int, value: str) -> None:
        record = self._records[self._data_rows[i]]
        if col >= len(record):
            record.extend([""] * (col + 1 - len(record)))
        record[col] = value

    def decision(self, i: int) -> tuple[str, str]:
        """Row ``i``'s decision (lower case) and new_label, as ``cleaner apply`` reads them."""
        return (
            self._cell(i, self._decision_col).strip().lower(),
            self._cell(i, self._label_col).strip(),
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
        ``cleaner apply``'s own (:func:`cleaner.review.parse_decisions`), so the
        page cannot write what apply would refuse. Raises ``ValueError`` for bad
        input, :class:`QueueChanged` if the file changed under us.
        """
        decision, new_label = decision.strip().lower(), new_label.strip()
        if not 0 <= i < len(self.rows):
            raise IndexError(f"no queue row {i}")
        with self._lock:
            new_label = self._checked(i, decision, new_label) if decision else ""
            old = (self._cell(i, self._decision_col), self._cell(i, self._label_col))
            if self.decision(i) != (decision, new_label):
                self._set(i, decision, new_label)
                try:
                    self._write()
                except BaseException:
                    self._set(i, *old)
                    raise
                self._history.append((i, *old))
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
            now = (self._cell(i, self._decision_col), self._cell(i, self._label_col))
            self._set(i, decision, new_label)
            try:
                self._write()
            except BaseException:
                self._set(i, *now)
                raise
            self._history.pop()
            return self._result(i)

    def _set(self, i: int, decision: str, new_label: str) -> None:
        self._set_cell(i, self._decision_col, decision)
        self._set_cell(i, self._label_col, new_label)
        self._table.loc[self._table.index[i], ["decision", "new_label"]] = [decision, new_label]

    def render(self) -> bytes:
        """The CSV as it would be written now."""
        out = io.StringIO()
        writer = csv.writer(
            out, delimiter=self.format.delimiter, lineterminator=self.format.lineterminator
        )
        writer.writerow(self._header)
        writer.writerows(self._records)
        return ("\ufeff" if self.format.bom else "").encode() + out.getvalue().encode("utf-8")

    def _write(self) -> None:
        try:
            current = self.path.read_bytes()
        except FileNotFoundError:
            current = b""
        if hashlib.sha256(current).digest() != self._on_disk:
            raise QueueChanged(
                f"{self.path} was changed by another program since `cleaner review` read it; "
                "nothing was written. Stop `cleaner review` and start it again to go on "
                "from the file as it is now."
            )
        data = self.render()
        mode = stat.S_IMODE(self.path.stat().st_mode)
        with atomic_path(self.path, overwrite=True) as tmp:
            tmp.write_bytes(data)
            os.chmod(tmp, mode)  # mkstemp makes it 0600; keep the queue's own mode
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

_CSS = """
:root {
  --given: #b42318; --given-bg: #fef3f2; --suggested: #067647; --suggested-bg: #ecfdf3;
  --ink: #1d2939; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --accent: #3538cd;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html, body { height: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink); display: flex; flex-direction: column;
  font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
header {
  display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: #fff;
  border-bottom: 1px solid var(--line);
}
h1 { font-size: 17px; margin: 0; overflow-wrap: anywhere; }
#file { color: var(--muted); font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; }
.progress {
  margin-left: auto; display: flex; align-items: center; gap: 10px; white-space: nowrap;
  font-variant-numeric: tabular-nums;
}
.bar { width: 180px; height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; }
#bar-fill { height: 100%; width: 0; background: var(--suggested); }
#position { color: var(--muted); }
.banner { padding: 8px 20px; font-size: 14px; white-space: pre-wrap; overflow-wrap: anywhere; }
#error { background: #fef3f2; color: var(--given); border-bottom: 1px solid #fecdca; }
#warnings { background: #fffaeb; color: #93370d; border-bottom: 1px solid #fedf89; }
main { flex: 1; display: flex; min-height: 0; }
.viewer { flex: 1; position: relative; min-width: 0; background: #e9ebef; }
#image {
  position: absolute; inset: 16px; width: calc(100% - 32px); height: calc(100% - 32px);
  object-fit: contain;
}
#image.loading { visibility: hidden; }
.viewer.paired #image { width: calc(50% - 24px); }
#partner {
  position: absolute; top: 16px; right: 16px; width: calc(50% - 24px);
  height: calc(100% - 32px); object-fit: contain;
}
.cap {
  position: absolute; top: 2px; padding: 0 8px; border-radius: 4px; font-size: 12px;
  background: rgba(255, 255, 255, .85); color: var(--ink); max-width: 45%; overflow-wrap: anywhere;
}
#image-cap { left: 16px; }
#partner-cap { right: 16px; }
#noimg {
  position: absolute; inset: 16px; display: flex; align-items: center; justify-content: center;
  border: 2px dashed #d0d5dd; border-radius: 8px; color: var(--muted); font-size: 18px;
}
#toast {
  position: absolute; left: 24px; bottom: 24px; background: rgba(16, 24, 40, .85);
  color: #fff; padding: 6px 12px; border-radius: 6px; font-size: 14px; max-width: 70%;
  overflow-wrap: anywhere;
}
.panel {
  width: 400px; flex: none; overflow-y: auto; background: #fff; border-left: 1px solid var(--line);
  padding: 16px 18px; display: flex; flex-direction: column; gap: 14px;
}
.head { display: flex; gap: 8px; align-items: baseline; }
#rank { color: var(--muted); font-variant-numeric: tabular-nums; }
#sid { font-weight: 600; font-size: 16px; overflow-wrap: anywhere; }
.tags { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; font-size: 13px; }
.tag { padding: 1px 8px; border-radius: 10px; background: #eef4ff; color: var(--accent); }
.muted { color: var(--muted); }
.labels { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
.lab { border-radius: 8px; padding: 8px 10px; min-width: 0; }
.lab small { display: block; font-size: 12px; opacity: .8; }
.lab b { display: block; font-size: 22px; overflow-wrap: anywhere; }
.lab.given { background: var(--given-bg); color: var(--given); }
.lab.suggested { background: var(--suggested-bg); color: var(--suggested); }
.lab.none { background: #f2f4f7; color: var(--muted); }
.lab.none span { display: block; font-size: 13px; }
#actions { font-size: 13px; color: var(--muted); }
#actions b { color: var(--ink); }
.exname { text-transform: none; letter-spacing: 0; color: var(--ink); font-size: 13px; }
.strip { display: flex; gap: 6px; flex-wrap: wrap; }
.strip img {
  width: 80px; height: 80px; object-fit: contain; background: #f2f4f7; border-radius: 6px;
  image-rendering: pixelated;
}
#decision {
  border-radius: 8px; padding: 10px 12px; font-size: 17px; font-weight: 600;
  border: 2px dashed #d0d5dd; color: var(--muted);
}
#decision.keep { border: 2px solid #2e90fa; background: #eff8ff; color: #175cd3; }
#decision.relabel { border: 2px solid #12b76a; background: var(--suggested-bg); color: #05603a; }
#decision.drop { border: 2px solid #667085; background: #f2f4f7; color: #344054; }
#decision.unsure { border: 2px solid #f79009; background: #fffaeb; color: #b54708; }
h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted);
  margin: 0 0 6px; }
ol.classes { list-style: none; margin: 0; padding: 0; display: flex; flex-direction: column;
  gap: 3px; }
ol.classes li {
  display: grid; grid-template-columns: 28px minmax(0, 1fr) 90px 52px; gap: 8px;
  align-items: center; padding: 3px 6px; border-radius: 6px; cursor: pointer;
}
ol.classes li:hover { background: #f2f4f7; }
ol.classes li.is-given .name { color: var(--given); }
ol.classes li.is-suggested .name { color: var(--suggested); font-weight: 600; }
ol.classes li.chosen { outline: 2px solid #12b76a; }
.name { overflow-wrap: anywhere; }
.pbar { height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; }
.pbar span { display: block; height: 100%; background: #84adff; }
.pct {
  text-align: right; font-variant-numeric: tabular-nums; color: var(--muted); font-size: 13px;
}
kbd {
  display: inline-block; min-width: 22px; padding: 1px 6px; text-align: center;
  border: 1px solid #d0d5dd; border-bottom-width: 2px; border-radius: 5px; background: #fff;
  font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; color: var(--ink);
}
.small { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; }
footer {
  display: flex; flex-wrap: wrap; gap: 6px 16px; padding: 10px 20px; background: #fff;
  border-top: 1px solid var(--line); align-items: center;
}
footer button {
  font: inherit; font-size: 14px; border: 0; background: none; padding: 2px 4px;
  cursor: pointer; color: var(--ink); border-radius: 6px;
}
footer button:hover { background: #f2f4f7; }
footer button:disabled { color: #c0c4cc; cursor: not-allowed; background: none; }
footer > span { font-size: 14px; }
footer > .small { margin-left: auto; font-size: 12px; }
#ta {
  position: absolute; top: 24px; left: 50%; transform: translateX(-50%); width: 360px;
  background: #fff; border-radius: 10px; box-shadow: 0 8px 24px rgba(16, 24, 40, .25);
  padding: 12px;
}
#ta input {
  width: 100%; font: inherit; font-size: 18px; padding: 6px 8px; border: 1px solid #d0d5dd;
  border-radius: 6px;
}
#ta ul { list-style: none; margin: 8px 0 0; padding: 0; max-height: 50vh; overflow-y: auto; }
#ta li { padding: 4px 8px; border-radius: 6px; cursor: pointer; overflow-wrap: anywhere; }
#ta li.sel { background: var(--suggested-bg); color: var(--suggested); font-weight: 600; }
"""

# No queue data is ever placed in this page: the script fetches it as JSON and
# builds every node with textContent. No "//" comments in it either, like the
# gallery's script.
_JS = """
(function () {
  "use strict";
  var token = document.querySelector('meta[name="review-token"]').getAttribute("content");
  var S = { rows: [], classes: [], cur: 0, pending: 0, chain: Promise.resolve(), ta: null,
            digitNames: false, warnings: [], examples: [], exKey: null };
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function pct(p) { return (100 * p).toFixed(1) + "%"; }

  function setBusy(d) {
    S.pending += d;
    document.body.setAttribute("data-busy", String(S.pending));
  }
  function api(method, url, body) {
    var opts = { method: method, headers: {}, cache: "no-store" };
    opts.headers["X-Review-Token"] = token;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).catch(function () {
      throw new Error("could not reach the review server: is `cleaner review` still running?" +
                      " Nothing was lost: every earlier decision is in the CSV.");
    }).then(function (r) {
      return r.text().then(function (t) {
        var data = null;
        try { data = JSON.parse(t); } catch (e) { data = null; }
        if (!r.ok) { throw new Error((data && data.error) || t || ("HTTP " + r.status)); }
        return data;
      });
    });
  }
  function enqueue(fn) {
    setBusy(1);
    S.chain = S.chain.then(fn).then(function () { $("error").hidden = true; }, function (err) {
      $("error").textContent = err.message;
      $("error").hidden = false;
    }).then(function () { setBusy(-1); });
  }
  var toastTimer = null;
  function toast(text) {
    var t = $("toast");
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { t.hidden = true; }, 1800);
  }
  function flashError(text) {
    $("error").textContent = text;
    $("error").hidden = false;
  }

  function allows(r, decision) { return r.actions.indexOf(decision) !== -1; }
  function actionsHint(r) {
    return "this " + r.issue + " row takes " + r.actions_text;
  }
  function noSuggestionHint(r) {
    if (!allows(r, "relabel")) { return actionsHint(r); }
    return (r.suggests ? "no suggested label" : "a " + r.issue + " row has no suggestion") +
      ": pick a class with its number or type its name";
  }
  function drawExamples(r) {
    var suggested = r.suggests ? r.suggested : "", key = JSON.stringify([r.given, suggested]);
    if (S.exKey === key) { return; }
    S.exKey = key;
    var box = $("examples"), shown = [];
    clear(box);
    [r.given, suggested].forEach(function (name) {
      var c = S.classes.indexOf(name), n = c < 0 ? 0 : (S.examples[c] || 0);
      if (!n || shown.indexOf(c) !== -1) { return; }
      shown.push(c);
      var sec = el("div", "ex"), strip = el("div", "strip");
      var h = el("h2", null, "examples of ");
      h.appendChild(el("span", "exname", name));  /* a class name keeps its case */
      sec.appendChild(h);
      for (var k = 0; k < n; k++) {
        var im = el("img", "example");
        im.alt = "example of " + name;
        im.addEventListener("error", function () { this.hidden = true; });
        im.setAttribute("src", "/example/" + c + "/" + k);
        strip.appendChild(im);
      }
      sec.appendChild(strip);
      box.appendChild(sec);
    });
    box.hidden = shown.length === 0;
  }
  function drawPartner(r) {
    var img = $("partner"), cap = $("partner-cap"), src = "/partner/" + r.i;
    $("viewer").classList.toggle("paired", !!r.partner);
    $("image-cap").hidden = !r.partner;
    cap.hidden = !r.partner;
    cap.textContent = r.partner ? "partner: " + r.partner +
      (r.has_partner_image ? "" : " (not in the manifest)") : "";
    img.alt = r.partner;
    if (r.partner && r.has_partner_image) {
      img.hidden = false;
      if (img.getAttribute("src") !== src) { img.setAttribute("src", src); }
    } else {
      img.hidden = true;
      img.removeAttribute("src");
    }
  }

  function describe(r) {
    if (!r.decision) { return "not reviewed yet"; }
    if (r.decision === "relabel") { return "relabel \\u2192 " + (r.new_label || r.suggested); }
    if (r.decision === "drop") { return "drop (excluded from training)"; }
    if (r.decision === "unsure") { return "unsure (kept, lower weight)"; }
    return "keep the given label";
  }
  function probs(r) {
    var m = {};
    r.top.forEach(function (t) { m[t[0]] = t[1]; });
    return m;
  }
  function order(r) {
    var seen = {}, idx = r.top.map(function (t) { seen[t[0]] = true; return t[0]; });
    S.classes.forEach(function (c, i) { if (!seen[i]) { idx.push(i); } });
    return idx;
  }
  function keyed(r) {
    var idx;
    if (S.digitNames) {
      return S.classes.map(function (c, i) { return { key: c, i: i }; });
    }
    idx = S.classes.length <= 9 ? S.classes.map(function (c, i) { return i; })
                                : order(r).slice(0, 9);
    return idx.map(function (i, k) { return { key: String(k + 1), i: i }; });
  }
  function classRow(r, key, i) {
    var li = el("li"), name = S.classes[i], bar = el("div", "pbar"), fill = el("span");
    var p = probs(r)[i];
    li.appendChild(key === null ? el("span") : el("kbd", null, key));
    li.appendChild(el("span", "name", name));
    if (p !== undefined) { fill.style.width = pct(p); bar.appendChild(fill); }
    li.appendChild(bar);
    li.appendChild(el("span", "pct", p !== undefined ? pct(p) : ""));
    if (name === r.given) { li.classList.add("is-given"); li.title = "given label"; }
    if (name === r.suggested) { li.classList.add("is-suggested"); li.title = "suggested label"; }
    if (r.decision === "relabel" && name === (r.new_label || r.suggested)) {
      li.classList.add("chosen");
    }
    li.addEventListener("click", function () { relabel(name); });
    return li;
  }

  function render() {
    var n = S.rows.length, reviewed = S.rows.filter(function (r) { return r.decision; }).length;
    $("n-reviewed").textContent = String(reviewed);
    $("n-total").textContent = String(n);
    $("bar-fill").style.width = n ? (100 * reviewed / n) + "%" : "0";
    $("warnings").textContent = S.warnings.join("\\n");
    $("warnings").hidden = S.warnings.length === 0;
    if (!n) {
      $("position").textContent = "";
      $("panel").hidden = true;
      $("noimg-text").textContent = "The queue is empty.";
      $("noimg").hidden = false;
      $("image").hidden = true;
      return;
    }
    var r = S.rows[S.cur];
    $("position").textContent = "row " + (S.cur + 1) + " of " + n;
    $("rank").textContent = "#" + r.rank;
    $("sid").textContent = r.sample_id;
    $("given").textContent = r.given || "(none)";
    $("suggested").textContent = r.suggested || "(none)";
    $("suggested-box").hidden = !r.suggests;
    $("nosugg").hidden = r.suggests;
    $("nosugg-text").textContent = allows(r, "relabel") ?
      "relabel: pick a class (1-9) or type its name" : "keep (k) or drop (d) only";
    $("actions-text").textContent = r.actions_text;
    $("accept-btn").hidden = !r.suggests || !allows(r, "relabel");
    $("pick-hint").hidden = !allows(r, "relabel");
    Array.prototype.forEach.call(document.querySelectorAll("footer button[data-decision]"),
      function (b) { b.disabled = !allows(r, b.getAttribute("data-decision")); });
    var tags = $("tags");
    clear(tags);
    if (r.issue) { tags.appendChild(el("span", "tag", r.issue)); }
    if (r.quality) { tags.appendChild(el("span", "muted", "label quality " + r.quality)); }
    if (r.group) { tags.appendChild(el("span", "muted", "group " + r.group)); }
    $("group-note").hidden = !r.is_group;
    $("group-note").textContent = r.is_group ?
      "Group row: the decision applies to all " + (r.members === null ? "" : r.members + " ") +
      "train images of the group; the image is its first." : "";
    $("decision").textContent = describe(r);
    $("decision").className = r.decision || "";

    var top = $("top3");
    clear(top);
    if (r.top.length) {
      order(r).slice(0, 3).forEach(function (i) { top.appendChild(classRow(r, null, i)); });
    } else {
      top.appendChild(el("li", "small", "no model probabilities for this row"));
    }
    $("probs-from").textContent = r.probs_from;
    var list = $("classes");
    clear(list);
    keyed(r).forEach(function (k) { list.appendChild(classRow(r, k.key, k.i)); });
    $("classes-title").textContent = !allows(r, "relabel") ? "classes (not relabelled here)" :
      S.digitNames ? "classes: press the class's digit" :
      S.classes.length <= 9 ? "classes: press 1-" + S.classes.length :
      "most likely classes: press 1-9, or type a name";
    $("note").textContent = r.note;
    $("note").hidden = !r.note;
    $("path").textContent = r.path;

    var img = $("image"), src = "/img/" + r.i;
    img.alt = r.sample_id;
    if (r.has_image) {
      $("noimg").hidden = true;
      img.hidden = false;
      if (img.getAttribute("src") !== src) {
        img.classList.add("loading");
        img.setAttribute("src", src);
      }
    } else {
      img.hidden = true;
      img.removeAttribute("src");
      $("noimg-text").textContent = "no single image for this row";
      $("noimg").hidden = false;
    }
    drawPartner(r);
    drawExamples(r);
    [S.cur + 1, S.cur - 1].forEach(function (j) {
      if (j >= 0 && j < n && S.rows[j].has_image) { new Image().src = "/img/" + S.rows[j].i; }
    });
  }

  function update(d) {
    S.rows[d.row.i] = d.row;
    S.warnings = d.warnings;
  }
  function move(step) {
    if (!S.rows.length) { return; }
    S.cur = Math.min(S.rows.length - 1, Math.max(0, S.cur + step));
    render();
  }
  function decide(decision, label) {
    if (!S.rows.length) { return; }
    var i = S.cur;
    if (decision && !allows(S.rows[i], decision)) { toast(actionsHint(S.rows[i])); return; }
    enqueue(function () {
      return api("POST", "/api/decide", { row: i, decision: decision, new_label: label || "" })
        .then(function (d) {
          update(d);
          toast("#" + d.row.rank + " saved: " + describe(d.row));
          render();
        }, function (err) { S.cur = i; render(); throw err; });
    });
    move(1);
  }
  function relabel(name) { decide("relabel", name); }
  function accept() {
    var r = S.rows[S.cur];
    if (!r) { return; }
    if (!r.suggests || !r.suggested || !allows(r, "relabel")) {
      toast(noSuggestionHint(r));
      return;
    }
    relabel(r.suggested);
  }
  function pickKey(key) {
    var r = S.rows[S.cur];
    if (!r) { return; }
    var k = keyed(r).filter(function (x) { return x.key === key; })[0];
    if (k) { relabel(S.classes[k.i]); }
  }
  function undo() {
    enqueue(function () {
      return api("POST", "/api/undo", {}).then(function (d) {
        update(d);
        S.cur = d.row.i;
        toast("undone: #" + d.row.rank + " is " + describe(d.row) + " again");
        render();
      });
    });
  }

  function openTA(initial) {
    var r = S.rows[S.cur];
    if (r && !allows(r, "relabel")) { toast(actionsHint(r)); return; }
    S.ta = { sel: 0, matches: [] };
    $("ta").hidden = false;
    var input = $("ta-input");
    input.value = initial;
    input.focus();
    filterTA();
  }
  function closeTA() {
    if (!S.ta) { return; }
    S.ta = null;
    $("ta").hidden = true;
    $("ta-input").blur();
  }
  function filterTA() {
    var q = $("ta-input").value.trim().toLowerCase(), pre = [], sub = [];
    S.classes.forEach(function (c) {
      var l = c.toLowerCase();
      if (l.indexOf(q) === 0) { pre.push(c); } else if (l.indexOf(q) > 0) { sub.push(c); }
    });
    S.ta.matches = pre.concat(sub);
    S.ta.sel = 0;
    drawTA();
  }
  function drawTA() {
    var ul = $("ta-list");
    clear(ul);
    S.ta.matches.slice(0, 50).forEach(function (c, k) {
      var li = el("li", k === S.ta.sel ? "sel" : "", c);
      li.addEventListener("mousedown", function (e) { e.preventDefault(); closeTA(); relabel(c); });
      ul.appendChild(li);
    });
    if (!S.ta.matches.length) { ul.appendChild(el("li", "small", "no class matches")); }
  }
  $("ta-input").addEventListener("input", filterTA);
  $("ta-input").addEventListener("blur", closeTA);
  $("ta-input").addEventListener("keydown", function (e) {
    e.stopPropagation();
    var n = Math.min(S.ta.matches.length, 50);
    if (e.key === "Enter") {
      e.preventDefault();
      var pick = S.ta.matches[S.ta.sel];
      if (pick !== undefined) { closeTA(); relabel(pick); }
    } else if (e.key === "Escape") {
      e.preventDefault();
      closeTA();
    } else if ((e.key === "ArrowDown" || e.key === "ArrowUp") && n) {
      e.preventDefault();
      S.ta.sel = (S.ta.sel + (e.key === "ArrowDown" ? 1 : n - 1)) % n;
      drawTA();
    }
  });

  var actions = { keep: function () { decide("keep"); }, accept: accept,
                  drop: function () { decide("drop"); }, unsure: function () { decide("unsure"); },
                  undo: undo, prev: function () { move(-1); }, next: function () { move(1); },
                  type: function () { openTA(""); } };
  document.addEventListener("keydown", function (e) {
    if (S.ta || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) { return; }
    var k = e.key, lower = k.length === 1 ? k.toLowerCase() : k, handled = true;
    if (lower === "k") { actions.keep(); }
    else if (lower === "r" || k === "Enter") { accept(); }
    else if (lower === "d") { actions.drop(); }
    else if (lower === "u") { actions.unsure(); }
    else if (lower === "z") { undo(); }
    else if (k === "ArrowLeft" || k === "ArrowUp") { move(-1); }
    else if (k === "ArrowRight" || k === "ArrowDown") { move(1); }
    else if (k === "/") { openTA(""); }
    else if (/^[0-9]$/.test(k)) { pickKey(k); }
    else if (k.length === 1 && k.trim()) { openTA(k); }
    else { handled = false; }
    if (handled) { e.preventDefault(); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("footer button"), function (b) {
    b.addEventListener("click", function () {
      b.blur();
      actions[b.getAttribute("data-action")]();
    });
  });
  $("image").addEventListener("load", function () { $("image").classList.remove("loading"); });
  $("partner").addEventListener("error", function () {
    if (!$("partner").getAttribute("src")) { return; }
    $("partner").hidden = true;
    $("partner-cap").textContent += " (image missing or unreadable)";
  });
  $("image").addEventListener("error", function () {
    if (!$("image").getAttribute("src")) { return; }
    $("image").hidden = true;
    $("noimg-text").textContent = "image missing or unreadable";
    $("noimg").hidden = false;
  });

  setBusy(1);
  api("GET", "/api/queue").then(function (d) {
    S.rows = d.rows;
    S.classes = d.classes;
    S.warnings = d.warnings;
    S.examples = d.examples || [];
    S.digitNames = d.classes.length > 0 && d.classes.length <= 10 &&
      d.classes.every(function (c) { return /^[0-9]$/.test(c); });
    $("title").textContent = d.title;
    document.title = "review: " + d.title;
    $("file").textContent = d.file;
    var first = S.rows.findIndex(function (r) { return !r.decision; });
    S.cur = first < 0 ? 0 : first;
    render();
  }).catch(function (err) { flashError(err.message); }).then(function () { setBusy(-1); });
})();
"""

_BODY = """
<header>
  <div><h1 id="title">relabel queue</h1><div id="file"></div></div>
  <div class="progress">
    <span id="position"></span>
    <span>reviewed <b id="n-reviewed">0</b> of <b id="n-total">0</b></span>
    <div class="bar"><div id="bar-fill"></div></div>
  </div>
</header>
<div id="error" class="banner" role="alert" hidden></div>
<div id="warnings" class="banner" hidden></div>
<main>
  <section class="viewer" id="viewer">
    <img id="image" alt="" class="loading">
    <img id="partner" alt="" hidden>
    <div class="cap" id="image-cap" hidden>this image</div>
    <div class="cap" id="partner-cap" hidden></div>
    <div id="noimg" hidden><span id="noimg-text"></span></div>
    <div id="ta" hidden>
      <input id="ta-input" type="text" autocomplete="off" spellcheck="false"
             placeholder="type a class name, Enter to relabel, Esc to cancel">
      <ul id="ta-list"></ul>
    </div>
    <div id="toast" role="status" hidden></div>
  </section>
  <aside class="panel" id="panel">
    <div class="head"><span id="rank"></span><span id="sid"></span></div>
    <div class="tags" id="tags"></div>
    <div class="labels">
      <div class="lab given"><small>given label</small><b id="given"></b></div>
      <div class="lab suggested" id="suggested-box"><small>suggested (r / Enter)</small>
        <b id="suggested"></b></div>
      <div class="lab none" id="nosugg" hidden><small>no suggested class</small>
        <span id="nosugg-text"></span></div>
    </div>
    <div id="actions">decide: <b id="actions-text"></b></div>
    <div id="examples" hidden></div>
    <div class="small" id="group-note" hidden></div>
    <div id="decision"></div>
    <div><h2>model's top 3</h2><ol class="classes" id="top3"></ol>
      <div class="small" id="probs-from"></div></div>
    <div><h2 id="classes-title">classes</h2><ol class="classes" id="classes"></ol></div>
    <div class="small" id="note" hidden></div>
    <div class="small mono" id="path"></div>
  </aside>
</main>
<footer>
  <button data-action="keep" data-decision="keep"><kbd>k</kbd> keep</button>
  <button data-action="accept" id="accept-btn">
    <kbd>r</kbd> / <kbd>Enter</kbd> accept suggestion</button>
  <span id="pick-hint"><kbd>1</kbd>-<kbd>9</kbd> pick a class</span>
  <button data-action="type" data-decision="relabel">
    <kbd>/</kbd> or a letter: type a class name</button>
  <button data-action="drop" data-decision="drop"><kbd>d</kbd> drop</button>
  <button data-action="unsure" data-decision="unsure"><kbd>u</kbd> unsure</button>
  <button data-action="prev"><kbd>&larr;</kbd> previous</button>
  <button data-action="next"><kbd>&rarr;</kbd> next</button>
  <button data-action="undo"><kbd>z</kbd> undo</button>
  <span class="small">each decision is saved to the CSV at once</span>
</footer>
"""


def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CSP = (
    "default-src 'none'; img-src 'self'; connect-src 'self'; "
    f"script-src {_csp_hash(_JS)}; style-src {_csp_hash(_CSS)}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def render_page(token: str) -> bytes:
    """The review page; the token is the only value in it that is not a constant."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise ValueError("the token must be URL-safe base64")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="review-token" content="{token}">\n'
        "<title>cleaner review</title>\n"
        f'<style>{_CSS}</style>\n</head>\n<body data-busy="0">{_BODY}'
        f"<script>{_JS}</script>\n</body>\n</html>\n"
    ).encode()


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
        return f"http://{HOST}:{self.port}/"

    @property
    def allowed_urls(self) -> list[str]:
        """The page's address through each ``--allow-host`` (a tunnel, a port forward)."""
        return [f"http://{h}/" for h in self.allowed]

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

    def _token_ok(self) -> bool:
        sent = self.headers.get(_TOKEN_HEADER, "")
        if hmac.compare_digest(sent.encode(), self.server.token.encode()):
            return True
        self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong token: reload the page"})
        return False

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        # The raw path, never unquoted or normalised: only the exact routes
        # below exist, so "..", "%2F" and absolute paths match nothing.
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(
                HTTPStatus.OK,
                self.server.page,
                "text/html; charset=utf-8",
                {"Content-Security-Policy": CSP, "Cache-Control": "no-store"},
            )
        elif path == "/api/queue":
            if self._token_ok():
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
        elif path == "/favicon.ico":
            # Browsers ask on their own; a 404 would be a console error on every load.
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
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
        except ValueError as e:  # json.JSONDecodeError is one
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
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
