"""Two people at once: the project lock (:mod:`cleaner.core.project_lock`) and what it guarantees.

Two ``cleaner apply`` processes of two queues of one manifest version, started
together again and again: one makes the next version, the other refuses it
(exit 2), and every version on disk has its complete audit log. Two review
pages (two server processes) of one queue deciding at once: every decision
answered 200 is in the file, the other is answered 409. A held lock makes
apply, ingest, a review page and ``import labelstudio`` wait, then refuse with
the holder's command and pid, the project unchanged; a lock left by a killed
process blocks no one.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import (
    assert_says,
    make_project,
    queue_frame,
    snapshot,
    write_png,
    write_queue_json,
)
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.formats.audit import read_audit_log, replay_audit
from cleaner.formats.manifest import read_manifest
from cleaner.formats.queue_file import write_queue_csv
from cleaner.review.apply import apply_queue, read_queue_table

runner = CliRunner()
CLASSES = ("a", "b")
# Each trial starts two processes (2 s); CLEANER_RACE_TRIALS=50 for a longer hunt.
TRIALS = int(os.environ.get("CLEANER_RACE_TRIALS", "12"))
# Each queue decides other rows: A relabels s1 and drops s2, B relabels s5 and keeps s6.
DECISIONS = {
    "qa": {"s1": ("relabel", "b"), "s2": ("drop", "")},
    "qb": {"s5": ("relabel", "a"), "s6": ("keep", "")},
}


def _env(**extra: str) -> dict[str, str]:
    """This process's environment (the worktree first on the path) for a child process."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


def _queue_rows(manifest: pd.DataFrame, decided: Mapping[str, tuple[str, str]]) -> list[dict]:
    rows = []
    for rank, (sid, (decision, new_label)) in enumerate(decided.items(), start=1):
        row = manifest.set_index("sample_id").loc[sid]
        given = row["label"]
        rows.append(
            {
                "rank": rank,
                "sample_id": sid,
                "path": row["path"],
                "group": row["group"],
                "given_label": given,
                "suggested_label": "b" if given == "a" else "a",
                "label_quality": 0.1 * rank,
                "issue": "label",
                "decision": decision,
                "new_label": new_label,
            }
        )
    return rows


def two_queue_project(root: Path, *, decided: bool = True) -> Path:
    """``data/m.csv`` (8 images in two classes) and two queues of it, ``qa/`` and ``qb/``
    (:data:`DECISIONS`, or blank with ``decided=False``). Returns ``root``."""
    manifest_rows = [
        {"sample_id": f"s{i}", "path": f"images/s{i}.png", "label": "ab"[i % 2], "group": f"g{i}"}
        for i in range(8)
    ]
    frame = pd.DataFrame(manifest_rows)
    queues = {
        name: _queue_rows(
            frame, {s: d if decided else ("", "") for s, d in DECISIONS[name].items()}
        )
        for name in DECISIONS
    }
    p = make_project(
        root, manifest_rows, queues["qa"], classes=CLASSES, manifest="data/m.csv", queue_dir="qa"
    )
    qb = root / "qb" / "queue.csv"
    qb.parent.mkdir()
    write_queue_csv(queue_frame(queues["qb"]), qb)
    write_queue_json(qb, p.manifest, classes=CLASSES)
    return root


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_queue_project(tmp_path_factory.mktemp("two-queues") / "p")


# --- two applies at once --------------------------------------------------------------------


def apply_both(root: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """``cleaner apply qa/queue.csv`` and ``cleaner apply qb/queue.csv``, started together."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "cleaner", "apply", f"{name}/queue.csv", "--reviewer", name],
            cwd=root,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in DECISIONS
    }
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def apply_problems(
    root: Path, results: Mapping[str, subprocess.CompletedProcess[str]]
) -> list[str]:
    """What is wrong after two applies at once: [] when one made v2 with its complete
    audit log and the other refused (exit 2) and left no trace."""
    data = root / "data"
    codes = {name: r.returncode for name, r in results.items()}
    winners = [name for name, code in codes.items() if code == 0]
    problems = []
    if sorted(codes.values()) != [0, 2]:
        problems.append(
            f"exit codes {codes}: " + " | ".join(r.stderr[-300:] for r in results.values())
        )
    for name, r in results.items():
        if r.returncode == 2 and "already exists" not in " ".join(r.stderr.split()):
            problems.append(f"{name} refused without saying why: {r.stderr[-300:]}")
    v2, log = data / "m.v2.csv", data / "m.audit.jsonl"
    if not v2.exists():
        problems.append("no m.v2.csv")
    if not log.exists():
        problems.append("no m.audit.jsonl")
    if problems or len(winners) != 1:
        return problems
    records = read_audit_log(log)
    logged = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    want = set(DECISIONS[winners[0]])
    if {r["sample_id"] for r in records} != want or len(records) != len(want):
        problems.append(f"log records {[r['sample_id'] for r in records]}, want {sorted(want)}")
    if len(logged) != len(records):
        problems.append(f"{len(logged) - len(records)} log lines of no committed version")
    if {r.get("version") for r in records} != {v2.name}:
        problems.append(f"log names versions { ({r.get('version') for r in records}) }")
    replayed = replay_audit(read_manifest(data / "m.csv"), records)
    if not replayed.equals(read_manifest(v2)):
        problems.append("the log does not replay to m.v2.csv")
    left = sorted(p.name for p in data.iterdir() if p.name.startswith("."))
    if left:
        problems.append(f"left behind: {left}")
    if (data / "m.v3.csv").exists():
        problems.append("m.v3.csv made")
    return problems


@pytest.mark.slow
def test_two_applies_at_once_leave_every_version_with_its_complete_log(
    template: Path, tmp_path: Path
) -> None:
    """TRIALS times: two apply processes of two queues of one version, started together."""
    failures = []
    for trial in range(TRIALS):
        root = shutil.copytree(template, tmp_path / f"t{trial}")
        problems = apply_problems(root, apply_both(root))
        if problems:
            failures.append(f"trial {trial}: " + "; ".join(problems))
    assert not failures, f"{len(failures)}/{TRIALS} trials failed:\n" + "\n".join(failures)


def test_the_loser_of_a_race_leaves_the_winners_log(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reported loss, replayed in one process: while apply A writes, apply B commits
    the same version first. A refuses and must not remove or restore over B's log."""
    from cleaner.formats import audit

    root = shutil.copytree(template, tmp_path / "p")
    data = root / "data"
    real, raced = audit.atomic_path, []

    def racing(path: Path, **kw: Any):  # type: ignore[no-untyped-def]
        if Path(path) == data / "m.v2.csv" and not raced:
            raced.append(True)
            apply_queue(root / "qb" / "queue.csv", reviewer="b")  # commits m.v2.csv first
        return real(path, **kw)

    monkeypatch.setattr(audit, "atomic_path", racing)
    result = runner.invoke(app, ["apply", str(root / "qa" / "queue.csv")])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert_says(result.output, f"error: {data / 'm.v2.csv'} already exists")
    records = read_audit_log(data / "m.audit.jsonl")
    assert {r["sample_id"] for r in records} == set(DECISIONS["qb"])
    replayed = replay_audit(read_manifest(data / "m.csv"), records)
    assert replayed.equals(read_manifest(data / "m.v2.csv"))


def test_the_second_apply_waits_then_refuses_the_version_the_first_made(
    template: Path, tmp_path: Path
) -> None:
    """One after the other (as the lock orders them): the second queue's version exists."""
    root = shutil.copytree(template, tmp_path / "p")
    data = root / "data"
    first = runner.invoke(app, ["apply", str(root / "qa" / "queue.csv")])
    assert first.exit_code == 0, first.output
    before = snapshot(root)
    second = runner.invoke(app, ["apply", str(root / "qb" / "queue.csv")])
    assert second.exit_code == 2, second.output
    assert_says(
        second.output,
        f"error: {data / 'm.v2.csv'}: already exists: was this queue applied before?",
        "or another queue of m.csv was applied first",
    )
    assert snapshot(root) == before


# --- the lock held by another process --------------------------------------------------------

HOLD = """
import sys, time
from cleaner.core.project_lock import project_lock
with project_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


@pytest.fixture
def hold() -> Iterator[Any]:
    """``hold(folder, command, seconds)``: a process holding ``folder``'s lock (it has it
    when this returns); every one started is killed at the end."""
    procs: list[subprocess.Popen[str]] = []

    def start(folder: Path, command: str, seconds: float = 60) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder), command, str(seconds)],
            env=_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_apply_refuses_a_held_lock_naming_the_holder(
    template: Path, tmp_path: Path, hold: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(template, tmp_path / "p")
    data = root / "data"
    holder = hold(data, "cleaner apply other/queue.csv")
    before = snapshot(root)
    monkeypatch.setenv("CLEANER_LOCK_WAIT", "0.3")
    result = runner.invoke(app, ["apply", str(root / "qa" / "queue.csv")])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert_says(
        result.output,
        f"error: {data / '.cleaner.lock'}: held by `cleaner apply other/queue.csv` "
        f"(pid {holder.pid} on",
        "waited 0.3 s. Run this again once it has finished",
        "CLEANER_LOCK_WAIT=SECONDS",
    )
    assert snapshot(root) == before
    assert not (data / "m.v2.csv").exists()


def test_a_lock_left_by_a_killed_process_blocks_no_one(
    template: Path, tmp_path: Path, hold: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 leaves the lock file with its holder's details; the kernel freed the lock."""
    root = shutil.copytree(template, tmp_path / "p")
    data = root / "data"
    holder = hold(data, "cleaner apply other/queue.csv")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert str(holder.pid) in (data / ".cleaner.lock").read_text()  # left as information
    monkeypatch.setenv("CLEANER_LOCK_WAIT", "0")
    result = runner.invoke(app, ["apply", str(root / "qa" / "queue.csv")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (data / "m.v2.csv").exists()
    assert not (data / ".cleaner.lock").exists()  # removed by the holder that released it


def test_apply_waits_for_a_lock_released_meanwhile(
    template: Path, tmp_path: Path, hold: Any
) -> None:
    root = shutil.copytree(template, tmp_path / "p")
    hold(root / "data", "cleaner apply other/queue.csv", 1.0)  # released after a second
    result = runner.invoke(app, ["apply", str(root / "qa" / "queue.csv")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert (root / "data" / "m.v2.csv").exists()


def test_a_bad_wait_is_refused(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(template, tmp_path / "p")
    before = snapshot(root)
    monkeypatch.setenv("CLEANER_LOCK_WAIT", "soon")
    result = runner.invoke(app, ["apply", str(root / "qa" / "queue.csv")])
    assert result.exit_code == 2, result.output
    assert_says(result.output, "error: CLEANER_LOCK_WAIT='soon': give the seconds to wait")
    assert snapshot(root) == before


def test_ingest_refuses_a_held_lock(
    tmp_path: Path, hold: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for c in CLASSES:
        for i in range(2):
            write_png(tmp_path / "raw" / c / f"{c}{i}.png", value=40 * i)
    out = tmp_path / "data"
    out.mkdir()
    holder = hold(out, "cleaner apply q/queue.csv")
    monkeypatch.setenv("CLEANER_LOCK_WAIT", "0.2")
    result = runner.invoke(
        app, ["ingest", "folder", str(tmp_path / "raw"), "--manifest", str(out / "m.csv")]
    )
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert_says(result.output, f"held by `cleaner apply q/queue.csv` (pid {holder.pid}")
    assert sorted(p.name for p in out.iterdir()) == [".cleaner.lock"]  # the holder's


def test_import_labelstudio_refuses_a_held_lock(
    template: Path, tmp_path: Path, hold: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(template, tmp_path / "p")
    export = root / "export.json"
    export.write_text("[]")
    holder = hold(root / "qa", "cleaner review qa/queue.csv")
    before = snapshot(root)
    monkeypatch.setenv("CLEANER_LOCK_WAIT", "0.2")
    result = runner.invoke(
        app, ["import", "labelstudio", str(export), str(root / "qa" / "queue.csv")]
    )
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert_says(result.output, f"held by `cleaner review qa/queue.csv` (pid {holder.pid}")
    assert snapshot(root) == before


def test_the_lock_is_reentrant_in_a_thread_and_exclusive_between_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cleaner.core.project_lock import ProjectLocked, project_lock

    monkeypatch.setenv("CLEANER_LOCK_WAIT", "0.2")
    seen: list[str] = []

    def other() -> None:
        try:
            with project_lock(tmp_path, "other thread"):
                seen.append("got it")
        except ProjectLocked as e:
            seen.append(str(e))

    with project_lock(tmp_path, "outer"), project_lock(tmp_path, "inner"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(seen) == 1 and "held by `outer`" in seen[0]
    other()  # released: now it gets it
    assert seen[-1] == "got it" and not (tmp_path / ".cleaner.lock").exists()


# --- two review pages at once ---------------------------------------------------------------

SERVE = """
import json, sys
from cleaner.review.server import serve
for line in sys.stdin:
    server, _ = serve(line.strip(), port=0)
    server.start_background()
    print(json.dumps({"port": server.port, "token": server.token}), flush=True)
    sys.stdin.readline()  # until told to stop
    server.stop()
    print("stopped", flush=True)
"""


class ServerProcess:
    """A process that serves one queue at a time with ``cleaner review``'s server."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVE],
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port, self.token = 0, ""

    def _say(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline()

    def serve(self, queue: Path) -> None:
        started = json.loads(self._say(str(queue)))
        self.port, self.token = started["port"], started["token"]

    def stop(self) -> None:
        assert self._say("stop") == "stopped\n"

    def post(self, path: str, body: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(
                "POST",
                path,
                json.dumps(body),
                {"Content-Type": "application/json", "X-Review-Token": self.token},
            )
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def servers() -> Iterator[Sequence[ServerProcess]]:
    pair = [ServerProcess(), ServerProcess()]
    yield pair
    for s in pair:
        s.close()


def decide_at_once(
    servers: Sequence[ServerProcess], decisions: Sequence[tuple[int, str]]
) -> list[int]:
    """Each server posts its ``(row, decision)`` at the same moment; the HTTP statuses."""
    barrier = threading.Barrier(len(servers))
    statuses = [0] * len(servers)

    def post(k: int) -> None:
        row, decision = decisions[k]
        barrier.wait()
        statuses[k] = servers[k].post("/api/decide", {"row": row, "decision": decision})[0]

    threads = [threading.Thread(target=post, args=(k,)) for k in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


@pytest.mark.slow
def test_two_review_pages_deciding_at_once_lose_no_decision(
    servers: Sequence[ServerProcess], tmp_path: Path
) -> None:
    """50 times: two review servers of one queue post a decision each at the same moment.
    A decision answered 200 is in the file; the other is answered 409 and is not."""
    template = two_queue_project(tmp_path / "template", decided=False)
    decisions = [(0, "keep"), (1, "drop")]
    failures = []
    for trial in range(TRIALS):
        root = shutil.copytree(template, tmp_path / f"t{trial}")
        queue = root / "qa" / "queue.csv"
        for s in servers:
            s.serve(queue)
        statuses = decide_at_once(servers, decisions)
        for s in servers:
            s.stop()
        on_disk = read_queue_table(queue)["decision"].tolist()
        for (row, decision), status in zip(decisions, statuses, strict=True):
            if status == 200 and on_disk[row] != decision:
                failures.append(f"trial {trial}: row {row} answered 200 but lost: {statuses}")
            if status != 200 and (status != 409 or on_disk[row]):
                failures.append(f"trial {trial}: row {row} answered {status}: {on_disk}")
        if 200 not in statuses:
            failures.append(f"trial {trial}: no decision written: {statuses}")
    assert not failures, f"{len(failures)} problems in {TRIALS} trials:\n" + "\n".join(failures)


def test_a_review_post_refuses_a_held_lock(
    template: Path, tmp_path: Path, hold: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cleaner.review.server import serve

    root = shutil.copytree(template, tmp_path / "p")
    queue = root / "qa" / "queue.csv"
    monkeypatch.setenv("CLEANER_LOCK_WAIT", "0.2")
    server, _ = serve(queue, port=0)
    server.start_background()
    try:
        holder = hold(root / "qa", "cleaner import labelstudio export.json qa/queue.csv")
        before = snapshot(root)
        client = ServerProcess.__new__(ServerProcess)
        client.port, client.token = server.port, server.token
        status, body = client.post("/api/decide", {"row": 0, "decision": "keep"})
        assert status == 503, body
        assert_says(
            body["error"],
            f"held by `cleaner import labelstudio export.json qa/queue.csv` (pid {holder.pid}",
        )
        assert snapshot(root) == before
        holder.kill()
        holder.wait()
        status, body = client.post("/api/decide", {"row": 0, "decision": "keep"})
        assert status == 200, body  # the refused decision was undone in memory: sent again
        assert read_queue_table(queue)["decision"].tolist()[0] == "keep"
    finally:
        server.stop()
