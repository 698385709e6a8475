"""cleaner.ranking.image_quality and image_findings: CleanVision's image checks on real files.

Planted cases (dark, light, blurry, low information, odd size and aspect, grayscale) are
made with numpy and OpenCV and written to disk, then read the way ``cleaner flag`` reads
them (training's decoder); untouched images beside them must not be flagged, tiny ones
(scikit-learn's 8x8 digits) included.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageFilter

from cleaner.core.errors import InputError
from cleaner.formats.issue_kinds import IMAGE_QUALITY, actions_text, allowed_decisions, refusal
from cleaner.ingest.arrays import load_digits_arrays
from cleaner.ranking.embedding_findings import EmbeddingFindings
from cleaner.ranking.image_findings import (
    ImageFindings,
    image_findings,
    measure_files,
    quality_notes,
    with_image_findings,
)
from cleaner.ranking.image_quality import (
    blur_score,
    edge_spread,
    entropy_bits,
    far_out_fence,
    image_issues,
    measure_image,
    measures_table,
    percentiles,
)


def photo(rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """A photo-like RGB image: a colour gradient, a few filled shapes, sensor noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(40, 215, (2, 3))
    img = a + (b - a) * (xx[..., None] * rng.uniform() + yy[..., None] * rng.uniform()) / 2
    for _ in range(rng.integers(3, 7)):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        at = tuple(int(v) for v in rng.integers(0, size, 2))
        if rng.random() < 0.5:
            cv2.circle(img, at, int(rng.integers(3, size // 3)), color, -1)
        else:
            cv2.rectangle(img, at, tuple(int(v) for v in rng.integers(0, size, 2)), color, -1)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def write(folder: Path, name: str, rgb: np.ndarray) -> Path:
    """``rgb`` (H, W, 3) or gray (H, W) as a real image file (PNG, or JPEG by its name)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    assert cv2.imwrite(str(path), bgr)
    return path


def gray_rgb(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


# What each kind's planted case is, made from an untouched photo.
PLANTED = {
    "dark": lambda im: (im * 0.25).astype(np.uint8),
    "light": lambda im: (245 + im.astype(np.float32) * 10 / 255).astype(np.uint8),
    "blurry": lambda im: cv2.GaussianBlur(im, (0, 0), 1.5),
    "low_information": lambda im: np.full_like(im, 120),
    "odd_size": lambda im: cv2.resize(im, (64, 64), interpolation=cv2.INTER_CUBIC),
    "odd_aspect_ratio": lambda im: cv2.resize(im, (96, 32), interpolation=cv2.INTER_CUBIC),
    "grayscale": gray_rgb,
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[str]]:
    """60 photo files: 53 untouched and one planted case per kind (the grayscale one a
    colour JPEG). Returns the paths and each one's planted kind ("" untouched)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    images = [photo(rng) for _ in range(60)]
    kinds = [""] * 53 + list(PLANTED)
    paths = []
    for i, (im, kind) in enumerate(zip(images, kinds, strict=True)):
        name = f"{i:02d}.jpg" if kind == "grayscale" else f"{i:02d}.png"
        paths.append(write(folder, name, PLANTED[kind](im) if kind else im))
    return paths, kinds


def test_each_planted_photo_is_found_as_its_kind_and_no_untouched_one_is(
    photos: tuple[list[Path], list[str]],
) -> None:
    paths, kinds = photos
    found = image_findings(paths)
    assert found.kind.tolist() == kinds
    assert found.record["images"] == 60
    assert found.record["flagged"]["dark"] == 1
    assert sum(found.record["flagged"].values()) >= len(PLANTED)
    # The stretched photo is also of an odd size: its note says both, its own kind first.
    note = found.notes[kinds.index("odd_aspect_ratio")]
    assert note.startswith("odd aspect ratio 96x32 (0.33; dataset median 32x32)")
    assert "; odd size 96x32 (dataset median 32x32)" in note


def test_each_note_says_the_measured_value_against_the_dataset(
    photos: tuple[list[Path], list[str]],
) -> None:
    paths, kinds = photos
    notes = dict(zip(kinds, image_findings(paths).notes, strict=True))
    for kind, start in [
        ("dark", "dark image (brightness 0.16 at its brightest 1%, dataset median 0.81)"),
        (
            "light",
            "light (overexposed) image (brightness 0.98 at its darkest 5%, dataset median 0.36)",
        ),
        ("blurry", "blurry image (edge strength 10.5, dataset median 53.6)"),
        ("low_information", "low-information image (entropy 1.58 bits, dataset median 7.80)"),
        ("odd_size", "odd size 64x64 (dataset median 32x32)"),
        ("grayscale", "grayscale image among colour ones (1.7% of the images are gray)"),
    ]:
        assert notes[kind].startswith(start), notes[kind]
    # The darkened photo's edges are weak too: said after its own kind.
    assert notes["dark"].endswith("; blurry image (edge strength 8.4, dataset median 53.6)")


def test_scores_follow_cleanvision_computed_with_pillow() -> None:
    """CleanVision measures with Pillow: its entropy, its 3x3 FIND_EDGES (inside the
    border, which Pillow copies unfiltered) and its brightness formula."""
    rgb = photo(np.random.default_rng(3), size=40)
    pil = Image.fromarray(rgb)
    assert entropy_bits(rgb) == pytest.approx(pil.entropy(), abs=1e-9)
    gray = np.asarray(pil.convert("L"))
    edges = np.asarray(Image.fromarray(gray).filter(ImageFilter.FIND_EDGES), np.float64)
    assert edge_spread(gray) == pytest.approx(edges[1:-1, 1:-1].std(), rel=1e-6)
    f = rgb.astype(np.float64)
    bright = np.sqrt(0.241 * f[..., 0] ** 2 + 0.691 * f[..., 1] ** 2 + 0.068 * f[..., 2] ** 2)
    m = measure_image(rgb)
    assert m["brightness_p99"] == pytest.approx(np.percentile(bright, 99) / 255, rel=1e-5)
    assert m["brightness_p5"] == pytest.approx(np.percentile(bright, 5) / 255, rel=1e-5)
    # CleanVision's blurry score: 1 - exp(-0.01 x edge std), the histogram's term from 0.18.
    assert blur_score(np.array([34.25]), np.array([5.0]))[0] == pytest.approx(0.29, abs=1e-3)
    assert blur_score(np.array([0.0]), np.array([300.0]))[0] == pytest.approx(0.95, abs=1e-2)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.integers(1, 300), elements=st.floats(0, 1, width=32)))
def test_percentiles_are_numpys(values: np.ndarray) -> None:
    expected = np.percentile(values, [5, 50, 99])
    assert np.allclose(percentiles(values, [5, 50, 99]), expected, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """scikit-learn's 1,797 digits as the 8x8 grayscale PNGs `cleaner ingest digits` writes."""
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for i, img in enumerate(load_digits_arrays()[0]):
        Image.fromarray(img).save(folder / f"{i:04d}.png")
        paths.append(folder / f"{i:04d}.png")
    return paths


def test_untouched_tiny_digits_are_not_flagged(digits: list[Path]) -> None:
    measures = measure_files(digits)
    assert set(measures["width"]) == {8.0}
    ours = image_issues(measures)
    assert ours.counts() == dict.fromkeys(IMAGE_QUALITY, 0)
    # CleanVision's absolute rules alone call one low in information (a plain "1", 2.99
    # bits against a 3-bit threshold) and every other digit gray (it is).
    alone = image_issues(measures, relative=False)
    assert alone.counts()["low_information"] == 1
    assert alone.counts()["grayscale"] == len(digits) - 1


def test_planted_tiny_digits_are_found(digits: list[Path], tmp_path: Path) -> None:
    images = load_digits_arrays()[0][:300]
    planted = {
        "dark": (images[0] * 0.2).astype(np.uint8),
        "low_information": np.full((8, 8), 128, np.uint8),  # black would be dark first
        "light": np.full((8, 8), 250, np.uint8),
        "odd_size": cv2.resize(images[1], (16, 16), interpolation=cv2.INTER_NEAREST),
        "odd_aspect_ratio": cv2.resize(images[2], (8, 24), interpolation=cv2.INTER_NEAREST),
    }
    paths = digits[:300] + [write(tmp_path, f"{k}.png", im) for k, im in planted.items()]
    found = image_findings(paths)
    assert found.kind[300:].tolist() == list(planted)
    assert (found.kind[:300] == "").all()


def test_grayscale_is_flagged_only_among_colour_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    colour = [photo(rng) for _ in range(40)]
    mostly_colour = image_issues(
        measures_table(measure_image(im) for im in [*colour, gray_rgb(colour[0])])
    )
    assert mostly_colour.flags["grayscale"].tolist() == [False] * 40 + [True]
    assert mostly_colour.grayscale_share == pytest.approx(1 / 41)
    # A tenth gray: a mixed dataset, not strays.
    mixed = [gray_rgb(im) if i % 10 == 0 else im for i, im in enumerate(colour)]
    assert (
        image_issues(measures_table(measure_image(im) for im in mixed)).counts()["grayscale"] == 0
    )
    # A black image is dark, not gray, and does not count toward the gray share.
    dark = image_issues(
        measures_table(measure_image(im) for im in [*colour, np.zeros_like(colour[0])])
    )
    assert dark.primary()[-1] == "dark" and not dark.flags["grayscale"].any()
    assert dark.grayscale_share == 0.0


def test_odd_size_is_cleanvisions_rule_on_the_dataset() -> None:
    def sizes(*wh: tuple[int, int]) -> pd.DataFrame:
        return measures_table(
            {**measure_image(np.zeros((4, 4, 3), np.uint8)), "width": w, "height": h} for w, h in wh
        )

    # All one size: any other size is odd.
    same = image_issues(sizes(*[(32, 32)] * 20, (33, 32)))
    assert same.flags["odd_size"].tolist() == [False] * 20 + [True]
    # Sizes that vary: only those beyond 3 IQRs of the quartiles.
    varied = [(w, w) for w in range(100, 200, 5)]
    found = image_issues(sizes(*varied, (150, 150), (900, 900), (10, 10)))
    assert found.flags["odd_size"].tolist() == [False] * 21 + [True, False]


def test_the_relative_fence_on_edge_cases() -> None:
    assert far_out_fence(np.array([])) == float("inf")
    assert far_out_fence(np.array([np.nan, np.nan])) == float("inf")
    # Every score the same: the fence is their value (nothing lies under it).
    assert far_out_fence(np.full(10, 0.4)) == pytest.approx(0.4 * 0.5)
    spread = np.exp(np.linspace(np.log(0.2), np.log(0.8), 101))
    assert far_out_fence(spread) == pytest.approx(
        0.2 * np.exp(0.25 * np.log(4) - 3 * 0.5 * np.log(4))
    )


def test_a_tiny_image_without_interior_is_not_called_blurry(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    paths = [write(tmp_path, f"{i}.png", photo(rng)) for i in range(20)]
    paths.append(write(tmp_path, "line.png", rng.integers(0, 256, (2, 40, 3), np.uint8)))
    measures = measure_files(paths)
    assert np.isnan(measures["edge_std"].iloc[-1])
    issues = image_issues(measures)
    assert not issues.flags["blurry"].iloc[-1]
    assert issues.primary()[-1] == "odd_aspect_ratio"


def test_an_unreadable_image_is_refused_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"bad\.png"):
        measure_files([bad])


def test_precedence_and_notes_among_the_quality_kinds() -> None:
    rng = np.random.default_rng(4)
    images = [photo(rng) for _ in range(30)]
    dark_and_soft = cv2.GaussianBlur((images[0] * 0.25).astype(np.uint8), (0, 0), 2.0)
    issues = image_issues(measures_table(measure_image(im) for im in [*images, dark_and_soft]))
    assert issues.flags.iloc[-1][["dark", "blurry"]].tolist() == [True, True]
    assert issues.primary()[-1] == "dark"
    note = quality_notes(issues)[-1]
    assert note.startswith("dark image") and "; blurry image (edge strength" in note


def test_the_queue_names_a_row_by_issue_precedence_with_every_note() -> None:
    """A label issue keeps its kind (and every decision), the image finding in its note;
    an image finding outranks "outlier" and its note comes first."""
    n = 4
    found = EmbeddingFindings.none(n)
    found = EmbeddingFindings(
        is_outlier=np.array([False, True, True, False]), is_near=found.is_near,
        partner=found.partner, notes=np.array(["", "atypical", "atypical", ""], dtype=object),
        leak=found.leak, distance=found.distance, pairs=found.pairs,
    )  # fmt: skip
    images = ImageFindings(
        kind=np.array(["dark", "blurry", "", ""], dtype=object),
        notes=np.array(["dark image (x)", "blurry image (y)", "", ""], dtype=object),
    )
    is_label = np.array([True, False, False, False])
    issue, merged = with_image_findings(is_label, found, images)
    assert issue.tolist() == ["label", "blurry", "outlier", ""]
    assert merged.notes.tolist() == ["dark image (x)", "blurry image (y); atypical", "atypical", ""]
    plain, same = with_image_findings(is_label, found, None)
    assert plain.tolist() == ["label", "outlier", "outlier", ""] and same is found


@pytest.mark.parametrize("kind", IMAGE_QUALITY)
def test_a_quality_row_is_kept_dropped_or_marked_unsure_never_relabelled(kind: str) -> None:
    assert allowed_decisions(kind) == ("keep", "drop", "unsure")
    assert actions_text(f" {kind.upper()} ") == "keep \u00b7 drop \u00b7 unsure"
    article = "an" if kind[0] in "aeiou" else "a"
    assert refusal(kind, "relabel", "b") == (
        f"{article} {kind} row is kept, dropped or marked unsure, not relabel"
    )
    assert all(refusal(kind, d, "") is None for d in ("keep", "drop", "unsure"))
