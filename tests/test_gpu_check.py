"""The GPU check script's dry run: the GPU code paths (bfloat16 autocast, channels_last,
Ray folds, torchrun DDP) on the CPU, end to end through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_dry_run_passes(tmp_path: Path) -> None:
    """The script's own paths: AMP + channels_last and the big backbone. Its Ray and
    torchrun checks run the same commands test_scale_out runs (``--checks 2 3`` here
    adds them: a minute more)."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--images", "100"]
    cmd += ["--checks", "0", "1"]
    done = subprocess.run(
        [*cmd, "--work", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for name in ("AMP + channels_last", "random weights"):
        assert name in done.stdout, done.stdout
    assert "torchrun DDP" not in done.stdout
    for i in range(2):
        assert (tmp_path / f"run-{i}" / "oof.csv").exists()
