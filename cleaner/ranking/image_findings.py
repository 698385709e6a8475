"""The image-quality findings of a run's train rows, as the queue shows them.

Each train image is read with training's decoder (:func:`cleaner.formats.images.load_image`,
as RGB), measured and judged by :mod:`cleaner.ranking.image_quality`; each flagged row
gets the first kind it has (``IMAGE_QUALITY``'s order) and a note that says what was
measured against the dataset ("dark image (brightness 0.21 at its brightest 1%, dataset
median 0.88)"). ``cleaner flag`` computes them; :func:`cleaner.ranking.queue_rows.build_queue`
places them among the other issues (``flag.ISSUE_PRECEDENCE``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress

from cleaner.core.config import MAX_IMAGE_PIXELS
from cleaner.formats.images import load_image
from cleaner.formats.issue_kinds import (
    BLURRY,
    DARK,
    GRAYSCALE,
    IMAGE_QUALITY,
    LIGHT,
    LOW_INFORMATION,
    ODD_ASPECT_RATIO,
    ODD_SIZE,
)
from cleaner.formats.manifest import resolve_paths
from cleaner.formats.runs import Run
from cleaner.ranking import flag
from cleaner.ranking.embedding_findings import EmbeddingFindings
from cleaner.ranking.image_quality import (
    THRESHOLDS,
    ImageIssues,
    image_issues,
    measure_image,
    measures_table,
)

# Decoding is native code that releases the GIL: threads overlap it and the I/O.
THREADS = min(8, os.cpu_count() or 1)


def measure_files(
    paths: Sequence[Path],
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    advance: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """The measures (:data:`cleaner.ranking.image_quality.MEASURES`) of each image file,
    decoded as training decodes it; an unreadable one is refused naming it."""

    def one(path: Path) -> dict[str, float]:
        return measure_image(load_image(path, 3, max_pixels=max_pixels))

    rows = []
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for row in pool.map(one, paths):
            rows.append(row)
            if advance is not None:
                advance()
    return measures_table(rows)


def _size(width: float, height: float) -> str:
    return f"{width:.0f}x{height:.0f}"


def _notes_of(kind: str, issues: ImageIssues) -> list[str]:
    """What was measured, for each image, in the words of ``kind`` (against the dataset)."""
    m = issues.measures
    med = m.median()
    if kind == DARK:
        return [
            f"dark image (brightness {v:.2f} at its brightest 1%, dataset median "
            f"{med['brightness_p99']:.2f})"
            for v in m["brightness_p99"]
        ]
    if kind == LIGHT:
        return [
            f"light (overexposed) image (brightness {v:.2f} at its darkest 5%, dataset "
            f"median {med['brightness_p5']:.2f})"
            for v in m["brightness_p5"]
        ]
    if kind == LOW_INFORMATION:
        return [
            f"low-information image (entropy {v:.2f} bits, dataset median {med['entropy']:.2f})"
            for v in m["entropy"]
        ]
    if kind == BLURRY:
        return [
            f"blurry image (edge strength {v:.1f}, dataset median {med['edge_std']:.1f})"
            for v in m["edge_std"]
        ]
    typical = _size(med["width"], med["height"])
    if kind == ODD_ASPECT_RATIO:
        ratio = issues.scores[ODD_ASPECT_RATIO]
        return [
            f"odd aspect ratio {_size(w, h)} ({r:.2f}; dataset median {typical})"
            for w, h, r in zip(m["width"], m["height"], ratio, strict=True)
        ]
    if kind == ODD_SIZE:
        return [
            f"odd size {_size(w, h)} (dataset median {typical})"
            for w, h in zip(m["width"], m["height"], strict=True)
        ]
    assert kind == GRAYSCALE, kind
    share = f"{issues.grayscale_share:.1%}"
    return [f"grayscale image among colour ones ({share} of the images are gray)"] * len(m)


def quality_notes(issues: ImageIssues) -> np.ndarray:
    """(N,) each image's findings in words, its first kind first (``""``: none)."""
    notes = np.full(len(issues.flags), "", dtype=object)
    for kind in IMAGE_QUALITY:
        hit = issues.flags[kind].to_numpy(bool)
        if not hit.any():
            continue
        words = np.asarray(_notes_of(kind, issues), dtype=object)
        notes[hit] = [f"{a}; {b}" if a else b for a, b in zip(notes[hit], words[hit], strict=True)]
    return notes


def quality_record(issues: ImageIssues) -> dict[str, Any]:
    """queue.json's ``image_quality``: images measured, flagged per kind, and the rule."""
    return {
        "images": len(issues.flags),
        "flagged": issues.counts(),
        # The score under which a row was flagged: CleanVision's threshold or, where
        # lower, the dataset's far-out fence (cleaner.ranking.image_quality).
        "limits": {k: round(v, 6) for k, v in issues.limits.items()},
        "cleanvision_thresholds": dict(THRESHOLDS),
        "grayscale_share": round(issues.grayscale_share, 6),
        "dataset_median": {
            k: round(float(v), 6) for k, v in issues.measures.median().dropna().items()
        },
    }


@dataclass(frozen=True)
class ImageFindings:
    """The image-quality findings of a run's N train rows, in the run's row order."""

    kind: np.ndarray  # (N,) the first kind of IMAGE_QUALITY a row has, "" if none
    notes: np.ndarray  # (N,) every finding in words, "" if none
    record: dict[str, Any] = field(default_factory=dict)  # queue.json's image_quality

    @classmethod
    def none(cls, n: int) -> ImageFindings:
        """Nothing measured."""
        return cls(np.full(n, "", dtype=object), np.full(n, "", dtype=object))


def image_findings(
    paths: Sequence[Path],
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    advance: Callable[[], None] | None = None,
) -> ImageFindings:
    """The findings of the images at ``paths`` (a run's train rows, in its order)."""
    issues = image_issues(measure_files(paths, max_pixels=max_pixels, advance=advance))
    return ImageFindings(issues.primary(), quality_notes(issues), quality_record(issues))


def train_image_findings(
    df: pd.DataFrame, run: Run, *, progress: Progress | None = None
) -> ImageFindings:
    """The findings of ``run``'s train rows' images (the manifest ``df``'s files), with a
    progress bar on ``progress``. Rows the manifest lacks are left to the queue's own
    check of the run against its manifest, which names them: nothing is measured then."""
    at = pd.Index(df["sample_id"]).get_indexer(run.sample_ids)
    if (at < 0).any():
        return ImageFindings.none(len(at))
    paths = resolve_paths(df.iloc[at], run.manifest_path.parent)
    task = progress.add_task("image quality", total=len(paths), unit="img") if progress else None

    def advance() -> None:
        if progress is not None and task is not None:
            progress.advance(task)

    found = image_findings(paths, max_pixels=run.cfg.data.max_image_pixels, advance=advance)
    if progress is not None and task is not None:
        progress.remove_task(task)
    return found


def _joined(first: str, then: str) -> str:
    return f"{first}; {then}" if first and then else first or then


def with_image_findings(
    is_label_issue: np.ndarray, found: EmbeddingFindings, images: ImageFindings | None
) -> tuple[np.ndarray, EmbeddingFindings]:
    """(N,) each train row's issue (``flag.ISSUE_PRECEDENCE``), and ``found`` with the image
    findings in its notes: a row named for its image says so first, any other row (a
    label issue, a near duplicate) after its own note."""
    if images is None:
        return flag.primary_issue(is_label_issue, found.is_near, found.is_outlier), found
    issue = flag.primary_issue(is_label_issue, found.is_near, found.is_outlier, images.kind)
    own = np.isin(issue, IMAGE_QUALITY)
    notes = [
        _joined(q, e) if o else _joined(e, q)
        for e, q, o in zip(found.notes, images.notes, own, strict=True)
    ]
    return issue, dataclasses.replace(found, notes=np.asarray(notes, dtype=object))
