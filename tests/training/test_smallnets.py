"""Small-photo models by name, the whitening stem, and the training pieces their recipe uses."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from test_train import _fit_digits, digits_dataset

import cleaner.training.models
from cleaner.core.config import ModelConfig, TrainConfig
from cleaner.training.data import ImageDataset
from cleaner.training.models import create_model
from cleaner.training.smallnets import patch_whitening
from cleaner.training.train import load_checkpoint, predict
from cleaner.training.tta import shift

SMALL = ("airbench_xs", "airbench_s", "airbench_m", "resnet10_cifar", "resnet18_cifar")


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("size", [32, 48, 64])
def test_built_by_name_with_timm_shapes(name: str, size: int) -> None:
    model = timm.create_model(name, num_classes=7, in_chans=3).eval()
    x = torch.randn(2, 3, size, size)
    if getattr(model, "data_init_pending", False):
        model.init_from_data(torch.randn(16, 3, size, size))
    feats = model.forward_features(x)
    assert feats.ndim == 4 and feats.shape[:2] == (2, model.num_features)
    # No ImageNet stem: at least size/8 pixels are left before the head.
    assert feats.shape[-1] >= (size - 1) // 8
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    assert model.forward_head(feats).shape == (2, 7)
    assert model(x).shape == (2, 7)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)


def test_patch_whitening_whitens_and_is_deterministic() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 12, 12, generator=g) * torch.tensor([1.0, 3.0, 0.2]).view(1, 3, 1, 1)
    w = patch_whitening(x, 2)
    assert w.shape == (24, 3, 2, 2)
    torch.testing.assert_close(w[:12], -w[12:])
    out = torch.nn.functional.conv2d(x.double(), w[:12].double()).transpose(0, 1).flatten(1)
    cov = out @ out.T / out.shape[1]
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), atol=2e-2, rtol=0)
    torch.testing.assert_close(patch_whitening(x, 2), w, rtol=0, atol=0)


def _airbench_fit(
    cfg: TrainConfig, checkpoint, train: ImageDataset, val: ImageDataset
) -> tuple[torch.nn.Module, object]:
    torch.manual_seed(0)
    model = create_model(ModelConfig(name="airbench_xs", in_chans=1), 10)
    return model, _fit_digits(model, val, cfg, checkpoint, train)


def test_whitening_sees_only_the_training_rows_and_is_reproducible(tmp_path, monkeypatch) -> None:
    """The stem is computed from the fit's own (training) images, never the held-out ones."""
    seen: list[torch.Tensor] = []
    real = cleaner.training.models.smallnets.AirNet.init_from_data

    def spy(self, images):  # type: ignore[no-untyped-def]
        seen.append(images.clone())
        real(self, images)

    monkeypatch.setattr(cleaner.training.models.smallnets.AirNet, "init_from_data", spy)
    images = digits_dataset(300, train=False)
    train = _subset(images, np.arange(200))
    val = _subset(images, np.arange(200, 300))
    cfg = TrainConfig(epochs=1, batch_size=32, workers=0, optimizer="sgd", lr=0.05)
    a, _ = _airbench_fit(cfg, tmp_path / "a.pt", train, val)
    b, _ = _airbench_fit(cfg, tmp_path / "b.pt", train, val)
    assert len(seen) == 2
    torch.testing.assert_close(seen[0], seen[1], rtol=0, atol=0)
    torch.testing.assert_close(a.whiten.weight, b.whiten.weight, rtol=0, atol=0)
    assert not a.whiten.weight.requires_grad
    as_bytes = {_key(x) for x in seen[0]}
    train_rows = {_key(train.normalize(train[i][0][None])[0]) for i in range(len(train))}
    val_rows = {_key(val.normalize(val[i][0][None])[0]) for i in range(len(val))}
    assert as_bytes <= train_rows and not as_bytes & (val_rows - train_rows)
    # A resumed fit keeps its checkpoint's filters: no second look at the data.
    _airbench_fit(cfg, tmp_path / "a.pt", train, val)
    assert len(seen) == 2


def _key(x: torch.Tensor) -> bytes:
    return x.numpy().round(5).tobytes()


def _subset(ds: ImageDataset, rows: np.ndarray) -> ImageDataset:
    assert ds.images is not None
    return ImageDataset(
        [ds.paths[i] for i in rows],
        ds.labels[rows],
        ds.weights[rows],
        ds.transform,
        normalize=ds.normalize,
        in_chans=ds.in_chans,
        images=[ds.images[i] for i in rows],
    )


def test_resume_with_the_small_photo_recipe_equals_an_uninterrupted_fit(
    tmp_path, monkeypatch
) -> None:
    """Whitening, Nesterov SGD with Lookahead, pruning, label smoothing, flip+shift TTA,
    and the CPU's bfloat16 / channels_last paths (train.cpu_amp)."""
    cfg = TrainConfig(
        cpu_amp=True,
        epochs=3,
        batch_size=32,
        workers=0,
        optimizer="sgd",
        lr=0.1,
        scheduler="onecycle",
        label_smoothing=0.2,
        lookahead=True,
        prune_at=0.34,
        tta=True,
        tta_translate=1,
    )
    train, val = digits_dataset(160), digits_dataset(40, train=False)
    straight, r_straight = _airbench_fit(cfg, tmp_path / "straight.pt", train, val)

    import cleaner.training.train as train_module

    real_save = train_module._save_checkpoint
    calls = {"n": 0}

    def save_then_stop(path, state):  # type: ignore[no-untyped-def]
        real_save(path, state)
        calls["n"] += 1
        if calls["n"] == 2:  # killed after epoch 2: pruning (before epoch 2) is behind it
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _airbench_fit(cfg, tmp_path / "killed.pt", train, val)
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    resumed, r_resumed = _airbench_fit(cfg, tmp_path / "killed.pt", train, val)
    assert r_resumed.history == r_straight.history  # type: ignore[attr-defined]
    for (k, x), y in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=k)
    np.testing.assert_array_equal(r_resumed.val_probs, r_straight.val_probs)  # type: ignore[attr-defined]
    state = load_checkpoint(tmp_path / "killed.pt", torch.device("cpu"))
    assert state["keep"].shape == (160,)


@pytest.mark.parametrize(
    ("cpu_amp", "bf16", "amp", "expected"),
    [
        (False, True, True, (False, False)),  # the default: plain float32 on the CPU
        (True, True, True, (True, True)),
        (True, False, True, (False, True)),  # no native bfloat16: float32, channels_last
        (True, True, False, (False, True)),  # train.amp = false is kept
    ],
)
def test_cpu_amp_chooses_the_cpu_paths(cpu_amp, bf16, amp, expected, monkeypatch) -> None:
    import cleaner.training.device as device_module

    monkeypatch.setattr(device_module, "cpu_has_bf16", lambda: bf16)
    cfg = TrainConfig(cpu_amp=cpu_amp, amp=amp)
    cpu = torch.device("cpu")
    assert (
        device_module.uses_amp(cfg, cpu),
        device_module.uses_channels_last(cfg, cpu),
    ) == expected


def test_cpu_amp_trains_and_predicts_in_bfloat16(tmp_path, monkeypatch) -> None:
    import cleaner.training.device as device_module

    monkeypatch.setattr(device_module, "cpu_has_bf16", lambda: True)
    cfg = TrainConfig(epochs=1, batch_size=32, workers=0, cpu_amp=True)
    seen: set[torch.dtype] = set()
    real = torch.nn.Conv2d._conv_forward

    def spy(self, x, weight, bias):  # type: ignore[no-untyped-def]
        out = real(self, x, weight, bias)
        seen.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", spy)
    _, result = _airbench_fit(cfg, tmp_path / "c.pt", digits_dataset(64), digits_dataset(16))
    assert seen == {torch.bfloat16}
    assert result.val_probs.dtype == np.float32  # type: ignore[attr-defined]
    np.testing.assert_allclose(result.val_probs.sum(1), 1.0, atol=1e-5)  # type: ignore[attr-defined]


def test_pruning_drops_mostly_wrong_labels(tmp_path) -> None:
    """train.prune_at: the rows cleanlab flags on the model's own predictions get weight 0."""
    train = digits_dataset(400)
    rng = np.random.default_rng(0)
    flipped = rng.choice(400, size=60, replace=False)
    train.labels[flipped] = (train.labels[flipped] + rng.integers(1, 10, 60)) % 10
    cfg = TrainConfig(
        epochs=6, batch_size=32, workers=0, optimizer="sgd", lr=0.2, prune_at=0.5,
        label_smoothing=0.2,
    )  # fmt: skip
    _, result = _airbench_fit(cfg, tmp_path / "c.pt", train, digits_dataset(40, train=False))
    used = [h["train_rows_used"] for h in result.history]  # type: ignore[attr-defined]
    assert used[:3] == [400] * 3 and used[3] == used[-1] < 400
    keep = load_checkpoint(tmp_path / "c.pt", torch.device("cpu"))["keep"].numpy()
    dropped = np.flatnonzero(keep == 0)
    precision = np.isin(dropped, flipped).mean()
    assert precision > 2 * 60 / 400, (len(dropped), precision)


def test_shift_and_translate_tta(tmp_path) -> None:
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    torch.testing.assert_close(shift(x, 1)[..., 1:, 1:], x[..., :-1, :-1])
    torch.testing.assert_close(shift(x, -1)[..., :-1, :-1], x[..., 1:, 1:])
    cfg = TrainConfig(epochs=1, batch_size=32, workers=0, tta=True, tta_translate=1)
    val = digits_dataset(40, train=False)
    model, result = _airbench_fit(cfg, tmp_path / "c.pt", digits_dataset(64), val)
    cpu = torch.device("cpu")
    both, _ = predict(model, val, batch_size=64, workers=0, device=cpu, tta=True, translate=1)
    flip, _ = predict(model, val, batch_size=64, workers=0, device=cpu, tta=True)
    np.testing.assert_allclose(result.val_probs, both, atol=1e-6)  # type: ignore[attr-defined]
    assert not np.allclose(both, flip, atol=1e-4)
    np.testing.assert_allclose(both.sum(1), 1.0, atol=1e-5)


def test_kwargs_reach_the_model_and_weights_skip_the_data_init(tmp_path) -> None:
    model = create_model(ModelConfig(name="airbench_xs", kwargs={"widths": [8, 16, 24]}), 4)
    assert model.num_features == 24 and model.data_init_pending
    model.init_from_data(torch.randn(8, 3, 16, 16))
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    loaded = create_model(
        ModelConfig(name="airbench_xs", weights=str(path), kwargs={"widths": [8, 16, 24]}), 4
    )
    assert not loaded.data_init_pending
    torch.testing.assert_close(loaded.whiten.weight, model.whiten.weight)
    plain = create_model(ModelConfig(name="airbench_xs", kwargs={"whiten": False}), 4)
    assert not plain.data_init_pending and plain.whiten.weight.requires_grad
    for name in ("resnet10_cifar", "resnet18_cifar"):
        net = create_model(ModelConfig(name=name), 5)
        torch.save(net.state_dict(), path)
        again = create_model(ModelConfig(name=name, weights=str(path)), 5)
        torch.testing.assert_close(again.conv1.weight, net.conv1.weight)


@pytest.mark.slow
def test_a_killed_oof_with_the_small_photo_recipe_resumes_to_the_same_run(
    tmp_path, monkeypatch
) -> None:
    """``oof`` end to end with airbench_xs, Lookahead, pruning and shift TTA: killed after a
    checkpoint of its second fold, run again, it ends byte for byte as an uninterrupted run."""
    from helpers import digits_project, invoke

    import cleaner.training.train as train_module

    train = {
        "folds": 2, "epochs": 3, "optimizer": "sgd", "lr": 0.1, "scheduler": "onecycle",
        "label_smoothing": 0.2, "lookahead": True, "prune_at": 0.34, "tta": True,
        "tta_translate": 1,
    }  # fmt: skip
    _, pipeline = digits_project(
        tmp_path, epochs=3, model={"name": "airbench_xs"}, train=train, data={"image_size": 16}
    )
    invoke("oof", str(pipeline), "--out", str(tmp_path / "straight"), "--quiet")
    real_save = train_module._save_checkpoint
    saves = {"n": 0}

    def save_then_stop(path, state):  # type: ignore[no-untyped-def]
        real_save(path, state)
        saves["n"] += 1
        if saves["n"] == 5:  # fold 0's three epochs, then two of fold 1's
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "_save_checkpoint", save_then_stop)
    from typer.testing import CliRunner

    from cleaner.cli import app

    killed = tmp_path / "killed"
    result = CliRunner().invoke(app, ["oof", str(pipeline), "--out", str(killed), "--quiet"])
    assert result.exit_code != 0 and not (killed / "oof.csv").exists()
    assert (killed / "fold-1" / "checkpoint.pt").exists()
    monkeypatch.setattr(train_module, "_save_checkpoint", real_save)
    invoke("oof", str(pipeline), "--out", str(killed), "--quiet")
    straight = tmp_path / "straight"
    for name in ("oof.csv", "folds.csv"):
        assert (killed / name).read_bytes() == (straight / name).read_bytes(), name
