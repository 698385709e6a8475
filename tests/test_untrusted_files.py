"""A copied run folder is data, never code: crafted fold files are refused, nothing runs.

README tells users to copy ``fold-K/`` folders between machines; the two files
there that used to be unpickled (``oof.npz`` and ``checkpoint.pt``) now load
without pickle (``allow_pickle=False``, ``weights_only=True``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from conftest import TinyProject, flat, invoke
from typer.testing import CliRunner

from cleaner.cli import app


class Payload:
    """Unpickling this creates ``marker``: the test fails if that file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    return flat(result.output)


def test_crafted_checkpoint_is_refused_and_runs_nothing(tiny_project: TinyProject) -> None:
    p, run = tiny_project, tiny_project.root / "run"
    invoke("oof", str(p.pipeline), "--out", str(run), "--fold", "1", "-q")
    marker = p.root / "pwned"
    checkpoint = run / "fold-0" / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "model": Payload(marker)}, checkpoint)
    out = _refused("oof", str(p.pipeline), "--out", str(run), "--fold", "0", "-q")
    assert not marker.exists(), "the checkpoint's payload ran"
    assert str(checkpoint).replace(" ", "") in out and "loadssafely" in out


def test_crafted_fold_output_is_refused_and_runs_nothing(tiny_project: TinyProject) -> None:
    p, run = tiny_project, tiny_project.root / "run"
    invoke("oof", str(p.pipeline), "--out", str(run), "--fold", "1", "-q")
    marker = p.root / "pwned"
    fold_out = run / "fold-0" / "oof.npz"
    fold_out.parent.mkdir(parents=True, exist_ok=True)
    (run / "fold-0" / "metrics.json").write_text("{}")
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(marker)
    with open(fold_out, "wb") as f:
        np.savez(f, sample_id=payload, probs=np.zeros((1, 2)), embeddings=np.zeros((1, 4)))
    out = _refused("oof", str(p.pipeline), "--out", str(run), "-q")
    assert not marker.exists(), "the fold output's payload ran"
    assert str(fold_out).replace(" ", "") in out and "readssafely" in out


def test_the_checkpoint_training_writes_loads_safely(tmp_path: Path) -> None:
    """The best epoch's arrays travel as tensors, so weights_only=True reads them back."""
    from cleaner.train import _best_to_tensors, _save_checkpoint, load_checkpoint

    probs, emb = np.full((2, 2), 0.5), np.ones((2, 3), np.float32)
    best = {
        "score": 0.5,
        "epoch": 1,
        "model": {"w": torch.ones(2)},
        "probs": probs,
        "embeddings": emb,
    }
    path = tmp_path / "checkpoint.pt"
    _save_checkpoint(path, {"epoch": 1, "history": [{"epoch": 1}], "best": _best_to_tensors(best)})
    state = load_checkpoint(path, torch.device("cpu"))
    np.testing.assert_array_equal(state["best"]["probs"], probs)
    np.testing.assert_array_equal(state["best"]["embeddings"], emb)
