"""cleaner.core.config: defaults, TOML files, ``--set`` overrides, round trips and digests."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from helpers import REPO

from cleaner.core.config import (
    CHOICES,
    SHIPPED,
    AugmentConfig,
    DataConfig,
    PipelineConfig,
    TrainConfig,
    build_config,
    load_config,
    parse_override,
    resolve_pipeline,
    shipped_pipelines,
)
from cleaner.core.errors import InputError

PIPELINE = """
[data]
manifest = "data_manifests/digits.csv"
classes = ["0", "1", "2"]
image_size = [16, 24]
mean = [0.5]
std = [0.25]

[model]
name = "test_resnet"
in_chans = 1

[train]
folds = 3
lr = 1
optimizer = "sgd"

[[augment.train]]
name = "Affine"
rotate = [-10, 10]
p = 0.5
"""


def reasons(e: pytest.ExceptionInfo[InputError]) -> list[str]:
    return [p.reason for p in e.value.problems]


# --- defaults ----------------------------------------------------------------------------


def test_empty_file_gives_the_defaults():
    cfg = build_config({})
    assert cfg == PipelineConfig()
    assert cfg.model.name == "resnet18"
    assert cfg.model.pretrained is False
    assert cfg.model.in_chans == 3
    assert cfg.train.folds == 5
    assert cfg.train.epochs == 10
    assert cfg.train.lr == 1e-3
    assert cfg.train.optimizer == "adamw"
    assert cfg.train.loss == "ce"
    assert cfg.train.seed == 42
    assert cfg.data.classes == ()
    assert cfg.data.image_size == 224
    assert cfg.data.hw == (224, 224)
    assert cfg.data.check_images is True
    assert cfg.flag.top == 200
    assert cfg.submission.label_format == "name"


def test_defaults_are_valid_choices():
    cfg = PipelineConfig()
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) in choices


def test_sections_are_frozen():
    cfg = PipelineConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]


def test_file_holds_only_overrides(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE)
    cfg = load_config(path)
    assert cfg.data.manifest == "data_manifests/digits.csv"
    assert cfg.data.classes == ("0", "1", "2")
    assert cfg.data.image_size == (16, 24)
    assert cfg.data.hw == (16, 24)
    assert cfg.data.mean == (0.5,)
    assert cfg.model == dataclasses.replace(PipelineConfig().model, name="test_resnet", in_chans=1)
    assert cfg.train.folds == 3
    assert cfg.train.lr == 1.0
    assert isinstance(cfg.train.lr, float)  # an int where a float is due becomes a float
    assert cfg.train.optimizer == "sgd"
    assert cfg.train.epochs == TrainConfig().epochs  # untouched keys keep their defaults
    assert cfg.augment.train == ({"name": "Affine", "rotate": [-10, 10], "p": 0.5},)
    assert cfg.augment.eval == ()
    assert cfg.flag == PipelineConfig().flag


def test_replace():
    cfg = PipelineConfig().replace("train", epochs=3, lr=0.1)
    assert (cfg.train.epochs, cfg.train.lr) == (3, 0.1)
    assert cfg.data == DataConfig()
    assert PipelineConfig().train.epochs == 10


# --- overrides ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train.lr=0.01", ("train", "lr", 0.01)),
        ("train.epochs=3", ("train", "epochs", 3)),
        ("train.amp=false", ("train", "amp", False)),
        ('data.classes=["a","b"]', ("data", "classes", ["a", "b"])),
        ("model.name=resnet18", ("model", "name", "resnet18")),
        ('model.name="resnet18"', ("model", "name", "resnet18")),
        ("data.manifest=data/x.v2.csv", ("data", "manifest", "data/x.v2.csv")),
        (" train.epochs = 3 ", ("train", "epochs", 3)),
        ("data.image_size=[16, 24]", ("data", "image_size", [16, 24])),
        ("model.weights=", ("model", "weights", "")),
        ("data.manifest=a=b.csv", ("data", "manifest", "a=b.csv")),
        # text keys take bare values that TOML would read as numbers or booleans
        ("model.name=inf", ("model", "name", "inf")),
        ("data.group=1990", ("data", "group", "1990")),
        ("data.manifest=true", ("data", "manifest", "true")),
        ('data.group="1990"', ("data", "group", "1990")),
        # float keys take what Python reads as a float
        ("train.lr=.01", ("train", "lr", 0.01)),
        ("train.lr=1e-3", ("train", "lr", 0.001)),
    ],
)
def test_parse_override(text, expected):
    section, key, value = parse_override(text)
    assert (section, key, value) == expected
    assert type(value) is type(expected[2])


@pytest.mark.parametrize("text", ["train.epochs", "epochs=3", "train.=3", "=3", ""])
def test_parse_override_needs_section_key_value(text):
    with pytest.raises(InputError, match=r"expected section\.key=value"):
        parse_override(text)


def test_overrides_are_applied_and_typed(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE)
    cfg = load_config(
        path,
        [
            "train.lr=0.01",
            'data.classes=["a","b"]',
            "model.name=resnet18",
            "train.epochs=2",
            "flag.top=5",
            "data.image_size=32",
        ],
    )
    assert cfg.train.lr == 0.01
    assert cfg.data.classes == ("a", "b")
    assert cfg.model.name == "resnet18"
    assert cfg.train.epochs == 2
    assert cfg.flag.top == 5
    assert cfg.data.image_size == 32
    assert cfg.data.hw == (32, 32)
    # Keys the overrides did not name keep the file's values.
    assert cfg.train.folds == 3
    assert cfg.model.in_chans == 1


def test_later_override_wins(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE)
    assert load_config(path, ["train.epochs=2", "train.epochs=7"]).train.epochs == 7


def test_override_adds_a_section(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("")
    assert load_config(path, ["flag.method=normalized_margin"]).flag.method == "normalized_margin"


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("train.epochs=x", "train.epochs: expected int, got 'x'"),
        ("train.epochs=2.5", "train.epochs: expected int, got 2.5"),
        ("train.epochs=true", "train.epochs: expected int, got True"),
        ("train.lr=fast", "train.lr: expected float, got 'fast'"),
        ("data.classes=a", "data.classes: expected a list, got 'a'"),
        ("data.image_size=[1, 2, 3]", "data.image_size: [1, 2, 3] is not a valid"),
        ("train.optimizer=adam2", "train.optimizer = 'adam2'; choose one of adamw, sgd"),
        ("train.epochs=0", "train.epochs must be at least 1"),
        ("train.folds=1", "train.folds must be at least 2 for out-of-fold predictions"),
        ("train.epoch=3", "unknown key train.epoch; known: folds, epochs,"),
        ("trian.epochs=3", "unknown section [trian]; known: data, model, train,"),
        # trainer features under label noise (#14)
        ("train.mixup=-0.2", "train.mixup = -0.2: must be >= 0"),
        ("train.cutmix=-1", "train.cutmix = -1.0: must be >= 0"),
        ("train.mix_prob=1.5", "train.mix_prob = 1.5: must be >= 0 and <= 1"),
        ("train.mix_switch_prob=-0.1", "train.mix_switch_prob = -0.1: must be >= 0 and <= 1"),
        ("train.ema=1", "train.ema = 1.0: must be >= 0 and < 1"),
        ("train.ema=-0.5", "train.ema = -0.5: must be >= 0 and < 1"),
        ("train.ema_warmup=2", "train.ema_warmup: expected bool, got 2"),
        ("train.tta=1", "train.tta: expected bool, got 1"),
        ("train.gce_q=0", "train.gce_q = 0.0: must be > 0 and <= 1"),
        ("train.gce_q=1.5", "train.gce_q = 1.5: must be > 0 and <= 1"),
        ("train.sce_alpha=-1", "train.sce_alpha = -1.0: must be >= 0"),
        ("train.sce_beta=-0.1", "train.sce_beta = -0.1: must be >= 0"),
        ("train.loss=mae", "train.loss = 'mae'; choose one of ce, focal, gce, sce"),
    ],
)
def test_bad_override(tmp_path, override, reason):
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE)
    with pytest.raises(InputError) as e:
        load_config(path, [override])
    assert any(r.startswith(reason) for r in reasons(e)), reasons(e)
    assert {p.file for p in e.value.problems} == {str(path)}


# --- checks on the file ------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="pipeline file not found"):
        load_config(tmp_path / "nope.toml")


def test_missing_file_names_the_shipped_pipelines(tmp_path):
    with pytest.raises(InputError, match=r"shipped, by name: .*photos"):
        load_config(tmp_path / "nope.toml")


def test_shipped_pipeline_by_name(tmp_path, monkeypatch):
    # An installed cleaner has no pipelines/ folder beside the user's data.
    monkeypatch.chdir(tmp_path)
    assert {"digits", "photos", "photos-gpu"} <= set(shipped_pipelines())
    assert resolve_pipeline("photos") == SHIPPED / "photos.toml"
    assert load_config("photos", ["train.epochs=2"]).train.epochs == 2
    assert load_config("photos") == load_config(SHIPPED / "photos.toml")


def test_a_local_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").write_text("[train]\nepochs = 3\n")
    assert resolve_pipeline("photos") == Path("photos")
    assert load_config("photos").train.epochs == 3
    (tmp_path / "photos").unlink()
    (tmp_path / "photos").mkdir()  # the user's images, say: never a pipeline
    assert resolve_pipeline("photos") == SHIPPED / "photos.toml"


@pytest.mark.parametrize("name", ["photos.toml", "pipelines/photos", "nope"])
def test_only_a_bare_name_means_a_shipped_pipeline(tmp_path, monkeypatch, name):
    # A name with a suffix or a folder is a path: a typo is an error, not a shipped file.
    monkeypatch.chdir(tmp_path)
    assert resolve_pipeline(name) == Path(name)
    with pytest.raises(InputError, match="pipeline file not found"):
        load_config(name)


def test_not_toml(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("[train\nepochs = 3\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(path)


def test_every_problem_is_reported(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        "[extra]\nx = 1\n[train]\nepoch = 3\nlr = 'big'\n[model]\nname = 3\n[flag]\ntop = 'all'\n"
    )
    with pytest.raises(InputError) as e:
        load_config(path)
    assert reasons(e) == [
        "unknown section [extra]; known: data, model, train, augment, flag, submission",
        "unknown key train.epoch; known: "
        + ", ".join(f.name for f in dataclasses.fields(TrainConfig)),
        "train.lr: expected float, got 'big'",
        "model.name: expected str, got 3",
        "flag.top: expected int, got 'all'",
    ]


def test_every_bad_value_is_reported():
    raw = {
        "train": {"optimizer": "adam2", "scheduler": "linear", "loss": "hinge", "grad_accum": 0},
        "data": {"image_size": [0, 8], "mean": [0.5], "classes": ["a", "a"]},
        "flag": {"method": "margin", "top": 0},
        "submission": {"label_format": "onehot"},
        "augment": {"train": [{"p": 0.5}]},
    }
    with pytest.raises(InputError) as e:
        build_config(raw, file="p.toml")
    got = reasons(e)
    for expected in [
        "train.optimizer = 'adam2'; choose one of adamw, sgd",
        "train.scheduler = 'linear'; choose one of cosine, step, plateau, onecycle, constant",
        "train.loss = 'hinge'; choose one of ce, focal",
        "flag.method = 'margin'; choose one of",
        "submission.label_format = 'onehot'; choose one of name, index",
        "train.grad_accum must be at least 1",
        "flag.top must be at least 1",
        "data.image_size must be positive",
        "data.mean and data.std must have the same length",
        "data.classes has duplicates",
        "augment.train[0] needs a name",
    ]:
        assert any(r.startswith(expected) for r in got), (expected, got)
    assert len(got) == 11
    assert {p.file for p in e.value.problems} == {"p.toml"}


def test_section_must_be_a_table(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("train = 3\n")
    with pytest.raises(InputError, match=r"\[train\] must be a table"):
        load_config(path)
    # An override into a section that is not a table is the same error, not a crash.
    with pytest.raises(InputError, match=r"\[train\] must be a table"):
        load_config(path, ["train.epochs=3"])


# --- round trip and digest ---------------------------------------------------------------


def configs() -> list[PipelineConfig]:
    return [
        PipelineConfig(),
        build_config(tomllib.loads(PIPELINE)),
        build_config(
            {
                "data": {"classes": ["x", "y"], "group": "person", "cache": True},
                "train": {"loss": "focal", "label_smoothing": 0.1, "device": "cpu"},
                "augment": {
                    "resize": False,
                    "eval": [{"name": "CenterCrop", "height": 8, "width": 8}],
                },
            }
        ),
    ]


@pytest.mark.parametrize("cfg", configs())
def test_toml_round_trip(cfg):
    text = cfg.to_toml()
    back = build_config(tomllib.loads(text))
    assert back == cfg
    assert back.to_toml() == text
    assert back.digest() == cfg.digest()


def test_resolved_toml_names_every_key():
    raw = tomllib.loads(PipelineConfig().to_toml())
    for section, cls in [("data", DataConfig), ("train", TrainConfig), ("augment", AugmentConfig)]:
        assert set(raw[section]) == {f.name for f in dataclasses.fields(cls)}


def test_digest_changes_when_a_key_changes():
    base = PipelineConfig()
    assert base.digest() == PipelineConfig().digest()
    assert len(base.digest()) == 64
    changed = [
        base.replace("train", epochs=11),
        base.replace("train", lr=0.002),
        base.replace("data", classes=("a", "b")),
        base.replace("data", classes=("b", "a")),  # class order matters
        base.replace("model", name="resnet34"),
        base.replace("augment", train=({"name": "HorizontalFlip"},)),
    ]
    digests = {c.digest() for c in changed}
    assert base.digest() not in digests
    assert len(digests) == len(changed)


def test_digest_ignores_how_a_value_was_written(tmp_path):
    # 1e-3, 0.001 and an override all resolve to the same run.
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("[train]\nlr = 1e-3\nepochs = 10\n")
    b.write_text("# defaults\n")
    assert load_config(a).digest() == load_config(b).digest()
    assert load_config(b, ["train.lr=0.001"]).digest() == load_config(b).digest()
    assert load_config(b, ["train.lr=0.002"]).digest() != load_config(b).digest()


# --- trainer features under label noise (#14) ----------------------------------------------


def test_trainer_features_are_off_by_default():
    t = TrainConfig()
    assert (t.mixup, t.cutmix, t.ema, t.tta, t.ema_warmup) == (0.0, 0.0, 0.0, False, False)
    assert (t.mix_prob, t.mix_switch_prob) == (1.0, 0.5)  # timm's Mixup defaults
    assert (t.gce_q, t.sce_alpha, t.sce_beta) == (0.7, 0.1, 1.0)  # the papers' settings


def test_trainer_feature_combinations(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(PIPELINE)
    with pytest.raises(InputError) as e:
        load_config(path, ["train.loss=focal", "train.cutmix=1.0"])
    assert reasons(e) == [
        "train.loss = 'focal' takes class labels, but train.mixup and train.cutmix make "
        "soft targets: use ce, gce or sce with them"
    ]
    with pytest.raises(InputError) as e:
        load_config(path, ["train.loss=sce", "train.sce_alpha=0", "train.sce_beta=0"])
    assert reasons(e) == ["train.sce_alpha and train.sce_beta cannot both be 0"]
    # the edges of each range, and the robust losses with mixing, are accepted
    cfg = load_config(
        path,
        [
            "train.loss=gce",
            "train.gce_q=1",
            "train.mixup=0.2",
            "train.cutmix=1",
            "train.mix_prob=0",
            "train.mix_switch_prob=1",
            "train.ema=0.999",
            "train.ema_warmup=true",
            "train.tta=true",
        ],
    )
    assert (cfg.train.gce_q, cfg.train.mixup, cfg.train.ema) == (1.0, 0.2, 0.999)
    assert load_config(path, ["train.loss=sce", "train.mixup=0.4", "train.sce_alpha=0"])


def test_keys_added_later_leave_run_folder_names_alone() -> None:
    """A pipeline that uses none of LATER_KEYS hashes as it did before they existed:
    its run folders keep their names and older run folders resume."""

    from cleaner.core.config import LATER_KEYS

    shipped = REPO / "cleaner" / "pipelines" / "digits.toml"
    cfg = load_config(shipped)
    text = cfg.to_toml(canonical=True)

    def written(key: str, toml: str) -> bool:  # a value, or a table (model.kwargs)
        return f"\n{key.split('.')[1]} =" in toml or f"[{key}]" in toml

    assert not any(written(key, text) for key in LATER_KEYS)
    assert all(written(key, cfg.to_toml()) for key in LATER_KEYS)
    # The digest the shipped digits pipeline had before train.mixup, train.ema, ... .
    assert cfg.digest()[:12] == "cfa1e9eac69c"
    used = cfg.replace("train", ema=0.99, tta=True)
    assert "ema = 0.99" in used.to_toml(canonical=True)
    assert used.digest() != cfg.digest()


def test_an_older_run_folder_without_the_later_keys_resumes(tmp_path):
    from cleaner.training.run_plan import init_records

    cfg = PipelineConfig()
    manifest = tmp_path / "m.csv"
    manifest.write_text("sample_id,path,label,split,weight\n")
    old = tmp_path / "run"
    old.mkdir()
    (old / "config.toml").write_text(cfg.to_toml(canonical=True))  # as older versions wrote
    init_records(old, cfg, "0" * 64, manifest)
    assert (old / "config.toml").read_text() == cfg.to_toml(canonical=True)  # kept as it was
    with pytest.raises(InputError, match="different config"):
        init_records(old, cfg.replace("train", ema=0.9), "0" * 64, manifest)
