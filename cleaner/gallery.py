"""The relabel queue as one self-contained HTML gallery (``queue.html``).

The page must open from disk, with no server and no network, and keep working
when it is mailed or copied elsewhere: thumbnails are embedded as ``data:``
URIs and all CSS and JavaScript is inline. A Content-Security-Policy ``<meta>``
forbids every other source, so a stray reference fails loudly instead of
leaking a request.

Every value from the queue is untrusted text (sample ids, paths and class
names come from users' files): each one goes through ``html.escape(...,
quote=True)``, and none is ever placed inside the ``<script>`` element. The
filters read the cards' ``data-*`` attributes from the DOM instead, so there is
no ``</script>`` breakout to guard against. The CSP pins the one script and the
one stylesheet by hash, so even an escaping bug could not run injected code.

Filtering toggles each card's ``hidden`` attribute and touches nothing else,
which keeps a gallery of thousands of cards responsive.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from cleaner.atomic import write_text
from cleaner.issue_kinds import actions_text, has_suggestion

# Images smaller than this on their longest side (8x8 digits, 28x28 MNIST)
# are blown up, else they are specks on a screen.
MIN_THUMB_SIDE = 64

_CSS = """
:root {
  --given: #b42318; --given-bg: #fef3f2;
  --suggested: #067647; --suggested-bg: #ecfdf3;
  --ink: #1d2939; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
header {
  position: sticky; top: 0; z-index: 1; background: #fff;
  border-bottom: 1px solid var(--line); padding: 12px 20px;
}
h1 { font-size: 20px; margin: 0 0 8px; overflow-wrap: anywhere; }
.filters { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; }
.filters label { color: var(--muted); font-size: 13px; }
.filters select, .filters input {
  font: inherit; padding: 4px 6px; border: 1px solid #d0d5dd; border-radius: 6px;
  background: #fff; margin-left: 4px; max-width: 240px;
}
.filters button {
  font: inherit; padding: 4px 10px; border: 1px solid #d0d5dd; border-radius: 6px;
  background: #fff; cursor: pointer;
}
#count { margin-left: auto; color: var(--muted); font-variant-numeric: tabular-nums; }
.legend { font-size: 12px; color: var(--muted); margin-top: 6px; }
.grid {
  display: grid; gap: 12px; padding: 16px 20px;
  grid-template-columns: repeat(auto-fill, minmax(var(--card-min), 1fr));
}
.card {
  background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 10px; display: flex; flex-direction: column; gap: 8px; min-width: 0;
}
.thumb {
  width: 100%; height: var(--thumb); display: flex; align-items: center;
  justify-content: center; background: #f2f4f7; border-radius: 6px; overflow: hidden;
}
.thumb img {
  max-width: 100%; max-height: 100%; object-fit: contain;
  /* upscaled digits must stay blocky, not blurred, when the browser scales */
  image-rendering: pixelated;
}
.noimg {
  flex-direction: column; color: var(--muted); font-size: 13px;
  border: 2px dashed #d0d5dd; background: #fafafa;
}
.noimg small { font-size: 11px; }
.meta { display: flex; flex-direction: column; gap: 3px; min-width: 0; }
.head { display: flex; gap: 6px; align-items: baseline; min-width: 0; }
.rank { color: var(--muted); font-variant-numeric: tabular-nums; }
.sid { font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.labels { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.given, .suggested {
  padding: 1px 6px; border-radius: 4px; font-weight: 600; overflow-wrap: anywhere;
}
.given { color: var(--given); background: var(--given-bg); }
.suggested { color: var(--suggested); background: var(--suggested-bg); }
.arrow { color: var(--muted); }
.stats { display: flex; gap: 6px; align-items: center; flex-wrap: wrap; }
.issue {
  font-size: 12px; padding: 0 6px; border-radius: 10px; background: #eef4ff; color: #3538cd;
}
.card[data-issue="outlier"] .issue { background: #fff6ed; color: #c4320a; }
.card[data-issue="near_duplicate"] .issue { background: #f4f3ff; color: #5925dc; }
.card[data-issue="leakage"] .issue { background: #fef3f2; color: #b42318; }
.card[data-issue="group_inconsistent"] .issue { background: #fdf2fa; color: #c11574; }
.card[data-issue="unlabeled"] .issue { background: #f2f4f7; color: #344054; }
.quality { font-variant-numeric: tabular-nums; color: var(--muted); font-size: 12px; }
.stats:empty { display: none; }
meter { width: 64px; height: 10px; }
.group, .path { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.path {
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 11px;
}
.decision {
  font-size: 12px; border-top: 1px solid var(--line); padding-top: 4px; overflow-wrap: anywhere;
}
.decision b { font-weight: 600; }
.note { font-style: italic; color: var(--muted); }
.nosugg { color: var(--muted); font-size: 12px; }
.actions { font-size: 12px; color: var(--muted); }
.actions b { color: var(--ink); font-weight: 600; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 6px; }
.pair figure { margin: 0; min-width: 0; display: flex; flex-direction: column; gap: 2px; }
.pair figcaption {
  font-size: 11px; color: var(--muted); overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap;
}
.empty { padding: 40px 20px; color: var(--muted); }
"""

# No user data may ever appear in here (see the module docstring); the
# filters read data-* attributes. No "//" comments either: the page is checked
# for "//" references and a JS comment would be a false alarm.
_JS = """
(function () {
  "use strict";
  var cls = document.getElementById("f-class");
  var iss = document.getElementById("f-issue");
  var q = document.getElementById("f-search");
  var count = document.getElementById("count");
  var cards = Array.prototype.slice.call(document.querySelectorAll(".card"));
  /* read the attributes once: the DOM is never re-rendered, only hidden */
  var rows = cards.map(function (el) {
    return {
      el: el,
      given: el.getAttribute("data-given"),
      suggested: el.getAttribute("data-suggested"),
      issue: el.getAttribute("data-issue"),
      id: (el.getAttribute("data-id") || "").toLowerCase()
    };
  });
  function apply() {
    var c = cls.value, i = iss.value, s = q.value.trim().toLowerCase(), n = 0;
    for (var k = 0; k < rows.length; k++) {
      var r = rows[k];
      var ok = (!c || r.given === c || r.suggested === c) &&
               (!i || r.issue === i) &&
               (!s || r.id.indexOf(s) !== -1);
      if (r.el.hidden === ok) { r.el.hidden = !ok; }
      if (ok) { n++; }
    }
    count.textContent = "showing " + n + " of " + rows.length;
  }
  cls.addEventListener("change", apply);
  iss.addEventListener("change", apply);
  q.addEventListener("input", apply);
  document.getElementById("f-clear").addEventListener("click", function () {
    cls.value = ""; iss.value = ""; q.value = ""; apply();
  });
  apply();
})();
"""


_LEGEND = (
    '<span class="given">given</span> &rarr; <span class="suggested">suggested</span> label;'
    " a lower label quality means more likely mislabeled. Outliers, near duplicates and"
    " leakage (a train image that is also a test or unlabeled image) suggest no class;"
    " each card lists the decisions that fit it."
)


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _csp(css: str) -> str:
    """Only the page's own stylesheet and script (pinned by hash) and data: images
    may load; everything else, network included, is refused by the browser."""
    return (
        "default-src 'none'; img-src data:; "
        f"style-src {_csp_hash(css)}; script-src {_csp_hash(_JS)}; "
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
        with Image.open(path) as opened:
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
    rank = _text(row.get("rank"))
    group = _text(row.get("group"))
    src = _text(row.get("path"))
    decision = _text(row.get("decision"))
    new_label = _text(row.get("new_label"))
    note = _text(row.get("note"))
    q_text, q = _quality(row.get("label_quality"))

    parts = [
        f'<article class="card" data-issue="{_esc(issue)}" data-given="{_esc(given)}"'
        f' data-suggested="{_esc(suggested)}" data-id="{_esc(sid)}">',
        _thumb_html(path, sid, thumb_size)
        if partner is None
        else _pair_html(path, sid, partner, thumb_size),
        '<div class="meta">',
        f'<div class="head"><span class="rank">#{_esc(rank)}</span>'
        f'<span class="sid" title="{_esc(sid)}">{_esc(sid)}</span></div>',
        '<div class="labels">'
        f'<span class="given" title="given label">{_esc(given) or "(none)"}</span>'
        + (
            '<span class="arrow">&rarr;</span>'
            f'<span class="suggested" title="suggested label">{_esc(suggested) or "(none)"}</span>'
            if suggests
            else '<span class="nosugg">no suggested class</span>'
        )
        + "</div>",
        f'<div class="actions" title="decisions that fit this row">'
        f"decide: <b>{_esc(actions_text(issue))}</b></div>",
        '<div class="stats">',
    ]
    if q_text:
        parts.append(f'<span class="quality" title="label quality">quality {_esc(q_text)}</span>')
    if q is not None:
        # A meter needs no inline style, which the CSP would refuse.
        clamped = min(max(q, 0.0), 1.0)
        parts.append(f'<meter min="0" max="1" low="0.3" high="0.7" optimum="1" value="{clamped}">')
        parts.append("</meter>")
    parts.append("</div>")
    if issue or group:
        parts.append('<div class="stats">')
        if issue:
            parts.append(f'<span class="issue">{_esc(issue)}</span>')
        if group:
            parts.append(f'<span class="group">group: {_esc(group)}</span>')
        parts.append("</div>")
    if src:
        parts.append(f'<div class="path" title="{_esc(src)}">{_esc(src)}</div>')
    if decision or new_label or note:
        bits = []
        if decision:
            bits.append(f"decision: <b>{_esc(decision)}</b>")
        if new_label:
            bits.append(f'new label: <b class="suggested">{_esc(new_label)}</b>')
        if note:
            bits.append(f'<span class="note">{_esc(note)}</span>')
        parts.append('<div class="decision">' + " &middot; ".join(bits) + "</div>")
    parts.append("</div></article>")
    return "".join(parts)


def _options(values: Sequence[tuple[str, str]], all_label: str) -> str:
    opts = [f'<option value="">{_esc(all_label)}</option>']
    opts += [f'<option value="{_esc(v)}">{_esc(text)}</option>' for v, text in values]
    return "".join(opts)


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
) -> str:
    """One self-contained HTML document showing ``queue`` as a filterable card grid.

    ``queue`` is the relabel queue (``rank, sample_id, path, group, given_label,
    suggested_label, label_quality, issue, decision, new_label, note, partner``;
    other columns are ignored, missing ones shown blank). Rows of a kind without
    a suggestion (``cleaner.issue_kinds``) show none, whatever their cell holds.
    ``image_paths[i]`` is the image of row ``i``, or ``None`` for rows (groups)
    without a single image.
    ``on_image`` is called once per row, after its thumbnail is made.
    ``partner_paths[i]`` is the manifest image of row ``i``'s ``partner`` (the other
    image of a near duplicate or leakage pair), shown beside the row's own; a row
    with a ``partner`` id but no path shows a placeholder for it.
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

    # The class filter lists the configured classes in their order; labels in
    # the queue that are not among them (a typo, a removed class) are appended
    # so that every card can still be reached by the filter.
    class_values = [c for c in (_text(c) for c in classes) if c]
    seen = set(class_values)
    for row in records:
        suggests = has_suggestion(_text(row.get("issue")))
        for key in ("given_label", "suggested_label") if suggests else ("given_label",):
            label = _text(row.get(key))
            if label and label not in seen:
                seen.add(label)
                class_values.append(label)
    issue_counts = Counter(_text(row.get("issue")) for row in records)
    issue_counts.pop("", None)
    issue_opts = [(k, f"{k} ({n})") for k, n in sorted(issue_counts.items())]

    class_opts = _options([(c, c) for c in class_values], "all classes")
    n = len(records)
    body = "\n".join(cards) if cards else '<p class="empty">The queue is empty.</p>'
    # thumb_size is an int, so these custom properties cannot carry user text.
    css = f":root {{ --thumb: {thumb_size}px; --card-min: {max(thumb_size + 60, 200)}px; }}" + _CSS
    noise_link = (
        f' <a href="{_esc(noise_png)}">estimated noise matrix (PNG)</a>' if noise_png else ""
    )
    document = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_esc(_csp(css))}">
<title>{_esc(title)}</title>
<style>{css}</style>
</head>
<body>
<header>
<h1>{_esc(title)}</h1>
<div class="filters">
<label>class<select id="f-class">{class_opts}</select></label>
<label>issue<select id="f-issue">{_options(issue_opts, "all issues")}</select></label>
<label>sample id<input id="f-search" type="search" placeholder="search" autocomplete="off"></label>
<button id="f-clear" type="button">clear</button>
<span id="count" aria-live="polite">showing {n} of {n}</span>
</div>
<div class="legend">{_LEGEND}{noise_link}</div>
</header>
<main class="grid">
{body}
</main>
<script>{_JS}</script>
</body>
</html>
"""
    # Pure ASCII (other characters as numeric references) so the file reads the
    # same whatever encoding the writer's locale or the viewer assumes.
    return document.encode("ascii", "xmlcharrefreplace").decode("ascii")


def write_gallery(
    path: str | Path,
    queue: pd.DataFrame,
    image_paths: Sequence[Path | None],
    *,
    title: str,
    classes: Sequence[str],
    thumb_size: int = 128,
    on_image: Callable[[], None] | None = None,
    partner_paths: Sequence[Path | None] | None = None,
) -> Path:
    """:func:`render_gallery` written to ``path`` atomically; returns ``path``.

    Refuses to overwrite an existing file (``FileExistsError``), like every
    other output of a run.
    """
    path = Path(path)
    text = render_gallery(
        queue,
        image_paths,
        title=title,
        classes=classes,
        thumb_size=thumb_size,
        on_image=on_image,
        partner_paths=partner_paths,
    )
    write_text(path, text)
    return path
