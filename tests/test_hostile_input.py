"""Input a hostile or careless user gives: every case is refused cleanly, nothing runs,
nothing is half-written.

Each test asserts the documented exit code (2), no traceback, a message naming
the file, key or line and the reason, and the files on disk unchanged. The
cases are those of issue #17, by its numbers; the ones that live beside the
code they test are named here so that this list is complete:

1. crafted ``checkpoint.pt`` and ``oof.npz`` (here: the payload must not run)
2. ids differing by spaces: here (oof, ingest); ``test_apply``: a padded queue id
   matches the one manifest id, manifest ids colliding after trimming
3. apply's commit point: ``test_apply`` (a kill between the log and the version, an
   unreviewed queue writes nothing, all-keep logs without a version);
   ``test_kill_loop`` (kill -9 at seeded moments)
4. ``retrain --queue`` resumes: ``test_kill_loop``, ``test_retrain``
5. a refused command leaves no run folder that refuses the corrected one: here
6. pipeline values: here
7. images decoded as training decodes them: here
8. file modes under the umask: ``test_file_modes``
9. write errors (injected ``OSError``: CI runs as root): here
10. ``oof.csv`` cross-checked against the manifest and ``folds.csv``: here
11. weights and factors in a finite range: here
12. the review server serves only the manifest's images, deep JSON is a 400:
    ``test_review_server``
13. a truncated checkpoint, orphan temporary files, duplicate ids at ingest, a
    latin-1 manifest, ``retrain --manifest`` with quotes: here
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import TinyProject, flat, invoke, snapshot, write_csv, write_pipeline, write_png
from PIL import Image
from typer.testing import CliRunner

from cleaner.cli import app
from cleaner.core.atomic import remove_orphans, write_text
from cleaner.formats.manifest import MAX_WEIGHT


def refused(*args: str, root: Path | None = None) -> str:
    """Run the CLI on bad input: exit 2, no traceback, and (``root``) no file changed.

    Returns the output without whitespace (rich wraps long lines).
    """
    before = snapshot(root) if root is not None else None
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "Traceback" not in result.output
    if root is not None:
        assert snapshot(root) == before, "a refused command changed files"
    return flat(result.output)


def oof_refused(project: TinyProject, *sets: str) -> str:
    """``cleaner oof`` with ``--set`` overrides, refused before its run folder exists."""
    run = project.root / "run"
    args = [a for s in sets for a in ("--set", s)]
    out = refused("oof", str(project.pipeline), "--out", str(run), "-q", *args, root=project.root)
    assert not run.exists()
    return out


# --- 1. a run folder is data, never code -----------------------------------------------


class Payload:
    """Unpickling this creates ``marker``: the test fails if that file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _fold_1_trained(p: TinyProject) -> tuple[Path, Path]:
    """The run folder with fold 1 trained and fold 0 not (its folder made), and the
    file a payload would create."""
    run = p.root / "run"
    invoke("oof", str(p.pipeline), "--out", str(run), "--fold", "1", "-q")
    (run / "fold-0").mkdir(parents=True, exist_ok=True)
    return run, p.root / "pwned"


def test_crafted_checkpoint_is_refused_and_runs_nothing(tiny_project: TinyProject) -> None:
    p = tiny_project
    run, marker = _fold_1_trained(p)
    checkpoint = run / "fold-0" / "checkpoint.pt"
    torch.save({"epoch": 1, "model": Payload(marker)}, checkpoint)
    out = refused("oof", str(p.pipeline), "--out", str(run), "--fold", "0", "-q", root=p.root)
    assert not marker.exists(), "the checkpoint's payload ran"
    assert flat(str(checkpoint)) in out and "loadssafely" in out


def test_crafted_fold_output_is_refused_and_runs_nothing(tiny_project: TinyProject) -> None:
    p = tiny_project
    run, marker = _fold_1_trained(p)
    fold_out = run / "fold-0" / "oof.npz"
    (run / "fold-0" / "metrics.json").write_text("{}")
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(marker)
    with open(fold_out, "wb") as f:
        np.savez(f, sample_id=payload, probs=np.zeros((1, 2)), embeddings=np.zeros((1, 4)))
    out = refused("oof", str(p.pipeline), "--out", str(run), "-q", root=p.root)
    assert not marker.exists(), "the fold output's payload ran"
    assert flat(str(fold_out)) in out and "readssafely" in out


def test_the_checkpoint_training_writes_loads_safely(tmp_path: Path) -> None:
    """The best epoch's arrays travel as tensors, so weights_only=True reads them back."""
    from cleaner.training.train import _best_to_tensors, _save_checkpoint, load_checkpoint

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


# --- 2. ids are compared exactly ---------------------------------------------------------


def test_ids_that_differ_only_by_spaces_are_refused_at_oof_and_ingest(
    tiny_project: TinyProject,
) -> None:
    rows = [dict(r, sample_id=f"id{i}") for i, r in enumerate(tiny_project.rows)]
    rows[3]["sample_id"] = "id0 "
    tiny_project.rewrite_manifest(rows)
    out = oof_refused(tiny_project)
    assert "line5" in out and "'id0'(line2)onlybyspaces" in out
    table = tiny_project.root / "table.csv"
    tiny_project.manifest.rename(table)
    out = refused(
        "ingest", "csv", str(table), "--path-col", "path", "--label-col", "label",
        "--id-col", "sample_id", "--manifest", str(tiny_project.root / "m.csv"),
        root=tiny_project.root,
    )  # fmt: skip
    assert "onlybyspaces" in out


# --- 5. a refused command leaves nothing that refuses the corrected one ----------------


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("model.name=no_such_net", "timmhasnomodelnamed'no_such_net'"),
        ('augment.train=[{name="NoSuchTransform"}]', "notransformnamed'NoSuchTransform'"),
        ('augment.train=[{name="HorizontalFlip", p="often"}]', "HorizontalFlip"),
        ("data.std=[0]", "data.stdvaluesmustbepositive"),
        ("data.mean=[0.5,0.5,0.5]", "model.in_chansis1"),
    ],
)
def test_refused_before_the_run_folder_is_made(
    tiny_project: TinyProject, override: str, reason: str
) -> None:
    run = tiny_project.root / "run"
    extra = ["data.std=[0.5,0.5,0.5]"] if "mean=[0.5,0.5,0.5]" in override else []
    assert reason in oof_refused(tiny_project, override, *extra)
    # The corrected command runs in the same folder.
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "-q")
    assert (run / "oof.csv").exists()


def test_an_undecodable_image_refuses_before_the_run_folder_is_made(
    tiny_project: TinyProject,
) -> None:
    tiny_project.images[2].write_bytes(b"not an image at all")
    out = oof_refused(tiny_project)
    assert "line4" in out and "unreadableimage" in out


def test_a_refused_start_left_behind_is_set_up_afresh(tiny_project: TinyProject) -> None:
    """Start files from another config, and nothing trained: the folder is reused."""
    run = tiny_project.root / "run"
    run.mkdir()
    (run / "config.toml").write_text("# a config a refused command left\n")
    (run / "manifest.sha256").write_text("0" * 64 + "  elsewhere.csv\n")
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "-q")
    assert (run / "oof.csv").exists()
    # A folder with a trained fold is a real run: another config is still refused.
    out = refused("oof", str(tiny_project.pipeline), "--out", str(run), "--set", "train.epochs=2")
    assert "differentconfig" in out


# --- 6. pipeline values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("train.lr=nan", "train.lr=nan:mustbeafinitenumber"),
        ("train.lr=-1", "train.lr=-1.0:mustbe>0"),
        ("train.device=tpu", "train.device='tpu';chooseauto,cpu,cuda,cuda:Normps"),
        ("model.in_chans=0", "model.in_chans=0:mustbe>=1"),
        ("train.workers=-1", "train.workers=-1:mustbe>=0"),
        ("train.label_smoothing=5", "train.label_smoothing=5.0:mustbe>=0and<1"),
        ("model.drop_rate=2", "model.drop_rate=2.0:mustbe>=0and<1"),
        ("train.eval_batch_size=-5", "train.eval_batch_size=-5:mustbe>=0"),
        ("train.seed=-1", "train.seed=-1:mustbe>=0"),
        ("train.momentum=inf", "train.momentum=inf:mustbeafinitenumber"),
        ("data.mean=[nan]", "data.mean=nan:mustbeafinitenumber"),
        ('augment.train=[{name="BboxParams", format="coco"}]', "BboxParamsisnotanimagetransform"),
        ('augment.train=[{name="BBoxSafeRandomCrop"}]', "itneedsboxes,masksormetadata"),
        ('augment.train=[{name="Mosaic"}]', "itneedsboxes,masksormetadata"),
        ('augment.train=[{name="ToTensorV2"}]', "leavethetensorconversiontocleaner"),
        ('augment.train=[{name="HorizontalFlip", bogus=3}]', "takesnoargument'bogus'"),
        ('augment.eval=[{name="CenterCrop", height=64, width=64}]', "augment.eval[0]:CenterCrop"),
    ],
)  # fmt: skip
def test_a_bad_pipeline_value_is_refused_before_anything_is_written(
    tiny_project: TinyProject, override: str, reason: str
) -> None:
    assert reason in oof_refused(tiny_project, override)


def test_a_device_this_machine_lacks_is_refused(tiny_project: TinyProject) -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    out = oof_refused(tiny_project, f"train.device=cuda:{count}")
    assert f"train.device='cuda:{count}'" in out and "thismachinehas" in out


def test_a_weights_file_that_is_not_weights_is_refused(tiny_project: TinyProject) -> None:
    """/etc/passwd in the report: any file that does not load into the model."""
    text = tiny_project.root / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    out = oof_refused(tiny_project, f'model.weights="{text.as_posix()}"')
    assert f"model.weights:{flat(str(text))}doesnotloadintotest_resnet" in out


def test_every_pipeline_problem_is_listed_at_once(tiny_project: TinyProject) -> None:
    out = oof_refused(tiny_project, "train.lr=nan", "train.workers=-1", "train.device=tpu")
    assert "train.lr=nan" in out and "train.workers=-1" in out and "train.device='tpu'" in out


def test_a_pipeline_that_is_not_utf8_names_its_line(tiny_project: TinyProject) -> None:
    pipeline = tiny_project.root / "latin.toml"
    pipeline.write_bytes(tiny_project.pipeline.read_bytes() + "# café\n".encode("latin-1"))
    lines = pipeline.read_bytes().count(b"\n")
    out = refused(
        "oof", str(pipeline), "--out", str(tiny_project.root / "run"), root=tiny_project.root
    )
    assert f"{flat(str(pipeline))},line{lines}:notUTF-8text" in out


def test_a_pipeline_path_that_is_a_folder_is_refused(tiny_project: TinyProject) -> None:
    folder = tiny_project.root / "images"
    out = refused(
        "oof", str(folder), "--out", str(tiny_project.root / "run"), root=tiny_project.root
    )
    assert f"{flat(str(folder))}:isafolder,notapipelinefile" in out


def test_a_last_training_batch_of_one_trains(tmp_path: Path) -> None:
    """7 train rows, 2 folds, batch 3: a fold trains on 3 or 4 rows, 4 = 3 + 1."""
    rows = [
        {"path": write_png(tmp_path / "images" / f"{c}{i}.png", value=40 * j + 7 * i)
         .relative_to(tmp_path).as_posix(), "label": c}
        for j, c in enumerate("ab") for i in range(4)
    ]  # fmt: skip
    write_csv(tmp_path / "manifest.csv", rows[:7])
    pipeline = write_pipeline(tmp_path, train={"batch_size": 3})
    invoke("oof", str(pipeline), "--out", str(tmp_path / "run"), "-q")
    assert len(pd.read_csv(tmp_path / "run" / "oof.csv")) == 7


# --- 7. images, decoded as training decodes them -----------------------------------------


def _jpeg(path: Path) -> bytes:
    pixels = (np.random.default_rng(0).random((48, 48)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path.read_bytes()


def _use_image(project: TinyProject, row: int, path: Path) -> None:
    rows = [dict(r) for r in project.rows]
    rows[row]["path"] = path.relative_to(project.root).as_posix()
    project.rewrite_manifest(rows)


def test_a_jpeg_cut_short_is_refused_naming_its_line(tiny_project: TinyProject) -> None:
    """OpenCV decodes it with a grey bottom and only a libjpeg warning."""
    path = tiny_project.root / "images" / "cut.jpg"
    data = _jpeg(path)
    path.write_bytes(data[: len(data) // 3])
    _use_image(tiny_project, 1, path)
    out = oof_refused(tiny_project)
    assert f"line3:damagedJPEG{flat(str(path))}(PrematureendofJPEGfile)" in out


def test_a_jpeg_with_corrupt_data_is_refused(tiny_project: TinyProject) -> None:
    path = tiny_project.root / "images" / "corrupt.jpg"
    data = bytearray(_jpeg(path))
    middle = len(data) // 2
    for i in range(middle, middle + 40):
        data[i] = 0xFF if i % 7 == 0 else data[i] ^ 0x55
    path.write_bytes(bytes(data))
    _use_image(tiny_project, 1, path)
    assert "line3:damagedJPEG" in oof_refused(tiny_project)


def test_damaged_images_may_be_warnings(tiny_project: TinyProject) -> None:
    path = tiny_project.root / "images" / "cut.jpg"
    data = _jpeg(path)
    path.write_bytes(data[: len(data) // 3])
    _use_image(tiny_project, 1, path)
    run = tiny_project.root / "run"
    result = CliRunner().invoke(
        app,
        ["oof", str(tiny_project.pipeline), "--out", str(run), "-q",
         "--set", 'data.damaged_images="warn"'],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "line3:damagedJPEG" in flat(result.output)
    assert (run / "oof.csv").exists()


def test_a_float32_tiff_is_converted_and_said_so(tiny_project: TinyProject) -> None:
    path = tiny_project.root / "images" / "float.tif"
    pixels = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    Image.fromarray(pixels, mode="F").save(path)
    _use_image(tiny_project, 1, path)
    run = tiny_project.root / "run"
    result = CliRunner().invoke(app, ["oof", str(tiny_project.pipeline), "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    assert "float32pixelsconvertedto8bits(line3)" in flat(result.output)
    from cleaner.formats.images import load_image

    image = load_image(path, 1)
    assert image.dtype == np.uint8 and image.shape == (16, 16, 1)
    np.testing.assert_array_equal(image[:, :, 0], (pixels * 255 + 0.5).astype(np.uint8))


# --- 9. write errors -------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_write_error_at_ingest_is_one_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A full disk or read-only folder (injected: CI runs as root) names the path, exit 2."""
    import cleaner.core.atomic

    def fail(src: str, dst: str) -> None:
        raise OSError(code, os.strerror(code), str(dst))

    # Every rename into place fails: the image folder's, then the manifest's.
    monkeypatch.setattr(cleaner.core.atomic.os, "replace", fail)
    manifest, images = tmp_path / "digits.csv", tmp_path / "images"
    out = refused("ingest", "digits", str(images), "--manifest", str(manifest), root=tmp_path)
    assert flat(f"error:{images}:{os.strerror(code)}") in out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def _failing_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    import cleaner.core.atomic

    def fail(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(cleaner.core.atomic.os, "replace", fail)


def test_a_write_error_in_oof_is_one_clear_message(
    tiny_project: TinyProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_writes(monkeypatch)
    run = tiny_project.root / "run"
    out = refused("oof", str(tiny_project.pipeline), "--out", str(run), "-q")
    assert flat(f"{run / 'config.toml'}:couldnotwrite(Nospaceleftondevice)") in out


@pytest.fixture
def flagged(tiny_project: TinyProject) -> Path:
    """A finished run of the tiny project, flagged: ``run/queue.csv`` (2 rows reviewed)."""
    run = tiny_project.root / "run"
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "-q")
    invoke("flag", str(run), "--top", "3", "--force", "-q")
    queue = pd.read_csv(run / "queue.csv", dtype=str, keep_default_na=False)
    queue.loc[:1, "decision"] = "drop"
    queue.to_csv(run / "queue.csv", index=False)
    return run


def test_a_write_error_in_flag_and_apply_is_one_clear_message(
    tiny_project: TinyProject, flagged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_writes(monkeypatch)
    out = refused("flag", str(flagged), "--out", str(flagged / "q2"), "--force", "-q",
                  root=tiny_project.root)  # fmt: skip
    assert "Nospaceleftondevice" in out and flat(str(flagged / "q2")) in out
    out = refused("apply", str(flagged / "queue.csv"), root=tiny_project.root)
    assert "Nospaceleftondevice" in out and "audit.jsonl" in out


# --- 10. oof.csv is the run's --------------------------------------------------------


@pytest.fixture
def finished_run(tiny_project: TinyProject) -> Path:
    run = tiny_project.root / "run"
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "-q")
    return run


def _edit_oof(run: Path, edit: object) -> None:
    table = pd.read_csv(run / "oof.csv", dtype=str, keep_default_na=False)
    table = edit(table)  # type: ignore[operator]
    (run / "oof.csv").unlink()
    table.to_csv(run / "oof.csv", index=False)


def test_an_edited_label_in_oof_csv_is_refused(finished_run: Path) -> None:
    def relabel(t: pd.DataFrame) -> pd.DataFrame:
        t.loc[2, "label"] = "b" if t.loc[2, "label"] == "a" else "a"
        return t

    _edit_oof(finished_run, relabel)
    out = refused("flag", str(finished_run), "--force", "-q", root=finished_run)
    assert flat(f"{finished_run / 'oof.csv'},line4:label") in out and "isnotthemanifest's" in out


def test_a_duplicated_row_in_oof_csv_is_refused(finished_run: Path) -> None:
    _edit_oof(finished_run, lambda t: pd.concat([t, t.iloc[[1]]], ignore_index=True))
    out = refused("flag", str(finished_run), "--force", "-q", root=finished_run)
    assert "appearstwice" in out and "line8" in out


def test_shuffled_rows_in_oof_csv_are_refused(finished_run: Path) -> None:
    _edit_oof(finished_run, lambda t: t.iloc[::-1].reset_index(drop=True))
    out = refused("flag", str(finished_run), "--force", "-q", root=finished_run)
    assert "folds.csv" in out and "rowskeeptheorderandfoldsofthesplit" in out


# --- 11. weights and factors in a finite range ------------------------------------------


def test_a_huge_weight_is_refused_before_training(tiny_project: TinyProject) -> None:
    rows = [dict(r, weight="1") for r in tiny_project.rows]
    rows[2]["weight"] = "1e308"
    tiny_project.rewrite_manifest(rows)
    out = oof_refused(tiny_project)
    assert "line4" in out and f"above{MAX_WEIGHT:g}" in out


def test_a_weights_file_above_the_range_is_refused(tiny_project: TinyProject) -> None:
    weights = tiny_project.root / "w.csv"
    sid = tiny_project.rows[0]["path"]
    weights.write_text(f"sample_id,weight\n{sid},1e9\n")
    out = oof_refused(tiny_project, f'data.weights="{weights.as_posix()}"')
    assert "isabove" in out and flat(str(weights)) in out


def test_unsure_factor_above_one_or_infinite_is_refused(tmp_path: Path) -> None:
    queue = tmp_path / "queue.csv"
    queue.write_text("rank,sample_id\n")
    for factor in ("inf", "2"):
        out = refused("apply", str(queue), "--unsure-factor", factor, root=tmp_path)
        assert "--unsure-factormustbeatmost1" in out
    out = refused("apply", str(queue), "--unsure-factor", "nan", root=tmp_path)
    assert "mustbepositive" in out


# --- 13. the rest ------------------------------------------------------------------------


def test_a_truncated_checkpoint_is_refused_naming_it(tiny_project: TinyProject) -> None:
    run = tiny_project.root / "run"
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "--fold", "1", "-q")
    checkpoint = run / "fold-1" / "checkpoint.pt"
    if not checkpoint.exists():  # a finished fold keeps no checkpoint: make one to resume
        checkpoint = run / "fold-0" / "checkpoint.pt"
        checkpoint.parent.mkdir(exist_ok=True)
        torch.save({"epoch": 1}, checkpoint)
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    out = refused(
        "oof", str(tiny_project.pipeline), "--out", str(run), "-q", root=tiny_project.root
    )
    assert flat(str(checkpoint)) in out and "loadssafely" in out


def test_orphan_temporary_files_of_a_killed_writer_go_with_the_next_write(
    tmp_path: Path,
) -> None:
    from cleaner.core.atomic import _host

    target = tmp_path / "oof.csv"
    dead = tmp_path / f".oof.csv.{_host()}.999999999.x.tmp"  # no such process
    live = tmp_path / f".oof.csv.{_host()}.{os.getppid()}.x.tmp"  # a live writer's
    other = tmp_path / ".oof.csv.elsewhere.999999999.x.tmp"  # another host's: unknown
    for p in (dead, live, other):
        p.write_text("partial")
    write_text(target, "done\n")
    assert not dead.exists() and live.exists() and other.exists()
    assert remove_orphans(target) == []


def test_duplicate_ids_at_ingest_csv_are_refused(tmp_path: Path) -> None:
    table = write_csv(
        tmp_path / "table.csv",
        [{"file": "a.png", "y": "a", "id": "x1"}, {"file": "b.png", "y": "b", "id": "x1"}],
    )
    out = refused(
        "ingest", "csv", str(table), "--path-col", "file", "--label-col", "y", "--id-col", "id",
        "--manifest", str(tmp_path / "m.csv"), root=tmp_path,
    )  # fmt: skip
    assert flat(f"{table},line3:duplicatesample_id'x1'(firstonline2)") in out


def test_a_latin1_manifest_names_the_line(tiny_project: TinyProject) -> None:
    rows = [dict(r) for r in tiny_project.rows]
    rows[3]["note"] = "zu ähnlich"
    tiny_project.manifest.unlink()
    text = pd.DataFrame(rows).to_csv(index=False)
    tiny_project.manifest.write_bytes(text.encode("latin-1"))
    out = oof_refused(tiny_project)
    assert flat(f"{tiny_project.manifest},line5:notUTF-8text(byteb'\\xe4')") in out


def test_retrain_takes_a_manifest_path_with_quotes_and_backslashes(
    tiny_project: TinyProject,
) -> None:
    odd = tiny_project.root / 'my "clean" \\ v2.csv'
    odd.write_bytes(tiny_project.manifest.read_bytes())
    out = tiny_project.root / "final"
    invoke("retrain", str(tiny_project.pipeline), "--manifest", str(odd), "--out", str(out),
           "--no-baselines", "-q")  # fmt: skip
    from cleaner.formats.run_records import read_manifest_record

    assert read_manifest_record(out)[1].resolve() == odd.resolve()
