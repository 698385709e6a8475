"""Speed and memory of ``cleaner flag`` against the bare cleanlab call, on synthetic arrays.

Run: ``.venv/bin/python -m benchmarks.bench_flag_speed`` (a few minutes on 2 cores).

At 10,000 and 1,000,000 rows x 18 classes (10% label noise), each measured in
its own process for a clean peak-memory figure, in the same run:

- ``bare cleanlab``: ``find_label_issues(labels, pred_probs,
  return_indices_ranked_by="self_confidence")`` on arrays in memory (the reference);
- ``flag core``: what ``cleaner flag`` computes on the same arrays (noise
  estimate, label issues, label quality, suggestions, review order);
- ``cleaner flag``: the whole command on files: reading and checking a run
  folder's ``oof.csv`` and the manifest, ranking, and writing ``queue.csv``,
  ``queue.json`` and ``queue.html`` (top 200). No embeddings: the outlier and
  near-duplicate checks are not part of this figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pandas as pd
from rich.console import Console

from benchmarks.common import ROOT, result_table, write_section
from cleaner.core.atomic import write_text
from cleaner.core.config import PipelineConfig
from cleaner.formats.manifest import sha256_file
from cleaner.formats.prob_table import oof_table
from cleaner.formats.run_files import RunFiles

K = 18
ABOUT = """## `cleaner flag`: speed and memory

`python -m benchmarks.bench_flag_speed`: synthetic labels (10% noise) and probabilities;
each figure from its own process in the same run. `bare cleanlab` is
`find_label_issues(..., return_indices_ranked_by="self_confidence")` on arrays in memory;
`flag core` is what `flag` computes on the same arrays; `cleaner flag` is the whole command
on files (read and check oof.csv and the manifest, rank, write queue.csv, queue.json and
queue.html), without embeddings; each is timed after its imports. Target at 1,000,000
rows: within 3x of the bare call, under 4 GB. Absolute times are on this shared machine;
the ratios are what to compare.
"""

BARE = """
import numpy as np, time
from cleanlab.filter import find_label_issues
z = np.load("{arrays}")
t = time.perf_counter()
find_label_issues(z["labels"], z["pred_probs"], return_indices_ranked_by="self_confidence")
print(time.perf_counter() - t, PEAK())
"""

CORE = """
import numpy as np, time
from cleaner.ranking import flag
z = np.load("{arrays}")
labels, pred_probs = z["labels"], z["pred_probs"]
t = time.perf_counter()
noise = flag.estimate_noise(labels, pred_probs)
is_label = flag.find_label_errors(labels, pred_probs, confident_joint=noise.confident_joint)
quality = flag.ensemble_label_quality(labels, [pred_probs])
flag.suggest_labels(labels, pred_probs)
flag.review_order(quality, is_label)
print(time.perf_counter() - t, PEAK())
"""

COMMAND = """
import os, time
os.chdir("{work}")
from typer.testing import CliRunner
from cleaner.cli import app
import cleaner.ranking.queue  # imports are outside the timer, as cleanlab's are for the bare call
t = time.perf_counter()
r = CliRunner().invoke(app, ["flag", "run", "--top", "200", "--quiet"])
assert r.exit_code == 0, r.output
print(time.perf_counter() - t, PEAK())
"""


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N,) with 10% uniform noise and softmax probabilities (N, K) of a decent model."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, K, n)
    logits = rng.normal(0.0, 1.0, (n, K)).astype(np.float32)
    logits[np.arange(n), true] += 4.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = true.copy()
    flip = rng.random(n) < 0.1
    labels[flip] = (true[flip] + rng.integers(1, K, flip.sum())) % K
    return labels, probs.astype(np.float64)


# VmHWM is the peak resident memory of this process's own address space (ru_maxrss
# would carry the parent's high-water mark across fork and exec).
PEAK = """
def PEAK():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""


def measure(code: str) -> tuple[float, float]:
    """Seconds the snippet reports, and the peak RSS of its own process in GiB."""
    code = PEAK + code
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    seconds, peak_kib = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(peak_kib) / 2**20


def make_run(work: Path, labels: np.ndarray, probs: np.ndarray) -> None:
    """A run folder as ``cleaner oof`` leaves it (without embeddings) and its manifest."""
    classes = tuple(f"c{i:02d}" for i in range(K))
    ids = np.array([f"s{i:07d}" for i in range(len(labels))], dtype=object)
    manifest = work / "m.csv"
    pd.DataFrame(
        {
            "sample_id": ids,
            "path": [f"img/{s}.png" for s in ids],
            "label": np.array(classes, dtype=object)[labels],
        }
    ).to_csv(manifest, index=False)
    cfg = PipelineConfig().replace("data", manifest="m.csv", classes=classes)
    run = RunFiles(work / "run")
    run.dir.mkdir()
    write_text(run.config, cfg.to_toml())
    write_text(run.manifest_record, f"{sha256_file(manifest)}  m.csv\n")
    folds = np.arange(len(labels)) % 5
    # load_run checks oof.csv against the run's fold assignment, as oof writes it.
    pd.DataFrame({"sample_id": ids, "fold": folds}).to_csv(run.folds, index=False)
    oof_table(ids, folds, labels, probs, classes).to_csv(run.oof, index=False, float_format="%.8g")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="*", type=int, default=[10_000, 1_000_000])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    console = Console()
    rows = []
    for n in sorted(args.sizes):
        labels, probs = synthetic(n)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            arrays = work / "arrays.npz"
            np.savez(arrays, labels=labels, pred_probs=probs)
            make_run(work, labels, probs)
            bare_s, bare_mem = measure(BARE.format(arrays=arrays))
            core_s, core_mem = measure(CORE.format(arrays=arrays))
            cmd_s, cmd_mem = measure(COMMAND.format(work=work))
        rows.append(
            {
                "n": n,
                "bare_s": bare_s,
                "core_s": core_s,
                "command_s": cmd_s,
                "bare_gib": bare_mem,
                "core_gib": core_mem,
                "command_gib": cmd_mem,
            }
        )
        console.print(json.dumps(rows[-1]))
    cols = [
        "rows x classes",
        "bare cleanlab",
        "flag core",
        "core / bare",
        "cleaner flag",
        "flag / bare",
        "peak memory of cleaner flag",
    ]
    cells = []
    for r in rows:
        cells.append(
            [
                f"{r['n']:,} x {K}",
                f"{r['bare_s']:.2f} s",
                f"{r['core_s']:.2f} s",
                f"{r['core_s'] / r['bare_s']:.2f}",
                f"{r['command_s']:.2f} s",
                f"{r['command_s'] / r['bare_s']:.2f}",
                f"{r['command_gib']:.2f} GiB",
            ]
        )
    table, lines = result_table("cleaner flag speed against the bare cleanlab call", cols, cells)
    console.print(table)
    if not args.no_write:
        write_section("flag-speed", ABOUT + "\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
