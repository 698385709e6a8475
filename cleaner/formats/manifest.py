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
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.core.atomic import atomic_path
from cleaner.core.config import MAX_IMAGE_PIXELS
from cleaner.core.errors import InputError, Problem, not_utf8
from cleaner.core.project_lock import project_lock

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


def read_manifest(path: str | Path, *, check: bool = True) -> pd.DataFrame:
    """Read a manifest as text, with ``sample_id``, ``split`` and ``weight`` filled in.

    Missing ``sample_id`` defaults to the path, a missing or blank ``split`` to
    ``train`` and a missing or blank ``weight`` to ``1.0``. Ids that repeat
    under the id rule (:func:`id_key`) are refused here, since every step looks
    rows up by id; ``check=False`` leaves them to :func:`validate_manifest`,
    which lists them with every other bad row. Other values are not validated here.
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
    if check:
        check_ids(df["sample_id"], str(path))
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
    match = id_matcher(df["sample_id"])
    found = [match(sid) for sid in table["sample_id"]]
    problems = [
        Problem(file, f"sample_id {table['sample_id'].iat[i]!r} is not in the manifest", line_of(i))
        for i, sid in enumerate(found)
        if sid is None
    ]
    problems += id_problems(table["sample_id"], file)
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
    new = dict(zip(found, table["weight"].str.strip(), strict=True))
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


def id_key(sample_id: str) -> str:
    """The id rule: what a ``sample_id`` is compared by, in every file that names one.

    Surrounding whitespace and the Unicode normal form do not count: a
    spreadsheet trims cells, and macOS writes file names decomposed (NFD) where
    Linux keeps what it is given. Two ids with the same key are one id to
    every reader (manifest, probabilities, queue, Label Studio export), so a
    file holding both is refused rather than matched by guesswork.
    """
    return unicodedata.normalize("NFC", sample_id).strip()


def id_problems(ids: Sequence[str] | pd.Series, file: str) -> list[Problem]:
    """Every id that repeats under :func:`id_key`, naming its line and the first one's.

    An exact repeat is a duplicate; ids equal only after trimming or Unicode
    normalisation collide, since no edited file (a queue from a spreadsheet)
    could tell them apart.
    """
    if isinstance(ids, pd.Series):
        values = ids.reset_index(drop=True).astype(str)
    else:
        values = pd.Series([str(v) for v in ids], dtype=object)
    keys = id_keys(values)
    if pd.Index(keys).is_unique:  # the common case, at hash speed for a million ids
        return []
    problems = []
    seen: dict[str, int] = {}
    # Vectorised first: only the rows whose key repeats are looked at one by one.
    for i in _rows(keys.duplicated(keep=False)):
        first = seen.setdefault(str(keys.iat[i]), i)
        if first == i:
            continue
        raw, other = str(values.iat[i]), str(values.iat[first])
        if other == raw:
            reason = f"duplicate sample_id {raw!r} (first on line {line_of(first)})"
        else:
            how = "spaces" if other.strip() == raw.strip() else "Unicode normalisation or spaces"
            reason = (
                f"sample_id {raw!r} differs from {other!r} (line {line_of(first)}) only by "
                f"{how}; make them distinct"
            )
        problems.append(Problem(file, reason, line_of(i)))
    return problems


def id_keys(ids: pd.Series) -> pd.Series:
    """:func:`id_key` of every id (text), fast for a million: ASCII ids are only trimmed."""
    keys = ids.astype(str).str.strip()
    if "".join(keys).isascii():  # one pass in C: ASCII text has one normal form
        return keys
    wide = ~keys.map(str.isascii).astype(bool)
    keys[wide] = keys[wide].map(id_key)
    return keys


def check_ids(ids: Sequence[str] | pd.Series, file: str) -> None:
    """Raise :class:`InputError` for ids that repeat under :func:`id_key` (:func:`id_problems`)."""
    problems = id_problems(ids, file)
    if problems:
        raise InputError(problems)


def id_matcher(ids: Iterable[str]) -> Callable[[str], str | None]:
    """Match an id from another file (a queue, an export) to one of ``ids`` by :func:`id_key`.

    ``ids`` are a manifest's, which :func:`check_ids` keeps free of collisions;
    an id whose key several of them share matches none (no guess).
    """
    by_key: dict[str, list[str]] = {}
    for sid in dict.fromkeys(ids):
        by_key.setdefault(id_key(sid), []).append(sid)

    def match(raw: str) -> str | None:
        found = by_key.get(id_key(str(raw)), [])
        return found[0] if len(found) == 1 else None

    return match


def check_classes(df: pd.DataFrame, classes: Sequence[str], file: str | Path) -> None:
    """Refuse a manifest without train rows, or with fewer than 2 ``classes``: there is
    nothing to cross-validate or rank, and no other class a label could be confused
    with. Checked before any training (``oof``) or ranking (``flag --probs``, the API)."""
    if not (df["split"] == "train").any():
        raise InputError([Problem(str(file), "no train rows: nothing to train or clean")])
    if len(classes) < 2:
        only = f" ({classes[0]!r})" if classes else ""
        raise InputError(
            [
                Problem(
                    str(file),
                    f"only one class{only}: finding wrong labels needs at least 2 classes "
                    "(data.classes, or the train rows' labels)",
                )
            ]
        )


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
    max_pixels: int = MAX_IMAGE_PIXELS,
    on_image: Callable[[], None] | None = None,
) -> list[str]:
    """Raise :class:`InputError` listing every bad row of a manifest; return its warnings.

    Checks: duplicate ``sample_id``, unknown ``split``, non-numeric or negative
    ``weight``, empty labels on train rows, labels not in ``classes``, a missing
    ``group`` column or value, missing or unreadable images (``check_images``,
    decoded as training does with ``in_chans``, refused unread above ``max_pixels``
    pixels; damaged JPEG data is a problem,
    or a warning when ``damaged_images`` is ``"warn"``), and classes with fewer
    train rows than ``folds``. Warnings say which images were converted.
    """
    file = str(file)
    problems = id_problems(df["sample_id"], file) + _split_and_weight_problems(df, file)
    problems += _label_problems(df, file, classes, group)
    warnings: list[str] = []
    if check_images:
        found, warnings = _check_images(df, Path(file).parent, file, in_chans, max_pixels, on_image)
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
    max_pixels: int,
    on_image: Callable[[], None] | None,
) -> tuple[list[Problem], list[str]]:
    """Problems of the images training would read, and one warning per kind of conversion."""
    # Excluded rows were dropped by a reviewer; their images may be gone.
    rows = _rows(df["split"] != "excluded")
    paths = resolve_paths(df.iloc[rows], root)
    problems = []
    converted: dict[str, list[int]] = {}
    # Decoding is native code that releases the GIL: threads overlap it and the I/O.
    from cleaner.formats.images import check_image, decoder_quiet  # OpenCV loads only here

    # libjpeg's own printing is silenced: the problems below name the file and the line.
    with decoder_quiet(), ThreadPoolExecutor(max_workers=8) as pool:
        checks = pool.map(lambda path: check_image(path, in_chans, max_pixels=max_pixels), paths)
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


def require_images(df: pd.DataFrame, manifest: str | Path) -> None:
    """Refuse a manifest whose image files are not where it says (rows not excluded), every
    missing one listed by line: a command that shows or reads them says so before it
    writes anything. A file check only; training's decoder checks the contents."""
    rows = _rows(df["split"] != "excluded") if "split" in df.columns else list(range(len(df)))
    paths = resolve_paths(df.iloc[rows], Path(manifest).parent)
    missing = [
        Problem(str(manifest), f"image not found: {path}", line_of(i))
        for i, path in zip(rows, paths, strict=True)
        if not path.is_file()
    ]
    if missing:
        moved = Problem(
            str(manifest),
            f"{len(missing):,} of its {len(rows):,} images are not where it says (paths are "
            "relative to the manifest's folder unless absolute): did the images or the "
            f"manifest move? `cleaner repoint {manifest} NEW_FOLDER` writes the next "
            "version with the images looked for there",
        )
        raise InputError([moved, *missing])


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


def newest_version(path: str | Path) -> Path:
    """The newest version of this manifest on disk (``NAME.vN.csv``, following
    :func:`next_version_path` while the next one exists): ``path`` itself when none is newer."""
    current = Path(path)
    while next_version_path(current).exists():
        current = next_version_path(current)
    return current


def audit_log_path(path: str | Path) -> Path:
    """The audit log shared by every version of a manifest: ``NAME.audit.jsonl``."""
    name, _ = split_version(path)
    return Path(path).with_name(f"{name}.audit.jsonl")


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest atomically; an existing file is never overwritten.

    Under the project lock of its folder (:mod:`cleaner.core.project_lock`), as every
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
