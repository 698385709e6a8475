"""``metrics.json`` as typed records: the reference bytes, the strict reader, old layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cleaner.core.errors import InputError
from cleaner.formats.metrics_file import (
    ClassScores,
    FoldMetrics,
    OofMetrics,
    RetrainMetrics,
    ScoresOnTest,
    read_fold_metrics,
    read_oof_metrics,
    read_retrain_metrics,
    to_json,
    write_metrics,
)

FORMATS = Path(__file__).parents[1] / "data" / "formats"
CLASSES = ["cat", "dog"]


def _scores(n: int, right: int, **extra: object) -> dict[str, object]:
    return {
        "n": n,
        "accuracy": right / n,
        "macro_f1": 0.5,
        "per_class_f1": {"cat": 0.25, "dog": 0.75},
        "confusion": [[1, 1], [0, 2]],
        **extra,
    }


OOF = OofMetrics(
    manifest="data_manifests/pets.csv",
    manifest_sha256="ab" * 32,
    split="StratifiedKFold(2, shuffle, seed 0)",
    classes=CLASSES,
    overall=ClassScores(**_scores(4, 3)),  # type: ignore[arg-type]
    folds=[
        FoldMetrics(
            **_scores(2, 2),  # type: ignore[arg-type]
            fold=0,
            n_train=2,
            seconds=1.5,
            train_images_per_s=100.0,
            device="cpu",
            processes=1,
            history=[{"epoch": 1, "loss": 0.5}],
            selected_epoch=1,
        ),
        FoldMetrics(**_scores(2, 1), fold=1, n_train=2, seconds=0.25, mode="probe"),  # type: ignore[arg-type]
    ],
)

RETRAIN = RetrainMetrics(
    manifest="data_manifests/pets.v2.csv",
    manifest_sha256="cd" * 32,
    mode="full",
    reweight="quality",
    weight_rule="self-confidence of the given label",
    tta=False,
    train_rows=4,
    test_rows=4,
    classes=CLASSES,
    cv_before=ClassScores(**_scores(4, 3)),  # type: ignore[arg-type]
    cv_before_run="runs/oof",
    first_version="data_manifests/pets.csv",
    labels_changed=1,
    rows_excluded=0,
    test=ScoresOnTest(
        cleaned=ClassScores(**_scores(4, 3, accuracy_ci=(0.5, 1.0))),  # type: ignore[arg-type]
        noisy=ClassScores(**_scores(4, 2)),  # type: ignore[arg-type]
        true=ClassScores(**_scores(4, 4)),  # type: ignore[arg-type]
        gap_recovered=0.5,
        gap_ci=(0.0, 0.75),
        gap_measurable=False,
    ),
    figures=["per_class_f1.png"],
)


@pytest.mark.parametrize(
    ("record", "name"), [(OOF, "oof.metrics.json"), (RETRAIN, "retrain.metrics.json")]
)
def test_metrics_json_writes_the_reference_bytes(record: object, name: str, tmp_path: Path) -> None:
    write_metrics(tmp_path / name, record)  # type: ignore[arg-type]
    assert (tmp_path / name).read_bytes() == (FORMATS / name).read_bytes()


def test_the_references_read_back_as_the_records() -> None:
    assert read_oof_metrics(FORMATS / "oof.metrics.json") == OOF
    assert read_retrain_metrics(FORMATS / "retrain.metrics.json") == RETRAIN
    with pytest.raises(
        InputError, match=r"not a fold's metrics \(no n, accuracy.*\); delete the fold's folder"
    ):
        read_fold_metrics(FORMATS / "oof.metrics.json")


def test_unmeasured_figures_are_left_out_not_null() -> None:
    text = (FORMATS / "retrain.metrics.json").read_text()
    assert "null" not in text and "cv_cleaned" not in text
    assert "train_images_per_s" not in json.dumps(to_json(OOF.folds[1]))


def test_an_older_layout_with_null_reads(tmp_path: Path) -> None:
    """Earlier versions wrote ``"cv_cleaned": null``: their run folders still read."""
    data = to_json(RETRAIN) | {"cv_cleaned": None}
    (tmp_path / "metrics.json").write_text(json.dumps(data))
    assert read_retrain_metrics(tmp_path / "metrics.json") == RETRAIN


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[1, 2", "not an oof run's metrics (Expecting"),
        ("[1, 2]", "not an oof run's metrics (not a JSON object)"),
        ('{"manifest": "m"}', "no manifest_sha256, split, classes, overall, folds"),
    ],
)
def test_a_bad_metrics_json_is_refused_naming_the_file(
    text: str, reason: str, tmp_path: Path
) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        read_oof_metrics(path)
    assert str(e.value).startswith(f"{path}: ") and reason in str(e.value)
