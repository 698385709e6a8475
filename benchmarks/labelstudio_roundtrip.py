"""The Label Studio round trip against a real Label Studio, not hand-made files.

``cleaner export labelstudio`` and ``cleaner import labelstudio`` are tested on
exports written by hand to Label Studio's documented schema
(``tests/review/test_labelstudio*.py``). This script checks them against the real
thing: the pinned ``label-studio`` of ``.venv-labelstudio`` (``make
labelstudio-venv``; its own environment, as it pins Django and many others),
started on 127.0.0.1 with a throwaway data folder, driven through its REST API:

1. the hand-made project of the tests (``test_labelstudio.undecided_project``: a
   manifest, real PNGs, ``queue.csv`` + ``queue.json``; nothing trained) is
   exported by the CLI; Label Studio starts with the document root it printed;
2. a project is created with the labeling config the export wrote (Label Studio
   must read its choices as the classes then keep, drop, unsure), a Local Files
   storage is added, the tasks file is uploaded as the import dialog uploads it,
   and every task's image is fetched back through ``/data/local-files/``;
3. the admin annotates every task (a relabel, the suggestion accepted, keep,
   drop, unsure, the given label as a class, a skip); the JSON export is read by
   ``cleaner import labelstudio`` and every ``decision``/``new_label`` cell of
   ``queue.csv`` must be what was submitted, every other cell unchanged;
4. a second annotator signs up through the organization's invite link (a real
   second user with its own token) and annotates differently; the new export
   is refused without ``--force`` (queue unchanged), taken with it (the last
   annotation counts), and ``--annotations`` writes the long form of both
   annotators: named ``labelstudio-user-ID`` from the export's user ids, and by
   email from a snapshot export that expands ``completed_by``.

Any mismatch exits 1, listing them all; a Label Studio that does not start or
answer exits 2. ``.ci/run`` runs it after the tests (``make labelstudio-roundtrip``).

    python -m benchmarks.labelstudio_roundtrip [--label-studio PATH] [--keep DIR]

API as Label Studio documents it (https://api.labelstud.io, guide/api.md,
guide/access_tokens.md): ``Authorization: Token KEY`` (a legacy token, enabled
with ``--enable-legacy-api-token``), ``POST /api/projects/``, ``POST
/api/storages/localfiles``, ``POST /api/projects/ID/import``, ``POST
/api/tasks/ID/annotations/``, ``GET /api/projects/ID/export?exportType=JSON``
and export snapshots (``POST /api/projects/ID/exports/``, then ``.../download``).
"""

from __future__ import annotations

import argparse
import csv
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LABEL_STUDIO = ROOT / ".venv-labelstudio" / "bin" / "label-studio"
START_TIMEOUT_S = 300  # a fresh data folder runs every migration first (~40 s on 2 cores)

# What each annotator answers, per sample_id of the tests' queue (classes a, b, c):
# a choice of the exported config, or SKIP (Label Studio's Skip: a cancelled annotation).
SKIP = None
FIRST: dict[str, str | None] = {
    "group:g8": "a",  # given b, suggested c: a third class
    "s02": "a",  # the pre-annotated suggestion accepted
    "s03": "keep",
    "s04": "drop",
    "s05": "unsure",
    "s01": "a",  # the given label chosen as a class: keep
    "s07": SKIP,  # skipped: stays undecided
}
SECOND: dict[str, str | None] = {
    "group:g8": "keep",  # each member's own label in the long form
    "s02": "b",  # the given label: keep
    "s03": "b",
    "s04": SKIP,  # the first annotator's drop still counts
    "s05": "drop",
    "s07": "c",  # the suggestion, where the first annotator skipped
}  # s01: not annotated by the second annotator
# The queue's (decision, new_label) cells after each import.
AFTER_FIRST = {
    "group:g8": ("relabel", "a"),
    "s02": ("relabel", "a"),
    "s03": ("keep", ""),
    "s04": ("drop", ""),
    "s05": ("unsure", ""),
    "s01": ("keep", ""),
    "s07": ("", ""),
}
AFTER_SECOND = {  # with --force: the last annotation not cancelled counts
    "group:g8": ("keep", ""),
    "s02": ("keep", ""),
    "s03": ("relabel", "b"),
    "s04": ("drop", ""),
    "s05": ("drop", ""),
    "s01": ("keep", ""),
    "s07": ("relabel", "c"),
}
# The long form of both exports: (sample_id, annotator, label, the task's sample_id)
# in the export's order; group:g8's train members are s08 (b), s09 (c) and s10 (b).
LONG = [
    ("s08", "first", "a", "group:g8"),
    ("s09", "first", "a", "group:g8"),
    ("s10", "first", "a", "group:g8"),
    ("s08", "second", "b", "group:g8"),
    ("s09", "second", "c", "group:g8"),
    ("s10", "second", "b", "group:g8"),
    ("s02", "first", "a", "s02"),
    ("s02", "second", "b", "s02"),
    ("s03", "first", "c", "s03"),
    ("s03", "second", "b", "s03"),
    ("s01", "first", "a", "s01"),
    ("s07", "second", "c", "s07"),
]
DECISION_CELLS = ("decision", "new_label")


class Failed(Exception):
    """Label Studio did not start or answered an API call with an error."""


@dataclass
class Checks:
    """Every mismatch found, reported together at the end."""

    failures: list[str] = field(default_factory=list)
    passed: int = 0

    def equal(self, what: str, got: Any, want: Any) -> None:
        if got == want:
            self.passed += 1
            return
        # Of two tables (lists or dicts of one shape), only the entries that differ.
        keys: Sequence[Any] = []
        if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
            keys = range(len(got))
        elif isinstance(got, dict) and isinstance(want, dict) and got.keys() == want.keys():
            keys = list(want)
        pairs = [(k, got[k], want[k]) for k in keys if got[k] != want[k]] or [("", got, want)]
        lines = [f"    {k!r}: got {g!r}, want {w!r}" for k, g, w in pairs]
        self.failures.append(f"{what}:\n" + "\n".join(lines))


# -- Label Studio: the server and its API -------------------------------------------------


def free_port() -> int:
    """A port free now. Label Studio moves to the next free port by itself when the one
    asked for is taken, so :func:`start` checks that the server answering is ours."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    token: str  # the admin's legacy API token
    admin: str  # the admin's email
    log: Path

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """End the server: its process group, anything it started goes with it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(label_studio: Path, work: Path, document_root: Path) -> Server:
    """Label Studio on 127.0.0.1 with its data under ``work``, an admin with a known
    legacy token, local files served from ``document_root``; once it answers."""
    port, admin, token = free_port(), "admin@example.com", secrets.token_hex(20)
    data = work / "label-studio-data"
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    # A minimal environment: Label Studio reads many unprefixed variables too (HOST,
    # PORT, USERNAME, CI, ...), and the CI's own must not reach it. HOME is the work
    # folder's: nothing is written to the user's home.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data),
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # off for new organizations
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",  # the second user needs the invite
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",  # no request to pypi.org
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_SENTRY_DSN": "",  # its default sends errors to Label Studio's Sentry
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
    }
    log = work / "label-studio.log"
    command = [
        str(label_studio),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--username",
        admin,
        "--password",
        secrets.token_hex(12),
        "--user-token",
        token,
        "--enable-legacy-api-token",
        "--log-level",
        "WARNING",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, f"http://127.0.0.1:{port}", token, admin, log)
    try:
        _wait(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait(server: Server) -> None:
    """Until the server answers, as the one started (raises :class:`Failed`)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise Failed(f"label-studio exited with {code}:\n{server.tail()}")
        if time.monotonic() > deadline:
            raise Failed(f"label-studio did not answer in {START_TIMEOUT_S} s:\n{server.tail()}")
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:  # not listening yet (URLError is an OSError)
            pass
        time.sleep(1)
    who = api(server, "GET", "/api/current-user/whoami")
    if who.get("email") != server.admin:  # another program's server on this port
        raise Failed(f"the server on {server.url} is not the one started: {who}")


def request(
    server: Server,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    token: str | None = None,
    opener: urllib.request.OpenerDirector | None = None,
) -> bytes:
    """One HTTP request to the server; ``Authorization: Token`` unless an opener (a
    browser session's cookies) is given. Raises :class:`Failed` on an error status."""
    req = urllib.request.Request(server.url + path, data=body, method=method)
    if opener is None:
        req.add_header("Authorization", f"Token {token or server.token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with (opener.open if opener else urllib.request.urlopen)(req, timeout=120) as r:
            data: bytes = r.read()
            return data
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", errors="replace")[:2000]
        raise Failed(f"{method} {path}: HTTP {e.code}: {detail}") from None


def api(server: Server, method: str, path: str, payload: Any = None, **kw: Any) -> Any:
    """A JSON API call: ``payload`` sent as JSON, the answer parsed."""
    body = None if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    data = request(server, method, path, body=body, headers=headers, **kw)
    return json.loads(data) if data else None


def upload(server: Server, path: str, file: Path) -> Any:
    """A file uploaded as a form (``multipart/form-data``), as the import dialog sends it."""
    boundary = secrets.token_hex(16)
    part = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{file.name}"\r\n'
        "Content-Type: application/json\r\n\r\n"
    )
    body = part.encode() + file.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return json.loads(request(server, "POST", path, body=body, headers=headers))


def sign_up(server: Server, email: str) -> tuple[int, str]:
    """A second user, signed up as a person would: the organization's invite link, the
    sign-up form, then the token page of the account. Returns (user id, API token)."""
    invite = api(server, "GET", "/api/invite")["invite_url"]  # /user/signup/?token=...
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    request(server, "GET", invite, opener=browser)  # sets the CSRF cookie
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = {"email": email, "password": secrets.token_hex(12), "csrfmiddlewaretoken": csrf}
    request(
        server,
        "POST",
        invite,
        body=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        opener=browser,
    )
    token = json.loads(request(server, "GET", "/api/current-user/token", opener=browser))["token"]
    who = api(server, "GET", "/api/current-user/whoami", token=token)
    if who.get("email") != email:
        raise Failed(f"signing up {email} gave the user {who}")
    return int(who["id"]), str(token)


def annotate(
    server: Server, task_id: int, project: int, choice: str | None, *, token: str
) -> dict[str, Any]:
    """Submit one annotation as the labeling page does: the choice in the config's
    ``decision`` control, or a skip (``was_cancelled``, no result)."""
    result = (
        []
        if choice is None
        else [
            {
                "id": secrets.token_urlsafe(6),  # the page makes a random id per result
                "type": "choices",
                "from_name": "decision",
                "to_name": "image",
                "origin": "manual",
                "value": {"choices": [choice]},
            }
        ]
    )
    payload = {"result": result, "was_cancelled": choice is None, "lead_time": 1.5}
    path = f"/api/tasks/{task_id}/annotations/?project={project}"
    created: dict[str, Any] = api(server, "POST", path, payload, token=token)
    return created


def snapshot_export(server: Server, project: int, options: Mapping[str, Any]) -> bytes:
    """The JSON of an export snapshot (the API the export dialog uses), made with
    ``serialization_options``; Label Studio without Redis makes it synchronously."""
    snap = api(
        server,
        "POST",
        f"/api/projects/{project}/exports/",
        {"title": "cleaner round trip", "serialization_options": dict(options)},
    )
    if snap.get("status") != "completed":
        raise Failed(f"the export snapshot is {snap.get('status')!r}: {snap}")
    return request(
        server, "GET", f"/api/projects/{project}/exports/{snap['id']}/download?exportType=JSON"
    )


# -- cleaner: the project, its CLI, the queue ---------------------------------------------


def make_project(folder: Path) -> Any:
    """The tests' hand-made project (their own helper, imported, not copied)."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "review")]
    from test_labelstudio import undecided_project

    return undecided_project(folder)


def cleaner(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it (this interpreter's cleaner)."""
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "cleaner", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def cleaner_ok(*args: str) -> str:
    done = cleaner(*args)
    if done.returncode != 0:
        raise Failed(
            f"cleaner {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def queue_rows(queue: Path) -> list[dict[str, str]]:
    with open(queue, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def check_queue(
    checks: Checks, what: str, queue: Path, before: Sequence[dict[str, str]], want: Mapping
) -> None:
    """Each row's decision cells as ``want`` says; every other cell as ``before``."""
    rows = queue_rows(queue)
    got = {r["sample_id"]: (r["decision"], r["new_label"]) for r in rows}
    checks.equal(f"{what}: the queue's (decision, new_label) cells", got, dict(want))
    others = [
        [{k: v for k, v in r.items() if k not in DECISION_CELLS} for r in rs]
        for rs in (rows, before)
    ]
    checks.equal(f"{what}: the queue's other cells", others[0], others[1])


def check_long(
    checks: Checks, what: str, out: Path, names: Mapping[str, str], times: Mapping[Any, str]
) -> None:
    """The long form ``--annotations`` wrote: the rows of :data:`LONG`, annotators as
    ``names`` calls them, each row's time its annotation's ``created_at``."""
    with open(out, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    checks.equal(f"{what}: header", header, ["sample_id", "annotator", "label", "time"])
    want = [
        {"sample_id": s, "annotator": names[who], "label": label, "time": times[who, task]}
        for s, who, label, task in LONG
    ]
    checks.equal(f"{what}: rows", rows, want)


# -- the round trip -----------------------------------------------------------------------


@dataclass
class Timer:
    marks: dict[str, float] = field(default_factory=dict)
    last: float = field(default_factory=time.monotonic)

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.marks[name] = now - self.last
        self.last = now


def round_trip(label_studio: Path, work: Path, checks: Checks, timer: Timer) -> str:
    """Everything the module docstring lists; returns Label Studio's version."""
    project = make_project(work / "project")
    said = cleaner_ok("export", "labelstudio", str(project.queue))
    found = re.search(r"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=(.*), and add a Local Files", said)
    if found is None:
        raise Failed(f"cleaner export labelstudio printed no document root:\n{said}")
    document_root = Path(found.group(1))
    checks.equal("the document root printed", document_root, project.manifest.parent.resolve())
    timer.lap("project and export")

    server = start(label_studio, work, document_root)
    try:
        version = str(api(server, "GET", "/api/version").get("release"))
        timer.lap("server start")
        trip = RoundTrip(server, work, project.queue, checks, queue_rows(project.queue))
        trip.set_up(project.images)
        trip.first_annotator()
        trip.second_annotator()
        timer.lap("round trip")
    except Failed as e:
        raise Failed(f"{e}\n-- label-studio's log:\n{server.tail()}") from None
    finally:
        server.stop()
    return version


@dataclass
class RoundTrip:
    """Steps 2-4 of the module docstring, on a started server."""

    server: Server
    work: Path
    queue: Path
    checks: Checks
    original: list[dict[str, str]]  # the queue's rows before any import
    project: int = 0  # Label Studio's project id
    tasks: dict[str, int] = field(default_factory=dict)  # sample_id -> Label Studio's task id
    times: dict[tuple[str, str], str] = field(default_factory=dict)  # (who, sample_id) -> time

    def set_up(self, images: Mapping[str, Path]) -> None:
        """2. The project with the exported config and tasks; every image served."""
        from cleaner.review.labelstudio_export import default_export_path

        server, checks = self.server, self.checks
        tasks_json = default_export_path(self.queue)
        exported = json.loads(tasks_json.read_text(encoding="utf-8"))
        config = tasks_json.with_suffix(".xml").read_text(encoding="utf-8")
        created = api(
            server, "POST", "/api/projects/", {"title": "cleaner", "label_config": config}
        )
        self.project = pid = int(created["id"])
        parsed = created["parsed_label_config"]["decision"]
        checks.equal(
            "the config's choices as Label Studio reads them",
            (parsed["type"], parsed["to_name"], parsed["labels"]),
            ("Choices", ["image"], ["a", "b", "c", "keep", "drop", "unsure"]),
        )
        storage = {"project": pid, "title": "images", "path": str(images["s01"].parent)}
        api(server, "POST", "/api/storages/localfiles", storage | {"use_blob_urls": True})
        imported = upload(server, f"/api/projects/{pid}/import", tasks_json)
        checks.equal(
            "tasks and predictions imported",
            (imported.get("task_count"), imported.get("prediction_count")),
            (len(exported), sum(len(t.get("predictions", [])) for t in exported)),
        )
        listed = api(server, "GET", f"/api/tasks/?project={pid}&page_size=1000&fields=all")
        data = sorted((t["data"] for t in listed["tasks"]), key=lambda d: d["queue_row"])
        checks.equal(
            "the tasks' data as Label Studio stored it", data, [t["data"] for t in exported]
        )
        for task in listed["tasks"]:
            sid = task["data"]["sample_id"]
            self.tasks[sid] = int(task["id"])
            image = request(server, "GET", task["data"]["image"])  # /data/local-files/?d=...
            member = "s08" if sid == "group:g8" else sid  # a group's task shows this member
            checks.equal(f"the image of {sid} as served", image, images[member].read_bytes())

    def submit(self, who: str, answers: Mapping[str, str | None], token: str) -> None:
        for sid, choice in answers.items():
            done = annotate(self.server, self.tasks[sid], self.project, choice, token=token)
            self.times[who, sid] = done["created_at"]

    def export(self, name: str) -> Path:
        """The project's JSON export, every task, through the call the API docs show."""
        path = self.work / name
        url = f"/api/projects/{self.project}/export?exportType=JSON&download_all_tasks=true"
        path.write_bytes(request(self.server, "GET", url))
        return path

    def first_annotator(self) -> None:
        """3. The admin annotates; the export read into the queue."""
        self.submit("first", FIRST, self.server.token)
        first = self.export("export-first.json")
        cleaner_ok("import", "labelstudio", str(first), str(self.queue))
        check_queue(
            self.checks, "import of the first export", self.queue, self.original, AFTER_FIRST
        )

    def second_annotator(self) -> None:
        """4. A second user annotates; the export refused, forced, read as the long form."""
        server, checks, queue = self.server, self.checks, self.queue
        second_id, second_token = sign_up(server, "second@example.com")
        self.submit("second", SECOND, second_token)
        second = self.export("export-second.json")
        first_id = int(api(server, "GET", "/api/current-user/whoami")["id"])
        tasks = json.loads(second.read_text(encoding="utf-8"))
        users = {a["completed_by"] for t in tasks for a in t["annotations"]}
        checks.equal("the export's completed_by (user ids)", users, {first_id, second_id})

        before = queue.read_bytes()
        refused = cleaner("import", "labelstudio", str(second), str(queue))
        said = refused.stdout + refused.stderr
        checks.equal(
            "import over other decisions without --force: exit status, queue, rows named",
            (
                refused.returncode,
                queue.read_bytes() == before,
                [s for s in AFTER_FIRST if repr(s) in said],
            ),
            (2, True, ["group:g8", "s02", "s03", "s05"]),
        )
        cleaner_ok("import", "labelstudio", str(second), str(queue), "--force")
        check_queue(
            checks, "import of the second export (--force)", queue, self.original, AFTER_SECOND
        )

        after = queue.read_bytes()
        ids_csv = self.work / "annotations-ids.csv"
        cleaner_ok("import", "labelstudio", str(second), str(queue), "--annotations", str(ids_csv))
        names = {"first": f"labelstudio-user-{first_id}", "second": f"labelstudio-user-{second_id}"}
        check_long(checks, "--annotations of the export (user ids)", ids_csv, names, self.times)

        emails_json = self.work / "export-second-emails.json"
        expand = {"annotations__completed_by": {"only_id": False}}
        emails_json.write_bytes(snapshot_export(server, self.project, expand))
        emails_csv = self.work / "annotations-emails.csv"
        cleaner_ok(
            "import", "labelstudio", str(emails_json), str(queue), "--annotations", str(emails_csv)
        )
        emails = {"first": server.admin, "second": "second@example.com"}
        check_long(
            checks, "--annotations of a snapshot (users expanded)", emails_csv, emails, self.times
        )
        checks.equal("--annotations leaves the queue alone", queue.read_bytes(), after)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--label-studio",
        type=Path,
        default=LABEL_STUDIO,
        help="the label-studio command (default: .venv-labelstudio's)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="work in this new folder and keep it (default: a temporary one)",
    )
    args = parser.parse_args(argv)
    if not args.label_studio.is_file():
        print(f"{args.label_studio} not found: run `make labelstudio-venv`", file=sys.stderr)
        return 2
    work = args.keep or Path(tempfile.mkdtemp(prefix="cleaner-labelstudio-"))
    work.mkdir(parents=True, exist_ok=args.keep is None)
    checks, timer = Checks(), Timer()
    try:
        version = round_trip(args.label_studio, work, checks, timer)
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    laps = ", ".join(f"{k} {v:.1f} s" for k, v in timer.marks.items())
    print(f"Label Studio {version}: {checks.passed} checks passed; {laps}")
    for failure in checks.failures:
        print(f"MISMATCH {failure}", file=sys.stderr)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
