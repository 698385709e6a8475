"""Label Studio export: the relabel queue out as Label Studio tasks and their config.

``export_tasks`` turns a queue (``queue.csv`` with ``queue.json`` beside it)
into a Label Studio *import* file, a JSON list of tasks, and the labeling
config those tasks need (:mod:`cleaner.review.labelstudio_config`);
``write_tasks`` writes both (``cleaner export labelstudio``).

The formats, as Label Studio documents them (the pages this module follows;
their sources are ``docs/source/...`` in github.com/HumanSignal/label-studio):

- Import file, a list of tasks with a ``data`` object whose keys the labeling
  config names as ``$key`` and may hold other fields:
  https://labelstud.io/guide/tasks.html#Basic-Label-Studio-JSON-format
  (``guide/tasks.md``).
- Pre-annotations: a task's ``predictions`` list, each with ``model_version``,
  ``score`` (of the whole prediction) and ``result``; a Choices result is
  ``{"id", "type": "choices", "from_name", "to_name", "value": {"choices": [...]}}``,
  and result ids must differ:
  https://labelstud.io/guide/predictions.html (``guide/predictions.md``).
- Local files: an image URL ``/data/local-files/?d=PATH``, ``PATH`` relative to
  ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``, with
  ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and a Local Files storage
  under that root:
  https://labelstud.io/guide/storage.html#Tasks-with-local-storage-file-references
  (``guide/storage.md``).

Heavy libraries stay out of this module's imports: ``cleaner.review.apply`` (the
queue's checks) is imported by the functions that need it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cleaner.core.atomic import atomic_path
from cleaner.core.errors import InputError, Problem
from cleaner.formats.queue_file import queue_csv_path, queue_meta_path
from cleaner.review.labelstudio_config import (
    CONTROL,
    DECISION_CHOICES,
    IMAGE,
    cell_text,
    labeling_config,
)

if TYPE_CHECKING:
    from cleaner.review.apply import CheckedQueue


LOCAL_FILES_URL = "/data/local-files/?d="
MODEL_VERSION = "cleaner"  # predictions.model_version (plus the ranking method)


def _number(text: str) -> float | None:
    """A queue cell as a number; a spreadsheet with ``;`` writes ``,`` as the decimal mark."""
    try:
        value = float(text.replace(",", ".")) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None  # JSON has no NaN


def _queue_row(row: Mapping[Any, Any], i: int) -> int:
    """The row's ``rank``, or its 1-based position when the rank is missing or not a number."""
    rank = cell_text(row, "rank")
    return int(rank) if rank.isdigit() else i + 1


def _image_url(
    image: Path, stored: str, *, document_root: Path, image_prefix: str | None
) -> str | None:
    """The task's image URL, or None when the image lies outside the document root."""
    if image_prefix is not None:
        return image_prefix + quote(Path(stored).as_posix(), safe="/")
    rel = os.path.relpath(os.path.abspath(image), os.path.abspath(document_root))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return None
    # A query value: '&', '#', '+' and spaces in a file name must be escaped.
    return LOCAL_FILES_URL + quote(Path(rel).as_posix(), safe="/")


def default_document_root(manifest_dir: Path, images: Sequence[Path]) -> Path:
    """Label Studio's document root when none is given: the manifest's folder when every
    image lies under it, else the deepest folder above it and every image (the images of
    `ingest folder ../photos` lie beside the project, not in it). Never the file system's
    root: Label Studio would serve every file; then the manifest's folder, and the error
    names --document-root."""
    paths = [os.path.abspath(manifest_dir), *(os.path.abspath(p) for p in images)]
    common = Path(os.path.commonpath(paths))
    return manifest_dir if common.parent == common else common


def _images(checked: CheckedQueue) -> tuple[list[tuple[Path, str] | None], Path]:
    """Per queue row, the manifest's image (path, path as stored), and the manifest's folder.

    Never the queue's own ``path`` cell (a tampered queue could name any file),
    as ``cleaner review`` serves them: a sample's own image, for a ``group:ID``
    row the member its cell names, else the group's first train member.
    """
    from cleaner.formats.issue_kinds import GROUP_PREFIX
    from cleaner.formats.manifest import id_matcher, resolve_paths

    manifest, meta = checked.manifest, checked.meta
    root = meta.manifest.parent
    stored = manifest["path"].astype(str).tolist()
    paths = resolve_paths(manifest, root)
    by_id = {sid: k for k, sid in enumerate(manifest["sample_id"])}
    match = id_matcher(by_id)
    members: dict[str, list[int]] = {}
    group = meta.group_column
    if group and group in manifest.columns:
        train = (manifest["split"] == "train").to_numpy()
        for m, g in enumerate(manifest[group].astype(str)):
            if train[m]:
                members.setdefault(g, []).append(m)
    out: list[tuple[Path, str] | None] = []
    for row in checked.table.to_dict("records"):
        sid = cell_text(row, "sample_id")
        k: int | None
        if sid.startswith(GROUP_PREFIX):
            mine = members.get(sid[len(GROUP_PREFIX) :], [])
            cell = cell_text(row, "path")
            named = [m for m in mine if cell and stored[m] == cell]
            k = named[0] if named else (mine[0] if mine else None)
        else:
            found = match(str(row["sample_id"]))
            k = by_id[found] if found is not None else None
        out.append(None if k is None else (paths[k], stored[k]))
    return out, root


def export_tasks(
    queue_csv: str | Path,
    *,
    image_prefix: str | None = None,
    document_root: str | Path | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Label Studio tasks of every queue row, and the labeling config they need.

    Each task's ``data`` holds ``image`` (``/data/local-files/?d=`` and the
    manifest's image relative to ``document_root``, default the manifest's
    folder; or ``image_prefix`` and the image's path as the manifest stores
    it), ``sample_id``, ``queue_row`` (the rank), ``given_label``,
    ``suggested_label``, ``issue``, ``label_quality`` and ``note``. A row whose
    suggestion is a class has it as the pre-annotation (``predictions``), with
    ``score`` = 1 - label quality: how much the model doubts the given label.
    The queue must pass ``cleaner apply``'s checks; raises :class:`InputError`.
    """
    tasks, config, _ = _export(queue_csv, image_prefix=image_prefix, document_root=document_root)
    return tasks, config


def _export(
    queue_csv: str | Path, *, image_prefix: str | None, document_root: str | Path | None
) -> tuple[list[dict[str, Any]], str, Path]:
    """:func:`export_tasks`, and the document root the image URLs are relative to."""
    from cleaner.review.apply import check_queue

    queue_csv = queue_csv_path(queue_csv)
    checked = check_queue(queue_csv)
    meta = checked.meta
    file = str(queue_csv)
    problems = _class_clashes(meta.classes, queue_meta_path(queue_csv))
    images, root = _images(checked)
    root = (
        Path(document_root)
        if document_root is not None
        else default_document_root(root, [image[0] for image in images if image is not None])
    )
    method = str(meta.flag.get("method") or "")
    model_version = f"{MODEL_VERSION} {method}".strip()
    lines = checked.table.attrs.get("lines") or [i + 2 for i in range(len(checked.table))]
    tasks = []
    for i, (line, row, image) in enumerate(
        zip(lines, checked.table.to_dict("records"), images, strict=True)
    ):
        sid = cell_text(row, "sample_id")
        if image is None:
            problems.append(Problem(file, f"sample_id {sid!r} has no image in the manifest", line))
            continue
        url = _image_url(image[0], image[1], document_root=root, image_prefix=image_prefix)
        if url is None:
            problems.append(
                Problem(
                    file,
                    f"image {image[0]} of {sid!r} is not under the document root {root}: "
                    "pass --document-root (Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) "
                    "or --image-prefix",
                    line,
                )
            )
            continue
        tasks.append(_task(row, i, url, meta.classes, model_version))
    if problems:
        raise InputError(problems)
    return tasks, labeling_config(meta.classes), root


def _class_clashes(classes: Sequence[str], queue_json: Path) -> list[Problem]:
    """A class named like one of the decisions would read as that decision."""
    taken = sorted({c for c in classes if c.strip().lower() in DECISION_CHOICES})
    if not taken:
        return []
    return [
        Problem(
            str(queue_json),
            f"class(es) {', '.join(map(repr, taken))} read as the decisions "
            f"{', '.join(DECISION_CHOICES)} in Label Studio's choices; rename the class",
        )
    ]


def _task(
    row: Mapping[Any, Any], i: int, url: str, classes: Sequence[str], model_version: str
) -> dict[str, Any]:
    """The Label Studio task of queue row ``i`` (0-based), its image at ``url``."""
    from cleaner.formats.issue_kinds import has_suggestion

    issue = cell_text(row, "issue")
    suggested = cell_text(row, "suggested_label") if has_suggestion(issue) else ""
    quality = _number(cell_text(row, "label_quality"))
    task: dict[str, Any] = {
        "data": {
            IMAGE: url,
            "sample_id": cell_text(row, "sample_id"),
            "queue_row": _queue_row(row, i),
            "given_label": cell_text(row, "given_label"),
            "suggested_label": suggested,
            "issue": issue,
            "label_quality": quality,
            "note": cell_text(row, "note"),
        }
    }
    if suggested in classes:
        task["predictions"] = [_prediction(suggested, quality, i, model_version)]
    return task


def _prediction(
    suggested: str, quality: float | None, i: int, model_version: str
) -> dict[str, Any]:
    """The suggestion as a pre-annotation; ``score`` = 1 - label quality, when it is one."""
    prediction: dict[str, Any] = {
        "model_version": model_version,
        "result": [
            {
                "id": f"suggestion-{i + 1}",  # result ids must differ
                "type": "choices",
                "from_name": CONTROL,
                "to_name": IMAGE,
                "value": {"choices": [suggested]},
            }
        ],
    }
    if quality is not None and 0 <= quality <= 1:
        prediction["score"] = round(1 - quality, 6)
    return prediction


@dataclass(frozen=True)
class ExportSummary:
    tasks_json: Path
    config_xml: Path
    tasks: int
    predictions: int  # tasks with the suggestion as a pre-annotation
    document_root: Path | None  # where the local-files URLs start; None with an image prefix


def default_export_path(queue_csv: str | Path) -> Path:
    """``queue.labelstudio.json`` beside ``queue.csv``."""
    queue_csv = queue_csv_path(queue_csv)
    return queue_csv.with_name(f"{queue_csv.stem}.labelstudio.json")


def write_tasks(
    queue_csv: str | Path,
    out: str | Path | None = None,
    *,
    image_prefix: str | None = None,
    document_root: str | Path | None = None,
) -> ExportSummary:
    """``cleaner export labelstudio``: the tasks (``FILE.json``) and the config (``FILE.xml``).

    Both or neither; an existing file is not overwritten.
    """
    tasks_json = Path(out) if out is not None else default_export_path(queue_csv)
    config_xml = tasks_json.with_suffix(".xml")
    if config_xml == tasks_json:
        raise InputError(
            f"--out {tasks_json}: name the tasks file FILE.json (FILE.xml is the config)"
        )
    existing = [p for p in (tasks_json, config_xml) if p.exists()]
    if existing:
        raise InputError([Problem(str(p), "already exists; pass another --out") for p in existing])
    tasks, config, root = _export(queue_csv, image_prefix=image_prefix, document_root=document_root)
    with atomic_path(tasks_json) as tmp:
        tmp.write_text(json.dumps(tasks, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    try:
        with atomic_path(config_xml) as tmp:
            tmp.write_text(config, encoding="utf-8")
    except BaseException:
        tasks_json.unlink(missing_ok=True)
        raise
    return ExportSummary(
        tasks_json,
        config_xml,
        len(tasks),
        sum("predictions" in t for t in tasks),
        None if image_prefix is not None else root,
    )
