"""The ``cleaner`` command line: each command parses, makes one library call, prints.

A thin layer over :mod:`cleaner.api` and the layers' public functions; importing it
loads no torch, cleanlab or scikit-learn (each command imports what it runs).
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import

# The command modules register their commands on `app` when imported.
from cleaner.cli import data, loop, reviewing, rounds
from cleaner.cli.base import WORKFLOW, app

__all__ = ["WORKFLOW", "app", "data", "loop", "reviewing", "rounds"]
