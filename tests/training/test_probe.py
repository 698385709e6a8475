"""The hostile-input probe of issue #31 as tests: every case it found, and a fuzz pass.

Each case asserts the documented exit code (2 for bad input, 0 where the input
is now accepted), the message (file, line or key and the reason), and, where the
command must refuse, a project left byte for byte as it was. The issue's items:

- 2, one id rule: ids that differ only by surrounding spaces or Unicode
  normalisation are one id to every reader (:func:`cleaner.formats.manifest.id_key`);
- 5, ingest stays inside its folder (symbolic links);
- 6, a pixel limit checked before decoding (``data.max_image_pixels``);
- 7, tracebacks and silent acceptance of its points 7-9, one by one;
- 8, a fuzz pass over the reader of each file format: any bytes give a parsed
  result or one :class:`InputError`, never another exception.

The concurrency cases of the issue (items 1, 3 and 4) live in ``test_concurrency.py``
and ``test_complete_runs.py``.
"""

from __future__ import annotations

import contextlib
import json
import struct
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from helpers import (
    TEST_DATA,
    TinyProject,
    flat,
    invoke,
    make_project,
    snapshot,
    write_csv,
    write_pipeline,
    write_png,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_apply import QUEUE_ROWS, apply_ok
from test_apply import make_project as make_apply_project
from test_hostile_input import refused

from cleaner.core.errors import InputError

# --- a project scored outside cleaner: a manifest and a probability file -----------------

PROBS_CLASSES = ("a", "b")


def scored_project(
    root: Path,
    ids: Sequence[str] | None = None,
    *,
    classes: Sequence[str] = PROBS_CLASSES,
    n: int = 40,
) -> tuple[Path, Path]:
    """``root/manifest.csv`` of ``n`` real tiny PNGs (labels alternating over ``classes``)
    and ``root/probs.csv`` in the ``oof.csv`` layout, confident and right on 90% of rows
    (the trust gate passes). Returns both paths."""
    ids = list(ids) if ids is not None else [f"s{i:03d}" for i in range(n)]
    rows, table = [], []
    for i, sid in enumerate(ids):
        label = classes[i % len(classes)]
        path = f"images/{i:03d}.png"
        write_png(root / path, value=7 * i)
        rows.append({"sample_id": sid, "path": path, "label": label})
        right = i % 10 != 3
        p = np.full(len(classes), 0.05 / max(len(classes) - 1, 1))
        p[classes.index(label) if right else (classes.index(label) + 1) % len(classes)] = 0.95
        table.append(
            {
                "sample_id": sid,
                "label": label,
                **{f"p:{c}": v for c, v in zip(classes, p, strict=True)},
            }
        )
    manifest = write_csv(root / "manifest.csv", rows)
    probs = root / "probs.csv"
    pd.DataFrame(table).to_csv(probs, index=False)
    return manifest, probs


def flag_probs(manifest: Path, probs: Path, *extra: str) -> list[str]:
    """The arguments of ``cleaner flag --probs`` into ``manifest``'s folder / q."""
    out = manifest.parent / "q"
    return [
        "flag",
        "--probs",
        str(probs),
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def probs_refused(root: Path, manifest: Path, probs: Path, *extra: str) -> str:
    """``flag --probs`` refused: exit 2, nothing changed under ``root``, no queue folder."""
    out = refused(*flag_probs(manifest, probs, *extra), root=root)
    assert not (root / "q").exists()
    return out


# --- item 2: one id rule ---------------------------------------------------------------


def test_flag_probs_refuses_a_manifest_with_ids_that_differ_by_spaces(tmp_path: Path) -> None:
    ids = [f"digit-{i:04d}" for i in range(40)]
    ids[5] = "digit-0003 "  # the reported case: digit-0351 beside digit-0351
    manifest, probs = scored_project(tmp_path, ids)
    out = probs_refused(tmp_path, manifest, probs)
    assert flat(f"{manifest}, line 7: sample_id 'digit-0003 ' differs from 'digit-0003'") in out
    assert "onlybyspaces" in out


def test_ids_equal_after_unicode_normalisation_collide(tmp_path: Path) -> None:
    composed = unicodedata.normalize("NFC", "café")
    ids = [f"s{i:03d}" for i in range(40)]
    ids[1], ids[2] = composed, unicodedata.normalize("NFD", composed)
    manifest, probs = scored_project(tmp_path, ids)
    out = probs_refused(tmp_path, manifest, probs)
    assert "line4" in out and "onlybyUnicodenormalisationorspaces" in out


def test_a_probability_row_with_a_padded_id_is_the_manifests_row(tmp_path: Path) -> None:
    manifest, probs = scored_project(tmp_path)
    table = pd.read_csv(probs, dtype={"sample_id": str})
    table.loc[3, "sample_id"] = " s003 "
    table.to_csv(probs, index=False)
    invoke(*flag_probs(manifest, probs))
    queue = pd.read_csv(tmp_path / "q" / "queue.csv", dtype=str, keep_default_na=False)
    assert "s003" in set(queue["sample_id"])  # the wrong row, named as the manifest names it


def test_apply_and_review_find_the_row_by_the_id_rule(tmp_path: Path) -> None:
    """Queue ids in another Unicode form (NFD, as macOS writes names) or trimmed by a
    spreadsheet edit the manifest's row, and the review page shows its image."""
    from cleaner.review.review_queue import ReviewQueue

    cafe = unicodedata.normalize("NFC", "café")
    manifest_rows = [
        {"sample_id": sid, "path": f"images/{k}.png", "label": label}
        for k, (sid, label) in enumerate([(cafe, "a"), ("x1 ", "a"), ("x2", "b"), ("x3", "b")])
    ]
    queue = [
        {"rank": "1", "sample_id": unicodedata.normalize("NFD", cafe), "given_label": "a",
         "suggested_label": "b", "issue": "label", "decision": "relabel"},
        {"rank": "2", "sample_id": "x1", "given_label": "a", "suggested_label": "b",
         "issue": "label", "decision": "drop"},
    ]  # fmt: skip
    p = make_project(tmp_path, manifest_rows, queue, classes=PROBS_CLASSES)
    review = ReviewQueue(p.queue)
    assert [review.row(i)["has_image"] for i in range(2)] == [True, True]
    apply_ok(p.queue)
    v2 = pd.read_csv(p.v2, dtype=str, keep_default_na=False).set_index("sample_id")
    assert v2.loc[cafe, "label"] == "b" and v2.loc["x1 ", "split"] == "excluded"
    assert v2.loc["x2", "label"] == "b" and v2.loc["x3", "split"] == "train"  # untouched


def test_the_id_rule_is_one_function() -> None:
    from cleaner.formats.manifest import id_key, id_matcher, id_problems

    nfd = unicodedata.normalize("NFD", "é")
    assert id_key(f" {nfd}\t") == id_key("é") == "é"
    problems = id_problems(["a", "b", "a", " b", "é", nfd], "m.csv")
    assert [p.row for p in problems] == [4, 5, 7]
    assert "duplicate sample_id 'a' (first on line 2)" in problems[0].reason
    match = id_matcher(["a", "é"])
    assert match(" a ") == "a" and match(nfd) == "é" and match("b") is None


def test_a_label_studio_task_finds_its_queue_row_by_the_id_rule(tmp_path: Path) -> None:
    from test_labelstudio import label_studio_annotates, undecided_project, write_json

    from cleaner.review.labelstudio_export import export_tasks

    p = undecided_project(tmp_path)
    tasks = label_studio_annotates(export_tasks(p.queue)[0], {"s02": "a", "s03": "drop"})
    for task in tasks:
        task["data"]["sample_id"] = f" {task['data']['sample_id']}\t"  # as a tool may pad it
    export = write_json(tmp_path / "export.json", tasks)
    invoke("import", "labelstudio", str(export), str(p.queue))
    queue = pd.read_csv(p.queue, dtype=str, keep_default_na=False).set_index("sample_id")
    assert queue.loc["s02", "decision"] == "relabel" and queue.loc["s02", "new_label"] == "a"
    assert queue.loc["s03", "decision"] == "drop"


# --- item 7: one clear error, exit 2, nothing written -----------------------------------


def test_flag_probs_with_an_empty_file(tmp_path: Path) -> None:
    manifest, probs = scored_project(tmp_path)
    probs.write_bytes(b"")
    out = probs_refused(tmp_path, manifest, probs)
    assert flat(f"{probs}, line 1: empty file") in out


def test_flag_probs_with_a_latin1_file(tmp_path: Path) -> None:
    manifest, probs = scored_project(tmp_path)
    probs.write_bytes(probs.read_bytes().replace(b"s004", b"s\xe904"))
    out = probs_refused(tmp_path, manifest, probs)
    assert flat(f"{probs}, line 6: not UTF-8 text") in out


def test_flag_probs_with_a_repeated_probability_column(tmp_path: Path) -> None:
    """pandas read a second ``p:0`` as a class named ``0.1``."""
    manifest, probs = scored_project(tmp_path)
    probs.write_text(probs.read_text().replace("p:b", "p:a", 1))
    out = probs_refused(tmp_path, manifest, probs)
    assert flat(f"{probs}, line 1: column(s) 'p:a' appear more than once") in out


def test_flag_probs_with_a_duplicate_id_manifest(tmp_path: Path) -> None:
    ids = [f"s{i:03d}" for i in range(40)]
    ids[9] = "s001"
    manifest, probs = scored_project(tmp_path, ids)
    out = probs_refused(tmp_path, manifest, probs)
    assert flat(f"{manifest}, line 11: duplicate sample_id 's001' (first on line 3)") in out


def test_flag_probs_with_a_group_column_the_manifest_lacks(tmp_path: Path) -> None:
    manifest, probs = scored_project(tmp_path)
    out = probs_refused(tmp_path, manifest, probs, "--set", "data.group=nonexistent_col")
    assert "nonexistent_col" in out and "notfound" in out


def test_class_names_with_math_syntax_are_drawn_as_written(tmp_path: Path) -> None:
    classes = (r"$\undefinedcmd{x}$", "a$b")
    manifest, probs = scored_project(tmp_path, classes=classes)
    invoke(*flag_probs(manifest, probs))
    assert (tmp_path / "q" / "queue.csv").exists() and (
        tmp_path / "q" / "noise_matrix.png"
    ).exists()


def test_a_one_class_manifest_is_refused_before_training(tiny_project: TinyProject) -> None:
    tiny_project.rewrite_manifest([dict(r, label="a") for r in tiny_project.rows])
    pipeline = tiny_project.pipeline_with(data={"classes": None})
    run = tiny_project.root / "run"
    out = refused("oof", str(pipeline), "--out", str(run), "-q", root=tiny_project.root)
    assert not run.exists() and "onlyoneclass" in out


def test_a_manifest_without_rows_is_refused(tiny_project: TinyProject) -> None:
    tiny_project.manifest.write_text("sample_id,path,label\n")
    pipeline = tiny_project.pipeline_with(data={"classes": []})
    run = tiny_project.root / "run"
    out = refused("oof", str(pipeline), "--out", str(run), "-q", root=tiny_project.root)
    assert not run.exists() and "notrainrows" in out


@pytest.mark.parametrize(
    ("manifest_text", "probs_text", "says"),
    [
        ("sample_id,path,label\n", "sample_id,label,p:a,p:b\n", "notrainrows"),
        ("sample_id,path,label\nx,x.png,a\ny,y.png,a\n", "sample_id,label,p:a\nx,a,1\ny,a,1\n",
         "onlyoneclass('a')"),
    ],
)  # fmt: skip
def test_flag_probs_without_rows_or_with_one_class(
    tmp_path: Path, manifest_text: str, probs_text: str, says: str
) -> None:
    manifest, probs = tmp_path / "m.csv", tmp_path / "p.csv"
    manifest.write_text(manifest_text)
    probs.write_text(probs_text)
    assert says in probs_refused(tmp_path, manifest, probs, "--force")


def test_a_pipeline_nested_thousands_deep(tiny_project: TinyProject) -> None:
    deep = tiny_project.root / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    out = refused("oof", str(deep), "-q", root=tiny_project.root)
    assert flat(f"{deep}: not valid TOML: nested too deeply") in out
    out = refused("oof", str(tiny_project.pipeline), "--set", "train.epochs=" + "[" * 5000,
                  root=tiny_project.root)  # fmt: skip
    assert "nestedtoodeeply" in out


def test_a_pipeline_with_a_byte_order_mark_is_read(tiny_project: TinyProject) -> None:
    from cleaner.core.config import load_config

    bom = tiny_project.root / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + tiny_project.pipeline.read_bytes())
    assert load_config(bom) == load_config(tiny_project.pipeline)


@pytest.mark.parametrize("size", ["1000000", "[224, 100000]"])
def test_an_image_size_past_the_bound(tiny_project: TinyProject, size: str) -> None:
    run = tiny_project.root / "run"
    out = refused("oof", str(tiny_project.pipeline), "--out", str(run), "--set",
                  f"data.image_size={size}", root=tiny_project.root)  # fmt: skip
    assert "data.image_size" in out and "atmost4096pixelsaside" in out and not run.exists()


def test_a_deeply_nested_queue_json(tmp_path: Path) -> None:
    p = make_apply_project(tmp_path)
    meta = p.queue.with_name("queue.json")
    meta.write_text("[" * 100_000 + "]" * 100_000)
    out = refused("apply", str(p.queue), root=tmp_path)
    assert flat(f"{meta}: not valid JSON: nested too deeply") in out


def test_a_label_studio_queue_row_of_ten_thousand_digits(tmp_path: Path) -> None:
    from test_labelstudio import undecided_project

    p = undecided_project(tmp_path)
    export = tmp_path / "export.json"
    export.write_text(
        '[{"id": 1, "data": {"sample_id": "s02", "queue_row": ' + "9" * 10_000 + "}, "
        '"annotations": []}]'
    )
    out = refused("import", "labelstudio", str(export), str(p.queue), root=tmp_path)
    assert flat(f"{export}: not a Label Studio export") in out and "digits" in out


def test_an_all_keep_queue_applied_twice_logs_once(tmp_path: Path) -> None:
    rows = [dict(r, decision="keep" if r["decision"] else "") for r in QUEUE_ROWS]
    p = make_apply_project(tmp_path, rows)
    apply_ok(p.queue)
    lines = p.log.read_text(encoding="utf-8")
    before = snapshot(tmp_path)
    out = apply_ok(p.queue)
    assert "alreadyapplied" in flat(out)
    assert p.log.read_text(encoding="utf-8") == lines and snapshot(tmp_path) == before


def test_apply_refuses_an_audit_log_that_flag_refuses(tmp_path: Path) -> None:
    from cleaner.formats.audit import read_audit_log

    p = make_apply_project(tmp_path)
    p.log.write_text('{"sample_id": "s01", "action": "keep"}\nthis is no JSON\n')
    with pytest.raises(InputError) as flagged:
        read_audit_log(p.log)  # what flag reads, to leave decided rows out
    out = refused("apply", str(p.queue), root=tmp_path)
    assert flat(str(flagged.value)) in out and flat(f"{p.log}, line 2: not valid JSON") in out


def test_the_utf8_hint_says_it_once(tmp_path: Path) -> None:
    p = make_apply_project(tmp_path)
    p.queue.write_bytes(p.queue.read_bytes().replace(b"s02", b"s\xe42"))
    out = refused("apply", str(p.queue), root=tmp_path)
    assert "savethequeueasCSVUTF-8" in out and "asUTF-8asUTF-8" not in out


def test_flag_on_a_run_whose_oof_csv_is_latin1(tmp_path: Path) -> None:
    from helpers import write_run

    manifest, probs = scored_project(tmp_path)
    table = pd.read_csv(probs, dtype={"sample_id": str})
    table.insert(1, "fold", np.arange(len(table)) % 2)
    table.insert(3, "pred", np.where(table["p:a"] > 0.5, "a", "b"))
    run = tmp_path / "run"
    write_run(run, manifest, table, classes=PROBS_CLASSES, group_column="")
    table[["sample_id", "fold"]].to_csv(run / "folds.csv", index=False)
    (run / "metrics.json").write_text("{}")  # the completion record oof writes last
    invoke("flag", str(run), "--out", str(tmp_path / "ok"), "-q")  # the run as written
    oof = run / "oof.csv"
    oof.write_bytes(oof.read_bytes().replace(b"s007", b"s\xf607"))
    out = refused("flag", str(run), "--out", str(tmp_path / "q"), "-q", root=tmp_path)
    assert flat(f"{oof}, line 9: not UTF-8 text (byte b'\\xf6'); save the CSV as UTF-8") in out


# --- the API validates as the CLI does -------------------------------------------------


@pytest.fixture
def scored(tmp_path: Path) -> dict[str, Any]:
    manifest, probs = scored_project(tmp_path)
    table = pd.read_csv(probs, dtype={"sample_id": str})
    return {
        "manifest": manifest,
        "pred_probs": table[["p:a", "p:b"]].to_numpy(),
        "sample_ids": table["sample_id"].tolist(),
    }


def api_refused(scored: dict[str, Any], **changes: Any) -> str:
    from cleaner.api import find_label_issues

    args = {**scored, **changes}
    with pytest.raises(InputError) as e:
        find_label_issues(args.pop("manifest"), args.pop("pred_probs"), classes=PROBS_CLASSES,
                          **args)  # fmt: skip
    return str(e.value)


def test_the_api_ranks_what_the_cli_ranks(scored: dict[str, Any]) -> None:
    from cleaner.api import find_label_issues

    queue = find_label_issues(
        scored["manifest"], scored["pred_probs"], classes=PROBS_CLASSES,
        sample_ids=scored["sample_ids"], top=5,
    )  # fmt: skip
    assert len(queue) == 4 and set(queue["sample_id"]) == {"s003", "s013", "s023", "s033"}


def test_the_api_refuses_a_nan_row(scored: dict[str, Any]) -> None:
    probs = scored["pred_probs"].copy()
    probs[4] = np.nan
    message = api_refused(scored, pred_probs=probs)
    assert message == "find_label_issues: row 4: probability is NaN or infinite"


def test_the_api_refuses_a_repeated_sample_id(scored: dict[str, Any]) -> None:
    ids = list(scored["sample_ids"])
    ids[7] = " s006"  # the id rule: s006 twice, and s007 never scored
    message = api_refused(scored, sample_ids=ids)
    assert "row 7: sample_id 's006' appears twice" in message
    assert "1 train rows" in message and "'s007'" in message


@pytest.mark.parametrize(("top", "says"), [(-5, "--top must be at least 1, got -5"), (0, "got 0")])
def test_the_api_refuses_a_queue_length_below_one(
    scored: dict[str, Any], top: int, says: str
) -> None:
    assert says in api_refused(scored, top=top)


def test_the_api_refuses_a_manifest_frame_with_colliding_ids(scored: dict[str, Any]) -> None:
    from cleaner.formats.manifest import read_manifest

    df = read_manifest(scored["manifest"])
    df.loc[5, "sample_id"] = "s004\u00a0"  # a no-break space a spreadsheet left
    assert "line 7: sample_id 's004\\xa0' differs from 's004'" in api_refused(scored, manifest=df)


# --- item 5: ingest stays inside its folder ----------------------------------------------


def class_folder(root: Path) -> Path:
    """``root/src/{a,b}/`` with two tiny PNGs each, and ``root/outside/o0.png`` beside it."""
    for c in ("a", "b"):
        for i in range(2):
            write_png(root / "src" / c / f"{c}{i}.png", value=40 * i)
    write_png(root / "outside" / "o0.png")
    return root / "src"


def ingest(src: Path, manifest: Path, *extra: str) -> list[str]:
    return ["ingest", "folder", str(src), "--manifest", str(manifest), *extra]


def test_ingest_refuses_a_link_to_a_file_outside_the_folder(tmp_path: Path) -> None:
    src = class_folder(tmp_path)
    (src / "a" / "passwd.png").symlink_to("/etc/passwd")
    (src / "b" / "o.png").symlink_to(tmp_path / "outside" / "o0.png")
    out = refused(*ingest(src, tmp_path / "m.csv"), root=tmp_path)
    assert flat(f"{src / 'a' / 'passwd.png'}: is a symbolic link to /etc/passwd, outside") in out
    assert flat(f"{src / 'b' / 'o.png'}: is a symbolic link to") in out
    assert "--follow-links" in out


def test_ingest_refuses_a_linked_folder_outside_once(tmp_path: Path) -> None:
    src = class_folder(tmp_path)
    for i in range(1, 4):
        write_png(tmp_path / "outside" / f"o{i}.png")
    (src / "c").symlink_to(tmp_path / "outside", target_is_directory=True)
    out = refused(*ingest(src, tmp_path / "m.csv"), root=tmp_path)
    assert out.count("isasymboliclink") == 1 and flat(f"{src / 'c'}: is a symbolic link") in out


def test_ingest_follows_links_out_only_when_asked(tmp_path: Path) -> None:
    src = class_folder(tmp_path)
    (src / "b" / "o.png").symlink_to(tmp_path / "outside" / "o0.png")
    manifest = tmp_path / "m.csv"
    invoke(*ingest(src, manifest, "--follow-links"))
    df = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert "b/o.png" in set(df["sample_id"]) and not any(df["sample_id"].str.startswith(".."))


def test_ingest_takes_each_file_once(tmp_path: Path) -> None:
    src = class_folder(tmp_path)
    (src / "b" / "again.png").symlink_to(src / "a" / "a0.png")  # a link inside: the same image
    out = refused(*ingest(src, tmp_path / "m.csv", "--follow-links"), root=tmp_path)
    assert flat(f"{src / 'b' / 'again.png'}: is the same file as {src / 'a' / 'a0.png'}") in out


def test_a_folder_linked_twice_is_named_once(tmp_path: Path) -> None:
    src = class_folder(tmp_path)
    (src / "loop").symlink_to(".", target_is_directory=True)  # the folder inside itself
    out = refused(*ingest(src, tmp_path / "m.csv"), root=tmp_path)
    assert out.count("isasymboliclink") == 1
    assert flat(f"{src / 'loop'}: is a symbolic link to {src.resolve()}, whose images") in out


def test_links_inside_the_folder_are_followed(tmp_path: Path) -> None:
    src = class_folder(tmp_path)
    (src / "c").mkdir()
    (src / "c" / "c0.png").symlink_to(tmp_path / "src" / "a" / "a0.png")
    (src / "a" / "a0.png").rename(src / "a0.png.keep")  # only the link reaches the file now
    (src / "c" / "c0.png").unlink()
    (src / "c" / "c0.png").symlink_to(src / "a0.png.keep")
    manifest = tmp_path / "m.csv"
    invoke(*ingest(src, manifest))
    assert "c/c0.png" in set(pd.read_csv(manifest, dtype=str)["sample_id"])


# --- item 6: images above the pixel limit are refused before decoding --------------------


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG header of ``width`` x ``height`` 8-bit grey pixels and the first rows' data:
    what a decompression bomb shows before it is decoded (a few hundred bytes here)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )
    return path


def test_a_decompression_bomb_is_refused_at_oof(tiny_project: TinyProject) -> None:
    bomb_png(tiny_project.images[2], 30000, 30000)
    run = tiny_project.root / "run"
    out = refused(
        "oof", str(tiny_project.pipeline), "--out", str(run), "-q", root=tiny_project.root
    )
    assert not run.exists()
    # Past twice its limit Pillow gives only the pixel count, before reading further.
    assert flat(f"line 4: image {tiny_project.images[2]} is 900,000,000 pixels, more than") in out
    assert "data.max_image_pixels=89,478,485" in out


def test_the_pixel_limit_is_a_pipeline_key(tiny_project: TinyProject) -> None:
    run = tiny_project.root / "run"
    out = refused("oof", str(tiny_project.pipeline), "--out", str(run), "-q", "--set",
                  "data.max_image_pixels=255", root=tiny_project.root)  # fmt: skip
    assert "is16x16,morethandata.max_image_pixels=255" in out and not run.exists()
    invoke("oof", str(tiny_project.pipeline), "--out", str(run), "-q", "--set",
           "data.max_image_pixels=256")  # fmt: skip
    assert (run / "oof.csv").exists()


def test_every_decoder_checks_the_header_first(tmp_path: Path) -> None:
    from cleaner.formats.images import decode_image, too_large
    from cleaner.review.gallery import thumbnail_data_uri

    bomb = bomb_png(tmp_path / "bomb.png", 10000, 10000)
    with pytest.raises(InputError) as e:
        decode_image(bomb, 3)
    assert f"image {bomb} is 10000x10000, more than" in str(e.value)
    assert too_large(bomb, 100_000_000) is None  # a raised limit lets it through
    huge = bomb_png(tmp_path / "huge.png", 20000, 20000)
    assert "is 400,000,000 pixels" in str(too_large(huge, 100_000_000))
    assert thumbnail_data_uri(bomb) is None  # the gallery shows a placeholder
    small = write_png(tmp_path / "small.png")
    with pytest.raises(InputError) as e:
        decode_image(small, 1, max_pixels=100)
    assert "is 16x16, more than data.max_image_pixels = 100" in str(e.value)


def test_realistic_noise_refuses_a_bomb_and_a_damaged_jpeg(tmp_path: Path) -> None:
    from test_hostile_input import _jpeg

    src = class_folder(tmp_path)
    write_png(src / "a" / "a2.png")
    write_png(src / "b" / "b2.png")
    cut = src / "b" / "cut.jpg"
    data = _jpeg(cut)
    cut.write_bytes(data[: len(data) // 3])
    bomb_png(src / "a" / "bomb.png", 30000, 30000)
    out = refused(*ingest(src, tmp_path / "m.csv", "--noise", "0.2", "--noise-kind",
                          "realistic"), root=tmp_path)  # fmt: skip
    assert flat(f"{cut}: damaged JPEG (Premature end of JPEG file)") in out
    assert flat(f"{src / 'a' / 'bomb.png'} is 900,000,000 pixels") in out


# --- a killed ingest digits ----------------------------------------------------------------


def test_ingest_digits_finishes_what_a_killed_run_left(tmp_path: Path) -> None:
    manifest = tmp_path / "digits.csv"
    args = ["ingest", "digits", str(tmp_path / "images"), "--manifest", str(manifest)]
    invoke(*args)
    first = manifest.read_bytes()
    manifest.unlink()  # killed after the images were in place, before the manifest
    invoke(*args)
    assert manifest.read_bytes() == first
    manifest.unlink()
    (tmp_path / "images" / "digit-0007.png").write_bytes(b"another file")
    out = refused(*args, root=tmp_path)
    assert flat(f"{tmp_path / 'images' / 'digit-0007.png'}: differs from the image") in out
    (tmp_path / "images" / "digit-0007.png").unlink()
    write_png(tmp_path / "images" / "mine.png")
    out = refused(*args, root=tmp_path)
    assert "imagefolderexistsandisnotempty(itholdsfilesthisingestdoesnotwrite)" in out


# --- the review server hands its token only to a request that has it -------------------


def test_the_review_page_needs_the_token_of_the_printed_url(tmp_path: Path) -> None:
    from test_review_server import make_project as make_review_project
    from test_review_server import request

    from cleaner.review.server import serve

    srv, url = serve(make_review_project(tmp_path).queue, port=0)
    srv.start_background()
    try:
        token = srv.token.encode()
        for path in ("/", "/?token=wrong", "/img/0", "/api/queue"):
            status, _, body = request(srv, "GET", path, token=False)
            assert status == 403 and token not in body, path
        assert url == f"http://127.0.0.1:{srv.port}/?token={srv.token}"
        status, headers, page = request(
            srv, "GET", url.removeprefix(f"http://127.0.0.1:{srv.port}"), token=False
        )
        assert status == 200 and token in page
        cookie = headers["set-cookie"]
        assert cookie.startswith(f"cleaner-review-{srv.port}={srv.token};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        # The page's images and a reload carry the cookie; another port's cookie is no key.
        jar = {"Cookie": cookie.split(";", 1)[0]}
        assert request(srv, "GET", "/img/0", headers=jar, token=False)[0] == 200
        assert request(srv, "GET", "/", headers=jar, token=False)[0] == 200
        other = {"Cookie": f"cleaner-review-{srv.port + 1}={srv.token}"}
        assert request(srv, "GET", "/img/0", headers=other, token=False)[0] == 403
    finally:
        srv.stop()


# --- item 8: a fuzz pass over the reader of each file format ------------------------------
#
# Any bytes, and a valid file mutated at random, must give a parsed result or one
# InputError: never another exception. Cheap on purpose: no training, no images decoded.

# Bytes that readers trip on: delimiters, quotes, line ends, a BOM, non-UTF-8, NUL, numbers
# out of range, deep nesting, very long integers.
TOKENS = [
    b",", b";", b"\t", b'"', b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\xff", b"\xe9", b"\x00",
    b" ", b"NaN", b"inf", b"-1", b"1e309", b"0", b"[", b"]", b"{", b"}", b"[[[[[[[[", b"=",
    b'"""', b"p:a", b"sample_id", b"decision", b"keep", b"relabel", b"group:", b"\\",
    b"[" * 3000, b"{" * 3000, b"9" * 5000, "é".encode(), unicodedata.normalize("NFD", "é").encode(),
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few random edits: bytes or tokens inserted, slices cut or repeated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["token", "bytes", "cut", "repeat", "truncate"]))
        if kind == "token":
            data[at:at] = draw(st.sampled_from(TOKENS))
        elif kind == "bytes":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 40))]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 80))]
        else:
            del data[at:]
    return bytes(data)


def any_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), mutated(valid))


FUZZ = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def parsed_or_refused(read: Callable[[], Any]) -> None:
    """Run a reader: a result or an InputError pass, any other exception fails the test."""
    with contextlib.suppress(InputError):
        read()


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A scored manifest, a run folder of it, a queue of it, as valid files to mutate."""
    from helpers import write_run

    root = tmp_path_factory.mktemp("fuzz")
    manifest, probs = scored_project(root, n=12)
    table = pd.read_csv(probs, dtype={"sample_id": str})
    table.insert(1, "fold", np.arange(len(table)) % 2)
    table.insert(3, "pred", np.where(table["p:a"] > 0.5, "a", "b"))
    run = root / "run"
    write_run(run, manifest, table, classes=PROBS_CLASSES, group_column="")
    table[["sample_id", "fold"]].to_csv(run / "folds.csv", index=False)
    queue = make_apply_project(root / "apply").queue
    apply_ok(queue)  # a real audit log
    pipeline = write_pipeline(root, manifest=manifest, train={"folds": 3}, flag={"top": 7})
    return {
        "root": root, "manifest": manifest, "probs": probs, "run": run, "queue": queue,
        "pipeline": pipeline, "export": TEST_DATA / "labelstudio_export.json",
        "log": queue.parents[1] / "data" / "faces.audit.jsonl",
    }  # fmt: skip


def _fuzzed(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_fuzz_manifest(fuzz_root: dict[str, Any]) -> None:
    from cleaner.formats.manifest import read_manifest, validate_manifest

    path = fuzz_root["root"] / "fuzz-manifest.csv"

    @FUZZ
    @given(any_bytes(fuzz_root["manifest"].read_bytes()))
    def check(data: bytes) -> None:
        _fuzzed(path, data)
        parsed_or_refused(lambda: validate_manifest(
            read_manifest(path, check=False), file=path, classes=PROBS_CLASSES, folds=2,
            group="group", check_images=False,
        ))  # fmt: skip
        parsed_or_refused(lambda: read_manifest(path))

    check()


def test_fuzz_probabilities_file(fuzz_root: dict[str, Any]) -> None:
    from cleaner.core.config import PipelineConfig
    from cleaner.formats.runs import load_probs

    path = fuzz_root["root"] / "fuzz-probs.csv"

    @FUZZ
    @given(any_bytes(fuzz_root["probs"].read_bytes()))
    def check(data: bytes) -> None:
        _fuzzed(path, data)
        parsed_or_refused(lambda: load_probs(path, fuzz_root["manifest"], PipelineConfig()))

    check()


def test_fuzz_oof_csv(fuzz_root: dict[str, Any]) -> None:
    from cleaner.formats.runs import load_run
    from cleaner.formats.scores import read_scores

    oof = fuzz_root["run"] / "oof.csv"
    valid = oof.read_bytes()

    @FUZZ
    @given(any_bytes(valid))
    def check(data: bytes) -> None:
        _fuzzed(oof, data)
        parsed_or_refused(lambda: load_run(fuzz_root["run"]))
        parsed_or_refused(lambda: read_scores(fuzz_root["run"]))

    try:
        check()
    finally:
        oof.write_bytes(valid)


def test_fuzz_queue_csv(fuzz_root: dict[str, Any]) -> None:
    from cleaner.formats.queue_file import QueueText
    from cleaner.review.apply import check_queue

    queue = fuzz_root["queue"]
    valid = queue.read_bytes()

    @FUZZ
    @given(any_bytes(valid))
    def check(data: bytes) -> None:
        _fuzzed(queue, data)
        parsed_or_refused(lambda: check_queue(queue))
        parsed_or_refused(lambda: QueueText.read(queue))

    try:
        check()
    finally:
        queue.write_bytes(valid)


def test_fuzz_queue_json(fuzz_root: dict[str, Any]) -> None:
    from cleaner.formats.queue_file import queue_meta_path, read_queue_meta

    meta = queue_meta_path(fuzz_root["queue"])
    valid = meta.read_bytes()

    @FUZZ
    @given(any_bytes(valid))
    def check(data: bytes) -> None:
        _fuzzed(meta, data)
        parsed_or_refused(lambda: read_queue_meta(fuzz_root["queue"]))

    try:
        check()
    finally:
        meta.write_bytes(valid)


def test_fuzz_audit_log(fuzz_root: dict[str, Any]) -> None:
    from cleaner.formats.audit import read_audit_log

    path = fuzz_root["root"] / "fuzz.audit.jsonl"

    @FUZZ
    @given(any_bytes(fuzz_root["log"].read_bytes()))
    def check(data: bytes) -> None:
        parsed_or_refused(lambda: read_audit_log(_fuzzed(path, data)))

    check()


def test_fuzz_label_studio_export(fuzz_root: dict[str, Any]) -> None:
    from cleaner.review.labelstudio_import import read_export

    path = fuzz_root["root"] / "fuzz-export.json"

    @FUZZ
    @given(any_bytes(fuzz_root["export"].read_bytes()))
    def check(data: bytes) -> None:
        parsed_or_refused(lambda: read_export(_fuzzed(path, data)))

    check()


def test_fuzz_pipeline_toml(fuzz_root: dict[str, Any]) -> None:
    from cleaner.core.config import load_config

    path = fuzz_root["root"] / "fuzz.toml"

    @FUZZ
    @given(any_bytes(fuzz_root["pipeline"].read_bytes()))
    def check(data: bytes) -> None:
        parsed_or_refused(lambda: load_config(_fuzzed(path, data)))

    check()


def test_what_the_fuzzing_found_stays_refused(fuzz_root: dict[str, Any], tmp_path: Path) -> None:
    """Two inputs the fuzz runs once found: a queue.json naming a manifest longer than any
    file name (OSError from the file system) and a pipeline with a 5,000-digit integer
    (a ValueError from tomllib, not its TOMLDecodeError). Both are refused as bad input."""
    from cleaner.core.config import load_config, parse_override
    from cleaner.formats.queue_file import queue_meta_path, read_queue_meta

    meta = queue_meta_path(fuzz_root["queue"])
    valid = meta.read_bytes()
    try:
        record = json.loads(valid)
        record["manifest"] = "[" * 5000 + "m.csv"
        meta.write_text(json.dumps(record))
        parsed_or_refused(lambda: read_queue_meta(fuzz_root["queue"]))
    finally:
        meta.write_bytes(valid)
    pipeline = tmp_path / "p.toml"
    pipeline.write_text("[train]\nepochs = " + "9" * 5000 + "\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(pipeline)
    assert parse_override("model.name=" + "9" * 5000)[2] == "9" * 5000  # text, as written
