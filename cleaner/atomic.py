"""Write files so that a crash never leaves half of one behind.

Outputs are written to a temporary name in the same folder and renamed into
place; ``os.replace`` is atomic on POSIX and Windows within one filesystem.
The temporary name carries the host and process id, so the next write of the
same file removes what a killed process of this host left (``.NAME.HOST.PID.*.tmp``)
and never a live writer's file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from cleaner.faults import fault_point


def _umask() -> int:
    """The process's umask, read without changing it where the OS tells (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


def default_mode(*, folder: bool = False) -> int:
    """The mode ``open`` (0o666) or ``mkdir`` (0o777) would give under the umask.

    Temporary files and folders are made 0600/0700 (``tempfile``); what is renamed
    into place must be readable as any file the user writes is, by the team on a
    shared file system.
    """
    return (0o777 if folder else 0o666) & ~_umask()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _host() -> str:
    # Dots separate the name's parts; a host name may contain them.
    return socket.gethostname().replace(".", "_") or "host"


def remove_orphans(path: Path) -> list[Path]:
    """Remove temporary files of ``path`` that a killed process of this host left."""
    removed = []
    prefix = f".{path.name}.{_host()}."
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        rest = tmp.name[len(prefix) :] if tmp.name.startswith(prefix) else ""
        pid = rest.split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    With ``overwrite=False`` (the default, since no step may replace a file an
    earlier step wrote) an existing ``path`` is an error before anything is written.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    prefix = f".{path.name}.{_host()}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, default_mode())
    try:
        yield tmp_path
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} appeared while writing; refusing to overwrite it")
        fault_point("replace", str(path))
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", *, overwrite: bool = False
) -> Iterator[IO]:
    """``open`` for writing through :func:`atomic_path`."""
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, mode) as f:
        yield f


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", overwrite=overwrite) as f:
        f.write(text)
