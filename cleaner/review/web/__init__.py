"""The web pages as package files: the review page's and the gallery's HTML, CSS and JS.

``base.css`` holds the palette and the basics both pages share; each page's
own stylesheet (``review.css``, ``gallery.css``) follows it. ``review.html``
and ``gallery.html`` are :class:`string.Template` documents whose ``$name``
fields the Python side fills in (escaped where they hold text from a queue).

Both pages inline their one stylesheet and one script, and a
Content-Security-Policy admits exactly those by hash: :func:`csp_hash` of the
very text that is inlined, so editing a file here can never leave the page
with a stale hash.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files
from string import Template


@cache
def read(name: str) -> str:
    """The text of this package's file ``name`` (``"review.js"``), read once."""
    return files(__name__).joinpath(name).read_text(encoding="utf-8")


def stylesheet(name: str) -> str:
    """The shared ``base.css`` followed by the page's own stylesheet ``name``."""
    return read("base.css") + read(name)


def template(name: str) -> Template:
    """The HTML document ``name`` as a template to ``substitute`` its fields into."""
    return Template(read(name))


def csp_hash(source: str) -> str:
    """The Content-Security-Policy source (``'sha256-...'``) that admits exactly the
    inline script or style ``source``, as the browser hashes it (its UTF-8 bytes)."""
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"
