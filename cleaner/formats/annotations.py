"""Several labels per image: every annotator's label, in a wide or a long CSV.

Two documented forms hold the same thing, the class each annotator gave each image:

- **wide**: a manifest (or any CSV with ``sample_id``, or ``path`` as the id) with one
  column per annotator named ``annotator:NAME``; a cell holds a class name, or is
  empty where that annotator did not label the image. With a ``split`` column,
  only ``train`` rows (a blank split is ``train``) must carry a label; without
  one, every row must.
- **long**: a CSV with one line per sample and annotator,
  ``sample_id,annotator,label[,time]`` (``time`` in ISO 8601, may be empty).
  A reviewer's answer is one more line (:func:`append_annotations`), so the long
  file is the record of who said what, and when.

Both are read into one frozen :class:`Annotations`: sample ids in order, annotator
names, classes, and the ``(N, M)`` matrix ``labels_multiannotator`` of class indices
with ``NaN`` where an annotator did not label a row, the format of
``cleanlab.multiannotator``. Reading checks every line and raises one
:class:`~cleaner.core.errors.InputError` listing each bad
spot (file, line, reason): an unknown class, a row without any label, one annotator
twice for one image, an unknown ``sample_id``, a repeated annotator column. Ids and
annotator names compare by the id rule (:func:`~cleaner.formats.manifest.id_key`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from cleaner.core.atomic import atomic_path
from cleaner.core.errors import InputError, Problem, not_utf8
from cleaner.core.project_lock import project_lock
from cleaner.formats.manifest import id_key, id_problems, line_of, read_text_csv

ANNOTATOR_PREFIX = "annotator:"
LONG_COLUMNS = ("sample_id", "annotator", "label", "time")
LONG_REQUIRED = LONG_COLUMNS[:3]
# Rows of these splits may carry no label at all (manifest splits other than train).
UNLABELLED_SPLITS = frozenset({"test", "unlabeled", "excluded"})


def now() -> str:
    """The time of an answer as the audit log writes it: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Annotation:
    """One label one annotator gave one image: a line of the long form."""

    sample_id: str
    annotator: str
    label: str  # a class name
    time: str = ""  # ISO 8601; empty when not known (a wide file has no times)


@dataclass(frozen=True, eq=False)
class Annotations:
    """Every annotator's label of every row, as ``cleanlab.multiannotator`` takes them.

    ``labels_multiannotator`` is ``(N, M)`` float: the class index (into ``classes``)
    that annotator ``m`` gave row ``n``, ``NaN`` where it gave none. ``times`` is
    ``(N, M)`` text, empty where unknown. Both arrays are read-only.
    """

    sample_ids: tuple[str, ...]  # (N,) in file (or manifest) order
    annotators: tuple[str, ...]  # (M,)
    classes: tuple[str, ...]  # (K,)
    labels_multiannotator: np.ndarray  # (N, M) float64, NaN = not labelled
    times: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=object))
    source: str = ""  # the file read, for messages

    def __post_init__(self) -> None:
        n, m = len(self.sample_ids), len(self.annotators)
        labels = np.asarray(self.labels_multiannotator, dtype=np.float64).reshape(n, m)
        times = np.asarray(self.times, dtype=object)
        if times.size == 0:
            times = np.full((n, m), "", dtype=object)
        if times.shape != (n, m):
            raise ValueError(f"times has shape {times.shape}, expected {(n, m)}")
        labels.flags.writeable = False
        times.flags.writeable = False
        # A frozen dataclass sets its fields once, through object.__setattr__.
        object.__setattr__(self, "labels_multiannotator", labels)
        object.__setattr__(self, "times", times)

    @property
    def num_annotations(self) -> np.ndarray:
        """(N,) int: how many annotators labelled each row."""
        return (~np.isnan(self.labels_multiannotator)).sum(axis=1)

    @property
    def labelled(self) -> np.ndarray:
        """(N,) bool: rows with at least one label."""
        return self.num_annotations > 0

    def label_matrix(self, missing: int = -1) -> np.ndarray:
        """(N, M) int class indices with ``missing`` where an annotator gave no label."""
        labels = self.labels_multiannotator
        return np.where(np.isnan(labels), missing, np.nan_to_num(labels)).astype(np.int64)

    def to_wide(self) -> pd.DataFrame:
        """The wide form: ``sample_id`` and one ``annotator:NAME`` column of class names."""
        names = np.array([*self.classes, ""], dtype=object)
        index = self.label_matrix(missing=len(self.classes))
        table = {"sample_id": list(self.sample_ids)}
        for j, who in enumerate(self.annotators):
            table[ANNOTATOR_PREFIX + who] = list(names[index[:, j]])
        return pd.DataFrame(table, dtype=object)

    def to_long(self) -> list[Annotation]:
        """The long form's lines, row by row and in annotator order within a row."""
        index = self.label_matrix()
        rows, cols = np.nonzero(index >= 0)
        return [
            Annotation(
                self.sample_ids[i], self.annotators[j], self.classes[index[i, j]], self.times[i, j]
            )
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True)
        ]

    def with_annotations(self, new: Iterable[Annotation], *, file: str = "") -> Annotations:
        """These annotations and ``new`` ones (answers of a round): a new annotator gets a column.

        Refused (:class:`InputError`, every problem listed) for an unknown sample or
        class, and for an annotator who already labelled that sample.
        """
        file = file or self.source
        rows = {id_key(s): i for i, s in enumerate(self.sample_ids)}
        cols = {id_key(a): j for j, a in enumerate(self.annotators)}
        classes = {c: k for k, c in enumerate(self.classes)}
        labels = self.labels_multiannotator.copy()
        times = self.times.copy()
        annotators = list(self.annotators)
        problems = []
        for a in new:
            i, k = rows.get(id_key(a.sample_id)), classes.get(a.label.strip())
            if i is None:
                problems.append(Problem(file, f"unknown sample_id {a.sample_id!r}"))
                continue
            if k is None:
                problems.append(Problem(file, _unknown_class(a.label, self.classes)))
                continue
            j = cols.get(id_key(a.annotator))
            if j is None:
                j = cols[id_key(a.annotator)] = len(annotators)
                annotators.append(a.annotator.strip())
                labels = np.hstack([labels, np.full((len(labels), 1), np.nan)])
                times = np.hstack([times, np.full((len(times), 1), "", dtype=object)])
            if not np.isnan(labels[i, j]):
                problems.append(
                    Problem(file, f"{a.annotator!r} already labelled sample {a.sample_id!r}")
                )
                continue
            labels[i, j], times[i, j] = k, a.time
        if problems:
            raise InputError(problems)
        return Annotations(
            self.sample_ids, tuple(annotators), self.classes, labels, times, self.source
        )


def _unknown_class(label: str, classes: Sequence[str]) -> str:
    shown = ", ".join(list(classes)[:30]) + (", ..." if len(classes) > 30 else "")
    return f"label {label!r} is not one of the classes ({shown})"


def _classes(found: Iterable[str], classes: Sequence[str] | None) -> tuple[str, ...]:
    """The pipeline's classes in their order, or the labels seen, sorted, when none given."""
    if classes is not None:
        return tuple(classes)
    return tuple(sorted({c for c in found if c}))


def _header(path: Path) -> list[str]:
    """The first line's cells, as written: pandas renames a repeated column (``a.1``)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return next(csv.reader(f), [])
    except UnicodeDecodeError:
        raise InputError([not_utf8(path)]) from None


def annotator_columns(columns: Sequence[str], file: str) -> list[tuple[str, str]]:
    """``(column, annotator name)`` of every ``annotator:NAME`` column, in file order.

    Refused: a column named twice (also when equal only by the id rule: spaces, Unicode
    form) and an empty name, each naming line 1 (the header).
    """
    found: list[tuple[str, str]] = []
    problems = []
    seen: dict[str, str] = {}
    for column in columns:
        if not column.startswith(ANNOTATOR_PREFIX):
            continue
        name = column[len(ANNOTATOR_PREFIX) :].strip()
        if not name:
            problems.append(Problem(file, f"column {column!r} names no annotator", 1))
            continue
        key = id_key(name)
        if key in seen:
            problems.append(
                Problem(file, f"duplicate column {column!r} (annotator {seen[key]!r} again)", 1)
            )
            continue
        seen[key] = name
        found.append((column, name))
    if problems:
        raise InputError(problems)
    return found


def parse_wide(
    df: pd.DataFrame,
    *,
    file: str | Path,
    classes: Sequence[str] | None = None,
    needs_label: Sequence[bool] | np.ndarray | None = None,
) -> Annotations:
    """The annotations of a wide table (text cells, as :func:`read_text_csv` reads them).

    Ids come from ``sample_id`` (an empty one falls back to ``path``) or ``path``.
    ``needs_label`` (N,) says which rows must carry at least one label; by default
    the ``train`` rows when there is a ``split`` column, else every row. ``classes``
    default to the labels seen, sorted. Every problem is listed in one
    :class:`InputError`; pass the columns as read (a repeated column is found by
    :func:`read_wide`, which sees the header before pandas renames it).
    """
    file = str(file)
    problems: list[Problem] = []
    if "sample_id" not in df.columns and "path" not in df.columns:
        raise InputError([Problem(file, "needs a sample_id (or path) column", 1)])
    ids = df["sample_id"] if "sample_id" in df.columns else df["path"]
    if "sample_id" in df.columns and "path" in df.columns:
        ids = ids.where(ids.str.strip() != "", df["path"])
    ids = ids.astype(str).reset_index(drop=True)
    columns = annotator_columns([str(c) for c in df.columns], file)
    if not columns:
        raise InputError([Problem(file, f"no annotator columns (named {ANNOTATOR_PREFIX}NAME)", 1)])
    cells = df[[c for c, _ in columns]].astype(str).apply(lambda s: s.str.strip())
    names = _classes(pd.unique(cells.to_numpy().ravel()), classes)
    index = {c: k for k, c in enumerate(names)}
    labels = np.full(cells.shape, np.nan)
    for j, (column, _) in enumerate(columns):
        values = cells[column]
        coded = values.map(index)
        bad = (values != "") & coded.isna()
        for i in np.flatnonzero(bad.to_numpy()).tolist():
            problems.append(
                Problem(file, f"{column}: {_unknown_class(values.iat[i], names)}", line_of(i))
            )
        labels[:, j] = coded.to_numpy(dtype=np.float64, na_value=np.nan)
    need = _needs_label(df, needs_label)
    empty = (cells == "").all(axis=1).to_numpy()
    for i in np.flatnonzero(empty & need).tolist():
        problems.append(Problem(file, "no label from any annotator", line_of(i)))
    for i in np.flatnonzero((ids.str.strip() == "").to_numpy()).tolist():
        problems.append(Problem(file, "empty sample_id", line_of(i)))
    problems += id_problems(ids, file)
    if problems:
        raise InputError(sorted(problems, key=lambda p: p.row or 0))
    return Annotations(tuple(ids), tuple(name for _, name in columns), names, labels, source=file)


def _needs_label(df: pd.DataFrame, needs_label: Sequence[bool] | np.ndarray | None) -> np.ndarray:
    """(N,) bool: rows that must carry a label (see :func:`parse_wide`)."""
    if needs_label is not None:
        need = np.asarray(needs_label, dtype=bool)
        if need.shape != (len(df),):
            raise ValueError(f"needs_label has shape {need.shape}, expected ({len(df)},)")
        return need
    if "split" in df.columns:
        split = df["split"].astype(str).str.strip()
        return ~split.isin(UNLABELLED_SPLITS).to_numpy()
    return np.ones(len(df), dtype=bool)


def read_wide(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    needs_label: Sequence[bool] | np.ndarray | None = None,
) -> Annotations:
    """Read a wide file (a manifest with ``annotator:NAME`` columns); see :func:`parse_wide`."""
    path = Path(path)
    if not path.is_file():
        raise InputError([Problem(str(path), "file not found")])
    annotator_columns(_header(path), str(path))  # repeated columns, before pandas renames them
    return parse_wide(read_text_csv(path), file=path, classes=classes, needs_label=needs_label)


def parse_long(
    df: pd.DataFrame,
    *,
    file: str | Path,
    classes: Sequence[str] | None = None,
    sample_ids: Sequence[str] | None = None,
    needs_label: Sequence[bool] | np.ndarray | None = None,
) -> Annotations:
    """The annotations of a long table ``sample_id, annotator, label[, time]`` (text cells).

    With ``sample_ids`` (a manifest's, in its order) the rows are those ids: a line
    naming another id is refused, and each id where ``needs_label`` (N,) holds (by
    default every id) must have a label. Without, the rows are the ids in order of
    first appearance. Annotators are in order of first appearance. Every problem is
    listed in one :class:`InputError`.
    """
    file = str(file)
    missing = [c for c in LONG_REQUIRED if c not in df.columns]
    if missing:
        raise InputError([Problem(file, f"missing column(s): {', '.join(missing)}", 1)])
    text = {c: df[c].astype(str).str.strip().tolist() for c in df.columns if c in LONG_COLUMNS}
    times = text.get("time", [""] * len(df))
    names = _classes(text["label"], classes)
    class_index = {c: k for k, c in enumerate(names)}
    rows: dict[str, int] = {}
    if sample_ids is not None:
        rows = {id_key(s): i for i, s in enumerate(sample_ids)}
        if len(rows) != len(sample_ids):
            raise ValueError("sample_ids repeat under the id rule")
    order: list[str] = list(sample_ids) if sample_ids is not None else []
    annotators: dict[str, int] = {}
    who: list[str] = []
    cells: list[tuple[int, int, int, str]] = []
    first_line: dict[tuple[int, int], int] = {}
    problems: list[Problem] = []
    for i, (sid, name, label, time) in enumerate(
        zip(text["sample_id"], text["annotator"], text["label"], times, strict=True)
    ):
        line = line_of(i)
        spot = _cell_problems(sid, name, label, time, names)
        row = rows.get(id_key(sid)) if sid else None
        if sid and row is None:
            if sample_ids is not None:
                spot.append(f"unknown sample_id {sid!r}: not in the manifest")
            else:
                row = rows[id_key(sid)] = len(order)
                order.append(sid)
        problems += [Problem(file, reason, line) for reason in spot]
        if spot or row is None:
            continue
        col = annotators.setdefault(id_key(name), len(annotators))
        if col == len(who):
            who.append(name)
        if (row, col) in first_line:
            problems.append(
                Problem(
                    file,
                    f"annotator {name!r} labelled sample {sid!r} twice "
                    f"(first on line {first_line[row, col]})",
                    line,
                )
            )
            continue
        first_line[row, col] = line
        cells.append((row, col, class_index[label], time))
    labels = np.full((len(order), len(who)), np.nan)
    stamps = np.full((len(order), len(who)), "", dtype=object)
    for row, col, k, time in cells:
        labels[row, col], stamps[row, col] = k, time
    if sample_ids is not None:
        problems += _unlabelled(order, labels, needs_label, file)
    if problems:
        raise InputError(problems)
    return Annotations(tuple(order), tuple(who), names, labels, stamps, source=file)


def _unlabelled(
    order: Sequence[str],
    labels: np.ndarray,
    needs_label: Sequence[bool] | np.ndarray | None,
    file: str,
) -> list[Problem]:
    """A problem for each manifest row that needs a label (all by default) and has none."""
    need = np.ones(len(order), dtype=bool) if needs_label is None else np.asarray(needs_label, bool)
    if need.shape != (len(order),):
        raise ValueError(f"needs_label has shape {need.shape}, expected ({len(order)},)")
    unlabelled = np.isnan(labels).all(axis=1) & need
    return [
        Problem(
            file,
            f"sample_id {order[i]!r} (manifest line {line_of(i)}) has no label from any annotator",
        )
        for i in np.flatnonzero(unlabelled).tolist()
    ]


def _cell_problems(sid: str, name: str, label: str, time: str, classes: Sequence[str]) -> list[str]:
    """What is wrong with one line of the long form, each reason once."""
    spot = []
    if not sid:
        spot.append("empty sample_id")
    if not name:
        spot.append("empty annotator")
    if not label:
        spot.append("no label")
    elif label not in classes:
        spot.append(_unknown_class(label, classes))
    if time and not _is_time(time):
        spot.append(f"time {time!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00:00+00:00)")
    return spot


def _is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def read_long(
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    sample_ids: Sequence[str] | None = None,
    needs_label: Sequence[bool] | np.ndarray | None = None,
) -> Annotations:
    """Read a long file; see :func:`parse_long`."""
    path = Path(path)
    if not path.is_file():
        raise InputError([Problem(str(path), "file not found")])
    header = _header(path)
    repeated = sorted({c for c in header if c in LONG_COLUMNS and header.count(c) > 1})
    if repeated:
        raise InputError([Problem(str(path), f"duplicate column {c!r}", 1) for c in repeated])
    return parse_long(
        read_text_csv(path),
        file=path,
        classes=classes,
        sample_ids=sample_ids,
        needs_label=needs_label,
    )


def long_to_wide(
    df: pd.DataFrame,
    *,
    file: str | Path,
    classes: Sequence[str] | None = None,
    sample_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A long table as the wide one (``sample_id`` and ``annotator:NAME`` columns), validated."""
    return parse_long(df, file=file, classes=classes, sample_ids=sample_ids).to_wide()


def _long_text(annotations: Iterable[Annotation], *, header: bool) -> str:
    """CSV text of long-form lines (csv quoting: a comma in a name stays one cell)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(LONG_COLUMNS)
    for a in annotations:
        writer.writerow([a.sample_id, a.annotator, a.label, a.time])
    return out.getvalue()


def write_long(
    path: str | Path, annotations: Iterable[Annotation], *, overwrite: bool = False
) -> Path:
    """Write the long form atomically (never half a file); an existing file is kept
    unless ``overwrite``."""
    path = Path(path)
    text = _long_text(annotations, header=True)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def append_annotations(
    path: str | Path,
    new: Sequence[Annotation],
    *,
    classes: Sequence[str] | None = None,
    sample_ids: Sequence[str] | None = None,
) -> Annotations:
    """Add ``new`` answers to the long file at ``path`` (made when absent); return all of them.

    Under the project lock of the folder, the file is read strictly, the answers are
    checked against it (a known sample and class, an annotator not yet heard on that
    sample) and the old bytes plus the new lines are renamed into place at once, so
    the file is either as before or complete, and the lines already there are kept
    byte for byte. A refused answer writes nothing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with project_lock(path.parent, f"cleaner: add {len(new)} annotation(s) to {path.name}"):
        if path.exists():
            # Appending asks nothing of rows no one answered yet: none needs a label here.
            need = None if sample_ids is None else np.zeros(len(sample_ids), dtype=bool)
            old = read_long(path, classes=classes, sample_ids=sample_ids, needs_label=need)
            data = path.read_bytes()
        else:
            ids = tuple(sample_ids) if sample_ids is not None else ()
            old = Annotations(
                ids, (), tuple(classes or ()), np.empty((len(ids), 0)), source=str(path)
            )
            data = b""
        if sample_ids is None:
            # Without a manifest, a new answer may name a sample the file has not seen.
            extra = [a.sample_id for a in new]
            known = {id_key(s) for s in old.sample_ids}
            fresh = list(dict.fromkeys(s for s in extra if id_key(s) not in known))
            old = _with_rows(old, fresh)
        if classes is None:
            old = _with_classes(old, [a.label.strip() for a in new])
        everything = old.with_annotations(new, file=str(path))
        if data and not data.endswith(b"\n"):
            data += b"\n"
        text = _long_text(new, header=not data)
        with atomic_path(path, overwrite=True) as tmp:
            tmp.write_bytes(data + text.encode("utf-8"))
    return everything


def _with_rows(a: Annotations, ids: Sequence[str]) -> Annotations:
    """``a`` with unlabelled rows for ``ids`` added at the end."""
    if not ids:
        return a
    m = len(a.annotators)
    labels = np.vstack([a.labels_multiannotator, np.full((len(ids), m), np.nan)])
    times = np.vstack([a.times, np.full((len(ids), m), "", dtype=object)])
    return Annotations((*a.sample_ids, *ids), a.annotators, a.classes, labels, times, a.source)


def _with_classes(a: Annotations, labels: Iterable[str]) -> Annotations:
    """``a`` with classes inferred from labels (no class list given) widened by ``labels``.

    Classes stay sorted, so an index of ``a`` is remapped when a new name sorts before it.
    """
    names = tuple(sorted({*a.classes, *(x for x in labels if x)}))
    if names == a.classes:
        return a
    remap = np.array([names.index(c) for c in a.classes] + [np.nan], dtype=np.float64)
    old = a.labels_multiannotator
    index = np.where(np.isnan(old), len(a.classes), np.nan_to_num(old)).astype(np.int64)
    return Annotations(a.sample_ids, a.annotators, names, remap[index], a.times, a.source)


def majority_labels(table: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """Each row's most frequent label among ``columns`` (a blank cell is no label; a row of
    blanks gives ""); a tie goes to the first column, in order, that gave a tied label.

    The consensus before any model exists (``ingest csv --annotator-col``); once a run
    has scored the rows, CROWDLAB's (:mod:`cleaner.ranking.crowd`) weighs the model too.
    """
    out = []
    for cells in table[list(columns)].astype(str).itertuples(index=False):
        given = [c.strip() for c in cells if c.strip()]
        counts = {c: given.count(c) for c in given}  # insertion order: the column order
        out.append(max(counts, key=lambda c: counts[c]) if counts else "")
    return out
