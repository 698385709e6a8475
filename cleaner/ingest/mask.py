"""The mask competition's layout: 18 classes = mask state x gender x age band.

The data set comes as one folder per person, the labels written into the
folder's name::

    DATA_DIR/train/images/<id>_<gender>_<race>_<age>/   e.g. 000001_female_Asian_45/
        mask1 .. mask5, incorrect_mask, normal          (.jpg, .jpeg or .png)
    DATA_DIR/train/train.csv      id, gender, race, age, path (path = the folder name)
    DATA_DIR/eval/info.csv        ImageID, ans  (the submission: ans filled in, row order kept)
    DATA_DIR/eval/images/<ImageID>

The class of an image is ``mask * 6 + gender * 3 + age_band`` with mask
``wear`` 0 (``mask1`` .. ``mask5``), ``incorrect`` 1 (``incorrect_mask``),
``not_wear`` 2 (``normal``); gender ``male`` 0, ``female`` 1; age band
``< 30`` 0, ``30-59`` 1, ``>= 60`` 2. Classes are named ``"0"`` .. ``"17"``.

:func:`ingest_mask` turns the layout into a manifest: train rows grouped by
person (one person's 7 photos must never sit in two folds), eval images as
``test`` rows whose ``sample_id`` is the ``ImageID``, in ``info.csv``'s order.
Whatever does not fit the layout is reported, not guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cleaner.core.errors import InputError, Problem
from cleaner.formats.manifest import line_of, read_text_csv, write_manifest
from cleaner.ingest.output import default_manifest, refuse_existing, relpath

MASKS = ("wear", "incorrect", "not_wear")
GENDERS = ("male", "female")
AGE_BANDS = ("<30", "30-59", ">=60")
N_CLASSES = len(MASKS) * len(GENDERS) * len(AGE_BANDS)  # 18
CLASSES = tuple(str(c) for c in range(N_CLASSES))

# The 7 photos of a person, in the order they are listed, and their mask state.
MASK_FILES: dict[str, int] = {
    "mask1": 0,
    "mask2": 0,
    "mask3": 0,
    "mask4": 0,
    "mask5": 0,
    "incorrect_mask": 1,
    "normal": 2,
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# <id>_<gender>_<race>_<age>; no token may hold an underscore, so the split is unambiguous.
FOLDER_PATTERN = re.compile(
    r"^(?P<id>[^_]+)_(?P<gender>(?i:male|female))_(?P<race>[^_]+)_(?P<age>\d{1,3})$"
)

# Manifest columns: the standard ones, then the tokens the label was made of.
COLUMNS = (
    *("sample_id", "path", "label", "split", "group"),
    *("mask", "gender", "age", "age_band", "race"),
)


def class_index(mask: int, gender: int, age_band: int) -> int:
    """The class (0..17) of a mask state (0..2), gender (0..1) and age band (0..2)."""
    for name, value, n in (("mask", mask, 3), ("gender", gender, 2), ("age_band", age_band, 3)):
        if not 0 <= value < n:
            raise ValueError(f"{name} must be in 0..{n - 1}, got {value}")
    return mask * 6 + gender * 3 + age_band


def decompose(class_index: int) -> tuple[int, int, int]:
    """``(mask, gender, age_band)`` of a class (0..17): the inverse of :func:`class_index`."""
    if not 0 <= class_index < N_CLASSES:
        raise ValueError(f"class index must be in 0..{N_CLASSES - 1}, got {class_index}")
    return class_index // 6, class_index // 3 % 2, class_index % 3


def age_band(age: int) -> int:
    """0 below 30, 1 from 30 to 59, 2 from 60 on."""
    if age < 0:
        raise ValueError(f"age must not be negative, got {age}")
    return 0 if age < 30 else 1 if age < 60 else 2


@dataclass(frozen=True)
class Person:
    """One train folder's name, parsed: the person's labels."""

    folder: str
    id: str
    gender: str  # "male" or "female"
    race: str
    age: int

    @property
    def gender_index(self) -> int:
        return GENDERS.index(self.gender)

    @property
    def age_band(self) -> int:
        return age_band(self.age)

    def label(self, stem: str) -> int:
        """The class of this person's photo ``stem`` (``mask1`` .. ``normal``)."""
        return class_index(MASK_FILES[stem], self.gender_index, self.age_band)


def parse_folder(name: str) -> Person | None:
    """``000001_female_Asian_45`` -> its :class:`Person`; ``None`` if the name does not fit."""
    m = FOLDER_PATTERN.match(name)
    if m is None:
        return None
    return Person(name, m["id"], m["gender"].lower(), m["race"], int(m["age"]))


def folder_name(id: str, gender: str, race: str, age: int) -> str:
    """The folder of a person: the inverse of :func:`parse_folder`."""
    return f"{id}_{gender}_{race}_{age}"


@dataclass(frozen=True)
class PersonFiles:
    """What one person's folder holds, against the 7 photos it should hold."""

    images: tuple[str, ...]  # photos to ingest, in MASK_FILES order
    missing: tuple[str, ...]  # stems with no photo
    extra: tuple[str, ...]  # entries that are not one of the 7 photos: not ingested
    duplicated: tuple[str, ...]  # stems with more than one photo (.jpg and .png): all ingested


def sort_files(names: Iterable[str]) -> PersonFiles:
    """Sort the entries of a person's folder into photos, missing stems and extras.

    Hidden names (``.DS_Store``, macOS's ``._mask1.jpg`` copies found in real
    archives) are not photos and are ignored without a word.
    """
    by_stem: dict[str, list[str]] = {}
    extra = []
    for name in sorted(names):
        if name.startswith("."):
            continue
        stem, dot, suffix = name.rpartition(".")
        if dot and stem in MASK_FILES and f".{suffix.lower()}" in IMAGE_SUFFIXES:
            by_stem.setdefault(stem, []).append(name)
        else:
            extra.append(name)
    return PersonFiles(
        images=tuple(n for stem in MASK_FILES for n in by_stem.get(stem, [])),
        missing=tuple(stem for stem in MASK_FILES if stem not in by_stem),
        extra=tuple(extra),
        duplicated=tuple(stem for stem in MASK_FILES if len(by_stem.get(stem, [])) > 1),
    )


@dataclass(frozen=True)
class Finding:
    """Something in the data that does not fit the layout; ingest went on without it.

    ``kind`` is one of: skipped folder, missing files, extra files, duplicate
    files, duplicate id, train.csv, eval. ``file`` is relative to the data
    folder; ``row`` is the 1-based line of a CSV.
    """

    kind: str
    file: str
    reason: str
    row: int | None = None

    def __str__(self) -> str:
        return str(Problem(self.file, self.reason, self.row))


@dataclass(frozen=True)
class MaskReport:
    """What :func:`ingest_mask` found: counts and every :class:`Finding`."""

    data_dir: Path
    manifest: Path
    persons: int
    train_images: int
    test_images: int
    findings: tuple[Finding, ...]

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]


def _scan_train(images_dir: Path, data_dir: Path) -> tuple[list[Person], list[Finding]]:
    """Parse every person folder; what does not parse is reported and skipped."""
    persons, findings = [], []
    for entry in sorted(images_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        rel = entry.relative_to(data_dir).as_posix()
        person = parse_folder(entry.name) if entry.is_dir() else None
        if person is None:
            why = "not <id>_<gender>_<race>_<age>" if entry.is_dir() else "not a folder"
            findings.append(Finding("skipped folder", rel, f"{why}; skipped"))
        else:
            persons.append(person)
    return persons, findings


def _person_findings(files: PersonFiles, rel: str) -> list[Finding]:
    findings = []
    if files.missing:
        findings.append(
            Finding(
                "missing files",
                rel,
                f"no {', '.join(files.missing)}; ingested the other {len(files.images)}",
            )
        )
    if files.extra:
        findings.append(Finding("extra files", rel, f"not ingested: {', '.join(files.extra)}"))
    if files.duplicated:
        findings.append(
            Finding(
                "duplicate files",
                rel,
                f"more than one photo of {', '.join(files.duplicated)}; all ingested",
            )
        )
    return findings


def _duplicate_ids(persons: Sequence[Person], images_rel: str) -> list[Finding]:
    """Two folders with one id: the same person labeled twice, or two people sharing an id."""
    folders: dict[str, list[str]] = {}
    for p in persons:
        folders.setdefault(p.id, []).append(p.folder)
    return [
        Finding(
            "duplicate id",
            images_rel,
            f"id {pid!r} names {len(names)} folders ({', '.join(names)}); they form one group",
        )
        for pid, names in folders.items()
        if len(names) > 1
    ]


def _train_rows(
    persons: Sequence[Person], images_dir: Path, data_dir: Path, manifest: Path
) -> tuple[list[dict[str, str]], list[Finding]]:
    rows, findings = [], []
    for p in persons:
        folder = images_dir / p.folder
        files = sort_files(e.name for e in folder.iterdir())
        findings += _person_findings(files, folder.relative_to(data_dir).as_posix())
        for name in files.images:
            stem = name.rpartition(".")[0]
            rows.append(
                {
                    # Stable wherever the manifest goes; folder names are unique.
                    "sample_id": f"{p.folder}/{name}",
                    "path": relpath(folder / name, manifest),
                    "label": str(p.label(stem)),
                    "split": "train",
                    "group": p.id,
                    "mask": MASKS[MASK_FILES[stem]],
                    "gender": p.gender,
                    "age": str(p.age),
                    "age_band": str(p.age_band),
                    "race": p.race,
                }
            )
    return rows, findings


def _disagreements(row: dict, person: Person) -> list[tuple[str, str]]:
    """``(column, value)`` of each train.csv field that contradicts the folder name."""
    tokens = {"id": person.id, "gender": person.gender, "race": person.race}
    out = []
    for col, want in (*tokens.items(), ("age", str(person.age))):
        if col not in row:
            continue
        got = str(row[col]).strip()
        # "045" and "45" are one age; gender case is not a disagreement.
        if col == "age" and got.isdigit():
            same = int(got) == person.age
        else:
            same = got.lower() == want.lower() if col == "gender" else got == want
        if not same:
            out.append((col, got))
    return out


def check_train_csv(table: pd.DataFrame, persons: Sequence[Person], file: str) -> list[Finding]:
    """Compare ``train.csv`` with the folders; the folder names are what labels come from.

    Reports rows whose folder is missing, rows whose id / gender / race / age
    disagree with their folder's name, and folders the table does not list.
    """
    if "path" not in table.columns:
        return [Finding("train.csv", file, "no path column; not compared with the folders", 1)]
    by_folder = {p.folder: p for p in persons}
    findings = []
    for i, row in enumerate(table.to_dict("records")):
        folder = str(row["path"])
        person = by_folder.get(folder)
        if person is None:
            findings.append(
                Finding("train.csv", file, f"folder {folder!r} not found or skipped", line_of(i))
            )
            continue
        findings += [
            Finding(
                "train.csv",
                file,
                f"{col} {got!r} disagrees with folder {folder!r}; the folder is used",
                line_of(i),
            )
            for col, got in _disagreements(row, person)
        ]
    listed = set(table["path"])
    findings += [
        Finding("train.csv", file, f"folder {p.folder!r} is not listed")
        for p in persons
        if p.folder not in listed
    ]
    return findings


def _test_rows(data_dir: Path, manifest: Path) -> tuple[list[dict[str, str]], list[Finding]]:
    """``eval/info.csv`` as test rows in its order; a listed image that is missing is an error."""
    info = data_dir / "eval" / "info.csv"
    if not info.is_file():
        return [], [Finding("eval", "eval/info.csv", "not found; no test rows")]
    table = read_text_csv(info)
    if "ImageID" not in table.columns:
        raise InputError([Problem(str(info), "no ImageID column", 1)])
    images_dir = data_dir / "eval" / "images"
    problems, rows = [], []
    seen: dict[str, int] = {}
    for i, image_id in enumerate(table["ImageID"]):
        path = images_dir / image_id
        if not image_id.strip():
            problems.append(Problem(str(info), "empty ImageID", line_of(i)))
        elif image_id in seen:
            problems.append(
                Problem(
                    str(info),
                    f"duplicate ImageID {image_id!r} (first on line {seen[image_id]})",
                    line_of(i),
                )
            )
        elif not path.is_file():
            problems.append(Problem(str(info), f"image not found: {path}", line_of(i)))
        seen.setdefault(image_id, line_of(i))
        rows.append(
            {"sample_id": image_id, "path": relpath(path, manifest), "label": "", "split": "test"}
        )
    if problems:
        raise InputError(problems)
    return rows, _unlisted_eval_images(images_dir, set(seen))


def _unlisted_eval_images(images_dir: Path, listed: set[str]) -> list[Finding]:
    """Eval images that ``info.csv`` does not name: no prediction will be made for them."""
    if not images_dir.is_dir():  # an info.csv with no rows needs no images
        return []
    names = sorted(p.name for p in images_dir.iterdir() if not p.name.startswith("."))
    unlisted = [n for n in names if n not in listed]
    if not unlisted:
        return []
    shown = ", ".join(unlisted[:5]) + (", ..." if len(unlisted) > 5 else "")
    reason = f"{len(unlisted)} image(s) not in info.csv, not ingested: {shown}"
    return [Finding("eval", "eval/images", reason)]


def ingest_mask(
    data_dir: str | Path, manifest: str | Path | None = None
) -> tuple[Path, MaskReport]:
    """Manifest of the mask competition's layout (see the module docstring).

    Train rows: ``label`` is the class the folder name and file name say,
    ``group`` the person id, plus columns ``mask, gender, age, age_band, race``.
    Test rows: one per ``eval/info.csv`` row, in its order, ``sample_id`` =
    ``ImageID`` and label empty. Folders that do not parse are skipped and
    persons with missing or extra files ingested with what they have; both are
    in the returned report. An eval image that is missing, an existing
    manifest, or no person folder at all is an :class:`InputError`, and then
    nothing is written.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError([Problem(str(data_dir), "not a folder")])
    images_dir = data_dir / "train" / "images"
    if not images_dir.is_dir():
        raise InputError(
            [Problem(str(images_dir), "not a folder: expected <id>_<gender>_<race>_<age>/ in it")]
        )
    manifest = Path(manifest) if manifest else default_manifest("mask")
    refuse_existing(manifest)

    persons, findings = _scan_train(images_dir, data_dir)
    if not persons:
        raise InputError(
            [Problem(str(images_dir), "no folder named <id>_<gender>_<race>_<age> in it")]
        )
    findings += _duplicate_ids(persons, images_dir.relative_to(data_dir).as_posix())
    train, person_findings = _train_rows(persons, images_dir, data_dir, manifest)
    findings += person_findings
    train_csv = data_dir / "train" / "train.csv"
    if train_csv.is_file():
        findings += check_train_csv(read_text_csv(train_csv), persons, "train/train.csv")
    else:
        findings.append(Finding("train.csv", "train/train.csv", "not found; not compared"))
    test, eval_findings = _test_rows(data_dir, manifest)
    findings += eval_findings

    df = pd.DataFrame(train + test, columns=list(COLUMNS)).fillna("")
    clash = sorted(set(df["sample_id"][df["sample_id"].duplicated()]))
    if clash:  # only an ImageID shaped like <folder>/<file> can collide with a train row
        info = str(data_dir / "eval" / "info.csv")
        raise InputError([Problem(info, f"ImageID {c!r} is also a train sample_id") for c in clash])
    written = write_manifest(df, manifest)
    report = MaskReport(data_dir, written, len(persons), len(train), len(test), tuple(findings))
    return written, report
