"""Manifests: the versioned CSV that says which image has which label.

One row per image: ``sample_id, path, label, group, weight, split`` plus any
extra columns, which are carried through every step untouched. Everything is
read as text so that a label ``"07"`` stays ``"07"`` and extra columns are
written back exactly as they were read. A new version is a new file
(``NAME.v2.csv``, ``NAME.v3.csv``, ...); no file is ever rewritten.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.atomic import atomic_path
from cleaner.errors import InputError, Problem, not_utf8
from cleaner.project_lock import project_lock

REQUIRED = ("path", "label")
SPLITS = ("train", "test", "unlabeled", "excluded")
# Loss weights are relative; past this a float32 loss overflows long before it
# means anything (a weight of 1e308 passed and then crashed training).
MAX_WEIGHT = 1e6
_VERSION = re.compile(r"^(?P<name>.+?)(?:\.v(?P<n>\d+))?\.csv$")


def line_of(index: int) -> int:
    """The file line of data row ``index`` (0-based): the header is line 1."""
    return index + 2


def read_text_csv(path: str | Path) -> pd.DataFrame:
    """A UTF-8 CSV with every cell as text, as written (no NaN, no number parsing).

    A file that is not UTF-8 or not CSV is one problem naming it (and the line).
    """
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except UnicodeDecodeError:
        raise InputError([not_utf8(path)]) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError([Problem(str(path), f"not a readable CSV: {e}")]) from None


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest as text, with ``sample_id``, ``split`` and ``weight`` filled in.

    Missing ``sample_id`` defaults to the path, a missing or blank ``split`` to
    ``train`` and a missing or blank ``weight`` to ``1.0``. Values are not
    validated here: see :func:`validate_manifest`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError([Problem(str(path), "manifest not found")])
    df = read_text_csv(path)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(
            [Problem(str(path), f"missing required column(s): {', '.join(missing)}", row=1)]
        )
    if "sample_id" not in df.columns:
        df.insert(0, "sample_id", df["path"])
    df["sample_id"] = df["sample_id"].where(df["sample_id"] != "", df["path"])
    if "split" not in df.columns:
        df["split"] = "train"
    df["split"] = df["split"].str.strip().replace("", "train")
    if "weight" not in df.columns:
        df["weight"] = "1.0"
    df["weight"] = df["weight"].where(df["weight"].str.strip() != "", "1.0")
    return df


def apply_weights_file(df: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The manifest with the ``weight`` of each row listed in ``path`` replaced.

    ``path`` is a CSV of ``sample_id, weight`` (``data.weights``; ``retrain``
    writes one as ``train_weights.csv``). Rows it does not list keep their
    manifest weight. Every bad row is listed: an id the manifest lacks, an id
    given twice, a weight that is not a finite number >= 0.
    """
    file = str(path)
    if not Path(path).is_file():
        raise InputError([Problem(file, "data.weights file not found")])
    table = read_text_csv(path)
    missing = [c for c in ("sample_id", "weight") if c not in table.columns]
    if missing:
        raise InputError([Problem(file, f"missing column(s): {', '.join(missing)}", row=1)])
    problems: list[Problem] = []
    known = set(df["sample_id"])
    for i in _rows(~table["sample_id"].isin(known)):
        problems.append(
            Problem(
                file, f"sample_id {table['sample_id'].iat[i]!r} is not in the manifest", line_of(i)
            )
        )
    for i in _rows(table["sample_id"].duplicated()):
        problems.append(
            Problem(file, f"sample_id {table['sample_id'].iat[i]!r} repeats", line_of(i))
        )
    values = pd.to_numeric(table["weight"].str.strip(), errors="coerce")
    for i in _rows(values.isna() | ~np.isfinite(values) | (values < 0)):
        problems.append(
            Problem(file, f"weight {table['weight'].iat[i]!r} is not a number >= 0", line_of(i))
        )
    for i in _rows(values > MAX_WEIGHT):
        problems.append(
            Problem(file, f"weight {table['weight'].iat[i]!r} is above {MAX_WEIGHT:g}", line_of(i))
        )
    if problems:
        raise InputError(problems)
    new = dict(zip(table["sample_id"], table["weight"].str.strip(), strict=True))
    out = df.copy()
    listed = out["sample_id"].isin(new)
    out.loc[listed, "weight"] = out.loc[listed, "sample_id"].map(new)
    return out


def resolve_paths(df: pd.DataFrame, root: str | Path) -> list[Path]:
    """Image paths of every row; relative paths are relative to the manifest's folder."""
    root = Path(root)
    return [Path(p) if os.path.isabs(p) else root / p for p in df["path"]]


def _rows(mask: pd.Series | np.ndarray) -> list[int]:
    """Positions where a boolean mask is true, as Python ints."""
    return [int(i) for i in np.flatnonzero(np.asarray(mask))]


def trim_collisions(ids: pd.Series, file: str) -> list[Problem]:
    """Ids that differ only by surrounding spaces, naming both lines.

    Ids are stored and compared exactly, but a spreadsheet trims cells: two such
    ids could not be told apart in an edited queue.
    """
    trimmed = ids.str.strip()
    seen: dict[str, int] = {}
    problems = []
    for i, (raw, key) in enumerate(zip(ids, trimmed, strict=True)):
        if key in seen and ids.iat[seen[key]] != raw:
            problems.append(
                Problem(
                    file,
                    f"sample_id {raw!r} differs from {ids.iat[seen[key]]!r} (line "
                    f"{line_of(seen[key])}) only by spaces; make them distinct",
                    line_of(i),
                )
            )
        seen.setdefault(key, i)
    return problems


def id_matcher(ids: Iterable[str]) -> Callable[[str], str | None]:
    """Match an id from a person-edited file (a queue) to a manifest id.

    Exactly first; else after trimming spaces, only when exactly one manifest
    id trims to the same text (a spreadsheet may have added or removed them).
    """
    exact = set(ids)
    trimmed: dict[str, list[str]] = {}
    for sid in exact:
        trimmed.setdefault(sid.strip(), []).append(sid)

    def match(raw: str) -> str | None:
        if raw in exact:
            return raw
        found = trimmed.get(raw.strip(), [])
        return found[0] if len(found) == 1 else None

    return match


def _id_problems(df: pd.DataFrame, file: str) -> list[Problem]:
    """Repeated ``sample_id`` values (naming the first line) and ids equal after trimming."""
    problems = []
    for i in _rows(df["sample_id"].duplicated(keep="first")):
        first = int(np.flatnonzero((df["sample_id"] == df["sample_id"].iat[i]).to_numpy())[0])
        problems.append(
            Problem(
                file,
                f"duplicate sample_id {df['sample_id'].iat[i]!r} (first on line {line_of(first)})",
                line_of(i),
            )
        )
    return problems + trim_collisions(df["sample_id"], file)


def _split_and_weight_problems(df: pd.DataFrame, file: str) -> list[Problem]:
    """Unknown splits, and weights that are not finite numbers in ``[0, MAX_WEIGHT]``."""
    problems = [
        Problem(
            file,
            f"unknown split {df['split'].iat[i]!r}; use one of {', '.join(SPLITS)}",
            line_of(i),
        )
        for i in _rows(~df["split"].isin(SPLITS))
    ]
    weights = pd.to_numeric(df["weight"].str.strip(), errors="coerce")
    for i in _rows(weights.isna() | ~np.isfinite(weights)):
        problems.append(
            Problem(file, f"weight {df['weight'].iat[i]!r} is not a finite number", line_of(i))
        )
    for i in _rows(weights < 0):
        problems.append(Problem(file, f"weight {df['weight'].iat[i]!r} is negative", line_of(i)))
    for i in _rows(weights > MAX_WEIGHT):
        problems.append(
            Problem(
                file,
                f"weight {df['weight'].iat[i]!r} is above {MAX_WEIGHT:g}: weights are "
                "relative, scale them down",
                line_of(i),
            )
        )
    return problems


def _label_problems(
    df: pd.DataFrame, file: str, classes: Sequence[str] | None, group: str
) -> list[Problem]:
    """Train rows without a label or a ``group`` value, and labels not in ``classes``."""
    train = (df["split"] == "train").to_numpy()
    labels = df["label"].str.strip()
    problems = [
        Problem(file, "empty label on a train row", line_of(i))
        for i in _rows(train & (labels == ""))
    ]
    if classes is not None:
        shown = ", ".join(list(classes)[:30]) + (", ..." if len(classes) > 30 else "")
        for i in _rows((labels != "") & ~labels.isin(set(classes))):
            problems.append(
                Problem(
                    file,
                    f"label {df['label'].iat[i]!r} is not one of the pipeline's classes ({shown})",
                    line_of(i),
                )
            )
    if group and group not in df.columns:
        problems.append(Problem(file, f"group column {group!r} not found", 1))
    elif group:
        for i in _rows(train & (df[group].str.strip() == "")):
            problems.append(Problem(file, f"empty {group!r} on a train row", line_of(i)))
    return problems


def _fold_count_problems(
    df: pd.DataFrame, file: str, classes: Sequence[str], folds: int
) -> list[Problem]:
    """Classes with fewer train rows than folds: some fold would have none of them."""
    counts = df.loc[df["split"] == "train", "label"].str.strip().value_counts()
    return [
        Problem(file, f"class {c!r} has {n} train row(s), fewer than {folds} folds")
        for c in classes
        if (n := int(counts.get(c, 0))) < folds
    ]


def validate_manifest(
    df: pd.DataFrame,
    *,
    file: str | Path,
    classes: Sequence[str] | None = None,
    folds: int | None = None,
    group: str = "",
    check_images: bool = True,
    in_chans: int = 3,
    damaged_images: str = "error",
    on_image: Callable[[], None] | None = None,
) -> list[str]:
    """Raise :class:`InputError` listing every bad row of a manifest; return its warnings.

    Checks: duplicate ``sample_id``, unknown ``split``, non-numeric or negative
    ``weight``, empty labels on train rows, labels not in ``classes``, a missing
    ``group`` column or value, missing or unreadable images (``check_images``,
    decoded as training does with ``in_chans``; damaged JPEG data is a problem,
    or a warning when ``damaged_images`` is ``"warn"``), and classes with fewer
    train rows than ``folds``. Warnings say which images were converted.
    """
    file = str(file)
    problems = _id_problems(df, file) + _split_and_weight_problems(df, file)
    problems += _label_problems(df, file, classes, group)
    warnings: list[str] = []
    if check_images:
        found, warnings = _check_images(df, Path(file).parent, file, in_chans, on_image)
        if damaged_images == "warn":
            warnings = [str(p) for p in found if p.reason.startswith("damaged")] + warnings
            found = [p for p in found if not p.reason.startswith("damaged")]
        problems.extend(found)
    if classes is not None and folds is not None:
        problems += _fold_count_problems(df, file, classes, folds)
    if problems:
        raise InputError(problems)
    return warnings


def _check_images(
    df: pd.DataFrame,
    root: Path,
    file: str,
    in_chans: int,
    on_image: Callable[[], None] | None,
) -> tuple[list[Problem], list[str]]:
    """Problems of the images training would read, and one warning per kind of conversion."""
    # Excluded rows were dropped by a reviewer; their images may be gone.
    rows = _rows(df["split"] != "excluded")
    paths = resolve_paths(df.iloc[rows], root)
    problems = []
    converted: dict[str, list[int]] = {}
    # Decoding is native code that releases the GIL: threads overlap it and the I/O.
    with ThreadPoolExecutor(max_workers=8) as pool:
        from cleaner.images import check_image  # OpenCV only where images are checked

        checks = pool.map(lambda path: check_image(path, in_chans), paths)
        for i, (unreadable, damaged, note) in zip(rows, checks, strict=True):
            if on_image is not None:
                on_image()
            for reason in (unreadable, damaged):
                if reason is not None:
                    problems.append(Problem(file, reason, line_of(i)))
            if note is not None:
                converted.setdefault(note, []).append(line_of(i))
    warnings = [
        f"{file}: {len(lines)} image(s) with {note} (line {lines[0]}"
        + (f" and {len(lines) - 1} more)" if len(lines) > 1 else ")")
        for note, lines in converted.items()
    ]
    return problems, warnings


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes: the identity of one manifest version."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def split_version(path: str | Path) -> tuple[str, int]:
    """``data/NAME.v3.csv`` -> ``("NAME", 3)``; an unversioned file is version 1."""
    m = _VERSION.match(Path(path).name)
    if m is None:
        raise InputError([Problem(str(path), "a manifest file name must end in .csv")])
    return m["name"], int(m["n"] or 1)


def next_version_path(path: str | Path) -> Path:
    """The file the next version of this manifest goes to: ``NAME.v{n+1}.csv``."""
    name, n = split_version(path)
    return Path(path).with_name(f"{name}.v{n + 1}.csv")


def audit_log_path(path: str | Path) -> Path:
    """The audit log shared by every version of a manifest: ``NAME.audit.jsonl``."""
    name, _ = split_version(path)
    return Path(path).with_name(f"{name}.audit.jsonl")


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest atomically; an existing file is never overwritten.

    Under the project lock of its folder (:mod:`cleaner.project_lock`), as every
    ``ingest`` writes it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with project_lock(path.parent, f"cleaner ingest {path}"):
        if path.exists():
            raise InputError(
                [Problem(str(path), "already exists; manifests are never overwritten")]
            )
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)
    return path
