"""``flag`` on a manifest with several labels per image: CROWDLAB ranks, annotators shown.

Digits with 10% noise in ``label``; annotator ``a`` gave the noisy label on every train
row, annotator ``b`` the true one on every other row. The oof run is of that manifest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_says, ingest_digits, invoke, write_digits_pipeline

from cleaner.formats.run_files import QueueFiles

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crowd")
    manifest = ingest_digits(root / "digits.csv", "--noise", "0.1")
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    train = (df["split"] == "train").to_numpy()
    df["annotator:a"] = np.where(train, df["label"], "")
    df["annotator:b"] = np.where(train & (np.arange(len(df)) % 2 == 0), df["true_label"], "")
    df.to_csv(manifest, index=False)
    pipeline = write_digits_pipeline(
        root, manifest, epochs=3, image_size=16, train={"folds": 2}, augment={"train": None}
    )
    invoke("oof", str(pipeline), "--out", str(root / "run"), "-q")
    return root / "run"


def test_flag_shows_the_annotators_and_ranks_by_the_consensus(run: Path) -> None:
    out = invoke("flag", str(run), "--out", str(run / "q"), "-q")
    assert_says(out, "annotators, worst first (CROWDLAB")
    files = QueueFiles(run / "q")
    assert files.annotators_png.read_bytes().startswith(b"\x89PNG")
    # b gave the truth: CROWDLAB trusts it more than a, who gave the noisy labels.
    table = out[out.index("annotators, worst first") :]
    assert table.index("│ a ") < table.index("│ b ")  # worst first
    queue = pd.read_csv(files.csv, dtype=str, keep_default_na=False)
    manifest = pd.read_csv(run.parent / "digits.csv", dtype=str, keep_default_na=False)
    rows = queue.merge(manifest, on="sample_id")
    # Where b contradicts a, the queue suggests the consensus, b's label.
    split = rows[(rows["annotator:b"] != "") & (rows["annotator:b"] != rows["annotator:a"])]
    split = split[split["issue"] == "label"]
    assert (split["suggested_label"] == split["annotator:b"]).all()
