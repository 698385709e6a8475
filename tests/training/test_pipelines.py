"""Every shipped pipeline loads, names a timm model, and builds its transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
from helpers import REPO

import cleaner.training.models  # noqa: F401  (registers cleaner's small-photo models with timm)
from cleaner.core.config import load_config
from cleaner.training.data import build_transform

PIPELINES = sorted((REPO / "pipelines").glob("*.toml"))


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_shipped_pipeline_is_valid(path: Path) -> None:
    cfg = load_config(path)
    assert timm.is_model(cfg.model.name)
    assert cfg.data.manifest.startswith("data_manifests/")
    image = np.zeros((512, 384, cfg.model.in_chans), np.uint8)
    for train in (True, False):
        x = build_transform(cfg.augment, train=train, image_size=cfg.data.hw)(image=image)["image"]
        assert tuple(x.shape) == (cfg.model.in_chans, *cfg.data.hw)


def test_the_shipped_pipelines_are_there() -> None:
    assert {p.stem for p in PIPELINES} >= {"digits", "mnist", "mask"}
