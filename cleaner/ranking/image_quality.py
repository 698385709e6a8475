"""Image-quality issues: which images are dark, light, low in information, of an odd
aspect ratio or size, blurry, or grayscale among colour ones.

Pure functions of decoded images (uint8 RGB ``(H, W, 3)``, as training's decoder in
:mod:`cleaner.formats.images` gives them) and of their measures (a table, one row per
image); no file I/O.

Measures, scores and thresholds are CleanVision's (cleanlab's image-issue library,
github.com/cleanlab/cleanvision, ``src/cleanvision/issue_managers/image_property.py``
and ``image_property_issue_manager.py``, version 0.3.8); a score is low for a bad image:

- dark: the 99th percentile of pixel brightness, sqrt(.241 R² + .691 G² + .068 B²) / 255,
  under 0.32;
- light (overexposed): 1 - the 5th percentile of brightness, under 0.05;
- low_information: 0.1 x the entropy (bits) of the image's histogram, under 0.3;
- blurry: 1 - exp(-0.01 x the standard deviation of a 3x3 edge filter on the grayscale
  image shrunk to at most 64 pixels a side), plus a term for a peaked histogram, under 0.29;
- odd_aspect_ratio: min(w / h, h / w), under 0.35;
- odd_size: sqrt(w h) outside Q1 - 3 IQR .. Q3 + 3 IQR of the dataset (when the IQR is 0,
  any other size);
- grayscale: CleanVision flags files stored with one channel; here an image whose colour
  channels are equal (a gray picture saved as RGB counts too).

Where we differ, and why (measured in BENCHMARKS.md, "Image quality"):

- CleanVision's thresholds are absolute, set on photos: 27% of MNIST's digits hold under
  its 3 bits, and 2.5% of untouched 32x32 photos count as blurry. A score must also be a
  far-out low outlier of its own dataset: under Tukey's far-out fence, Q1 - 3 IQR of the
  log scores (3 is CleanVision's own IQR factor for odd_size), and under half the
  dataset's median score (where the images are all alike the fence hugs Q1: a plain
  "1" among the digits would be far out). A dataset of night photos or line drawings is
  then not flagged whole; an image far darker or softer than its peers still is.
- The edge filter is taken on the image's interior: Pillow's FIND_EDGES (CleanVision's)
  copies the border pixels' own values into the edge image, which on a 32x32 image is
  12% of it and measures brightness, not edges: CleanVision 0.3.7 itself finds 30% of
  Gaussian blurs (sigma 1.5) planted in 32x32 photos, this measure all of them.
- Grayscale is flagged only among colour images: where at most 5% of the dataset is
  grayscale (digits, X-rays and scans are gray throughout, and fine); an image already
  dark, light or low in information is not counted gray (it has no colour to show).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from cleaner.formats.issue_kinds import (
    BLURRY,
    DARK,
    GRAYSCALE,
    IMAGE_QUALITY,
    LIGHT,
    LOW_INFORMATION,
    ODD_ASPECT_RATIO,
    ODD_SIZE,
)

# CleanVision's thresholds on its scores (a row is flagged under them), and its constants.
THRESHOLDS = {
    DARK: 0.32,
    LIGHT: 0.05,
    LOW_INFORMATION: 0.3,
    BLURRY: 0.29,
    ODD_ASPECT_RATIO: 0.35,
}
ENTROPY_FACTOR = 0.1  # low_information's normalizing factor: 10 bits score 1
BLUR_FACTOR = 0.01  # blurry's normalizing factor of the edge and histogram spreads
HISTOGRAM_TERM_FROM = 0.18  # blurry: a peaked histogram adds to the score past this
BLUR_SIDE = 64  # blurry: the image is shrunk to at most this many pixels a side
SIZE_IQR_FACTOR = 3.0  # odd_size: how many IQRs outside the quartiles
# Ours. Tukey's far-out fence: a score also under Q1 - FAR_OUT x IQR of the dataset's
# log scores (CleanVision's odd_size factor). On the shared photos it keeps untouched
# ones flagged blurry at 0.3% (CleanVision's rule alone: 2.5%); on MNIST's digits, none
# low in information (CleanVision's alone: 27%).
FAR_OUT = 3.0
# Ours. And under this share of the dataset's median score: chosen on the digits, whose
# entropies lie so close together that the fence flags a plain "1" (2.99 bits, median 4.4).
MEDIAN_SHARE = 0.5
# A pixel is gray when its channels differ by at most this much on average (0-255):
# JPEG's chroma rounding of a gray picture saved in colour stays under it.
GRAY_SPREAD = 1.0
# Grayscale images are flagged where they are a minority of at most this share.
GRAYSCALE_MAX_SHARE = 0.05
# Brightness, entropy and colour are measured on a copy at most this large a side: on a
# 10-megapixel photo, figures within 3% (most within 0.5%) in a ninth of the time.
MEASURE_SIDE = 1024
TINY = 1e-6  # the log of a score of 0 (a white image's light score)

MEASURES = (
    "width",
    "height",
    "brightness_p99",  # 0-1
    "brightness_p5",  # 0-1
    "entropy",  # bits, of the 768-bin RGB histogram
    "edge_std",  # 0-255, NaN for an image under 3 pixels a side (no interior)
    "histogram_std",  # of the 256-bin histogram of the shrunk grayscale image
    "colour_spread",  # mean over pixels of (largest - smallest channel), 0-255
)


def _shrunk(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` at most ``side`` pixels a side (area averaging), as CleanVision shrinks."""
    h, w = image.shape[:2]
    ratio = max(h, w) / side
    if ratio <= 1:
        return image
    size = (max(int(w // ratio), 1), max(int(h // ratio), 1))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def entropy_bits(image: np.ndarray) -> float:
    """Shannon entropy (bits) of the histogram of all three channels together (768 bins):
    what Pillow's ``Image.entropy`` gives an RGB image, CleanVision's measure. A gray
    picture has its gray entropy plus log2(3)."""
    counts = np.bincount(
        (image.reshape(-1, 3).astype(np.int64) + np.array([0, 256, 512])).ravel(),
        minlength=768,
    )
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def edge_spread(gray: np.ndarray) -> float:
    """Standard deviation of Pillow's FIND_EDGES filter (8 x the pixel minus its 8
    neighbours, clipped to 0-255) over the interior of ``gray`` (H, W); NaN without one."""
    if min(gray.shape) < 3:
        return float("nan")
    g = gray.astype(np.float32)
    kernel = -np.ones((3, 3), np.float32)
    kernel[1, 1] = 8.0
    edges = np.clip(cv2.filter2D(g, -1, kernel), 0.0, 255.0)
    return float(edges[1:-1, 1:-1].std())


def percentiles(values: np.ndarray, q: Sequence[float]) -> np.ndarray:
    """``np.percentile(values, q)`` (linear interpolation) by partial sorting: the same
    numbers, without its fixed cost, which is most of a 32x32 image's measuring."""
    flat = values.ravel()
    pos = np.asarray(q, np.float64) / 100.0 * (len(flat) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(flat) - 1)
    part = np.partition(flat, np.unique(np.concatenate([lo, hi])))
    return part[lo] + (part[hi] - part[lo]) * (pos - lo)


def colour_spread(image: np.ndarray) -> float:
    """Mean over the pixels of (largest - smallest channel) of ``image`` (H, W, 3): 0 for
    a gray picture."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return float(spread.mean())


def measure_image(image: np.ndarray) -> dict[str, float]:
    """The :data:`MEASURES` of one uint8 RGB image (H, W, 3)."""
    h, w = image.shape[:2]
    small = _shrunk(image, MEASURE_SIDE)
    f = small.astype(np.float32)
    brightness = np.sqrt(0.241 * f[..., 0] ** 2 + 0.691 * f[..., 1] ** 2 + 0.068 * f[..., 2] ** 2)
    p5, p99 = percentiles(brightness, [5, 99]) / 255.0
    gray = cv2.cvtColor(_shrunk(small, BLUR_SIDE), cv2.COLOR_RGB2GRAY)
    return {
        "width": float(w),
        "height": float(h),
        "brightness_p99": float(p99),
        "brightness_p5": float(p5),
        "entropy": entropy_bits(small),
        "edge_std": edge_spread(gray),
        "histogram_std": float(np.bincount(gray.ravel(), minlength=256).std()),
        "colour_spread": colour_spread(small),
    }


def measures_table(rows: Iterable[dict[str, float]]) -> pd.DataFrame:
    """The measures of N images as a table (N rows, :data:`MEASURES` columns)."""
    return pd.DataFrame(list(rows), columns=list(MEASURES), dtype=np.float64)


def blur_score(edge_std: np.ndarray, histogram_std: np.ndarray) -> np.ndarray:
    """CleanVision's blurry score (N,): the edge spread's, plus the histogram's where that
    passes 0.18 (an image of few flat tones is low in information, not blurry)."""
    edges = 1.0 - np.exp(-BLUR_FACTOR * edge_std)
    peaked = 1.0 - np.exp(-BLUR_FACTOR * histogram_std)
    return np.minimum(edges + np.where(peaked > HISTOGRAM_TERM_FROM, peaked, 0.0), 1.0)


def odd_size_score(width: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, float]:
    """CleanVision's odd_size score (N,) in [0, 1] and the threshold under which it is odd."""
    size = np.sqrt(width * height)
    if not len(size):
        return size, 0.5
    q1, q3 = np.percentile(size, [25, 75])
    low, high = q1 - SIZE_IQR_FACTOR * (q3 - q1), q3 + SIZE_IQR_FACTOR * (q3 - q1)
    middle, gap = (low + high) / 2, high - low
    if gap > 0:
        return 1.0 - np.clip(np.abs(size - middle) / gap, 0.0, 1.0), 0.5
    # Every quartile the same size: any other size is odd.
    return 1.0 - np.clip(np.abs(size - middle) / max(middle, TINY), 0.0, 1.0), 1.0


def quality_scores(measures: pd.DataFrame) -> pd.DataFrame:
    """CleanVision's scores (N rows; columns dark, light, low_information, blurry,
    odd_aspect_ratio), each in [0, 1], low for a bad image."""
    m = {c: measures[c].to_numpy(np.float64) for c in MEASURES}
    return pd.DataFrame(
        {
            DARK: m["brightness_p99"],
            LIGHT: 1.0 - m["brightness_p5"],
            LOW_INFORMATION: np.minimum(ENTROPY_FACTOR * m["entropy"], 1.0),
            BLURRY: blur_score(m["edge_std"], m["histogram_std"]),
            ODD_ASPECT_RATIO: np.minimum(m["width"], m["height"])
            / np.maximum(np.maximum(m["width"], m["height"]), 1.0),
        },
        index=measures.index,
    )


def far_out_fence(
    scores: np.ndarray, *, factor: float = FAR_OUT, median_share: float = MEDIAN_SHARE
) -> float:
    """The dataset's low fence of ``scores`` (N,): Tukey's far-out fence on the log scale,
    exp(Q1 - factor x IQR) of their logs, or ``median_share`` x their median where that is
    lower; NaN scores left out, +inf when none is left."""
    kept = scores[~np.isnan(scores)]
    if not len(kept):
        return float("inf")
    q1, q3 = np.percentile(np.log(np.maximum(kept, TINY)), [25, 75])
    return float(min(np.exp(q1 - factor * (q3 - q1)), median_share * np.median(kept)))


@dataclass(frozen=True)
class ImageIssues:
    """The image-quality findings of N images."""

    measures: pd.DataFrame  # (N, MEASURES)
    scores: pd.DataFrame  # (N, kinds of THRESHOLDS): CleanVision's scores, low is bad
    flags: pd.DataFrame  # (N, IMAGE_QUALITY) bool
    # Per kind of THRESHOLDS: the score under which a row is flagged, the smaller of
    # CleanVision's threshold and the dataset's fence (far_out_fence).
    limits: dict[str, float]
    # Of the N images, the share whose channels are equal (not dark, light or flat).
    grayscale_share: float

    def primary(self) -> np.ndarray:
        """(N,) the first kind of :data:`IMAGE_QUALITY` each image has, or ``""``."""
        kind = np.full(len(self.flags), "", dtype=object)
        for name in reversed(IMAGE_QUALITY):
            kind[self.flags[name].to_numpy(bool)] = name
        return kind

    def counts(self) -> dict[str, int]:
        """Images flagged per kind (an image may count under several)."""
        return {k: int(self.flags[k].sum()) for k in IMAGE_QUALITY}


def image_issues(
    measures: pd.DataFrame,
    *,
    far_out: float = FAR_OUT,
    grayscale_max_share: float = GRAYSCALE_MAX_SHARE,
    relative: bool = True,
) -> ImageIssues:
    """Which of N images (their :func:`measure_image` rows) have each quality issue.

    A scored kind is flagged under CleanVision's threshold and the dataset's fence
    (:func:`far_out_fence`, ``far_out`` IQRs); odd_size is CleanVision's rule; grayscale
    where at most ``grayscale_max_share`` of the images are grayscale. ``relative=False``
    is CleanVision's rules alone (every grayscale image flagged), for comparison.
    """
    scores = quality_scores(measures)
    flags = pd.DataFrame(index=measures.index)
    limits = {}
    for kind, threshold in THRESHOLDS.items():
        s = scores[kind].to_numpy()
        fence = far_out_fence(s, factor=far_out) if relative else float("inf")
        limits[kind] = min(threshold, fence)
        flags[kind] = np.nan_to_num(s, nan=np.inf) < limits[kind]
    size, size_threshold = odd_size_score(
        measures["width"].to_numpy(np.float64), measures["height"].to_numpy(np.float64)
    )
    flags[ODD_SIZE] = size < size_threshold
    # A flat, black or blown-out image has no colour to show: it is not counted gray.
    colourless = flags[[DARK, LIGHT, LOW_INFORMATION]].to_numpy(bool).any(axis=1)
    gray = (measures["colour_spread"].to_numpy(np.float64) <= GRAY_SPREAD) & ~colourless
    share = float(gray.mean()) if len(gray) else 0.0
    flags[GRAYSCALE] = gray & (share <= grayscale_max_share or not relative)
    return ImageIssues(measures, scores, flags[list(IMAGE_QUALITY)], limits, share)
