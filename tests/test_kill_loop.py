"""kill -9 at seeded moments of oof, apply, retrain --queue and review; the same command then
finishes, and the result equals an uninterrupted run's.

Each command first runs once uninterrupted with ``CLEANER_FAULT_LOG``, which
lists the kill points it passes (:mod:`cleaner.core.faults`: every file about to be
renamed into place, and apply's commit). A generator seeded with ``SEED``
picks where to kill from that list, so a failure repeats exactly. The process
kills itself with SIGKILL there: no clean-up code runs, as in a crash.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import write_csv, write_pipeline, write_png

from cleaner.core.faults import FAULT_ENV, LOG_ENV
from cleaner.formats.queue_file import write_queue_csv

SEED = 17
CLASSES = ("a", "b")
# Kills per command: an early, a middle and a late moment of oof; each kill costs two
# processes of several seconds (CLEANER_OOF_KILLS=5 CLEANER_RETRAIN_KILLS=3 hunt longer).
OOF_KILLS = int(os.environ.get("CLEANER_OOF_KILLS", "3"))
RETRAIN_KILLS = int(os.environ.get("CLEANER_RETRAIN_KILLS", "2"))
APPLY_KILLS, REVIEW_KILLS = 3, 2


def cli(
    cwd: Path, *args: str, fault: str | None = None, log: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cleaner ARGS`` in ``cwd``; killed at ``fault`` (``POINT@N``) if given."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    env.pop(FAULT_ENV, None)
    env.pop(LOG_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    if log:
        env[LOG_ENV] = str(log)
    return subprocess.run(
        [sys.executable, "-m", "cleaner", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def killed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == -9, f"not killed (exit {result.returncode}):\n{result.stderr}"


def points(log: Path) -> list[str]:
    """The names of the points passed, in order (each log line: NAME [FILE])."""
    return [line.split(" ", 1)[0] for line in log.read_text().splitlines()]


def spread(n: int, k: int, name: str) -> list[int]:
    """``k`` of the passes 1..n, one drawn with the seed from each of k equal stretches:
    early, middle and late moments of the command are all killed."""
    rng = random.Random(f"{SEED}-{name}")
    edges = [round(j * n / k) for j in range(k + 1)]
    return [rng.randint(edges[j] + 1, edges[j + 1]) for j in range(k)]


def seeded_kills(log: Path, name: str, k: int, *, point: str = "replace") -> list[str]:
    """``k`` kill specs ``POINT@N`` spread over the passes of ``point`` in ``log``."""
    n = points(log).count(point)
    assert n >= k, f"only {n} {point!r} points in {log}"
    return [f"{point}@{i}" for i in spread(n, k, name)]


def no_temporaries(root: Path) -> None:
    left = [p for p in root.rglob("*.tmp")]
    assert not left, f"temporary files left: {left}"


def audit_records(path: Path) -> list[dict[str, Any]]:
    """The audit log's records without their times (two runs differ only there)."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in ("time", "timestamp", "at")} for r in records]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project with relative paths (it is copied for every kill), its oof run, and a
    reviewed queue with one drop, one keep and one relabel."""
    root = tmp_path_factory.mktemp("kill") / "project"
    rows = []
    for j, c in enumerate(CLASSES):
        for i in range(6):
            path = write_png(root / "images" / f"{c}{i}.png", value=60 * j + 9 * i)
            rows.append({"path": path.relative_to(root).as_posix(), "label": c})
    for i in range(2):
        path = write_png(root / "images" / f"t{i}.png", value=30 + 50 * i)
        rows.append({"path": path.relative_to(root).as_posix(), "label": "", "split": "test"})
    write_csv(root / "digits.csv", rows)
    pipeline = write_pipeline(root, manifest="digits.csv", train={"epochs": 2})
    text = pipeline.read_text().replace(str(root / "digits.csv"), "digits.csv")
    pipeline.write_text(text)
    ok(cli(root, "oof", "pipeline.toml", "--out", "run", "-q"))
    # --force: a model this small ranks no better than chance, which flag refuses by default.
    ok(cli(root, "flag", "run", "--top", "4", "--force", "-q"))
    queue = pd.read_csv(root / "run" / "queue.csv", dtype=str, keep_default_na=False)
    decisions = ["drop", "keep", "relabel", "unsure"]
    for i, decision in enumerate(decisions[: len(queue)]):
        if decision == "relabel" and queue.at[i, "issue"].startswith("leakage"):
            decision = "drop"
        queue.at[i, "decision"] = decision
        if decision == "relabel":
            other = [c for c in CLASSES if c != queue.at[i, "given_label"]]
            queue.at[i, "new_label"] = other[0]
    write_queue_csv(queue, root / "reviewed" / "queue.csv")
    shutil.copy(root / "run" / "queue.json", root / "reviewed" / "queue.json")
    return root


def copy_of(project: Path, dest: Path) -> Path:
    shutil.copytree(project, dest)
    return dest


def killed_then_rerun(project: Path, dest: Path, args: Sequence[str], fault: str) -> Path:
    """A copy of ``project`` in ``dest`` where ``cleaner ARGS`` was killed at ``fault``,
    then run again to the end."""
    root = copy_of(project, dest)
    killed(cli(root, *args, fault=fault))
    ok(cli(root, *args))
    return root


# --- oof -------------------------------------------------------------------------------


OOF = ("oof", "pipeline.toml", "--out", "again", "-q")


@pytest.fixture(scope="module")
def oof_reference(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_of(project, tmp_path_factory.mktemp("oof-ref") / "p")
    ok(cli(root, *OOF, log=root / "points.log"))
    return root


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow
@pytest.mark.parametrize("i", range(OOF_KILLS))
def test_oof_killed_then_resumed_equals_an_uninterrupted_run(
    i: int, project: Path, oof_reference: Path, tmp_path: Path
) -> None:
    fault = seeded_kills(oof_reference / "points.log", "oof", OOF_KILLS)[i]
    root = killed_then_rerun(project, tmp_path / "p", OOF, fault)
    ref, run = oof_reference / "again", root / "again"
    assert (run / "oof.csv").read_bytes() == (ref / "oof.csv").read_bytes(), fault
    for name in ("folds.csv", "config.toml"):
        assert (run / name).read_bytes() == (ref / name).read_bytes(), (fault, name)
    for k in (0, 1):
        got, want = _arrays(run / f"fold-{k}" / "oof.npz"), _arrays(ref / f"fold-{k}" / "oof.npz")
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{fault} {key}")
    got, want = _arrays(run / "embeddings.npz"), _arrays(ref / "embeddings.npz")
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{fault} {key}")
    no_temporaries(root)


# --- apply -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def apply_reference(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_of(project, tmp_path_factory.mktemp("apply-ref") / "p")
    ok(cli(root, "apply", "reviewed/queue.csv", "--reviewer", "kim", log=root / "points.log"))
    assert (root / "digits.v2.csv").exists()
    return root


def _apply_kills(reference: Path) -> list[str]:
    """The commit point, and seeded renames."""
    return ["commit@1", *seeded_kills(reference / "points.log", "apply", APPLY_KILLS - 1)]


@pytest.mark.slow
@pytest.mark.parametrize("i", range(APPLY_KILLS))
def test_apply_killed_then_rerun_equals_an_uninterrupted_apply(
    i: int, project: Path, apply_reference: Path, tmp_path: Path
) -> None:
    fault = _apply_kills(apply_reference)[i]
    root = copy_of(project, tmp_path / "p")
    args = ("apply", "reviewed/queue.csv", "--reviewer", "kim")
    killed(cli(root, *args, fault=fault))
    # Killed at any moment: the old state, or the complete new one.
    if (root / "digits.v2.csv").exists():
        assert audit_records(root / "digits.audit.jsonl") == audit_records(
            apply_reference / "digits.audit.jsonl"
        )
    ok(cli(root, *args))  # the same command again: it finishes, or finds it finished
    ref = apply_reference
    assert (root / "digits.v2.csv").read_bytes() == (ref / "digits.v2.csv").read_bytes(), fault
    got = audit_records(root / "digits.audit.jsonl")
    assert got == audit_records(ref / "digits.audit.jsonl"), fault
    assert not (root / "digits.v3.csv").exists()
    no_temporaries(root)


# --- retrain --queue -------------------------------------------------------------------


RETRAIN = ("retrain", "pipeline.toml", "--queue", "reviewed/queue.csv", "--out", "final")
RETRAIN_OPTIONS = ("--reviewer", "kim", "--no-baselines", "-q")


@pytest.fixture(scope="module")
def retrain_reference(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_of(project, tmp_path_factory.mktemp("retrain-ref") / "p")
    ok(cli(root, *RETRAIN, *RETRAIN_OPTIONS, log=root / "points.log"))
    return root


def _outputs(root: Path) -> dict[str, bytes]:
    """What retrain made that two runs must share (reports carry times and are left out)."""
    final = root / "final"
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in [root / "digits.v2.csv", *sorted(final.glob("*.csv"))]
    }


@pytest.mark.slow
@pytest.mark.parametrize("i", range(RETRAIN_KILLS))
def test_retrain_queue_killed_then_rerun_equals_an_uninterrupted_run(
    i: int, project: Path, retrain_reference: Path, tmp_path: Path
) -> None:
    fault = seeded_kills(retrain_reference / "points.log", "retrain", RETRAIN_KILLS)[i]
    root = killed_then_rerun(project, tmp_path / "p", (*RETRAIN, *RETRAIN_OPTIONS), fault)
    got, want = _outputs(root), _outputs(retrain_reference)
    assert got.keys() == want.keys(), fault
    for name in want:
        assert got[name] == want[name], (fault, name)
    got_log = audit_records(root / "digits.audit.jsonl")
    assert got_log == audit_records(retrain_reference / "digits.audit.jsonl"), fault
    no_temporaries(root)


# --- review ----------------------------------------------------------------------------


def _decisions(project: Path) -> list[tuple[int, str, str]]:
    queue = pd.read_csv(project / "reviewed/queue.csv", dtype=str, keep_default_na=False)
    return [
        (i, d, n)
        for i, (d, n) in enumerate(zip(queue["decision"], queue["new_label"], strict=True))
        if d
    ]


class Review:
    """``cleaner review`` in a subprocess, driven like the page drives it."""

    def __init__(self, root: Path, fault: str | None = None):
        env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
        env.pop(FAULT_ENV, None)
        if fault:
            env[FAULT_ENV] = fault
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cleaner", "review", "inbox/queue.csv", "--port", "0",
             "--no-browser"],
            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = ""
        while "http://" not in line:
            line = self.proc.stdout.readline()
            assert line or self.proc.poll() is None, self.proc.stderr.read()  # type: ignore[union-attr]
        found = re.search(r"http://[^\s]+", line)
        assert found
        # The printed address carries the token (http://127.0.0.1:PORT/?token=...).
        self.url = found.group(0).split("/?", 1)[0]
        page = urllib.request.urlopen(found.group(0), timeout=30).read().decode()
        token = re.search(r'name="review-token" content="([^"]+)"', page)
        assert token
        self.token = token.group(1)

    def decide(self, row: int, decision: str, new_label: str) -> bool:
        """POST one decision; False when the server died answering it."""
        body = json.dumps({"row": row, "decision": decision, "new_label": new_label}).encode()
        request = urllib.request.Request(
            self.url + "/api/decide",
            data=body,
            headers={"Content-Type": "application/json", "X-Review-Token": self.token},
        )
        try:
            urllib.request.urlopen(request, timeout=30).read()
        except OSError:  # connection reset or closed: the process was killed
            return False
        return True

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _review_copy(project: Path, dest: Path) -> Path:
    root = copy_of(project, dest)
    queue = pd.read_csv(root / "reviewed/queue.csv", dtype=str, keep_default_na=False)
    queue[["decision", "new_label"]] = ""
    # inbox/ lies beside reviewed/: queue.json's relative paths hold
    write_queue_csv(queue, root / "inbox" / "queue.csv")
    shutil.copy(root / "reviewed" / "queue.json", root / "inbox" / "queue.json")
    return root


def _review_all(root: Path, decisions: Sequence[tuple[int, str, str]]) -> None:
    server = Review(root)
    try:
        for row in decisions:
            assert server.decide(*row)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def review_reference(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _review_copy(project, tmp_path_factory.mktemp("review-ref") / "p")
    _review_all(root, _decisions(project))
    return root


@pytest.mark.parametrize("i", range(REVIEW_KILLS))
def test_review_killed_while_saving_loses_at_most_the_decision_being_saved(
    i: int, project: Path, review_reference: Path, tmp_path: Path
) -> None:
    decisions = _decisions(project)
    n = spread(len(decisions), REVIEW_KILLS, "review")[i]
    root = _review_copy(project, tmp_path / "p")
    server = Review(root, fault=f"replace@{n}")
    try:
        answered = [server.decide(*row) for row in decisions[:n]]
    finally:
        server.stop()
    assert answered == [True] * (n - 1) + [False]  # killed saving decision n
    saved = pd.read_csv(root / "inbox" / "queue.csv", dtype=str, keep_default_na=False)
    # Decisions answered before the kill are on disk; the one being saved may not be.
    for row, decision, _ in decisions[: n - 1]:
        assert saved.at[row, "decision"] == decision
    # The same command again, and the reviewer redoes what the page had not confirmed.
    _review_all(root, decisions[n - 1 :])
    got, want = root / "inbox" / "queue.csv", review_reference / "inbox" / "queue.csv"
    assert got.read_bytes() == want.read_bytes()
    no_temporaries(root)  # the killed write's temporary file went with the next write
