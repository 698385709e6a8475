"""Write files so that a crash never leaves half of one behind.

Outputs are written to a temporary name in the same folder and renamed into
place; ``os.replace`` is atomic on POSIX and Windows within one filesystem.
The temporary name carries the host and process id, so the next write of the
same file removes what a killed process of this host left (``.NAME.HOST.PID.*.tmp``)
and never a live writer's file.

A write that fails (a full disk, a read-only folder, a quota) raises
:class:`~cleaner.core.errors.WriteError`, which names the file being written, not
its temporary name, and the reason; :func:`atomic_file` recovers that reason
from writers that hide it (``torch.save`` reports a full disk as
``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``).
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cleaner.core.errors import WriteError
from cleaner.core.faults import fault_point


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
    An ``OSError`` of the write (the block's, about the temporary file or about no
    file) becomes a :class:`WriteError` naming ``path``; one about another file
    (something the block reads) is left as it is.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} already exists; refusing to overwrite it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_orphans(path)
        prefix = f".{path.name}.{_host()}.{os.getpid()}."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        os.chmod(tmp_path, default_mode())
    except OSError as e:
        raise WriteError.of(path, e) from e
    try:
        with naming_write_errors(path, tmp_path):
            yield tmp_path
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} appeared while writing; refusing to overwrite it")
        fault_point("replace", str(path))
        try:
            os.replace(tmp_path, path)
        except OSError as e:
            raise WriteError.of(path, e) from e
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def naming_write_errors(path: str | os.PathLike[str], tmp: Path) -> Iterator[None]:
    """An ``OSError`` of writing ``tmp`` (a temporary file or folder) in the block becomes
    a :class:`WriteError` naming ``path``, what is being written; one about another file
    (something the block reads) is left as it is."""
    try:
        yield
    except OSError as e:
        if _writing(e, tmp):
            raise WriteError.of(path, e) from e
        raise


def _writing(error: OSError, tmp: Path) -> bool:
    """Whether ``error`` is one of writing ``tmp``: about it or a file in it, or about no
    file (a failed ``write``), and not already named (a nested write's, a refusal)."""
    if isinstance(error, WriteError | FileExistsError):
        return False
    if error.filename is None:
        return True
    try:
        failed = Path(os.fsdecode(error.filename))
    except TypeError:  # a descriptor number
        return False
    return failed == tmp or tmp in failed.parents


class _KeepsWriteError(io.BufferedWriter):
    """A binary file that keeps the ``OSError`` of its failed write, for writers that
    raise their own error in its place."""

    error: OSError | None = None

    def write(self, data: Any, /) -> int:
        try:
            return super().write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            self.error = e
            raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[IO[bytes]]:
    """A binary file object written through :func:`atomic_path`, for writers that take
    one (``torch.save``, ``np.savez``).

    When the writer fails after a write of the file failed, the write's ``OSError``
    is raised (as a :class:`WriteError` naming ``path``) instead of the writer's own
    error, which hides the reason: torch reports a full disk as ``RuntimeError:
    [enforce fail at inline_container.cc:672] . unexpected pos``.
    """
    with atomic_path(path, overwrite=overwrite) as tmp:
        f = _KeepsWriteError(io.FileIO(tmp, "wb"))
        try:
            with f:
                yield f
        except OSError:
            raise
        except Exception as e:
            if f.error is not None:
                raise f.error from e
            raise


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
