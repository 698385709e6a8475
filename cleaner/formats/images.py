"""Image files to uint8 arrays, with the decoder training uses (OpenCV), and their check.

The check before training decodes every image the way training will, so an
image that passes is one training can read. OpenCV's JPEG decoder accepts a
file cut short or with corrupt data (libjpeg only prints a warning and fills
the rest with grey), so JPEG data is also decoded once by libjpeg-turbo
through simplejpeg with ``strict=True``, which turns exactly those warnings
into errors: such a file is a problem with its manifest line, not a silent
grey training image. Images that are not 8-bit (float TIFFs, say) are
converted, and the check says so.

Size comes before decoding: an image's width and height are read from its
header (Pillow's lazy ``Image.open`` decodes no pixels), and one with more
than ``data.max_image_pixels`` pixels is refused naming the file, whichever
decoder would have read it: a 1 MB PNG can hold 30000x30000 pixels (2.7 GB
decoded). A file Pillow cannot identify (a format only OpenCV reads) is left
to OpenCV's own limit (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 by default).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from cleaner.core.config import MAX_IMAGE_PIXELS
from cleaner.core.errors import InputError

JPEG_MAGIC = b"\xff\xd8\xff"

# A float TIFF makes OpenCV log a warning before the fallback below reads it.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """8-bit pixels: floats are taken in [0, 1] (albumentations' convention), ints in 0..65535."""
    if img.dtype == np.uint8:
        return img
    if np.issubdtype(img.dtype, np.floating):
        return (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if img.dtype == np.uint16:
        return (img // 257).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def _channels(img: np.ndarray, in_chans: int) -> np.ndarray:
    """(H, W, in_chans) from OpenCV's BGR, BGRA or grayscale array."""
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]  # the alpha channel is not part of the picture
    if in_chans == 1:
        if img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
        return img
    img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB if img.shape[2] == 1 else cv2.COLOR_BGR2RGB)
    if in_chans > 3:
        # Extra channels repeat the image, as timm does when adapting first-layer weights.
        reps = -(-in_chans // 3)
        img = np.concatenate([img] * reps, axis=2)[:, :, :in_chans]
    elif in_chans == 2:
        img = img[:, :, :2]
    return img


def header_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` from the image's header, decoding no pixel; None when Pillow
    cannot identify the file (OpenCV may still read it)."""
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns (and past twice its limit raises) on open:
            # ours below names the file and the configured limit instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size
    except Image.DecompressionBombError as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        return (int(found[1]), 1) if found else (2**31, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def too_large(path: str | Path, max_pixels: int) -> str | None:
    """Why ``path`` is refused for its size (more than ``max_pixels`` pixels), or None."""
    size = header_size(path)
    if size is None or size[0] * size[1] <= max_pixels:
        return None
    shown = f"{size[0]}x{size[1]}" if size[1] > 1 else f"{size[0]:,} pixels"
    return (
        f"image {path} is {shown}, more than data.max_image_pixels = {max_pixels:,}: "
        "refused before decoding (raise the limit if the image is real)"
    )


def decode_image(
    path: str | Path, in_chans: int, *, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[np.ndarray, str | None]:
    """Decode one image as uint8 (H, W, in_chans), and what was converted (or None).

    Grayscale for ``in_chans == 1``, else RGB. OpenCV's 8-bit decoding comes
    first; a file it can read only as it is (a float32 TIFF) is converted. An
    image of more than ``max_pixels`` pixels is refused before decoding.
    """
    large = too_large(path, max_pixels)
    if large is not None:
        raise InputError(large)
    flag = cv2.IMREAD_GRAYSCALE if in_chans == 1 else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flag)
    note = None
    if img is None:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            raise InputError(f"unreadable image: {path}")
        if img.dtype != np.uint8:
            note = f"{img.dtype} pixels converted to 8 bits"
        img = to_uint8(img)
    if in_chans == 1 and img.ndim == 2:
        return img[:, :, None], note
    return _channels(img, in_chans), note


def load_image(
    path: str | Path, in_chans: int, *, max_pixels: int = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Decode one image as uint8 (H, W, C): grayscale for ``in_chans == 1``, else RGB."""
    return decode_image(path, in_chans, max_pixels=max_pixels)[0]


def damaged_jpeg(path: Path) -> str | None:
    """libjpeg's warning for a JPEG file cut short or with corrupt data, or None.

    None also for other formats, and for a JPEG kind simplejpeg does not read
    at all (CMYK, say): OpenCV has decoded it, and there is no warning to see.
    """
    data = path.read_bytes()
    if not data.startswith(JPEG_MAGIC):
        return None
    try:
        simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except ValueError as e:
        try:  # recoverable (decodes with the warning ignored, as OpenCV does): damaged
            simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=False)
        except ValueError:
            return None
        return str(e)
    return None


def check_image(
    path: Path, in_chans: int, *, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[str | None, str | None, str | None]:
    """``(unreadable, damaged, converted)``: why training cannot read ``path`` (missing,
    undecodable, or more than ``max_pixels`` pixels), why its data is damaged (a JPEG cut
    short or corrupt, which training would read as grey), and what decoding converts;
    each None when it does not apply.
    """
    if not path.is_file():
        return f"image not found: {path}", None, None
    large = too_large(path, max_pixels)
    if large is not None:
        return large, None, None
    try:
        _, note = decode_image(path, in_chans)
    except InputError:
        return (
            f"unreadable image {path}: OpenCV, the decoder training uses, cannot read it",
            None,
            None,
        )
    damage = damaged_jpeg(path)
    return None, (f"damaged JPEG {path} ({damage})" if damage else None), note


@contextlib.contextmanager
def decoder_quiet() -> Iterator[None]:
    """Silence what libjpeg (inside OpenCV) prints straight to the process's stderr
    ("Premature end of JPEG file"): the checks below report it themselves, naming the
    file. File-descriptor level, so for single-threaded callers only (the ingest check)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def image_problem(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Why training could not use the image at ``path`` (missing, empty, too large, not an
    image OpenCV decodes, a JPEG cut short or corrupt), in words; None for a good one."""
    if not path.is_file():
        return "file not found"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    large = too_large(path, max_pixels)
    if large is not None:
        return large
    unreadable, damaged, _ = check_image(path, 3, max_pixels=max_pixels)
    if unreadable is not None:
        return "not an image OpenCV (the decoder training uses) can read"
    if damaged is not None:
        what = damaged.replace(f"damaged JPEG {path} ", "damaged JPEG ", 1)
        return f"{what}: training would see grey where it is cut"
    return None


def bad_images(
    paths: Sequence[Path],
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    advance: Callable[[], None] | None = None,
) -> list[tuple[int, str]]:
    """``(position, reason)`` of every path in ``paths`` that :func:`image_problem` refuses,
    each file decoded once with training's decoder, libjpeg's own printing silenced."""
    found = []
    # Decoding is native code that releases the GIL: threads overlap it and the I/O.
    with decoder_quiet(), ThreadPoolExecutor(max_workers=8) as pool:
        reasons = pool.map(lambda path: image_problem(path, max_pixels=max_pixels), paths)
        for i, reason in enumerate(reasons):
            if reason is not None:
                found.append((i, reason))
            if advance is not None:
                advance()
    return found
