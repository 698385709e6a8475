"""``cleaner flag``'s image-quality check end to end, on the suite's trained digits.

Bad images are planted over the files of train rows that the untouched project's queue
did not hold (the run's out-of-fold probabilities stay as trained): ``flag`` then queues
them as rows of their kind, says what it measured in their notes and counts them in
``queue.json``; ``apply`` takes keep, drop and unsure for them and refuses a relabel.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers import TrainedDigits, assert_says, copy_trained_digits, invoke
from test_apply import apply_ok, apply_refused

from cleaner.formats.issue_kinds import IMAGE_QUALITY

pytestmark = pytest.mark.slow

# What each planted 8x8 digit becomes (digits are gray throughout: no grayscale row).
PLANTED = {
    "dark": lambda im: (im * 0.2).astype(np.uint8),
    "light": lambda im: (245 + im.astype(np.float32) * 10 / 255).astype(np.uint8),
    "low_information": lambda im: np.full_like(im, 128),
    "odd_size": lambda im: cv2.resize(im, (16, 16), interpolation=cv2.INTER_NEAREST),
    "odd_aspect_ratio": lambda im: cv2.resize(im, (8, 24), interpolation=cv2.INTER_NEAREST),
}
# Their decisions in the reviewed queue.
DECISIONS = {
    "dark": "drop",
    "light": "keep",
    "low_information": "unsure",
    "odd_size": "keep",
    "odd_aspect_ratio": "drop",
}


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, trained_digits: Path) -> TrainedDigits:
    return copy_trained_digits(trained_digits, tmp_path_factory.mktemp("quality") / "p")


def test_planted_images_are_queued_by_kind_and_apply_takes_only_keep_drop_unsure(
    project: TrainedDigits,
) -> None:
    root, run = project.root, project.run
    # Untouched digits: no image-quality row, every kind counted at 0.
    out = invoke("flag", str(run), "--out", str(root / "q0"), "--top", "1000", "--quiet")
    untouched = read(root / "q0" / "queue.csv")
    assert not set(untouched["issue"]) & set(IMAGE_QUALITY)
    meta = json.loads((root / "q0" / "queue.json").read_text())
    assert meta["image_quality"]["flagged"] == dict.fromkeys(IMAGE_QUALITY, 0)
    assert meta["issue_counts"] == untouched["issue"].value_counts().to_dict()
    m = read(project.manifest)
    train = m[m["split"] == "train"]
    assert_says(out, f"image quality of the {len(train):,} train images: none dark")

    # One bad image per kind, over train rows the queue did not hold.
    spare = train[~train["sample_id"].isin(untouched["sample_id"])].head(len(PLANTED))
    planted = dict(zip(PLANTED, spare["sample_id"], strict=True))
    for make, path in zip(PLANTED.values(), spare["path"], strict=True):
        file = root / path
        assert cv2.imwrite(str(file), make(cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)))
    out = invoke("flag", str(run), "--out", str(root / "q1"), "--top", "1000", "--quiet")
    assert_says(out, "dark 1 (1 queued as such)", "odd_aspect_ratio 1 (1 queued as such)")
    q = read(root / "q1" / "queue.csv").set_index("sample_id")
    for kind, sid in planted.items():
        assert q.loc[sid, "issue"] == kind
        assert q.loc[sid, "suggested_label"] == ""  # there for its pixels, not its label
    assert q.loc[planted["dark"], "note"].startswith(
        "dark image (brightness 0.18 at its brightest 1%, "
    )
    assert "dataset median 1.00)" in q.loc[planted["dark"], "note"]
    assert q.loc[planted["low_information"], "note"].startswith(
        "low-information image (entropy 1.58 bits, dataset median 4."
    )
    assert q.loc[planted["odd_size"], "note"] == "odd size 16x16 (dataset median 8x8)"
    meta = json.loads((root / "q1" / "queue.json").read_text())
    for kind in PLANTED:
        assert meta["issue_counts"][kind] == 1
        assert meta["image_quality"]["flagged"][kind] >= 1
    assert meta["image_quality"]["images"] == len(train)

    # A relabel is refused, naming the line and the kind; nothing is written.
    queue_csv = root / "q1" / "queue.csv"
    table = read(queue_csv)
    line = int(np.flatnonzero(table["sample_id"] == planted["odd_size"])[0]) + 2
    table.loc[table["sample_id"] == planted["odd_size"], ["decision", "new_label"]] = [
        "relabel",
        "3",
    ]
    table.to_csv(queue_csv, index=False)
    refused = apply_refused(root, queue_csv)
    assert_says(
        refused,
        f"{queue_csv}, line {line}: an odd_size row is kept, dropped or marked unsure, not relabel",
    )
    # keep, drop and unsure are taken.
    for kind, decision in DECISIONS.items():
        table.loc[table["sample_id"] == planted[kind], ["decision", "new_label"]] = [decision, ""]
    table.to_csv(queue_csv, index=False)
    apply_ok(queue_csv, "--reviewer", "ana")
    v2 = read(project.manifest.with_name("digits.v2.csv")).set_index("sample_id")
    assert v2.loc[[planted["dark"], planted["odd_aspect_ratio"]], "split"].tolist() == [
        "excluded",
        "excluded",
    ]
    assert v2.loc[planted["light"], "split"] == "train"
    assert float(v2.loc[planted["low_information"], "weight"]) == pytest.approx(0.5)
