"""The trainer's options on a few real digit images: every path runs and learns."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import timm
import torch
from rich.progress import Progress

from cleaner.core.config import AugmentConfig, ModelConfig, TrainConfig
from cleaner.core.errors import InputError
from cleaner.ingest.arrays import load_digits_arrays
from cleaner.training.data import ImageDataset, Normalize, build_transform
from cleaner.training.folds import make_folds
from cleaner.training.mixing import BatchMixer
from cleaner.training.models import create_model, logits_and_embeddings
from cleaner.training.train import fit, load_checkpoint, lr_factor, predict

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


def _fit_digits(model, val: ImageDataset, cfg: TrainConfig, checkpoint, train=None):  # type: ignore[no-untyped-def]
    """``fit`` on ``train`` (default: 256 digits) with seed 1 on the CPU, validated on ``val``."""
    with Progress(disable=True) as progress:
        return fit(
            model,
            digits_dataset(256) if train is None else train,
            val,
            cfg,
            classes=CLASSES,
            checkpoint=checkpoint,
            seed=1,
            device=torch.device("cpu"),
            progress=progress,
        )


def test_select_macro_f1_keeps_the_best_epoch(tmp_path) -> None:
    cfg = TrainConfig(epochs=4, batch_size=32, lr=3e-2, workers=0, select="macro_f1")
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="test_resnet", in_chans=1), 10)
    val = digits_dataset(128, train=False)
    result = _fit_digits(model, val, cfg, tmp_path / "c.pt")
    scores = [h["val_macro_f1"] for h in result.history]
    assert result.selected_epoch == int(np.argmax(scores)) + 1
    probs, _ = predict(model, val, batch_size=64, workers=0, device=torch.device("cpu"))
    np.testing.assert_allclose(probs, result.val_probs, atol=1e-6)
    # resumed after the last epoch, the same epoch is kept
    torch.manual_seed(0)
    again = create_model(ModelConfig(name="test_resnet", in_chans=1), 10)
    resumed = _fit_digits(again, val, cfg, tmp_path / "c.pt")
    assert resumed.selected_epoch == result.selected_epoch
    for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


# --- trainer features under label noise (#14): mixup / cutmix, EMA, TTA, robust losses ------


def _fit(cfg: TrainConfig, checkpoint, *, n: int = 99, n_val: int = 40):
    """A fresh tiny model fitted on ``n`` digits (99: an odd last batch of 3 at batch 32)."""
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="test_resnet", in_chans=1), 10)
    val = digits_dataset(n_val, train=False)
    with Progress(disable=True) as progress:
        result = fit(
            model,
            digits_dataset(n),
            val,
            cfg,
            classes=CLASSES,
            checkpoint=checkpoint,
            seed=1,
            device=torch.device("cpu"),
            progress=progress,
        )
    return model, result, val


def _mix(cfg: TrainConfig, x, y, w, *, epoch: int = 0, seed: int = 0):
    mixer = BatchMixer(cfg, 10, seed)
    mixer.set_epoch(epoch)
    return mixer(x.clone(), y, w)


def test_mixup_mixes_the_weights_like_the_images() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 3, 4, 5])
    w = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.5, 1.5])
    xm, ym, wm = _mix(TrainConfig(mixup=0.4), x, y, w)
    lam = float(ym[0, 0])  # timm's soft target of row 0 shows the lam it drew
    assert 0 < lam < 1
    one_hot = torch.eye(10)[y]
    # timm's batch mode pairs row i with row B-1-i (x.flip(0))
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0))
    torch.testing.assert_close(ym, lam * one_hot + (1 - lam) * one_hot.flip(0))
    torch.testing.assert_close(wm, lam * w + (1 - lam) * w.flip(0))


def test_cutmix_mixes_the_weights_with_the_corrected_lam() -> None:
    # row i is all i: after cutmix the share of a row's pixels from its partner is 1 - lam,
    # lam corrected by timm for a box clipped at the border
    x = torch.arange(8.0).view(8, 1, 1, 1).repeat(1, 1, 16, 16)
    y, w = torch.arange(8), torch.linspace(0.0, 1.4, 8)
    for epoch in range(4):
        xm, ym, wm = _mix(TrainConfig(cutmix=1.0), x, y, w, epoch=epoch)
        lam = float(ym[0, 0])
        from_partner = (xm[0] == 7).float().mean().item()
        assert from_partner == pytest.approx(1 - lam)
        torch.testing.assert_close(wm, lam * w + (1 - lam) * w.flip(0))


def test_an_odd_batch_mixes_all_rows_but_its_last() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 3, 4])
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    xm, ym, wm = _mix(TrainConfig(mixup=0.4, label_smoothing=0.1), x, y, w)
    on, off = 0.9 + 0.01, 0.01
    lam = (float(ym[0, 0]) - off) / (on - off)
    torch.testing.assert_close(xm[:4], lam * x[:4] + (1 - lam) * x[:4].flip(0))
    torch.testing.assert_close(wm[:4], lam * w[:4] + (1 - lam) * w[:4].flip(0))
    torch.testing.assert_close(xm[4], x[4])
    assert wm[4] == 5.0
    torch.testing.assert_close(ym[4], torch.full((10,), off).index_fill(0, torch.tensor(4), on))
    # one row alone, or mix_prob 0: nothing is mixed, targets are the smoothed one-hots
    for cfg, n in [(TrainConfig(mixup=0.4), 1), (TrainConfig(mixup=0.4, mix_prob=0.0), 5)]:
        xm, ym, wm = _mix(cfg, x[:n], y[:n], w[:n])
        torch.testing.assert_close(xm, x[:n])
        torch.testing.assert_close(ym, torch.eye(10)[y[:n]])
        torch.testing.assert_close(wm, w[:n])


def test_mixing_is_seeded_per_epoch_and_leaves_numpy_global_state_alone() -> None:
    x, y, w = torch.randn(4, 1, 4, 4), torch.arange(4), torch.ones(4)
    cfg = TrainConfig(mixup=1.0, cutmix=1.0)

    def lams(epoch: int) -> list[float]:
        mixer = BatchMixer(cfg, 10, seed=3)
        mixer.set_epoch(epoch)
        out = []
        for _ in range(5):
            np.random.rand()  # someone else drawing from the global RNG changes nothing
            out.append(float(mixer(x.clone(), y, w)[1][0, 0]))
        return out

    np.random.seed(123)
    first = lams(0)
    after = np.random.rand()
    np.random.seed(123)
    for _ in range(5):
        np.random.rand()
    assert after == np.random.rand()  # mixing drew nothing from the global RNG
    assert lams(0) == first and lams(1) != first


@pytest.mark.parametrize(
    "changes",
    [
        {"mixup": 0.4},
        {"cutmix": 1.0, "loss": "sce"},
        {"mixup": 0.4, "cutmix": 1.0, "loss": "gce", "label_smoothing": 0.1},
        {"ema": 0.9, "ema_warmup": True},
        {"tta": True, "loss": "gce"},
        {"loss": "sce", "select": "macro_f1", "ema": 0.5},
    ],
)
def test_fit_with_each_feature(changes: dict, tmp_path) -> None:
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 32, "workers": 0, **changes})
    model, result, _ = _fit(cfg, tmp_path / "c.pt")
    assert result.val_probs is not None and result.val_probs.shape == (40, 10)
    assert result.val_embeddings is not None and result.val_embeddings.shape[0] == 40
    np.testing.assert_allclose(result.val_probs.sum(1), 1.0, atol=1e-5)
    assert np.isfinite(result.history[0]["train_loss"])
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_features_are_deterministic(tmp_path) -> None:
    cfg = TrainConfig(
        epochs=1, batch_size=32, workers=0, mixup=0.4, cutmix=1.0, ema=0.9, tta=True, loss="gce"
    )
    a, ra, _ = _fit(cfg, tmp_path / "a.pt")
    b, rb, _ = _fit(cfg, tmp_path / "b.pt")
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    np.testing.assert_array_equal(ra.val_probs, rb.val_probs)
    assert ra.history == rb.history


def test_resume_with_mixup_and_ema_equals_an_uninterrupted_fit(tmp_path, monkeypatch) -> None:
    cfg = TrainConfig(epochs=2, batch_size=32, workers=0, mixup=0.4, cutmix=1.0, ema=0.9)
    straight, r_straight, _ = _fit(cfg, tmp_path / "straight.pt")

    import cleaner.training.train as train_module

    real_save = train_module._save_checkpoint

    def save_then_stop(path, state):
        real_save(path, state)
        raise KeyboardInterrupt  # killed right after epoch 1's checkpoint

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _fit(cfg, tmp_path / "killed.pt")
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    np.random.seed(999)  # the global RNG's state does not matter to a resumed run
    resumed, r_resumed, _ = _fit(cfg, tmp_path / "killed.pt")
    assert r_resumed.history == r_straight.history
    for (k, x), y in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)
    np.testing.assert_array_equal(r_resumed.val_probs, r_straight.val_probs)
    a = load_checkpoint(tmp_path / "straight.pt", torch.device("cpu"))
    b = load_checkpoint(tmp_path / "killed.pt", torch.device("cpu"))
    for part in ("model", "ema"):
        for x, y in zip(a[part].values(), b[part].values(), strict=True):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_ema_weights_are_validated_and_returned(tmp_path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=32, workers=0, ema=0.9)
    model, result, val = _fit(cfg, tmp_path / "c.pt")
    state = load_checkpoint(tmp_path / "c.pt", torch.device("cpu"))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state["ema"][k], rtol=0, atol=0)
    assert any(
        not torch.equal(state["model"][k], state["ema"][k])
        for k in state["model"]
        if state["model"][k].is_floating_point()
    )
    probs, _ = predict(model, val, batch_size=64, workers=0, device=torch.device("cpu"))
    np.testing.assert_allclose(probs, result.val_probs, atol=1e-6)


def test_tta_averages_the_mirror_and_keeps_the_embeddings(tmp_path) -> None:
    cfg = TrainConfig(epochs=1, batch_size=32, workers=0, tta=True)
    model, result, val = _fit(cfg, tmp_path / "c.pt")
    cpu = torch.device("cpu")
    flipped, emb_tta = predict(model, val, batch_size=64, workers=0, device=cpu, tta=True)
    plain, emb = predict(model, val, batch_size=64, workers=0, device=cpu)
    np.testing.assert_allclose(result.val_probs, flipped, atol=1e-6)
    assert not np.allclose(result.val_probs, plain, atol=1e-4)
    np.testing.assert_array_equal(emb_tta, emb)
    np.testing.assert_allclose(result.val_embeddings, emb, atol=1e-6)
