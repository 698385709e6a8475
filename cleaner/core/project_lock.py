"""The project lock: one writer at a time in a folder of project files.

Every command that writes files a person reviews or that later steps build on
(``ingest``'s manifest and images, ``apply``'s version and audit log, the
review page's and ``import labelstudio``'s queue) holds the lock of the folder
it writes, from reading what it is about to change until its last rename:
``FOLDER/.cleaner.lock``, an advisory ``flock`` on that file. Two commands
writing the same folder run one after the other; each then sees what the other
wrote, so none decides on a state that is gone (two ``apply`` of two queues of
one manifest: the second finds the version the first made and refuses).

Waiting: a command waits up to :data:`DEFAULT_WAIT_S` seconds
(``CLEANER_LOCK_WAIT`` sets another, ``0`` refuses at once), then refuses with
:class:`ProjectLocked`, an :class:`InputError` that names the holder's command,
pid, host and start time, which the holder writes into the file as information.

Stale locks: the kernel releases a ``flock`` when its process dies, however it
dies, so a killed command never blocks the next one; the holder information it
left is overwritten by the next holder. The holder removes the file when it
releases the lock; a waiter that then gets the lock on the removed file sees
that the path is gone (or is another file) and locks again, so two processes
never both hold it. ``flock`` works across processes of one machine and, on
Linux, over NFS (as a POSIX lock); elsewhere (Windows) there is no lock.

Within one process the lock is reentrant for a thread (``retrain --queue``
calls ``apply``), and other threads wait as other processes do. A folder that
does not exist yet has no lock: the command that makes it takes the lock once
it does.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cleaner.core.atomic import default_mode
from cleaner.core.errors import InputError, Problem, WriteError

LOCK_NAME = ".cleaner.lock"
WAIT_ENV = "CLEANER_LOCK_WAIT"
DEFAULT_WAIT_S = 60.0  # an apply of a million-row manifest takes tens of seconds
_POLL_S = 0.05


class ProjectLocked(InputError):
    """Another command holds the lock of the folder this one must write (exit 2)."""


@dataclass
class _Held:
    """This process's hold on one folder's lock: a thread-reentrant count over one flock."""

    thread_lock: threading.RLock
    depth: int = 0
    fd: int | None = None


_held: dict[Path, _Held] = {}
_held_guard = threading.Lock()


def lock_path(folder: str | os.PathLike[str]) -> Path:
    """The lock file of ``folder``."""
    return Path(folder) / LOCK_NAME


def wait_seconds() -> float:
    """How long to wait for a held lock: ``CLEANER_LOCK_WAIT`` or :data:`DEFAULT_WAIT_S`."""
    value = os.environ.get(WAIT_ENV, "").strip()
    if not value:
        return DEFAULT_WAIT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # NaN fails too
        raise InputError(f"{WAIT_ENV}={value!r}: give the seconds to wait, 0 or more")
    return min(seconds, threading.TIMEOUT_MAX)


@contextlib.contextmanager
def project_lock(folder: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs; ``command`` says who holds it.

    Raises :class:`ProjectLocked` when another process (or thread) still holds
    it after :func:`wait_seconds`.
    """
    folder = Path(folder)
    wait = wait_seconds()
    if not folder.is_dir():
        # Nothing there to protect, and a refused command must not leave a folder behind:
        # a command that makes the folder takes its lock once it exists.
        yield
        return
    deadline = time.monotonic() + wait
    key = Path(os.path.realpath(folder))  # one lock per folder, however it is spelled
    with _held_guard:
        held = _held.setdefault(key, _Held(threading.RLock()))
    if not held.thread_lock.acquire(timeout=wait):
        raise _locked(lock_path(folder), wait)
    try:
        if held.depth == 0:
            held.fd = _acquire(lock_path(folder), command, deadline, wait)
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.fd is not None:
                _release(lock_path(folder), held.fd)
                held.fd = None
    finally:
        held.thread_lock.release()


if sys.platform == "win32":  # no flock: documented as no lock

    def _acquire(path: Path, command: str, deadline: float, wait: float) -> int | None:
        return None

    def _release(path: Path, fd: int) -> None:
        pass

else:
    import fcntl

    def _open(path: Path) -> int:
        """The lock file, made if missing (with the mode any file of the team gets)."""
        try:
            try:
                return os.open(path, os.O_RDWR | os.O_CREAT, default_mode())
            except PermissionError:
                if path.exists():  # another user's file: a read-only descriptor locks too
                    return os.open(path, os.O_RDONLY)
                raise
        except OSError as e:
            raise WriteError.of(path, e) from e

    def _acquire(path: Path, command: str, deadline: float, wait: float) -> int:
        """Lock ``path`` (polling until ``deadline``), write who holds it; the descriptor."""
        while True:
            fd = _open(path)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise _locked(path, wait) from None
                time.sleep(_POLL_S)
                continue
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, path):
                _write_holder(fd, command)
                return fd
            # The holder removed the file as we waited on it: lock the one there now.
            os.close(fd)

    def _release(path: Path, fd: int) -> None:
        # Removed while still held, so that no one locks a file that is about to go.
        with contextlib.suppress(OSError):
            if _same_file(fd, path):
                path.unlink()
        os.close(fd)  # releases the flock


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)


def _write_holder(fd: int, command: str) -> None:
    """Record who holds the lock, for the message of whoever waits: information only."""
    holder = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with contextlib.suppress(OSError):  # a read-only descriptor: the lock holds all the same
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def holder(path: Path) -> str:
    """Who holds the lock at ``path``, in words, as the holder recorded it."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        who = f"`{info['command']}` (pid {int(info['pid'])} on {info['host']}"
        return who + f", since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another command (it has not recorded which yet)"


def _locked(path: Path, wait: float) -> ProjectLocked:
    return ProjectLocked(
        [
            Problem(
                str(path),
                f"held by {holder(path)}; waited {wait:g} s. Run this again once it has "
                f"finished (or set {WAIT_ENV}=SECONDS to wait longer)",
            )
        ]
    )
