"""The trainer's options on a few real digit images: every path runs and learns."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import timm
import torch
from rich.progress import Progress

from cleaner.config import AugmentConfig, ModelConfig, TrainConfig
from cleaner.data import ImageDataset, Normalize, build_transform
from cleaner.errors import InputError
from cleaner.folds import make_folds
from cleaner.ingest import load_digits_arrays
from cleaner.models import create_model, logits_and_embeddings
from cleaner.train import fit, lr_factor, predict

CLASSES = tuple(str(i) for i in range(10))


def digits_dataset(n: int, in_chans: int = 1, train: bool = True) -> ImageDataset:
    images, labels = load_digits_arrays()
    imgs = [np.repeat(im[:, :, None], in_chans, axis=2) for im in images[:n]]
    aug = AugmentConfig(train=({"name": "Affine", "rotate": [-5, 5], "p": 0.5},))
    tf = build_transform(aug, train=train, image_size=(16, 16))
    return ImageDataset(
        [""] * n,
        labels[:n],
        np.ones(n, np.float32),
        tf,
        normalize=Normalize((0.5,), (0.5,)),
        in_chans=in_chans,
        images=imgs,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"scheduler": "cosine", "optimizer": "adamw"},
        {"scheduler": "step", "optimizer": "sgd", "lr": 0.05, "step_epochs": 1},
        {"scheduler": "plateau", "loss": "focal"},
        {"scheduler": "onecycle", "label_smoothing": 0.1, "grad_accum": 3},
        {"scheduler": "constant", "lr": 1e-3},
    ],
)
def test_fit_options_reduce_the_loss(changes: dict, tmp_path) -> None:
    cfg = TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 3e-3, "workers": 0, **changes})
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="test_resnet", in_chans=1), 10)
    ds = digits_dataset(256)
    with Progress(disable=True) as progress:
        result = fit(
            model,
            ds,
            digits_dataset(128, train=False),
            cfg,
            classes=CLASSES,
            checkpoint=tmp_path / "c.pt",
            seed=1,
            device=torch.device("cpu"),
            progress=progress,
        )
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert all(np.isfinite(losses))
    assert result.val_probs is not None and result.val_probs.shape == (128, 10)
    assert (tmp_path / "c.pt").exists()


def test_zero_weights_leave_the_model_unchanged(tmp_path) -> None:
    """Per-sample weights reach the loss: all-zero weights give zero gradients."""
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="test_resnet", in_chans=1), 10)
    model.eval()  # batch-norm statistics would move even without gradients
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ds = digits_dataset(64)
    ds.weights[:] = 0.0
    cfg = TrainConfig(epochs=1, batch_size=32, workers=0, weight_decay=0.0, scheduler="constant")
    with Progress(disable=True) as progress:
        fit(
            model,
            ds,
            None,
            cfg,
            classes=CLASSES,
            checkpoint=tmp_path / "c.pt",
            seed=1,
            device=torch.device("cpu"),
            progress=progress,
        )
    after = model.state_dict()
    for k, v in before.items():
        if "running" not in k and "num_batches" not in k:
            torch.testing.assert_close(after[k], v)


def test_lr_schedule_shapes() -> None:
    cfg = TrainConfig(epochs=10, lr=1.0, warmup_epochs=2, min_lr_ratio=0.0)
    f = [lr_factor(s, cfg, 10) for s in range(100)]
    assert f[0] == pytest.approx(0.05) and f[19] == pytest.approx(1.0)
    assert f[20] == pytest.approx(1.0) and f[-1] < 0.01
    assert all(a >= b for a, b in itertools.pairwise(f[20:]))
    step = TrainConfig(epochs=10, scheduler="step", step_epochs=3, gamma=0.5)
    assert [lr_factor(e * 10, step, 10) for e in (0, 2, 3, 6)] == [1.0, 1.0, 0.5, 0.25]


def test_predict_keeps_order_and_shapes() -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="test_resnet", in_chans=3), 10)
    ds = digits_dataset(50, in_chans=3, train=False)
    probs, emb = predict(model, ds, batch_size=16, workers=0, device=torch.device("cpu"))
    assert probs.shape == (50, 10) and emb.shape == (50, model.num_features)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    x = ds.normalize(torch.stack([ds[i][0] for i in (7, 3)]))
    with torch.no_grad():
        logits, _ = logits_and_embeddings(model.eval(), x)
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), probs[[7, 3]], atol=1e-5)


def test_local_weights_file_is_loaded_and_adapted(tmp_path) -> None:
    """A weights file works offline; timm adapts the classifier and the input channels."""
    source = timm.create_model("test_resnet", pretrained=False)  # 1000 classes, RGB
    torch.save(source.state_dict(), tmp_path / "w.pth")
    model = create_model(
        ModelConfig(name="test_resnet", weights=str(tmp_path / "w.pth"), in_chans=1), 10
    )
    assert model.get_classifier().out_features == 10
    torch.testing.assert_close(model.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    # the RGB stem is summed into one grayscale channel
    torch.testing.assert_close(model.conv1[0].weight, source.conv1[0].weight.sum(1, keepdim=True))


def test_unknown_model_and_missing_weights() -> None:
    with pytest.raises(InputError, match="no model named"):
        create_model(ModelConfig(name="no_such_net"), 10)
    with pytest.raises(InputError, match="file not found"):
        create_model(ModelConfig(name="test_resnet", weights="/nonexistent.pth"), 10)


def test_folds_keep_groups_together_and_stratify() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 5)
    labels = np.repeat(rng.integers(0, 3, 60), 5)
    folds = make_folds(labels, n_splits=5, seed=0, groups=groups)
    for g in range(60):
        assert len(set(folds[groups == g])) == 1
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    plain = make_folds(np.tile(np.arange(3), 50), n_splits=5, seed=0)
    assert all(
        np.bincount(plain[np.tile(np.arange(3), 50) == c]).tolist() == [10] * 5 for c in range(3)
    )
    with pytest.raises(InputError, match="groups cannot fill"):
        make_folds(labels[:10], n_splits=5, seed=0, groups=groups[:10])


def test_select_macro_f1_keeps_the_best_epoch(tmp_path) -> None:
    cfg = TrainConfig(epochs=4, batch_size=32, lr=3e-2, workers=0, select="macro_f1")
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="test_resnet", in_chans=1), 10)
    val = digits_dataset(128, train=False)
    with Progress(disable=True) as progress:
        result = fit(
            model,
            digits_dataset(256),
            val,
            cfg,
            classes=CLASSES,
            checkpoint=tmp_path / "c.pt",
            seed=1,
            device=torch.device("cpu"),
            progress=progress,
        )
    scores = [h["val_macro_f1"] for h in result.history]
    assert result.selected_epoch == int(np.argmax(scores)) + 1
    probs, _ = predict(model, val, batch_size=64, workers=0, device=torch.device("cpu"))
    np.testing.assert_allclose(probs, result.val_probs, atol=1e-6)
    # resumed after the last epoch, the same epoch is kept
    torch.manual_seed(0)
    again = create_model(ModelConfig(name="test_resnet", in_chans=1), 10)
    with Progress(disable=True) as progress:
        resumed = fit(
            again,
            digits_dataset(256),
            val,
            cfg,
            classes=CLASSES,
            checkpoint=tmp_path / "c.pt",
            seed=1,
            device=torch.device("cpu"),
            progress=progress,
        )
    assert resumed.selected_epoch == result.selected_epoch
    for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
