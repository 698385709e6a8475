"""The HTML gallery: real images in ``tmp_path``, output parsed back with the stdlib.

The page is checked the way a browser would read it (``html.parser``), never
by string matching on the markup alone: every card, every image reference and
every attribute value is parsed back and compared with what went in.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from cleaner.formats.queue_file import QUEUE_COLUMNS
from cleaner.review.gallery import MapImage, render_gallery, thumbnail_data_uri, write_gallery

EVIL = "<script>alert(1)</script>\"'&</script>"
COLUMNS = list(QUEUE_COLUMNS)


class Page(HTMLParser):
    """The parts of a gallery that the tests look at, as a browser parses them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.cards: list[dict] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []  # (tag, name, value)
        self.data: list[str] = []
        self.selects: dict[str, list[tuple[str, str]]] = {}
        self.title = ""
        self.h1 = ""
        self._capture: str | None = None
        self._select: str | None = None
        self._option: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.attrs += [(tag, k, v) for k, v in attrs]
        classes = (a.get("class") or "").split()
        if self.cards:
            self.cards[-1]["classes"].update(classes)
        if tag == "article" and "card" in classes:
            self.cards.append(
                {"attrs": a, "sid": "", "img": None, "imgs": [], "placeholder": False}
                | {"classes": set(), "text": ""}
            )
        elif tag == "img" and self.cards:
            self.cards[-1]["img"] = self.cards[-1]["img"] or a  # the row's own, first
            self.cards[-1]["imgs"].append(a)
        elif tag == "div" and "noimg" in classes:
            self.cards[-1]["placeholder"] = True
        elif tag == "span" and "sid" in classes:
            self._capture = "sid"
        elif tag in ("script", "style", "title", "h1"):
            self._capture = tag
            if tag == "script":
                self.scripts.append("")
            elif tag == "style":
                self.styles.append("")
        elif tag == "select":
            self._select = a["id"]
            self.selects[a["id"] or ""] = []
        elif tag == "option":
            self._option = a["value"]
            self.selects[self._select or ""].append((a["value"] or "", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("span", "script", "style", "title", "h1"):
            self._capture = None
        elif tag == "select":
            self._select = None
        elif tag == "option":
            self._option = None

    def handle_data(self, data: str) -> None:
        if self._capture == "script":
            self.scripts[-1] += data
            return
        if self._capture == "style":
            self.styles[-1] += data
            return
        self.data.append(data)
        if self.cards:
            self.cards[-1]["text"] += data
        if self._capture == "sid":
            self.cards[-1]["sid"] += data
        elif self._capture == "title":
            self.title += data
        elif self._capture == "h1":
            self.h1 += data
        if self._option is not None and self._select is not None:
            value, text = self.selects[self._select][-1]
            self.selects[self._select][-1] = (value, text + data)


def _decode(uri: str) -> Image.Image:
    header, _, payload = uri.partition(",")
    assert header in ("data:image/png;base64", "data:image/jpeg;base64")
    im = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    im.load()
    assert im.format == header.split("/")[1].split(";")[0].upper()
    return im


def _queue(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{c: r.get(c, "") for c in COLUMNS} for r in rows], columns=COLUMNS)


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """A real 8x8 digit, an RGB photo-like image, a corrupt file and a missing path."""
    digit = (load_digits().images[0] * (255 / 16)).astype(np.uint8)  # 8x8, values 0..16
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:150, 0:300]
    photo = np.stack([xx * 255 / 300, yy * 255 / 150, (xx + yy) % 256], axis=-1)
    photo = (photo + rng.normal(0, 8, photo.shape)).clip(0, 255).astype(np.uint8)
    paths = {
        "digit": tmp_path / "digit.png",
        "photo": tmp_path / "photo.png",
        "corrupt": tmp_path / "corrupt.png",
        "missing": tmp_path / "nowhere" / "missing.png",
    }
    Image.fromarray(digit, mode="L").save(paths["digit"])
    Image.fromarray(photo, mode="RGB").save(paths["photo"])
    paths["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return paths


# -- thumbnails ---------------------------------------------------------------


def test_digit_is_upscaled_with_nearest_neighbour(images: dict[str, Path]) -> None:
    uri = thumbnail_data_uri(images["digit"])
    assert uri is not None and uri.startswith("data:image/png;base64,")
    thumb = _decode(uri)
    assert thumb.size == (128, 128) and thumb.mode == "L"
    # Nearest neighbour by a whole factor: every 16x16 block is one source pixel.
    src = np.asarray(Image.open(images["digit"]))
    assert np.array_equal(np.asarray(thumb)[::16, ::16], src)
    assert np.array_equal(np.asarray(thumb)[15::16, 15::16], src)
    assert _decode(thumbnail_data_uri(images["digit"], size=64) or "").size == (64, 64)
    assert _decode(thumbnail_data_uri(images["digit"], size=20) or "").size == (16, 16)


def test_rgb_thumbnail_keeps_aspect_and_bound(images: dict[str, Path]) -> None:
    thumb = _decode(thumbnail_data_uri(images["photo"], size=128) or "")
    assert thumb.size == (128, 64) and thumb.mode == "RGB"
    small = _decode(thumbnail_data_uri(images["photo"], size=40) or "")
    assert small.size == (40, 20)


def test_large_jpeg_is_reduced(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (600, 1200, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "big.jpg", quality=80)
    thumb = _decode(thumbnail_data_uri(tmp_path / "big.jpg") or "")
    assert thumb.size == (128, 64) and thumb.mode == "RGB"


@pytest.mark.parametrize("name", ["corrupt", "missing", "directory", "empty"])
def test_unreadable_files_give_none(images: dict[str, Path], tmp_path: Path, name: str) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    path = {"directory": tmp_path, "empty": tmp_path / "empty.png"}.get(name) or images[name]
    assert thumbnail_data_uri(path) is None


def test_sixteen_bit_and_palette_images_are_shown(tmp_path: Path) -> None:
    # PIL clips 16-bit to 255 on convert("L"); the thumbnail must stretch instead.
    deep = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 3).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    thumb = np.asarray(_decode(thumbnail_data_uri(tmp_path / "deep.png") or ""))
    assert thumb.min() == 0 and thumb.max() == 255 and len(np.unique(thumb)) > 100

    Image.new("RGB", (20, 10), "red").convert("P").save(tmp_path / "pal.gif")
    pal = _decode(thumbnail_data_uri(tmp_path / "pal.gif") or "")
    assert pal.size == (120, 60)  # x6, the biggest whole factor fitting 128
    Image.new("RGBA", (10, 10), (0, 0, 255, 128)).save(tmp_path / "alpha.png")
    assert _decode(thumbnail_data_uri(tmp_path / "alpha.png") or "").mode == "RGBA"


# -- the page -----------------------------------------------------------------


def _five_rows(images: dict[str, Path]) -> tuple[pd.DataFrame, list[Path | None]]:
    queue = _queue(
        [
            dict(rank=1, sample_id="d1", path="digit.png", given_label="a", suggested_label="b",
                 label_quality=0.12345, issue="label"),
            dict(rank=2, sample_id="p1", path="photo.png", given_label="b", suggested_label="a",
                 label_quality=0.5, issue="outlier", decision="relabel", new_label="a",
                 note="looks like an a"),
            dict(rank=3, sample_id="m1", path="nowhere/missing.png", given_label="a",
                 suggested_label="a", label_quality=0.9, issue="near_duplicate"),
            dict(rank=4, sample_id="c1", path="corrupt.png", given_label="b",
                 suggested_label="b", label_quality=float("nan"), issue="label"),
            dict(rank=5, sample_id="g:7", group="7", given_label="a", suggested_label="b",
                 label_quality=0.2, issue="group_inconsistent", note=float("nan")),
        ]
    )  # fmt: skip
    paths = [images["digit"], images["photo"], images["missing"], images["corrupt"], None]
    return queue, paths


def test_one_card_per_row_and_every_image_resolves(images: dict[str, Path]) -> None:
    queue, paths = _five_rows(images)
    calls: list[int] = []
    text = render_gallery(
        queue, paths, title="Run 1 queue", classes=["a", "b"], on_image=lambda: calls.append(1)
    )
    page = Page(text)

    assert len(calls) == 5
    assert page.title == page.h1 == "Run 1 queue"
    assert [c["sid"] for c in page.cards] == ["d1", "p1", "m1", "c1", "g:7"]
    digit, photo, missing, corrupt, group = page.cards
    assert _decode(digit["img"]["src"]).size == (128, 128)
    assert _decode(photo["img"]["src"]).size == (128, 64)
    for card in (missing, corrupt, group):
        assert card["img"] is None and card["placeholder"]
    # Every <img> anywhere in the page is a data URI PIL can open.
    srcs = [v for tag, k, v in page.attrs if tag == "img" and k == "src"]
    assert len(srcs) == 2
    for src in srcs:
        _decode(src or "")

    assert digit["attrs"]["data-given"] == "a" and digit["attrs"]["data-suggested"] == "b"
    assert group["attrs"]["data-issue"] == "group_inconsistent"
    assert page.selects["f-class"][0] == ("", "all classes")
    shown = " ".join(page.data)
    assert "0.123" in shown and "quality 0.500" in shown
    assert "group: 7" in shown and "relabel" in shown and "looks like an a" in shown
    assert "nan" not in shown.lower()  # blank cells stay blank
    assert "showing 5 of 5" in shown


def test_no_network_references_and_a_strict_csp(images: dict[str, Path]) -> None:
    queue, paths = _five_rows(images)
    text = render_gallery(queue, paths, title="t", classes=["a", "b"])
    page = Page(text)
    for tag, name, value in page.attrs:
        if name in ("src", "href", "srcset", "action", "poster", "data"):
            assert (value or "").startswith("data:"), (tag, name, value)
    assert "http://" not in text and "https://" not in text
    for code in page.scripts + page.styles:
        # A protocol-relative address ("//host/x") would load from the network; "//"
        # comments in the script are fine.
        assert not re.search(r"""["'`(]\s*//""", code), code
        assert "url(" not in code and "@import" not in code
    (script,) = page.scripts
    for call in ("fetch(", "XMLHttpRequest", "sendBeacon", "WebSocket", "EventSource", "import("):
        assert call not in script

    # The CSP pins exactly the page's own script and style: if the hashes did
    # not match, the browser would refuse them and the filters would be dead.
    csp = next(v for tag, k, v in page.attrs if tag == "meta" and k == "content" and "src" in v)
    assert "default-src 'none'" in csp and "img-src data:" in csp
    for code in page.scripts + page.styles:
        digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp


def test_hostile_text_stays_text(images: dict[str, Path]) -> None:
    queue = _queue(
        [
            dict(rank=1, sample_id=EVIL, path=EVIL, group=EVIL, given_label=EVIL,
                 suggested_label="b", label_quality=0.1, issue=EVIL, decision=EVIL,
                 new_label=EVIL, note=EVIL),
            dict(rank=2, sample_id="ok", path="digit.png", given_label="a",
                 suggested_label=EVIL, label_quality=0.2, issue="label"),
        ]
    )  # fmt: skip
    text = render_gallery(queue, [images["missing"], images["digit"]], title=EVIL, classes=[EVIL])
    page = Page(text)

    assert len(page.scripts) == 1 and "alert" not in page.scripts[0]
    assert sum(1 for tag, *_ in page.attrs if tag == "script") == 0  # <script> has no attrs
    assert text.count("<script") == 1
    assert page.title == page.h1 == EVIL
    assert [c["sid"] for c in page.cards] == [EVIL, "ok"]
    evil_card, ok_card = page.cards
    # Attribute values come back whole: nothing broke out of its quotes.
    assert evil_card["attrs"]["data-given"] == EVIL
    assert evil_card["attrs"]["data-issue"] == EVIL
    assert evil_card["attrs"]["data-id"] == EVIL
    assert ok_card["attrs"]["data-suggested"] == EVIL
    assert set(evil_card["attrs"]) == {"class", "data-issue", "data-given", "data-suggested",
                                       "data-id"}  # fmt: skip
    assert any(v == EVIL for tag, k, v in page.attrs if k == "title")  # the path tooltip
    assert sum(d.count(EVIL) for d in page.data) >= 6  # sid, given, group, path, note, ...
    assert (EVIL, EVIL) in page.selects["f-class"]
    assert (EVIL, f"{EVIL} (1)") in page.selects["f-issue"]
    assert ok_card["img"]["alt"] == "ok"


def test_filters_list_classes_and_present_issue_kinds(images: dict[str, Path]) -> None:
    queue, paths = _five_rows(images)
    # "c" has no rows but is a class; "z" is in the queue but not a class.
    queue.loc[0, "suggested_label"] = "z"
    page = Page(render_gallery(queue, paths, title="t", classes=["a", "b", "c"]))

    assert [v for v, _ in page.selects["f-class"]] == ["", "a", "b", "c", "z"]
    assert page.selects["f-issue"] == [
        ("", "all issues"),
        ("group_inconsistent", "group_inconsistent (1)"),
        ("label", "label (2)"),
        ("near_duplicate", "near_duplicate (1)"),
        ("outlier", "outlier (1)"),
    ]
    # The search box and the live count the script updates are there.
    ids = {v for tag, k, v in page.attrs if k == "id"}
    assert {"f-class", "f-issue", "f-search", "count"} <= ids


def test_numeric_cells_and_empty_queue(images: dict[str, Path]) -> None:
    queue = _queue([dict(rank=1.0, sample_id=17, given_label=3, suggested_label=5.0,
                         label_quality="0.25", issue="label")])  # fmt: skip
    page = Page(render_gallery(queue, [images["digit"]], title="t", classes=["3", "5"]))
    card = page.cards[0]
    assert card["sid"] == "17"
    assert (card["attrs"]["data-given"], card["attrs"]["data-suggested"]) == ("3", "5")
    assert "#1" in page.data and "quality 0.250" in page.data

    empty = Page(render_gallery(_queue([]), [], title="t", classes=["a"]))
    assert empty.cards == [] and "showing 0 of 0" in empty.data
    with pytest.raises(ValueError, match="image_paths"):
        render_gallery(queue, [], title="t", classes=["a"])


def test_a_thousand_rows(tmp_path: Path) -> None:
    tiny = []
    for k in range(4):  # a few distinct 8x8 images, reused
        p = tmp_path / f"tiny{k}.png"
        Image.fromarray(np.full((8, 8), k * 60, np.uint8)).save(p)
        tiny.append(p)
    n = 1000
    queue = _queue(
        [
            dict(rank=i + 1, sample_id=f"s{i:04d}", path=f"tiny{i % 4}.png",
                 given_label="ab"[i % 2], suggested_label="ba"[i % 2],
                 label_quality=i / n, issue=["label", "outlier", "near_duplicate"][i % 3])
            for i in range(n)
        ]
    )  # fmt: skip
    text = render_gallery(queue, [tiny[i % 4] for i in range(n)], title="big", classes=["a", "b"])
    assert len(text.encode()) < 40_000_000
    page = Page(text)
    assert len(page.cards) == n and all(c["img"] for c in page.cards)
    assert [c["sid"] for c in page.cards[:3]] == ["s0000", "s0001", "s0002"]
    assert f"showing {n} of {n}" in page.data


def test_write_gallery_is_atomic_and_refuses_to_overwrite(
    images: dict[str, Path], tmp_path: Path
) -> None:
    queue, paths = _five_rows(images)
    out = tmp_path / "run" / "queue.html"
    assert write_gallery(out, queue, paths, title="t", classes=["a", "b"]) == out
    written = out.read_text(encoding="ascii")  # pure ASCII, whatever the locale
    assert len(Page(written).cards) == 5

    with pytest.raises(FileExistsError):
        write_gallery(out, queue.iloc[:1], paths[:1], title="other", classes=["a"])
    assert out.read_text(encoding="ascii") == written
    assert [p.name for p in out.parent.iterdir()] == ["queue.html"]  # no temp file left


def test_non_ascii_text_survives(images: dict[str, Path]) -> None:
    queue = _queue([dict(rank=1, sample_id="ñandú-猫", given_label="猫", suggested_label="犬",
                         label_quality=0.5, issue="label")])  # fmt: skip
    text = render_gallery(queue, [images["digit"]], title="Ünïcode", classes=["猫", "犬"])
    assert text.isascii()
    page = Page(text)
    assert page.title == "Ünïcode" and page.cards[0]["sid"] == "ñandú-猫"
    assert page.cards[0]["attrs"]["data-given"] == "猫"
    assert re.search(r"&#\d+;", text)


def test_a_kind_without_a_suggestion_shows_none_and_lists_its_decisions(
    images: dict[str, Path],
) -> None:
    """By the issue kind, not the cell: an older queue filled suggested_label on outliers."""
    queue = _queue(
        [
            dict(sample_id="o1", given_label="a", suggested_label="b", issue="outlier"),
            dict(sample_id="k1", given_label="b", issue="leakage"),
            dict(sample_id="l1", given_label="a", suggested_label="b", issue="label"),
        ]
    )
    page = Page(render_gallery(queue, [images["digit"]] * 3, title="q", classes=["a", "b"]))
    outlier, leakage, label = page.cards
    for card in (outlier, leakage):
        assert "suggested" not in card["classes"] and "arrow" not in card["classes"]
        assert card["attrs"]["data-suggested"] == ""  # the class filter ignores it too
        assert "no suggested class" in card["text"]
    assert (
        "decide: keep \u00b7 drop \u00b7 unsure \u00b7 relabel (name the class)" in outlier["text"]
    )
    assert "decide: keep \u00b7 drop" in leakage["text"] and "relabel" not in leakage["text"]
    assert "suggested" in label["classes"] and label["attrs"]["data-suggested"] == "b"
    assert "relabel (suggested or any class)" in label["text"]


def test_a_paired_card_shows_its_partner_beside_it(images: dict[str, Path]) -> None:
    queue = _queue(
        [
            dict(sample_id="n1", given_label="a", issue="near_duplicate", partner="p1"),
            dict(sample_id="k1", given_label="a", issue="leakage", partner="gone"),
            dict(sample_id="l1", given_label="a", suggested_label="b", issue="label"),
        ]
    )
    rows = [images["digit"]] * 3
    partners = [images["photo"], images["missing"], None]
    page = Page(render_gallery(queue, rows, title="q", classes=["a"], partner_paths=partners))
    near, leak, label = page.cards
    assert [i["alt"] for i in near["imgs"]] == ["n1", "p1"]
    assert _decode(near["imgs"][0]["src"]).size == (128, 128)  # the row's own: the digit
    assert _decode(near["imgs"][1]["src"]).size == (128, 64)  # its partner: the photo
    assert "partner: p1" in near["text"] and "pair" in near["classes"]
    assert len(leak["imgs"]) == 1 and leak["placeholder"] and "partner: gone" in leak["text"]
    assert len(label["imgs"]) == 1 and "partner" not in label["text"]
    # Without partner_paths (an older caller) no card shows a partner.
    plain = Page(render_gallery(queue, rows, title="q", classes=["a"]))
    assert [len(c["imgs"]) for c in plain.cards] == [1, 1, 1]
    with pytest.raises(ValueError, match="partner_paths has 1 entries"):
        render_gallery(queue, rows, title="q", classes=["a"], partner_paths=[None])


def test_the_map_of_the_data_shows_above_the_cards(images: dict[str, Path]) -> None:
    queue, paths = _five_rows(images)
    png = images["digit"].read_bytes()
    text = render_gallery(
        queue, paths, title="q", classes=["a", "b"], data_map=MapImage(png, EVIL, "map.png")
    )
    page = Page(text)
    assert len(page.cards) == 5  # the map is no card
    srcs = [v for tag, k, v in page.attrs if tag == "img" and k == "src"]
    assert srcs[0] == "data:image/png;base64," + base64.b64encode(png).decode()  # first
    assert ("a", "href", "map.png") in page.attrs  # the file beside the gallery
    assert EVIL in page.data  # the caption, as text
    assert text.index('class="map"') < text.index('class="card"')
    assert 'class="map"' not in render_gallery(queue, paths, title="q", classes=["a", "b"])
