"""The shipped photo pipelines: the CPU one trains on real photos, the GPU one loads.

``photos.toml`` runs ``oof`` for one epoch on a handful of the shared CIFAR-10
photos (CI has ``../shared`` beside the clone), its classes taken from the
manifest. ``photos-gpu.toml`` names a pretrained backbone that cannot be
downloaded here: its architecture is built, a local weights file of it is loaded
the way hub weights are, and its normalisation is the backbone's own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch
from helpers import invoke

from cleaner.core.config import load_config
from cleaner.training.models import create_model, default_mean_std

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "train"
PER_CLASS = 5  # 5 folds need 5 photos of every class


@pytest.mark.skipif(not CIFAR.is_dir(), reason="needs ../shared/data/cifar10")
def test_photos_pipeline_trains_one_epoch_on_shared_photos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no pipelines/ here: the shipped one is reached by name
    src = tmp_path / "photos"
    classes = sorted(p.name for p in CIFAR.iterdir() if p.is_dir())
    for name in classes:
        (src / name).mkdir(parents=True)
        for photo in sorted((CIFAR / name).glob("*.jpg"))[:PER_CLASS]:
            (src / name / photo.name).symlink_to(photo)
    manifest = tmp_path / "photos.csv"
    # The photos are links into the shared data set, outside the folder: followed on request.
    invoke("ingest", "folder", str(src), "--manifest", str(manifest), "--follow-links")
    run = tmp_path / "run"
    invoke(
        "oof", "photos",
        "--set", f'data.manifest="{manifest}"', "--set", "train.epochs=1",
        "--out", str(run), "-q",
    )  # fmt: skip
    oof = pd.read_csv(run / "oof.csv")
    assert len(oof) == len(classes) * PER_CLASS
    # The classes come from the manifest: one probability column per folder, sorted.
    columns = [f"p:{c}" for c in classes]
    assert [c for c in oof.columns if c.startswith("p:")] == columns
    assert (oof[columns].sum(axis=1) - 1).abs().max() < 1e-3
    config = load_config(run / "config.toml")
    assert config.data.classes == tuple(classes)
    shipped = load_config(ROOT / "pipelines" / "photos.toml").train
    assert config.train == dataclasses.replace(shipped, epochs=1)


def test_photos_gpu_pipeline_loads_its_backbone_from_a_local_file(tmp_path: Path) -> None:
    path = ROOT / "pipelines" / "photos-gpu.toml"
    cfg = load_config(path)
    assert cfg.model.pretrained and not cfg.data.classes
    # timm knows the pretrained weights by this exact tag (what it would download).
    assert cfg.model.name in timm.list_pretrained(cfg.model.name)
    # A file of the same backbone (random here, the hub's in use) loads as hub weights do
    # and gets a classifier for the data's classes.
    weights = tmp_path / "backbone.pth"
    torch.save(timm.create_model(cfg.model.name, pretrained=False).state_dict(), weights)
    local = load_config(path, [f'model.weights="{weights}"'])
    model = create_model(local.model, num_classes=10).eval()
    assert default_mean_std(model, 3) == (
        tuple(timm.get_pretrained_cfg(cfg.model.name).mean),
        tuple(timm.get_pretrained_cfg(cfg.model.name).std),
    )
    with torch.no_grad():
        assert model(torch.zeros(1, 3, *cfg.data.hw)).shape == (1, 10)
