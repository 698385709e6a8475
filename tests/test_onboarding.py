"""A new user's path: the CLI's papercuts and a project folder that can move (#16)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import assert_says, invoke, write_csv, write_pipeline, write_png
from typer.testing import CliRunner

from cleaner.cli import WORKFLOW, app


def test_version() -> None:
    from importlib.metadata import version

    out = invoke("--version")
    assert out.strip() == f"cleaner {version('cleaner')}"


def test_commands_are_listed_in_workflow_order() -> None:
    out = invoke("--help")
    words = [line.split() for line in out.splitlines() if line.startswith("│ ")]
    listed = [w[1] for w in words if len(w) > 1 and w[1] in (*WORKFLOW, "demo", "synth")]
    loop = [n for n in listed if n in WORKFLOW]
    assert loop == sorted(loop, key=WORKFLOW.index)
    assert listed[: len(loop)] == loop  # demo and synth come after the loop


@pytest.mark.parametrize(
    "args",
    [
        ["oof", "{pipeline}", "--set", "train.epoch=3"],
        ["retrain", "{pipeline}", "--set", "train.epoch=3"],
        ["flag", "run", "--set", "flag.topp=3"],
    ],
)
def test_a_set_typo_is_refused_before_torch_loads(tmp_path: Path, args: list[str]) -> None:
    pipeline = write_pipeline(tmp_path)
    argv = [a.format(pipeline=pipeline) for a in args]
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cleaner.cli import app\n"
        f"r = CliRunner().invoke(app, {argv!r})\n"
        "print(r.exit_code, 'torch' in sys.modules)\n"
        "print(r.output)\n"
    )
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    first, _, output = result.stdout.partition("\n")
    assert first == "2 False", result.stdout + result.stderr
    assert_says(output, "unknown key")


def _project(root: Path) -> Path:
    """A tiny project whose every path is relative: images, digits.csv, pipeline.toml."""
    rows = []
    for j, c in enumerate("ab"):
        for i in range(4):
            path = write_png(root / "images" / f"{c}{i}.png", value=60 * j + 9 * i)
            rows.append({"path": path.relative_to(root).as_posix(), "label": c})
    rows.append({"path": write_png(root / "images" / "t0.png", value=33).relative_to(root)
                 .as_posix(), "label": "", "split": "test"})  # fmt: skip
    write_csv(root / "digits.csv", rows)
    pipeline = write_pipeline(root, manifest="digits.csv")
    pipeline.write_text(pipeline.read_text().replace(str(root / "digits.csv"), "digits.csv"))
    return pipeline


def test_a_copied_project_works_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """oof in the project; then the project is copied, and flag, apply and retrain run on
    the copy from its parent folder."""
    original = tmp_path / "original"
    _project(original)
    monkeypatch.chdir(original)
    invoke("oof", "pipeline.toml", "--out", "runs/oof", "-q")
    record = (original / "runs" / "oof" / "manifest.sha256").read_text()
    assert record.split("  ", 1)[1].strip() == "../../digits.csv"  # relative to the run

    copy = tmp_path / "elsewhere" / "project"
    shutil.copytree(original, copy)
    shutil.rmtree(original)  # nothing may still point there
    monkeypatch.chdir(tmp_path / "elsewhere")
    invoke("flag", "project/runs/oof", "--force", "-q")
    queue_csv = copy / "runs" / "oof" / "queue.csv"
    queue = pd.read_csv(queue_csv, dtype=str, keep_default_na=False)
    queue.loc[0, "decision"] = "drop"
    queue.to_csv(queue_csv, index=False)
    invoke("apply", str(queue_csv.relative_to(tmp_path / "elsewhere")))
    assert (copy / "digits.v2.csv").exists()
    result = CliRunner().invoke(
        app,
        ["retrain", "project/pipeline.toml", "--queue", "project/runs/oof/queue.csv",
         "--out", "project/runs/final", "--no-baselines", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (copy / "runs" / "final" / "submission.csv").exists()
    record = (copy / "runs" / "final" / "manifest.sha256").read_text()
    assert record.split("  ", 1)[1].strip() == "../../digits.v2.csv"


# --- cleaner init ----------------------------------------------------------------------


@pytest.mark.slow
def test_init_on_the_digits_manifest_gives_a_pipeline_oof_runs_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # 30% of the digits as train rows: init's pipeline trains on them as it is written.
    invoke("ingest", "digits", "images", "--manifest", "digits.csv", "--test-fraction", "0.7")
    out = invoke("init", "digits.csv", "--cpu")
    assert_says(out, "wrote pipelines/digits.toml for the CPU")
    from cleaner.core.config import load_config

    cfg = load_config("pipelines/digits.toml")
    assert cfg.data.classes == tuple(str(d) for d in range(10))
    assert cfg.model.in_chans == 1 and cfg.data.image_size == 32 and len(cfg.data.mean) == 1
    invoke("oof", "pipelines/digits.toml", "--out", "run", "-q")
    metrics = __import__("json").loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["overall"]["accuracy"] > 0.5  # far above 1 in 10: a model that learned


def test_init_for_a_gpu_picks_a_pretrained_backbone(tmp_path: Path) -> None:
    _project(tmp_path)
    invoke("init", str(tmp_path / "digits.csv"), "--gpu", "--out", str(tmp_path / "g.toml"))
    text = (tmp_path / "g.toml").read_text()
    assert "downloads its weights on first use" in text
    from cleaner.core.config import build_config

    cfg = build_config(__import__("tomllib").loads(text))
    assert cfg.model.pretrained and cfg.data.mean == () and cfg.data.image_size == 224
    assert cfg.train.folds == 4  # the smallest class has 4 train rows


def test_init_from_a_folder_ingests_it_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for c in ("cat", "dog"):
        for i in range(3):
            path = tmp_path / "photos" / c / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = __import__("numpy").full((40, 30, 3), 50 * i, dtype="uint8")
            __import__("PIL.Image", fromlist=["x"]).fromarray(pixels).save(path)
    monkeypatch.chdir(tmp_path)
    out = invoke("init", "photos", "--cpu")
    assert_says(out, "wrote data_manifests/photos.csv", "wrote pipelines/photos.toml")
    from cleaner.core.config import load_config

    cfg = load_config("pipelines/photos.toml")
    assert cfg.data.classes == ("cat", "dog") and cfg.model.in_chans == 3
    assert cfg.data.image_size == 32 and cfg.train.folds == 3
    # Small colour photos on the CPU: the shipped photos recipe, its shifts scaled to 32 px.
    shipped = load_config("photos")
    assert cfg.model.name == shipped.model.name and cfg.train.lr == shipped.train.lr
    assert cfg.train.cpu_amp == shipped.train.cpu_amp
    assert [t["name"] for t in cfg.augment.train] == ["HorizontalFlip", "PadIfNeeded", "RandomCrop"]
    assert cfg.augment.train[1]["min_height"] == 36


def test_init_never_replaces_a_pipeline(tmp_path: Path) -> None:
    _project(tmp_path)
    target = tmp_path / "p.toml"
    target.write_text("# mine\n")
    result = CliRunner().invoke(app, ["init", str(tmp_path / "digits.csv"), "--out", str(target)])
    assert result.exit_code == 2 and "already exists" in result.output
    assert target.read_text() == "# mine\n"


# --- the Python API --------------------------------------------------------------------


@pytest.mark.slow
def test_the_readme_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("<!-- api-example:start -->", 1)[1].split("<!-- api-example:end -->")[0]
    code = block.split("```python\n", 1)[1].rsplit("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # our own README's example
    assert (tmp_path / "digits.v2.csv").exists()
    assert (tmp_path / "runs" / "final" / "report.md").exists()


def test_find_label_issues_takes_arrays_and_checks_they_line_up(tmp_path: Path) -> None:
    import numpy as np

    import cleaner.api as cl

    _project(tmp_path)
    manifest = tmp_path / "digits.csv"
    probs = np.tile([0.9, 0.1], (8, 1))  # every row looks like class a
    queue = cl.find_label_issues(manifest, probs, classes=["a", "b"], top=3)
    assert list(queue["given_label"]) == ["b", "b", "b"]
    assert set(queue["suggested_label"]) == {"a"}
    with pytest.raises(cl.InputError, match="expected \\(8, 2\\)"):
        cl.find_label_issues(manifest, probs[:5], classes=["a", "b"])
    with pytest.raises(cl.InputError, match=r"label 'a' of 'images/b0\.png' is not the manifest's"):
        cl.find_label_issues(manifest, probs, classes=["a", "b"], labels=np.zeros(8, int))


def test_api_ingest_digits_takes_the_commands_noise_options(tmp_path: Path) -> None:
    import cleaner.api as cl

    manifest = cl.ingest_digits(
        tmp_path / "images", tmp_path / "d.csv", noise=0.1, noise_kind="pairs", test_fraction=0
    )
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert set(df["split"]) == {"train"}  # no test rows held out
    wrong = df[df["label"] != df["true_label"]]
    assert len(wrong) == round(0.1 * len(df))
    # pairs: every flipped digit moved to the next class
    assert ((wrong["true_label"].astype(int) + 1) % 10 == wrong["label"].astype(int)).all()


# --- honest, visual reports --------------------------------------------------------------


@pytest.mark.slow
def test_reports_give_intervals_and_pictures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    _project(tmp_path)
    rows = pd.read_csv(tmp_path / "digits.csv", dtype=str, keep_default_na=False)
    rows["true_label"] = rows["label"]
    for i, c in enumerate("abab"):  # four test rows that know their class
        path = write_png(tmp_path / "images" / f"x{i}.png", value=5 + 60 * (c == "b") + i)
        extra = {"path": path.relative_to(tmp_path).as_posix(), "label": "", "split": "test",
                 "true_label": c}  # fmt: skip
        rows = pd.concat([rows, pd.DataFrame([extra])], ignore_index=True)
    rows = rows[rows["path"] != "images/t0.png"]
    (tmp_path / "digits.csv").unlink()
    rows.to_csv(tmp_path / "digits.csv", index=False)
    monkeypatch.chdir(tmp_path)
    invoke("oof", "pipeline.toml", "--out", "runs/oof", "-q")
    invoke("flag", "runs/oof", "--force", "-q")
    png = tmp_path / "runs" / "oof" / "noise_matrix.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and min(im.size) > 100
    assert 'href="noise_matrix.png"' in (tmp_path / "runs" / "oof" / "queue.html").read_text()

    out = invoke("retrain", "pipeline.toml", "--oof", "runs/oof", "--out", "runs/final", "-q")
    assert_says(out, "95% interval, paired bootstrap")
    report = (tmp_path / "runs" / "final" / "report.md").read_text()
    assert "95% interval" in report and "paired percentile bootstrap" in report
    assert "## Cross-validated" in report and "## Test rows" in report  # two tables
    if "too small to measure" not in report:
        assert "Cleaning recovered" in report
    for name in ("noise_matrix.png", "per_class_f1.png"):
        assert f"]({name})" in report
        with Image.open(tmp_path / "runs" / "final" / name) as im:
            im.verify()
            assert im.format == "PNG"


def test_apply_review_and_label_studio_load_no_model_code() -> None:
    """What `cleaner apply`, `review` and Label Studio's commands import loads neither torch,
    cleanlab nor scikit-learn: they start in a moment, on any machine."""
    code = (
        "import sys\n"
        "import cleaner.cli, cleaner.review.apply, cleaner.review.server\n"
        "import cleaner.review.labelstudio_export, cleaner.review.labelstudio_import\n"
        "print(sorted(m for m in ('torch', 'cleanlab', 'sklearn', 'timm') if m in sys.modules))\n"
    )
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_command_and_option_is_in_the_readme() -> None:
    import typer

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()

    def commands(cmd, path):  # type: ignore[no-untyped-def]
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from commands(sub, [*path, name])
        else:
            yield path, cmd

    missing = []
    for path, cmd in commands(typer.main.get_command(app), []):
        name = "cleaner " + " ".join(path)
        if name not in readme:
            missing.append(name)
        for param in cmd.params:
            spellings = [o for o in [*param.opts, *param.secondary_opts] if o.startswith("--")]
            if spellings and "--help" not in spellings and not any(o in readme for o in spellings):
                missing.append(f"{name} {spellings[0]}")
    assert missing == []


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the CLI (``("ingest", "digits")``, ...)."""
    import click

    ctx = click.Context(group)
    found = []
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        found.append((*prefix, name))
        if hasattr(sub, "list_commands"):
            found += _commands(sub, (*prefix, name))
    return found


def test_no_help_page_shows_a_type_beside_a_flag() -> None:
    """A flag (``--help``, ``--force``) takes no value: the help shows no ``<bool>``."""
    from typer.main import get_command

    commands = _commands(get_command(app))
    assert ("ingest", "digits") in commands and ("status",) in commands
    for path in [(), *commands]:
        out = invoke(*path, "--help")
        assert "<bool>" not in out, (path, out)
