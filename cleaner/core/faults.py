"""Test hooks: named moments where a test kills the process, the way ``kill -9`` would.

``CLEANER_FAULT=POINT@N`` sends SIGKILL to this process at the N-th time it
passes ``POINT`` (N defaults to 1): no ``finally``, no clean-up, exactly what
a crash or an out-of-memory kill leaves behind. ``CLEANER_FAULT_LOG=FILE``
appends the name of every point passed (and the file it is about), so a test can count a command's
points and pick, with a seed, where to kill it. Unset (always, outside tests),
a point costs one dictionary lookup.

The points: ``replace`` (a file is fully written under its temporary name and
about to be renamed into place: :mod:`cleaner.core.atomic`, every output of every
command) and ``commit`` (apply: the audit log names the new manifest version,
whose rename is next).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_ENV = "CLEANER_FAULT"
LOG_ENV = "CLEANER_FAULT_LOG"
_passed: Counter[str] = Counter()


def fault_point(name: str, detail: str = "") -> None:
    """Pass the point ``name``: logged (with ``detail``, e.g. the file), or the process
    killed here, when a test asks."""
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(f"{name} {detail}".rstrip() + "\n")
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    target, _, n = spec.partition("@")
    if target != name:
        return
    _passed[name] += 1
    if _passed[name] == int(n or 1):
        os.kill(os.getpid(), signal.SIGKILL)
