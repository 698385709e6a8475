"""Synthetic data sets in a competition's exact layout, with known label noise.

``synth_mask`` draws small cartoon faces in the mask competition's layout
(:mod:`cleaner.ingest.mask`), so the whole loop can be tried and measured without the
real photos. What a tiny CNN can learn from each image at 32-48 px:

- gender, from the hair's shape: short hair is a cap on top of the head
  (male), long hair frames the face down to the shoulders (female);
- age band, from the hair's brightness: dark (< 30), grey (30-59), white (>= 60);
- mask state, from a band over the lower face: covering nose to chin (wear),
  pulled down under the nose (incorrect), none with the mouth showing (not wear).

Every photo moves, scales and lights the face a little and adds pixel noise;
skin tone, background and mask colour vary, so nothing is readable from one
pixel. Two kinds of noise, as seen in the real data, change the layout itself:

- ``gender_flip`` (per person): the gender token of the folder name is wrong,
  so all 7 photos of the person carry the wrong gender;
- ``mask_swap`` (per image): two of a person's files of different mask state
  are exchanged (``mask3.png`` holds the bare face, ``normal.png`` the mask).

``truth.csv`` records for every image its true labels, the label the layout
gives it, and which noise touched it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from cleaner.core.atomic import default_mode, naming_write_errors
from cleaner.core.errors import InputError, Problem
from cleaner.ingest.mask import GENDERS, MASK_FILES, MASKS, class_index, folder_name

STEMS = tuple(MASK_FILES)  # mask1 .. mask5, incorrect_mask, normal
RACES = ("Asian", "Black", "White")
# Ages drawn per band: every band equally often, so no class is starved.
AGE_RANGES = ((18, 29), (30, 59), (60, 80))
# Hair brightness per age band: dark, grey, white; far enough apart to survive jitter.
HAIR = ((50, 38, 30), (125, 118, 110), (222, 220, 214))
MASK_COLOURS = ((236, 236, 240), (150, 190, 232), (45, 45, 52), (232, 172, 192))
SUPERSAMPLE = 4  # drawn large and shrunk: smooth edges at 32 px
TRUTH_COLUMNS = (
    *("path", "person", "split", "true_mask", "true_gender", "age", "age_band"),
    *("true_label", "given_label", "noise"),
)


@dataclass(frozen=True)
class Face:
    """One person's looks: what stays the same across their 7 photos."""

    gender: int
    age_band: int
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    width: float  # face width relative to the average


def draw_face(face: Face, mask: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One photo (size, size, 3) uint8 of ``face`` wearing a mask in state ``mask`` (0..2)."""
    s = size * SUPERSAMPLE
    background = tuple(int(v) for v in rng.integers(60, 200, size=3))
    img = Image.new("RGB", (s, s), background)
    d = ImageDraw.Draw(img)
    scale = rng.uniform(0.9, 1.1)
    cx, cy = s * (0.5 + rng.uniform(-0.06, 0.06)), s * (0.54 + rng.uniform(-0.05, 0.05))
    rx, ry = s * 0.23 * face.width * scale, s * 0.3 * scale
    hair = _rgb(np.array(face.hair) + rng.normal(0, 5, 3))
    skin = _rgb(np.array(face.skin) + rng.normal(0, 6, 3))

    def box(x: float, y: float, hx: float, hy: float) -> tuple[float, float, float, float]:
        return (x - hx, y - hy, x + hx, y + hy)

    if face.gender == 1:  # long hair behind the face, down to the shoulders
        d.ellipse(box(cx, cy - 0.1 * ry, 1.4 * rx, 1.2 * ry), fill=hair)
        d.rectangle((cx - 1.4 * rx, cy - 0.1 * ry, cx + 1.4 * rx, cy + 1.35 * ry), fill=hair)
    d.ellipse(box(cx, cy, rx, ry), fill=skin)
    # Hair on top of the head for everyone: a cap over the face's upper arc.
    d.chord(box(cx, cy - 0.04 * ry, 1.08 * rx, 1.08 * ry), 195, 345, fill=hair)
    for side in (-1, 1):
        d.ellipse(box(cx + side * 0.42 * rx, cy - 0.12 * ry, 0.11 * rx, 0.08 * ry), fill=(25,) * 3)
    nose = _rgb(np.array(skin) * 0.72)
    d.polygon(
        [(cx, cy), (cx - 0.1 * rx, cy + 0.25 * ry), (cx + 0.1 * rx, cy + 0.25 * ry)],
        fill=nose,
    )
    d.ellipse(box(cx, cy + 0.5 * ry, 0.36 * rx, 0.08 * ry), fill=(150, 30, 40))
    if mask != 2:
        # Worn: the band covers nose to chin. Incorrect: pulled down under the nose.
        top = cy + (0.02 if mask == 0 else rng.uniform(0.32, 0.5)) * ry
        bottom = top + 0.9 * ry
        colour = MASK_COLOURS[int(rng.integers(len(MASK_COLOURS)))]
        d.rounded_rectangle(
            (cx - 1.02 * rx, top, cx + 1.02 * rx, bottom), radius=0.3 * rx, fill=colour
        )
        for side in (-1, 1):  # the straps to the ears
            d.line(
                [(cx + side * 1.0 * rx, top + 0.1 * ry), (cx + side * 1.05 * rx, cy - 0.1 * ry)],
                fill=colour,
                width=max(1, round(0.05 * rx)),
            )
    small = img.resize((size, size), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.float64) * rng.uniform(0.85, 1.15)
    pixels += rng.normal(0, 6, pixels.shape)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def _rgb(values: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in np.clip(np.round(values), 0, 255))
    return r, g, b


def _make_face(rng: np.random.Generator) -> tuple[Face, int]:
    """A random person and their age: gender and age band drawn uniformly."""
    gender, band = int(rng.integers(2)), int(rng.integers(3))
    age = int(rng.integers(AGE_RANGES[band][0], AGE_RANGES[band][1] + 1))
    # Skin from light to dark; hair of the band's brightness, a little different per person.
    t = rng.uniform()
    skin = _triple(np.array((228, 194, 166)) + t * np.array((120 - 228, 84 - 194, 62 - 166)))
    hair = _triple(np.array(HAIR[band]) + rng.normal(0, 8))  # one shift for all 3 channels
    return Face(gender, band, skin, hair, float(rng.uniform(0.9, 1.1))), age


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in values)
    return r, g, b


def _swap_pair(rng: np.random.Generator) -> tuple[str, str]:
    """Two of a person's files whose mask states differ, to exchange."""
    masked = f"mask{int(rng.integers(1, 6))}"
    pairs = ((masked, "normal"), (masked, "incorrect_mask"), ("incorrect_mask", "normal"))
    return pairs[int(rng.integers(len(pairs)))]


def _check_args(
    people: int, gender_flips: float, mask_swaps: float, seed: int, size: int, eval_people: int
) -> None:
    for name, rate in (("gender flip", gender_flips), ("mask swap", mask_swaps)):
        if not 0.0 <= rate <= 1.0:
            raise InputError(f"{name} rate must be in [0, 1], got {rate}")
    if people < 1:
        raise InputError(f"people must be at least 1, got {people}")
    if eval_people < 0:
        raise InputError(f"eval people must not be negative, got {eval_people}")
    if round(people * gender_flips) + round(people * mask_swaps) > people:
        # One kind of noise per person keeps every image's noise a single word.
        raise InputError(
            f"gender flips ({gender_flips}) and mask swaps ({mask_swaps}) together "
            f"exceed the {people} people"
        )
    if seed < 0:  # numpy's generators take no negative seeds
        raise InputError(f"seed must not be negative, got {seed}")
    if not 16 <= size <= 512:
        raise InputError(f"image size must be in 16..512 px, got {size}")


def synth_mask(
    out_dir: str | Path,
    *,
    people: int = 40,
    gender_flips: float = 0.1,
    mask_swaps: float = 0.1,
    seed: int = 0,
    size: int = 48,
    eval_people: int = 10,
) -> Path:
    """Write a synthetic mask data set into ``out_dir`` (empty or new); returns it.

    ``people`` train persons with 7 PNG photos each, exactly
    ``round(people * gender_flips)`` of them with a flipped gender token and
    another ``round(people * mask_swaps)`` with two files exchanged;
    ``eval_people`` more persons' photos, shuffled under hashed names, in
    ``eval/``. The same arguments give the same bytes.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError([Problem(str(out), "exists and is not an empty folder")])
    _check_args(people, gender_flips, mask_swaps, seed, size, eval_people)
    rng = np.random.default_rng(seed)
    faces = [_make_face(rng) for _ in range(people + eval_people)]
    order = rng.permutation(people)
    n_flip, n_swap = round(people * gender_flips), round(people * mask_swaps)
    flipped = {int(i) for i in order[:n_flip]}
    swapped = {int(i): _swap_pair(rng) for i in order[n_flip : n_flip + n_swap]}
    races = [RACES[int(r)] for r in rng.integers(len(RACES), size=people + eval_people)]
    eval_order = rng.permutation(eval_people * len(STEMS))

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    os.chmod(tmp, default_mode(folder=True))  # mkdtemp makes it 0700
    try:
        with naming_write_errors(out, tmp):  # a full disk names the folder, not its temporary
            truth = _write_train(tmp, faces[:people], races, flipped, swapped, seed, size)
            truth += _write_eval(tmp, faces[people:], people, eval_order, seed, size)
            pd.DataFrame(truth, columns=list(TRUTH_COLUMNS)).to_csv(
                tmp / "truth.csv", index=False, lineterminator="\n"
            )
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _photo(face: Face, stem: str, size: int, seed: int, person: int) -> np.ndarray:
    # One generator per photo: a photo does not change when others are added.
    rng = np.random.default_rng([seed, person, STEMS.index(stem)])
    return draw_face(face, MASK_FILES[stem], size, rng)


def _truth_row(
    path: str, person: str, face: tuple[Face, int], shown: str, given_label: str, noise: str
) -> dict[str, str]:
    """One row of truth.csv: ``shown`` is the stem whose photo the file really holds."""
    (f, age), mask = face, MASK_FILES[shown]
    return {
        "path": path,
        "person": person,
        "split": "test" if path.startswith("eval/") else "train",
        "true_mask": MASKS[mask],
        "true_gender": GENDERS[f.gender],
        "age": str(age),
        "age_band": str(f.age_band),
        "true_label": str(class_index(mask, f.gender, f.age_band)),
        "given_label": given_label,
        "noise": noise,
    }


def _write_train(
    root: Path,
    faces: list[tuple[Face, int]],
    races: list[str],
    flipped: set[int],
    swapped: dict[int, tuple[str, str]],
    seed: int,
    size: int,
) -> list[dict[str, str]]:
    images = root / "train" / "images"
    table, truth = [], []
    for i, (face, age) in enumerate(faces):
        pid = f"{i + 1:06d}"
        given_gender = 1 - face.gender if i in flipped else face.gender
        folder = folder_name(pid, GENDERS[given_gender], races[i], age)
        (images / folder).mkdir(parents=True)
        table.append(
            {"id": pid, "gender": GENDERS[given_gender], "race": races[i], "age": str(age)}
            | {"path": folder}
        )
        # The file named `given` holds the photo of `shown`: different after a swap.
        shows = {stem: stem for stem in STEMS}
        if i in swapped:
            a, b = swapped[i]
            shows[a], shows[b] = b, a
        for given, shown in shows.items():
            Image.fromarray(_photo(face, shown, size, seed, i)).save(
                images / folder / f"{given}.png"
            )
            noise = "gender_flip" if i in flipped else "mask_swap" if given != shown else "none"
            label = str(class_index(MASK_FILES[given], given_gender, face.age_band))
            path = f"train/images/{folder}/{given}.png"
            truth.append(_truth_row(path, pid, faces[i], shown, label, noise))
    columns = ["id", "gender", "race", "age", "path"]
    pd.DataFrame(table, columns=columns).to_csv(
        root / "train" / "train.csv", index=False, lineterminator="\n"
    )
    return truth


def _write_eval(
    root: Path,
    faces: list[tuple[Face, int]],
    first: int,
    order: np.ndarray,
    seed: int,
    size: int,
) -> list[dict[str, str]]:
    """Every eval photo under a hashed name, in shuffled order; ``ans`` 0 as in the real file."""
    images = root / "eval" / "images"
    images.mkdir(parents=True)
    photos = [(p, stem) for p in range(len(faces)) for stem in STEMS]
    ids, truth = [], []
    for k in order:
        p, stem = photos[int(k)]
        face = faces[p][0]
        person = first + p
        image_id = hashlib.sha1(f"{seed}/{person}/{stem}".encode()).hexdigest() + ".png"
        Image.fromarray(_photo(face, stem, size, seed, person)).save(images / image_id)
        ids.append(image_id)
        path = f"eval/images/{image_id}"
        truth.append(_truth_row(path, f"{person + 1:06d}", faces[p], stem, "", "none"))
    pd.DataFrame({"ImageID": ids, "ans": [0] * len(ids)}).to_csv(
        root / "eval" / "info.csv", index=False, lineterminator="\n"
    )
    return truth
