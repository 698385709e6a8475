"""Attribute-aware flags on the synthetic mask layout: recall of injected errors in the queue.

Run: ``.venv/bin/python -m benchmarks.bench_mask_synth`` (a few minutes on 2 cores).

``cleaner synth mask`` (drawn faces, 32 px) with person-level gender flips and
image-level mask swaps, ``ingest mask``, ``oof`` with ``pipelines/mask.toml``
shrunk for the CPU (timm's ``test_resnet``, no face crop), then the queue's top
200 built twice from the same out-of-fold probabilities: with the pipeline's
``flag.attributes`` and without them. Recall per kind of noise: a flipped
image counts as found when it, or its person's group row, is in the top 200; a
swapped image when it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.common import ROOT, oof_run, write_section
from cleaner.core.progress import make_progress
from cleaner.formats.issue_kinds import GROUP_PREFIX
from cleaner.formats.runs import load_run
from cleaner.ingest.mask import ingest_mask
from cleaner.ingest.synth import synth_mask
from cleaner.ranking.queue_rows import build_queue

PIPELINE = ROOT / "pipelines" / "mask.toml"
CPU = [
    "model.name=test_resnet",
    "model.pretrained=false",
    "data.image_size=32",
    "train.epochs=12",
    "train.folds=4",
    "train.workers=0",
    "train.batch_size=32",
    "train.lr=3e-3",
    'augment.train=[{name="Affine", translate_percent=[-0.05,0.05], p=0.5}]',
    "augment.eval=[]",
    "augment.resize=true",
]


def recall(queue: pd.DataFrame, truth: pd.DataFrame, sample_of: dict[str, str]) -> dict:
    ids = set(queue["sample_id"])
    groups = {s[len(GROUP_PREFIX) :] for s in ids if s.startswith(GROUP_PREFIX)}
    out = {}
    for kind in ("gender_flip", "mask_swap"):
        rows = truth[truth["noise"] == kind]
        hit = [
            sample_of[p] in ids or (kind == "gender_flip" and person in groups)
            for p, person in zip(rows["path"], rows["person"], strict=True)
        ]
        out[kind] = sum(hit) / max(1, len(hit))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--top", type=int, default=200)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synth_mask(work / "synth", people=args.people, size=32, seed=0)
        manifest, _ = ingest_mask(work / "synth", work / "mask.csv")
        with make_progress() as progress:
            result = oof_run(
                PIPELINE, [f'data.manifest="{manifest}"', *CPU], out=work / "run", progress=progress
            )
        run = load_run(result.run_dir)
        df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        truth = pd.read_csv(work / "synth" / "truth.csv", dtype=str, keep_default_na=False)
        key = df["path"].str.replace(r"^.*?synth/", "", regex=True)
        sample_of = dict(zip(key, df["sample_id"], strict=True))
        plain = dataclasses.replace(run, cfg=run.cfg.replace("flag", attributes=()))
        results = {}
        for name, r in (("with attribute-aware flags", run), ("without", plain)):
            queue, _ = build_queue(df, [r], top=args.top, method=run.cfg.flag.method, decided=set())
            results[name] = recall(queue, truth, sample_of)
        counts = truth["noise"].value_counts().to_dict()
        accuracy = result.metrics.overall.accuracy if result.metrics else float("nan")
    console.print(json.dumps(results))
    table = Table(title=f"recall of injected errors in the top {args.top} (synthetic mask layout)")
    for c in ("flags", "gender flips (person level)", "mask swaps (image level)"):
        table.add_column(c, justify="right")
    lines = []
    for name, rec in results.items():
        cells = [name, f"{rec['gender_flip']:.2f}", f"{rec['mask_swap']:.2f}"]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    if not args.no_write:
        write_section(
            "mask-synth",
            "\n".join(
                [
                    "## Attribute-aware flags on the synthetic mask layout",
                    "",
                    f"`python -m benchmarks.bench_mask_synth`: {args.people} synthetic people "
                    f"({counts.get('gender_flip', 0)} images gender-flipped at person level, "
                    f"{counts.get('mask_swap', 0)} images mask-swapped), 32 px, `oof` with "
                    "`pipelines/mask.toml` shrunk for the CPU (`test_resnet`, 4 folds, 12 epochs; "
                    f"out-of-fold accuracy {accuracy:.3f}), then the top {args.top} of the queue "
                    "from the same probabilities with and without `flag.attributes`. A flipped "
                    "image counts as found when it or its person's group row is in the top;",
                    "a swapped image when it is.",
                    "",
                    "| flags | gender flips (person level) | mask swaps (image level) |",
                    "|---|---:|---:|",
                    *lines,
                ]
            ),
        )


if __name__ == "__main__":
    main()
