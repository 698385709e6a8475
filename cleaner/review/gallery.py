"""The relabel queue as one self-contained HTML gallery (``queue.html``).

The page must open from disk, with no server and no network, and keep working
when it is mailed or copied elsewhere: thumbnails are embedded as ``data:``
URIs and all CSS and JavaScript is inline. A Content-Security-Policy ``<meta>``
forbids every other source, so a stray reference fails loudly instead of
leaking a request. The document, stylesheet and script are package files in
``cleaner/web`` (``gallery.html``, ``base.css`` + ``gallery.css``, ``gallery.js``).

Every value from the queue is untrusted text (sample ids, paths and class
names come from users' files): each one goes through ``html.escape(...,
quote=True)``, and none is ever placed inside the ``<script>`` element. The
filters read the cards' ``data-*`` attributes from the DOM instead, so there is
no ``</script>`` breakout to guard against. The CSP pins the one script and the
one stylesheet by hash, so even an escaping bug could not run injected code.

Filtering toggles each card's ``hidden`` attribute and touches nothing else,
which keeps a gallery of thousands of cards responsive.

With embeddings, the map of the data (``map.png``, :class:`MapImage`) is shown
above the cards, embedded as a ``data:`` URI like the thumbnails.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from cleaner.core.atomic import write_text
from cleaner.core.config import MAX_IMAGE_PIXELS
from cleaner.formats.issue_kinds import actions_text, has_suggestion
from cleaner.review import web

# Images smaller than this on their longest side (8x8 digits, 28x28 MNIST)
# are blown up, else they are specks on a screen.
MIN_THUMB_SIDE = 64

# The stylesheet (base.css and gallery.css) and the script are package files
# (cleaner/web), inlined into the page and pinned by hash in its CSP.
_STYLE = web.stylesheet("gallery.css")
_SCRIPT = web.read("gallery.js")


def _csp(css: str) -> str:
    """Only the page's own stylesheet and script (pinned by hash) and data: images
    may load; everything else, network included, is refused by the browser."""
    return (
        "default-src 'none'; img-src data:; "
        f"style-src {web.csp_hash(css)}; script-src {web.csp_hash(_SCRIPT)}; "
        "base-uri 'none'; form-action 'none'"
    )


def _esc(value: str) -> str:
    return html.escape(value, quote=True)


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and float images (some PNG and TIFF masks) stretched to ``L``.

    PIL's own ``convert("L")`` clips 16-bit values at 255, which turns most
    such images white.
    """
    arr = np.asarray(im, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
    return Image.fromarray(np.nan_to_num(scaled).clip(0, 255).astype(np.uint8), mode="L")


def _normalise_mode(im: Image.Image) -> Image.Image:
    if im.mode in ("L", "RGB", "RGBA"):
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _to_8bit(im)
    if im.mode == "1":
        return im.convert("L")
    if im.mode == "LA" or "transparency" in im.info or im.mode in ("PA", "RGBa", "La"):
        return im.convert("RGBA")
    return im.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV


def _encode(im: Image.Image) -> tuple[str, bytes]:
    png = io.BytesIO()
    im.save(png, format="PNG", optimize=True)
    best = ("image/png", png.getvalue())
    # Photos compress far better as JPEG; digits and flat drawings as PNG.
    # Trying both on a 128-pixel thumbnail costs little, so keep the smaller.
    if im.mode == "RGB":
        jpg = io.BytesIO()
        im.save(jpg, format="JPEG", quality=85, optimize=True)
        if len(jpg.getvalue()) < len(best[1]):
            best = ("image/jpeg", jpg.getvalue())
    return best


def thumbnail_data_uri(path: str | Path, *, size: int = 128) -> str | None:
    """A ``data:image/png;base64,...`` (or ``image/jpeg``) thumbnail of ``path``.

    The longest side is at most ``size`` and the aspect ratio is kept. Images
    smaller than ``min(size, 64)`` pixels are enlarged with nearest-neighbour
    sampling by the largest whole factor that still fits in ``size`` (an 8x8
    digit becomes 128x128), so they stay crisp and readable. RGB
    images become JPEG when that is smaller than PNG. Returns ``None`` when the
    file is missing or unreadable; never raises.
    """
    if size < 1:
        raise ValueError(f"thumbnail size must be at least 1 pixel, got {size}")
    try:
        with warnings.catch_warnings():  # Pillow warns about a bomb it opens: ours is refused
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                return None  # a decompression bomb: its header is all that is read
            opened.seek(0)  # first frame of an animation
            # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: a 12-megapixel
            # photo then costs a fraction of the time and memory of a full decode.
            opened.draft(None, (size, size))
            im = ImageOps.exif_transpose(opened)  # phone photos are stored sideways
            im.load()
        im = _normalise_mode(im)
        longest = max(im.size)
        if longest < 1:
            return None
        target_min = min(size, MIN_THUMB_SIDE)
        if longest > size:
            im.thumbnail((size, size), Image.Resampling.LANCZOS)
        elif longest < target_min:
            # A whole factor keeps every source pixel the same size on screen;
            # the biggest one fitting ``size`` makes tiny digits readable, and
            # repeated pixels cost PNG almost nothing.
            factor = size // longest
            if factor > 1:
                im = im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST)
        mime, data = _encode(im)
    except Exception:
        # Corrupt, truncated, decompression-bomb or unsupported files all end
        # up here: the gallery shows a placeholder instead of failing the run.
        return None
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _text(value: Any) -> str:
    """A cell as display text: blank for missing, ``3`` rather than ``3.0``."""
    if value is None:
        return ""
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):  # pd.isna of a list-like is not a bool
        pass
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _quality(value: Any) -> tuple[str, float | None]:
    try:
        q = float(value)
    except (TypeError, ValueError):
        return _text(value), None
    if math.isnan(q):
        return "", None
    return f"{q:.3f}", q


def _placeholder(reason: str) -> str:
    return f'<div class="thumb noimg"><span>no image</span><small>{_esc(reason)}</small></div>'


def _thumb_html(path: Path | None, sample_id: str, thumb_size: int) -> str:
    if path is None:
        return _placeholder("no single image")
    uri = thumbnail_data_uri(path, size=thumb_size)
    if uri is None:
        return _placeholder("file missing" if not Path(path).exists() else "unreadable")
    # The data URI is base64 and our own; escaping it anyway costs nothing.
    return f'<div class="thumb"><img src="{_esc(uri)}" alt="{_esc(sample_id)}"></div>'


def _pair_html(
    path: Path | None, sid: str, partner: tuple[str, Path | None], thumb_size: int
) -> str:
    """The row's image and its partner's (the other image of a near duplicate or a
    leakage pair) side by side: the reviewer judges the two together."""
    partner_id, partner_path = partner
    other = (
        _placeholder("not in the manifest")
        if partner_path is None
        else _thumb_html(partner_path, partner_id, thumb_size)
    )
    return (
        '<div class="pair">'
        f"<figure>{_thumb_html(path, sid, thumb_size)}<figcaption>this image</figcaption></figure>"
        f'<figure class="partner">{other}'
        f'<figcaption title="{_esc(partner_id)}">partner: {_esc(partner_id) or "?"}'
        "</figcaption></figure></div>"
    )


def _labels_html(given: str, suggested: str, suggests: bool) -> str:
    """The given label and, for kinds that have one, the suggested label after it."""
    shown = (
        '<span class="arrow">&rarr;</span>'
        f'<span class="suggested" title="suggested label">{_esc(suggested) or "(none)"}</span>'
        if suggests
        else '<span class="nosugg">no suggested class</span>'
    )
    return (
        '<div class="labels">'
        f'<span class="given" title="given label">{_esc(given) or "(none)"}</span>{shown}</div>'
    )


def _quality_html(value: Any) -> str:
    """The label quality as a number and a meter (a blank one shows neither)."""
    q_text, q = _quality(value)
    parts = ['<div class="stats">']
    if q_text:
        parts.append(f'<span class="quality" title="label quality">quality {_esc(q_text)}</span>')
    if q is not None:
        # A meter needs no inline style, which the CSP would refuse.
        clamped = min(max(q, 0.0), 1.0)
        parts.append(f'<meter min="0" max="1" low="0.3" high="0.7" optimum="1" value="{clamped}">')
        parts.append("</meter>")
    parts.append("</div>")
    return "".join(parts)


def _issue_html(issue: str, group: str) -> str:
    """The row's issue kind and group, where it has them."""
    if not (issue or group):
        return ""
    parts = ['<div class="stats">']
    if issue:
        parts.append(f'<span class="issue">{_esc(issue)}</span>')
    if group:
        parts.append(f'<span class="group">group: {_esc(group)}</span>')
    parts.append("</div>")
    return "".join(parts)


def _decision_html(decision: str, new_label: str, note: str) -> str:
    """What a reviewer already wrote in the queue: the decision, new label and note."""
    bits = []
    if decision:
        bits.append(f"decision: <b>{_esc(decision)}</b>")
    if new_label:
        bits.append(f'new label: <b class="suggested">{_esc(new_label)}</b>')
    if note:
        bits.append(f'<span class="note">{_esc(note)}</span>')
    return '<div class="decision">' + " &middot; ".join(bits) + "</div>" if bits else ""


def _card(
    row: Mapping[Any, Any],
    path: Path | None,
    thumb_size: int,
    partner: tuple[str, Path | None] | None = None,
) -> str:
    sid = _text(row.get("sample_id"))
    given = _text(row.get("given_label"))
    issue = _text(row.get("issue"))
    # By the kind, not the cell: an older queue may carry a suggestion on an outlier row.
    suggests = has_suggestion(issue)
    suggested = _text(row.get("suggested_label")) if suggests else ""
    src = _text(row.get("path"))
    return "".join(
        [
            f'<article class="card" data-issue="{_esc(issue)}" data-given="{_esc(given)}"'
            f' data-suggested="{_esc(suggested)}" data-id="{_esc(sid)}">',
            _thumb_html(path, sid, thumb_size)
            if partner is None
            else _pair_html(path, sid, partner, thumb_size),
            '<div class="meta">',
            f'<div class="head"><span class="rank">#{_esc(_text(row.get("rank")))}</span>'
            f'<span class="sid" title="{_esc(sid)}">{_esc(sid)}</span></div>',
            _labels_html(given, suggested, suggests),
            f'<div class="actions" title="decisions that fit this row">'
            f"decide: <b>{_esc(actions_text(issue))}</b></div>",
            _quality_html(row.get("label_quality")),
            _issue_html(issue, _text(row.get("group"))),
            f'<div class="path" title="{_esc(src)}">{_esc(src)}</div>' if src else "",
            _decision_html(
                _text(row.get("decision")), _text(row.get("new_label")), _text(row.get("note"))
            ),
            "</div></article>",
        ]
    )


@dataclass(frozen=True)
class MapImage:
    """The map of the data as the gallery shows it: the PNG's bytes, its caption, and
    the file's name beside the gallery (a link to open it alone)."""

    png: bytes
    caption: str
    file: str


def _map_html(data_map: MapImage | None) -> str:
    if data_map is None:
        return ""
    uri = "data:image/png;base64," + base64.b64encode(data_map.png).decode("ascii")
    return (
        '<details class="map" open><summary>map of the data '
        f'(<a href="{_esc(data_map.file)}">{_esc(data_map.file)}</a>)</summary>'
        f'<figure><img src="{uri}" alt="map of the data">'
        f"<figcaption>{_esc(data_map.caption)}</figcaption></figure></details>"
    )


def _options(values: Sequence[tuple[str, str]], all_label: str) -> str:
    opts = [f'<option value="">{_esc(all_label)}</option>']
    opts += [f'<option value="{_esc(v)}">{_esc(text)}</option>' for v, text in values]
    return "".join(opts)


def _cards(
    records: Sequence[Mapping[Any, Any]],
    image_paths: Sequence[Path | None],
    partner_paths: Sequence[Path | None] | None,
    thumb_size: int,
    on_image: Callable[[], None] | None,
) -> list[str]:
    """One card per queue row, its partner's image beside its own where it has one."""
    partners = list(partner_paths) if partner_paths is not None else [None] * len(records)
    cards = []
    for row, path, partner_path in zip(records, image_paths, partners, strict=True):
        partner_id = _text(row.get("partner"))
        partner = (
            (partner_id, None if partner_path is None else Path(partner_path))
            if partner_paths is not None and (partner_id or partner_path is not None)
            else None
        )
        cards.append(_card(row, None if path is None else Path(path), thumb_size, partner))
        if on_image is not None:
            on_image()
    return cards


def _class_filter(records: Sequence[Mapping[Any, Any]], classes: Sequence[str]) -> list[str]:
    """The class filter's values: the configured classes in their order, then labels
    in the queue that are not among them (a typo, a removed class), so that every card
    can still be reached by the filter."""
    class_values = [c for c in (_text(c) for c in classes) if c]
    seen = set(class_values)
    for row in records:
        suggests = has_suggestion(_text(row.get("issue")))
        for key in ("given_label", "suggested_label") if suggests else ("given_label",):
            label = _text(row.get(key))
            if label and label not in seen:
                seen.add(label)
                class_values.append(label)
    return class_values


def _issue_filter(records: Sequence[Mapping[Any, Any]]) -> list[tuple[str, str]]:
    """The issue filter's ``(value, text)`` pairs: each kind with its count."""
    issue_counts = Counter(_text(row.get("issue")) for row in records)
    issue_counts.pop("", None)
    return [(k, f"{k} ({n})") for k, n in sorted(issue_counts.items())]


def render_gallery(
    queue: pd.DataFrame,
    image_paths: Sequence[Path | None],
    *,
    title: str,
    classes: Sequence[str],
    thumb_size: int = 128,
    on_image: Callable[[], None] | None = None,
    partner_paths: Sequence[Path | None] | None = None,
    noise_png: str | None = None,
    data_map: MapImage | None = None,
) -> str:
    """One self-contained HTML document showing ``queue`` as a filterable card grid.

    ``queue`` is the relabel queue (``rank, sample_id, path, group, given_label,
    suggested_label, label_quality, issue, decision, new_label, note, partner``;
    other columns are ignored, missing ones shown blank). Rows of a kind without
    a suggestion (``cleaner.formats.issue_kinds``) show none, whatever their cell holds.
    ``image_paths[i]`` is the image of row ``i``, or ``None`` for rows (groups)
    without a single image.
    ``on_image`` is called once per row, after its thumbnail is made.
    ``partner_paths[i]`` is the manifest image of row ``i``'s ``partner`` (the other
    image of a near duplicate or leakage pair), shown beside the row's own; a row
    with a ``partner`` id but no path shows a placeholder for it.
    ``data_map`` (the map of the data) is shown above the cards.
    """
    if len(image_paths) != len(queue):
        raise ValueError(
            f"image_paths has {len(image_paths)} entries but the queue has {len(queue)} rows"
        )
    if partner_paths is not None and len(partner_paths) != len(queue):
        raise ValueError(
            f"partner_paths has {len(partner_paths)} entries but the queue has {len(queue)} rows"
        )
    if thumb_size < 1:
        raise ValueError(f"thumb_size must be at least 1 pixel, got {thumb_size}")
    records = queue.to_dict("records")
    cards = _cards(records, image_paths, partner_paths, thumb_size, on_image)
    # thumb_size is an int, so these custom properties cannot carry user text.
    css = f":root {{ --thumb: {thumb_size}px; --card-min: {max(thumb_size + 60, 200)}px; }}"
    css += _STYLE
    document = web.template("gallery.html").substitute(
        csp=_esc(_csp(css)),
        title=_esc(title),
        style=css,
        class_options=_options([(c, c) for c in _class_filter(records, classes)], "all classes"),
        issue_options=_options(_issue_filter(records), "all issues"),
        count=len(records),
        noise_link=(
            f' <a href="{_esc(noise_png)}">estimated noise matrix (PNG)</a>' if noise_png else ""
        ),
        data_map=_map_html(data_map),
        cards="\n".join(cards) if cards else '<p class="empty">The queue is empty.</p>',
        script=_SCRIPT,
    )
    # Pure ASCII (other characters as numeric references) so the file reads the
    # same whatever encoding the writer's locale or the viewer assumes.
    return document.encode("ascii", "xmlcharrefreplace").decode("ascii")


class GalleryOptions(TypedDict, total=False):
    """:func:`render_gallery`'s optional keywords, which :func:`write_gallery` passes on."""

    thumb_size: int
    on_image: Callable[[], None] | None
    partner_paths: Sequence[Path | None] | None
    noise_png: str | None
    data_map: MapImage | None


def write_gallery(
    path: str | Path,
    queue: pd.DataFrame,
    image_paths: Sequence[Path | None],
    *,
    title: str,
    classes: Sequence[str],
    **options: Unpack[GalleryOptions],
) -> Path:
    """:func:`render_gallery` written to ``path`` atomically; returns ``path``.

    Refuses to overwrite an existing file (``FileExistsError``), like every
    other output of a run.
    """
    path = Path(path)
    write_text(path, render_gallery(queue, image_paths, title=title, classes=classes, **options))
    return path
