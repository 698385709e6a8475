"""``refresh.json``: where a refreshed run came from, and how its fold models were fine-tuned.

A refresh (:mod:`cleaner.training.refresh`) writes an ordinary run folder whose
fold models start from another finished run's. This record, written once before
any fold trains, says from which run (and which finish of it), onto which manifest
version, and with which settings, so that the same refresh finds its folder again
and a different one is refused. JSON keys:

- ``source_run``: the run whose ``fold-K/model.pt`` were fine-tuned, relative to
  the refreshed run folder (a project moved as a whole keeps it);
- ``source_metrics_sha256``: sha256 of that run's completion record
  (``metrics.json``): the run as it was finished, not another run made later in
  the same folder;
- ``source_manifest_sha256``, ``manifest_sha256``: the manifest versions before
  and after (the latter is also ``manifest.sha256``'s);
- ``labels_changed``, ``rows_left_out``: train rows whose label differs, and rows
  of the source run that no longer train (dropped by a reviewer);
- ``epochs``, ``lr``, ``scheduler``, ``warmup_epochs``: the fine-tune's schedule
  (``config.toml`` keeps the pipeline's own recipe).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cleaner.core.errors import InputError, Problem
from cleaner.formats.run_files import RunFiles

KEY_DIGITS = 8  # hex digits of a refreshed run folder's default name


@dataclass(frozen=True, kw_only=True)
class RefreshRecord:
    source_run: str
    source_metrics_sha256: str
    source_manifest_sha256: str
    manifest_sha256: str
    labels_changed: int
    rows_left_out: int
    epochs: int
    lr: float
    scheduler: str
    warmup_epochs: float

    def to_text(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def key(self) -> str:
        """The short hash naming the refresh's default folder: everything but where the
        source run lies (the same refresh from a moved project is the same refresh)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "source_run"}
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:KEY_DIGITS]


def read_refresh_record(run_dir: Path) -> RefreshRecord | None:
    """A run folder's ``refresh.json``; ``None`` for a run that is not a refresh.

    Refused, naming the file, unless it is one.
    """
    path = RunFiles(run_dir).refresh
    if not path.exists():
        return None
    names = [f.name for f in dataclasses.fields(RefreshRecord)]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or set(data) != set(names):
            raise ValueError(f"expected the keys {', '.join(names)}")
        return RefreshRecord(**data)
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError too
        raise InputError([Problem(str(path), f"not a refresh record ({e})")]) from None
