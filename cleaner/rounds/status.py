"""``cleaner status``: where a project stands, and the next command to run.

A project folder holds manifests (``NAME.csv``, then the versions ``apply`` writes,
``NAME.v2.csv``, ...), run folders (each names the manifest version it was trained
on in ``manifest.sha256``) and queues (``queue.json`` names the version they rank).
Read-only: this module finds them, ties each to its manifest version, counts what
the queues decided and what the audit log holds, and picks the next step of the
loop for the newest version:

1. a queue of the newest version with decisions: ``cleaner apply`` it (with rows
   still undecided, ``cleaner review`` it first);
2. a finished ``oof`` run of the newest version, not queued: ``cleaner flag`` it (or
   ``cleaner round``);
3. runs of older versions only: ``cleaner refresh`` the newest of them on the newest
   version (minutes), or ``oof`` from scratch;
4. nothing trained: ``cleaner oof`` with a pipeline of the folder;
5. a queue of the newest version applied (every row kept: no new version), or every
   run of it queued: ``cleaner retrain`` on it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cleaner.core.errors import InputError, Problem
from cleaner.formats.audit import ACTIONS, read_audit_log
from cleaner.formats.manifest import (
    audit_log_path,
    next_version_path,
    sha256_file,
    split_version,
)
from cleaner.formats.queue_file import QueueMeta, read_queue_meta, read_queue_table
from cleaner.formats.repoint import repoint_chain
from cleaner.formats.run_files import QueueFiles, RunFiles
from cleaner.formats.run_records import read_manifest_record

# Folders no project file lives in: searching them costs time and finds other projects'.
SKIP = frozenset({".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache"})
MAX_DEPTH = 5  # runs/NAME/round-N/queue.csv is 3 deep; leave room for folders of runs


@dataclass(frozen=True)
class RunState:
    """A run folder and the manifest version it was trained on."""

    path: Path
    manifest: Path
    kind: str  # "oof" (finished), "retrain" (a final model), "unfinished"


@dataclass(frozen=True)
class QueueState:
    """A queue, the version it ranks, and how far its review went."""

    path: Path  # queue.csv
    manifest: Path
    rows: int
    decided: int
    applied: bool  # the audit log holds an apply to the version it ranks
    runs: tuple[Path, ...]  # the runs it was made from


@dataclass(frozen=True)
class VersionState:
    path: Path
    decisions: int  # audit log records that produced this version


@dataclass(frozen=True)
class ManifestState:
    """One manifest's versions, oldest first, with the runs and queues of each."""

    versions: tuple[VersionState, ...]
    runs: tuple[RunState, ...]
    queues: tuple[QueueState, ...]
    next_command: str
    why: str

    @property
    def current(self) -> Path:
        return self.versions[-1].path


@dataclass(frozen=True)
class ProjectStatus:
    folder: Path
    manifests: tuple[ManifestState, ...]
    problems: tuple[str, ...] = field(default=())  # files found but unreadable, skipped


def _walk(folder: Path, name: str, depth: int = 0) -> list[Path]:
    """Every file called ``name`` below ``folder``, sorted, skipping :data:`SKIP`."""
    found = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        if entry.is_dir() and entry.name not in SKIP and depth < MAX_DEPTH:
            found += _walk(entry, name, depth + 1)
        elif entry.name == name and entry.is_file():
            found.append(entry)
    return found


def _base(manifest: Path) -> Path:
    """Version 1 of ``manifest``'s family: ``NAME.csv``."""
    name, _ = split_version(manifest)
    return manifest.with_name(f"{name}.csv")


def _versions(base: Path) -> list[Path]:
    versions = [base]
    while next_version_path(versions[-1]).exists():
        versions.append(next_version_path(versions[-1]))
    return versions


def _audit(base: Path) -> tuple[Counter[str], set[str], list[dict[str, Any]]]:
    """Decisions per version produced, the sha256 of every version decisions were applied
    to, and the committed records (read as ``apply`` reads them)."""
    records = read_audit_log(audit_log_path(base))
    # Decisions only: a repoint's line moved the images and decided nothing.
    decided = [r for r in records if r.get("action") in ACTIONS]
    produced = Counter(str(r.get("version", "")) for r in decided)
    return produced, {str(r.get("manifest_sha256", "")) for r in decided}, records


def _run(path: Path) -> RunState:
    files = RunFiles(path.parent)
    _, manifest = read_manifest_record(files.dir)
    kind = "oof" if files.oof.exists() else "retrain" if files.report.exists() else "unfinished"
    return RunState(files.dir, manifest.resolve(), kind)


def _queue(
    csv: Path, meta: QueueMeta, applied_to: set[str], records: list[dict[str, Any]]
) -> QueueState:
    table = read_queue_table(csv)
    decided = int((table["decision"].str.strip() != "").sum())
    runs = tuple(Path(r).resolve() for r in meta.runs)
    manifest = meta.manifest.resolve()
    # A queue made before a repoint is applied to the version the repoint made.
    chain = repoint_chain(meta.manifest, records)
    shas = {meta.manifest_sha256} | {sha256_file(v) for v in chain[1:]}
    applied = bool(shas & applied_to)
    return QueueState(csv, manifest, len(table), decided, applied, runs)


def project_status(folder: str | Path = ".") -> ProjectStatus:
    """Where the project in ``folder`` stands (see the module docstring)."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError([Problem(str(root), "not a folder")])
    problems: list[str] = []
    runs: list[RunState] = []
    for path in _walk(root, RunFiles(root).manifest_record.name):
        try:
            runs.append(_run(path))
        except (InputError, OSError) as e:
            problems.append(_named(path.parent, e))
    bases = {_base(r.manifest) for r in runs}
    # Manifests no run or queue names yet: the ones ``ingest`` writes by default.
    for path in sorted((root / "data_manifests").glob("*.csv")):
        if split_version(path)[1] == 1:
            bases.add(path.resolve())
    metas: dict[Path, QueueMeta] = {}
    for path in _walk(root, QueueFiles(root).record.name):
        csv = QueueFiles(path.parent).csv
        try:
            metas[csv] = read_queue_meta(csv)
        except (InputError, OSError) as e:
            problems.append(_named(path.parent, e))
    bases |= {_base(m.manifest.resolve()) for m in metas.values()}
    audits: dict[Path, tuple[Counter[str], set[str], list[dict[str, Any]]]] = {}
    for b in bases:
        try:
            audits[b] = _audit(b)
        except InputError as e:  # a damaged log: named; apply refuses it the same way
            problems.append(str(e))
            audits[b] = (Counter(), set(), [])
    queues: list[QueueState] = []
    for csv, meta in metas.items():
        try:
            _, applied_to, records = audits[_base(meta.manifest.resolve())]
            queues.append(_queue(csv, meta, applied_to, records))
        except (InputError, OSError) as e:
            problems.append(_named(csv, e))
    states = []
    for base in sorted(bases):
        produced = audits[base][0]
        versions = tuple(VersionState(v, produced[v.name]) for v in _versions(base))
        mine = {v.path for v in versions}
        own_runs = tuple(r for r in runs if r.manifest in mine)
        own_queues = tuple(q for q in queues if q.manifest in mine)
        command, why = next_step(versions[-1].path, own_runs, own_queues, root)
        states.append(ManifestState(versions, own_runs, own_queues, command, why))
    return ProjectStatus(root, tuple(states), tuple(problems))


def _named(path: Path, e: Exception) -> str:
    """An error as one line: an :class:`InputError` names its file already."""
    return str(e) if isinstance(e, InputError) else f"{path}: {e}"


def _pipeline(root: Path) -> str:
    found = sorted((root / "pipelines").glob("*.toml")) if (root / "pipelines").is_dir() else []
    return str(found[0]) if found else "PIPELINE.toml"


def next_step(
    current: Path, runs: tuple[RunState, ...], queues: tuple[QueueState, ...], root: Path
) -> tuple[str, str]:
    """The next command for the newest version ``current``, and why; pure but for
    looking for a pipeline file in ``root``."""
    of_current = [q for q in queues if q.manifest == current and not q.applied]
    for q in of_current:
        if q.decided < q.rows:
            return f"cleaner review {q.path}", f"{q.rows - q.decided:,} of its rows undecided"
    for q in of_current:
        return f"cleaner apply {q.path}", f"all {q.rows:,} rows decided, not applied"
    finished = [r for r in runs if r.kind == "oof"]
    current_runs = [r for r in finished if r.manifest == current]
    queued = {run for q in queues for run in q.runs}
    reviewed = any(q.manifest == current and q.applied for q in queues)
    finals = {r.path.resolve(): r for r in runs if r.kind == "retrain" and r.manifest == current}
    for r in current_runs:
        if r.path.resolve() not in queued and not reviewed:
            final = finals.get(r.path.parent.resolve())  # retrain --mode folds' cv/ run
            if final is not None:
                return (
                    f"cleaner flag {r.path} --audit 100",
                    f"{current.name} has its final model ({RunFiles(final.path).report}); "
                    "another round starts from that retrain's out-of-fold run on the "
                    "cleaned labels, with 100 random rows to measure it",
                )
            return f"cleaner flag {r.path}", f"a run of {current.name} without a queue"
    if current_runs:
        return (
            f"cleaner retrain {_pipeline(root)} --manifest {current}",
            f"{current.name} is reviewed: train the final model on it",
        )
    if finished:
        old = finished[-1]
        return (
            f"cleaner refresh {old.path} {current}",
            f"no run of {current.name} yet (or from scratch: cleaner oof "
            f"{RunFiles(old.path).config} --set data.manifest={current})",
        )
    return f"cleaner oof {_pipeline(root)} --set data.manifest={current}", "nothing trained yet"
