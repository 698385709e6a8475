"""A run or queue is complete or refused, and a write that fails names its file and why.

``oof`` writes ``metrics.json`` last, its completion record: a run that stopped
after ``oof.csv`` is refused by ``flag`` and finished by the same ``oof``
command; a fold file that will not merge is refused before anything is
written. ``flag`` writes ``queue.json`` last: killed before it, the queue is
refused by ``apply`` and ``review`` and the same ``flag`` finishes it. A full
disk (simulated where the bytes are written, or a real file size limit) stops
``apply``, ``oof``'s checkpoint (torch's writer), ``ingest`` and the review
page with one message naming the file and the reason: exit 2, nothing left
half-written.
"""

from __future__ import annotations

import errno
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import TinyProject, assert_says, snapshot, write_csv, write_png
from test_concurrency import ServerProcess, two_queue_project
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.faults import FAULT_ENV, LOG_ENV
from cleaner.formats import metrics_file
from cleaner.formats.queue_file import read_queue_table, write_queue_csv
from cleaner.review.server import serve

runner = CliRunner()
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _env(**extra: str) -> dict[str, str]:
    """This process's environment (the worktree first on the path) for a child process."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", **extra}
    env.pop(FAULT_ENV, None)
    env.pop(LOG_ENV, None)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cleaner", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def refused(*args: str, root: Path) -> str:
    """The CLI refuses (exit 2, one message, no traceback) and changes no file under root."""
    before = snapshot(root)
    result = run(*args)
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    assert snapshot(root) == before, "a refused command changed files"
    return result.output


def no_temporaries(root: Path) -> None:
    left = [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name == ".cleaner.lock"]
    assert not left, f"left behind: {left}"


def with_unlabeled(p: TinyProject) -> None:
    """The tiny manifest with two ``unlabeled`` rows (copies of two images)."""
    rows = [dict(r) for r in p.rows]
    for i in range(2):
        shutil.copy(p.images[i], p.root / "images" / f"u{i}.png")
        rows.append({"path": f"images/u{i}.png", "label": "", "split": "unlabeled"})
    p.rewrite_manifest(rows, ["path", "label", "split"])


# --- oof: metrics.json is written last -------------------------------------------------------


def test_a_run_stopped_before_metrics_json_is_refused_then_finished(
    tiny_project: TinyProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, run_dir = tiny_project, tiny_project.root / "run"
    real = metrics_file.write_text  # the one writer of metrics.json

    def crash(path: Any, text: str, **kw: Any) -> None:
        if Path(path) == run_dir / "metrics.json":
            raise RuntimeError("crashed before the last file")
        real(path, text, **kw)

    monkeypatch.setattr(metrics_file, "write_text", crash)
    result = run("oof", str(p.pipeline), "--out", str(run_dir), "-q")
    assert isinstance(result.exception, RuntimeError)
    monkeypatch.undo()
    assert (run_dir / "oof.csv").exists() and not (run_dir / "metrics.json").exists()

    out = refused("flag", str(run_dir), "--force", "-q", root=p.root)
    assert_says(
        out,
        f"error: {run_dir}: no metrics.json: the run is not finished",
        "run `cleaner oof` with the same arguments to finish it",
    )
    model = run_dir / "fold-0" / "model.pt"
    trained = model.stat().st_mtime_ns
    ok("oof", str(p.pipeline), "--out", str(run_dir), "-q")  # finishes: merges, trains nothing
    assert model.stat().st_mtime_ns == trained
    assert (run_dir / "metrics.json").exists()
    ok("flag", str(run_dir), "--force", "-q")
    assert (run_dir / "queue.json").exists()


@pytest.mark.parametrize("tamper", ["object array", "wrong shape"])
def test_a_fold_file_that_will_not_merge_is_refused_before_anything_is_written(
    tiny_project: TinyProject, tamper: str
) -> None:
    """The probe's case: a tampered fold-0/unlabeled.npz crashed the merge after it wrote
    oof.csv (and flag then took the run). Now it is refused first, naming the file."""
    p, run_dir = tiny_project, tiny_project.root / "run"
    with_unlabeled(p)
    ok("oof", str(p.pipeline), "--out", str(run_dir), "-q")
    for name in ("oof.csv", "unlabeled.csv", "metrics.json"):
        (run_dir / name).unlink()  # as before the merge
    bad = run_dir / "fold-0" / "unlabeled.npz"
    with open(bad, "wb") as f:
        if tamper == "object array":
            np.savez(f, probs=np.array([{"a": 1}, None], dtype=object))
        else:
            np.savez(f, probs=np.full((3, 2), 0.5))
    out = refused("oof", str(p.pipeline), "--out", str(run_dir), "-q", root=p.root)
    reason = "reads safely" if tamper == "object array" else "not the (2, 2) of the run"
    assert_says(out, f"error: {bad}: ", reason, "delete the fold's folder to train it again")
    assert not (run_dir / "oof.csv").exists()
    out = refused("flag", str(run_dir), "--force", "-q", root=p.root)
    assert_says(out, "no oof.csv: the run is not finished")


def test_a_fold_whose_metrics_are_not_json_is_refused(tiny_project: TinyProject) -> None:
    p, run_dir = tiny_project, tiny_project.root / "run"
    ok("oof", str(p.pipeline), "--out", str(run_dir), "-q")
    for name in ("oof.csv", "metrics.json"):
        (run_dir / name).unlink()
    (run_dir / "fold-1" / "metrics.json").write_text("[1, 2")
    out = refused("oof", str(p.pipeline), "--out", str(run_dir), "-q", root=p.root)
    assert_says(out, f"error: {run_dir / 'fold-1' / 'metrics.json'}: not a fold's metrics")


# --- flag: queue.json is written last --------------------------------------------------------


@pytest.fixture
def flagged(tiny_project: TinyProject, tmp_path: Path) -> tuple[Path, Path]:
    """A finished tiny run, and the queue an uninterrupted flag makes of it (elsewhere)."""
    run_dir = tiny_project.root / "run"
    ok("oof", str(tiny_project.pipeline), "--out", str(run_dir), "-q")
    reference = tmp_path / "reference"
    ok("flag", str(run_dir), "--force", "--top", "4", "--out", str(reference), "-q")
    return run_dir, reference


def test_flag_killed_between_its_renames_is_refused_then_finished(
    tiny_project: TinyProject, flagged: tuple[Path, Path]
) -> None:
    run_dir, reference = flagged
    killed = cli("flag", "run", "--force", "--top", "4", "-q", cwd=tiny_project.root,
                 **{FAULT_ENV: "replace@2"})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (run_dir / "queue.csv").exists() and not (run_dir / "queue.json").exists()

    queue = run_dir / "queue.csv"
    for args in (("apply", str(queue)), ("review", str(queue), "--port", "0")):
        out = refused(*args, root=tiny_project.root)
        assert_says(
            out,
            f"error: {run_dir / 'queue.json'}: not found",
            "if flag was interrupted, run it again to finish the queue",
        )
    ok("flag", str(run_dir), "--force", "--top", "4", "-q")  # the same command finishes it
    for name in ("queue.csv", "queue.html", "queue.json", "noise_matrix.png"):
        assert (run_dir / name).exists(), name
    assert queue.read_bytes() == (reference / "queue.csv").read_bytes()
    no_temporaries(tiny_project.root)
    out = refused("flag", str(run_dir), "--force", "-q", root=tiny_project.root)
    assert_says(out, "queue.csv: already exists; pass --out for a new queue folder")


def test_leftovers_with_a_reviewers_decisions_are_never_written_over(
    tiny_project: TinyProject, flagged: tuple[Path, Path]
) -> None:
    run_dir, reference = flagged
    table = read_queue_table(reference / "queue.csv")
    table.loc[0, "decision"] = "keep"
    write_queue_csv(table, run_dir / "queue.csv")  # a queue.csv without its queue.json
    out = refused("flag", str(run_dir), "--force", "-q", root=tiny_project.root)
    assert_says(
        out,
        f"error: {run_dir / 'queue.csv'}: already exists with decisions filled in, but "
        "without its queue.json (an interrupted flag?)",
    )


# --- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def queue_project(tmp_path: Path) -> Any:
    return two_queue_project(tmp_path / "p")


def test_apply_on_a_full_disk_names_the_file(
    queue_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Path.write_bytes

    def full(self: Path, data: Any) -> int:
        if self.name.endswith(".tmp"):  # what atomic writes go through
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    out = refused("apply", str(queue_project / "qa" / "queue.csv"), root=queue_project)
    data = queue_project / "data"
    assert_says(out, f"error: {data / 'm.v2.csv'}: could not write (No space left on device)")
    no_temporaries(queue_project)


def test_apply_past_a_real_file_size_limit_names_the_file(queue_project: Path) -> None:
    """The kernel's own error (EFBIG under RLIMIT_FSIZE), in a child process."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error from write, not a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    before = snapshot(queue_project)
    result = subprocess.run(
        [sys.executable, "-m", "cleaner", "apply", "qa/queue.csv"],
        cwd=queue_project,
        env=_env(PYTHONDONTWRITEBYTECODE="1"),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )
    assert result.returncode == 2, result.stderr
    assert_says(result.stderr, "error: data/m.v2.csv: could not write (File too large)")
    assert "Traceback" not in result.stderr
    assert snapshot(queue_project) == before


class FullDisk(io.FileIO):
    """A file on a disk with room for ``room`` more bytes."""

    room = 4096

    def write(self, data: Any, /) -> int:
        FullDisk.room -= len(data)
        if FullDisk.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_oof_on_a_full_disk_names_the_checkpoint(
    tiny_project: TinyProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's writer reports a full disk as ``RuntimeError: [enforce fail at
    inline_container.cc:672] . unexpected pos``; the write's own error is what is said."""
    p, run_dir = tiny_project, tiny_project.root / "run"
    monkeypatch.setattr(io, "FileIO", FullDisk)  # only cleaner.core.atomic.atomic_file makes these
    result = run("oof", str(p.pipeline), "--out", str(run_dir), "-q")
    assert result.exit_code == 2, result.output + repr(result.exception)
    checkpoint = run_dir / "fold-0" / "checkpoint.pt"
    assert_says(result.output, f"error: {checkpoint}: could not write (No space left on device)")
    assert "enforce fail" not in result.output and "Traceback" not in result.output
    assert not checkpoint.exists()
    no_temporaries(p.root)
    monkeypatch.undo()
    ok("oof", str(p.pipeline), "--out", str(run_dir), "-q")  # space freed: the run finishes
    assert (run_dir / "metrics.json").exists()


def test_ingest_on_a_full_disk_names_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    real, saved = Image.Image.save, []

    def full(self: Image.Image, fp: Any, *args: Any, **kw: Any) -> None:
        if len(saved) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        saved.append(fp)
        real(self, fp, *args, **kw)

    monkeypatch.setattr(Image.Image, "save", full)
    (tmp_path / "data").mkdir()
    images, manifest = tmp_path / "data" / "images", tmp_path / "data" / "digits.csv"
    out = refused("ingest", "digits", str(images), "--manifest", str(manifest), root=tmp_path)
    assert_says(out, f"error: {images}{os.sep}", ".png: could not write (No space left on device)")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == []


def test_a_review_decision_on_a_full_disk_names_the_queue(
    queue_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = queue_project / "qa" / "queue.csv"
    server, _ = serve(queue, port=0)
    server.start_background()
    try:
        before = snapshot(queue_project)
        real = Path.write_bytes

        def full(self: Path, data: Any) -> int:
            if self.name.endswith(".tmp"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, data)

        monkeypatch.setattr(Path, "write_bytes", full)
        client = ServerProcess.__new__(ServerProcess)
        client.port, client.token = server.port, server.token
        status, body = client.post("/api/decide", {"row": 0, "decision": "keep"})
        assert status == 500, body
        assert body["error"] == f"{queue}: could not write (No space left on device)"
        assert snapshot(queue_project) == before  # the row keeps its decision, relabel
    finally:
        server.stop()


def test_a_manifest_written_on_a_full_disk_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ingest csv``'s manifest: pandas writes it; the error names the manifest."""
    rows = [{"path": f"x{i}.png", "label": "ab"[i % 2]} for i in range(4)]
    source = write_csv(tmp_path / "in" / "table.csv", rows)
    for r in rows:
        write_png(tmp_path / "in" / r["path"])
    real = pd.DataFrame.to_csv

    def full(self: pd.DataFrame, path: Any = None, *args: Any, **kw: Any) -> Any:
        if path is not None and str(path).endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, path, *args, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run(
        "ingest", "csv", str(source), "--path-col", "path", "--label-col", "label",
        "--manifest", str(out_dir / "m.csv"),
    )  # fmt: skip
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert_says(result.output, f"error: {out_dir / 'm.csv'}: could not write (No space left")
    assert list(out_dir.iterdir()) == []


def test_a_start_of_the_same_run_is_kept_and_another_configs_is_cleared(tmp_path: Path) -> None:
    """Ray tasks and ``--fold K`` processes set up one run folder at the same moment: a
    folder holding only this run's start records is left alone (another process may be
    reading them); one left by a refused start of another configuration is set up afresh."""
    from helpers import digits_project

    from cleaner.core.config import load_config
    from cleaner.core.progress import make_progress
    from cleaner.training.pipeline import load_pipeline_data
    from cleaner.training.run_plan import plan_run

    _, pipeline = digits_project(tmp_path, epochs=1)
    run = tmp_path / "run"
    with make_progress(quiet=True) as progress:
        data = load_pipeline_data(load_config(pipeline), progress=progress)
        plan_run(data, out=run)
        inodes = {p.name: p.stat().st_ino for p in run.iterdir()}
        plan_run(data, out=run, fold=1)
        assert {p.name: p.stat().st_ino for p in run.iterdir()} == inodes
        other = load_pipeline_data(load_config(pipeline, ["train.seed=7"]), progress=progress)
        plan_run(other, out=run)
    assert "seed = 7" in (run / "config.toml").read_text()
