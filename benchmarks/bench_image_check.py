"""What checking images with training's decoder costs, against the check it replaced.

Before #17 the check opened each image with Pillow's ``verify()`` (headers and
chunk checksums, no decoding): it passed JPEGs cut short. Now each image is
decoded as training decodes it (OpenCV), and JPEG data once more by
libjpeg-turbo with its warnings as errors (simplejpeg). Measured in the same
run on the same files, through ``validate_manifest``'s own threads:

- the old check (Pillow ``verify``, reproduced here),
- one OpenCV decode of every image (what one training epoch pays without cache),
- the new check.

Data: CIFAR-10's 32x32 JPEGs from ``../shared/data/cifar10`` and the same
photos enlarged to 384x512 (the mask competition's size), written as JPEGs.

    python -m benchmarks.bench_image_check [--images 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2
from PIL import Image
from rich.console import Console

from benchmarks.common import ROOT, measure_table, write_section
from cleaner.formats.images import check_image, load_image

CIFAR_DIR = ROOT.parent / "shared" / "data" / "cifar10" / "train"


def _pil_verify(path: Path) -> None:
    with Image.open(path) as im:
        im.verify()


def _timed(fn: Callable[[Path], object], paths: list[Path], repeats: int) -> list[float]:
    """Seconds per image of ``fn`` over ``paths``, with 8 threads as the check uses."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(fn, paths))
        times.append((time.perf_counter() - start) / len(paths))
    return times


def _large_copies(paths: list[Path], folder: Path) -> list[Path]:
    out = []
    for i, p in enumerate(paths):
        source = cv2.imread(str(p))
        if source is None:
            raise SystemExit(f"unreadable image: {p}")
        img = cv2.resize(source, (384, 512), interpolation=cv2.INTER_CUBIC)
        target = folder / f"{i}.jpg"
        cv2.imwrite(str(target), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    small = sorted(CIFAR_DIR.rglob("*.jpg"))[: args.images]
    if not small:
        raise SystemExit(f"no JPEGs under {CIFAR_DIR}")
    console = Console()
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        large = _large_copies(small[: max(args.images // 4, 1)], Path(tmp))
        for name, paths in (("32x32", small), ("384x512", large)):
            old = _timed(_pil_verify, paths, args.repeats)
            decode = _timed(lambda p: load_image(p, 3), paths, args.repeats)
            new = _timed(lambda p: check_image(p, 3), paths, args.repeats)
            ms = lambda t: f"{1000 * statistics.median(t):.3f} ms"  # noqa: E731
            ratio = statistics.median(new) / statistics.median(old)
            per_epoch = statistics.median(new) / statistics.median(decode)
            rows = [
                ("images", f"{len(paths):,} JPEGs, {name}"),
                ("old check (Pillow verify), per image", ms(old)),
                ("one OpenCV decode (a training epoch's reading), per image", ms(decode)),
                ("new check (OpenCV decode + strict libjpeg-turbo), per image", ms(new)),
                ("new check / old check", f"**{ratio:.1f}x**"),
                ("new check / one epoch's decoding", f"**{per_epoch:.2f}x**"),
                ("new check for 18,900 images", f"{18900 * statistics.median(new):.0f} s"),
            ]
            table, lines = measure_table(f"image check, {name}", rows)
            console.print(table)
            sections.append(f"### {name}\n\n" + "\n".join(lines))
    body = (
        "## Image check: training's decoder against Pillow's verify\n\n"
        f"Medians of {args.repeats} passes, 8 threads (as the check runs). The new check "
        "decodes each image as training does and JPEG data once more strictly; it finds "
        "JPEGs cut short or corrupt, which the old one passed. "
        "`python -m benchmarks.bench_image_check`.\n\n" + "\n\n".join(sections)
    )
    write_section("image-check", body)


if __name__ == "__main__":
    main()
