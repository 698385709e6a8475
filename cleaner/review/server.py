"""``cleaner review``: a local page to review a relabel queue with the keyboard.

The page shows one queue row at a time (its image large, the given and the
suggested label, the model's top classes) and writes every decision to the
queue CSV at once, so closing the browser loses nothing and the same file
still opens in a spreadsheet and goes to ``cleaner apply``.

Security: the server binds 127.0.0.1 only and answers only requests whose
``Host`` is ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebinding page
cannot read or write the queue), or one that ``--allow-host HOST:PORT``
names, such as ``localhost:9000`` behind ``ssh -L 9000:localhost:8765``
(an exact name and port: no wildcard; the bind and the token stay).
Images are served by queue row number
(``/img/<row>``), never by a path from the request, so only images the queue
names can be read. A near duplicate's or leakage row's partner (``/partner/<row>``)
and the classes' example images (``/example/<class>/<k>``, from queue.json) are
the manifest's image of that sample id, never a path from the queue. Every
route needs a per-server token, as Jupyter does it: the printed URL carries it
(``/?token=...``), the page answers only a request that has it (another local
user cannot read it by asking) and sets it as a cookie (HttpOnly,
SameSite=Strict) for its images; the API takes it in a custom header,
which other web pages cannot send. The page itself holds no queue
data: the script fetches it as JSON and builds the DOM with ``textContent``,
and a Content-Security-Policy admits only the page's own script and style
(by hash) and same-origin images and requests.

The page, its stylesheet and its script are package files in ``cleaner/web``
(``review.html``, ``base.css`` + ``review.css``, ``review.js``), inlined into
the one page this server sends.

The API: ``GET /api/queue`` (every row), ``POST /api/decide`` (one row),
``POST /api/decide_many`` (several rows as one undoable step, all or none) and
``POST /api/undo`` (the last step).

The queue under review and its writes are :mod:`cleaner.review.review_queue`'s,
what the page shows of each row :mod:`cleaner.review.row_info`'s.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import re
import secrets
import sys
import threading
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cleaner.core.errors import InputError, WriteError
from cleaner.core.project_lock import ProjectLocked
from cleaner.formats.queue_file import QueueChanged
from cleaner.review import web
from cleaner.review.review_queue import ReviewQueue, RowsRefused

HOST = "127.0.0.1"  # never another interface: the page can change the queue
DEFAULT_PORT = 8765
# A decision is a few dozen bytes; a bulk decision (/api/decide_many) one such per row,
# so this admits every row of a queue of tens of thousands at once.
MAX_BODY = 2 * 1024 * 1024
_IMG_ROUTE = re.compile(r"/img/(\d{1,9})")
_PARTNER_ROUTE = re.compile(r"/partner/(\d{1,9})")
_EXAMPLE_ROUTE = re.compile(r"/example/(\d{1,9})/(\d{1,2})")
_TOKEN_HEADER = "X-Review-Token"
# HOST:PORT for --allow-host: a DNS name or IPv4 address, or an IPv6 address in brackets,
# exactly as a browser sends it in the Host header.
_HOST_NAME = re.compile(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)
_HOST_IPV6 = re.compile(r"\[[0-9a-f:.]{2,45}\]")


def parse_allowed_host(value: str) -> str:
    """A checked ``--allow-host`` value, lower-cased: ``HOST:PORT``, port 1-65535.

    Raises :class:`InputError` for anything else: a wildcard, a scheme or a
    path, a missing or out-of-range port.
    """
    text = value.strip().lower()
    where = f"--allow-host {value!r}"
    if "*" in text:
        raise InputError(f"{where}: no wildcards; name the exact HOST:PORT the browser uses")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not (_HOST_NAME.fullmatch(host) or _HOST_IPV6.fullmatch(host)):
        raise InputError(
            f"{where}: expected HOST:PORT as the browser's address bar shows it, "
            "e.g. localhost:9000 (no http://, no path)"
        )
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"{where}: the port must be a number from 1 to 65535")
    return f"{host}:{int(port)}"


# --- the page -----------------------------------------------------------------------

# The page and its stylesheet and script are package files (cleaner/web); the
# stylesheet and script are inlined, pinned by hash in the CSP.
_STYLE = web.stylesheet("review.css")
_SCRIPT = web.read("review.js")

CSP = (
    "default-src 'none'; img-src 'self'; connect-src 'self'; "
    f"script-src {web.csp_hash(_SCRIPT)}; style-src {web.csp_hash(_STYLE)}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def render_page(token: str) -> bytes:
    """The review page (``web/review.html``); the token is the only value in it that
    is not a constant."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise ValueError("the token must be URL-safe base64")
    page = web.template("review.html").substitute(token=token, style=_STYLE, script=_SCRIPT)
    return page.encode()


def _json_bytes(value: Any) -> bytes:
    # <, > and & as \\u escapes: the JSON stays inert even if something ever
    # sniffed it as HTML.
    text = json.dumps(value, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


# --- the server ---------------------------------------------------------------------


class ReviewServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` on 127.0.0.1 serving one :class:`ReviewQueue`."""

    daemon_threads = True

    def __init__(
        self, queue: ReviewQueue, port: int = DEFAULT_PORT, allow_hosts: Sequence[str] = ()
    ) -> None:
        self.queue = queue
        self.token = secrets.token_urlsafe(24)
        self.page = render_page(self.token)
        # Checked before binding: a bad value leaves no socket behind.
        self.allowed = list(dict.fromkeys(parse_allowed_host(h) for h in allow_hosts))
        super().__init__((HOST, port), _Handler)
        self.port = int(self.server_address[1])
        self.hosts = {f"{HOST}:{self.port}", f"localhost:{self.port}", *self.allowed}
        # A browser leaves the default port out of the Host header.
        self.hosts |= {h.removesuffix(":80") for h in self.allowed if h.endswith(":80")}

    @property
    def url(self) -> str:
        """The page's address with the token: the one way in (Jupyter's way)."""
        return f"http://{HOST}:{self.port}/?token={self.token}"

    @property
    def allowed_urls(self) -> list[str]:
        """The page's address through each ``--allow-host`` (a tunnel, a port forward)."""
        return [f"http://{h}/?token={self.token}" for h in self.allowed]

    @property
    def cookie(self) -> str:
        """The cookie that carries the token after the page was opened with it; named
        after the port, since cookies are shared by every port of a host."""
        return f"cleaner-review-{self.port}"

    def start_background(self) -> threading.Thread:
        """Serve from a daemon thread; stop with :meth:`stop`."""
        # A short poll interval makes stop() quick; idle polling costs nothing here.
        thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="cleaner-review"
        )
        thread.daemon = True
        thread.start()
        return thread

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that drops a connection (a superseded image preload) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def stop(self) -> None:
        """Stop a server started with :meth:`start_background` and close its socket."""
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "cleaner-review"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per image request would bury the URL the user needs."""

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        # Other sites may not even embed the queue's images.
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Frame-Options", "DENY")
        for k, v in (headers or {"Cache-Control": "no-store"}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _text(self, status: int, message: str) -> None:
        self._send(status, message.encode() + b"\n", "text/plain; charset=utf-8")

    def _json(self, status: int, value: Any) -> None:
        self._send(status, _json_bytes(value), "application/json; charset=utf-8")

    def _host_ok(self) -> bool:
        # Host names are case-insensitive; the allowed ones are kept lower-cased.
        if self.headers.get("Host", "").lower() in self.server.hosts:
            return True
        self._text(HTTPStatus.FORBIDDEN, "forbidden: unexpected Host header")
        return False

    def _sent_tokens(self) -> list[str]:
        """The tokens the request carries: the API's header, the page's cookie (images,
        reloads) and, for the page, the ``?token=`` of the printed URL."""
        sent = [self.headers.get(_TOKEN_HEADER, "")]
        cookies = SimpleCookie()
        with contextlib.suppress(CookieError):
            cookies.load(self.headers.get("Cookie", ""))
        if self.server.cookie in cookies:
            sent.append(cookies[self.server.cookie].value)
        return sent

    def _has_token(self, *extra: str) -> bool:
        want = self.server.token.encode()
        return any(hmac.compare_digest(t.encode(), want) for t in (*self._sent_tokens(), *extra))

    def _token_ok(self) -> bool:
        if self._has_token():
            return True
        self._json(HTTPStatus.FORBIDDEN, {"error": "missing or wrong token: reload the page"})
        return False

    def _page(self, query: str) -> None:
        """The page, only to a request that has the token: it holds the token, which
        any local process could otherwise read by asking (a shared GPU machine)."""
        given = parse_qs(query).get("token", [""])[0]
        if not self._has_token(given):
            self._text(
                HTTPStatus.FORBIDDEN,
                "forbidden: open the address `cleaner review` printed; it carries the token",
            )
            return
        cookie = f"{self.server.cookie}={self.server.token}; Path=/; HttpOnly; SameSite=Strict"
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}
        self._send(
            HTTPStatus.OK,
            self.server.page,
            "text/html; charset=utf-8",
            headers | {"Set-Cookie": cookie},
        )

    def do_GET(self) -> None:
        if not self._host_ok():
            return
        # The raw path, never unquoted or normalised: only the exact routes
        # below exist, so "..", "%2F" and absolute paths match nothing.
        path, _, query = self.path.partition("?")
        if path == "/":
            self._page(query)
        elif path == "/favicon.ico":
            # Browsers ask on their own; a 404 would be a console error on every load.
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        elif not self._token_ok():  # images too: they are the queue's data
            return
        elif path == "/api/queue":
            self._json(HTTPStatus.OK, self.server.queue.snapshot())
        elif (m := _IMG_ROUTE.fullmatch(path)) is not None:
            i = int(m.group(1))
            self._image(f"img-{i}", lambda: self.server.queue.image(i))
        elif (m := _PARTNER_ROUTE.fullmatch(path)) is not None:
            i = int(m.group(1))
            self._image(f"partner-{i}", lambda: self.server.queue.partner_image(i))
        elif (m := _EXAMPLE_ROUTE.fullmatch(path)) is not None:
            c, k = int(m.group(1)), int(m.group(2))
            self._image(f"example-{c}-{k}", lambda: self.server.queue.example_image(c, k))
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found")

    def _image(self, key: str, find: Callable[[], tuple[str, bytes] | None]) -> None:
        etag = f'"{self.server.token[:12]}-{key}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        found = find()
        if found is None:
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        mime, data = found
        self._send(HTTPStatus.OK, data, mime, {"Cache-Control": "no-cache", "ETag": etag})

    def do_POST(self) -> None:
        if not self._host_ok() or not self._token_ok():
            return
        path = self.path.split("?", 1)[0]
        if path not in ("/api/decide", "/api/decide_many", "/api/undo"):
            self._text(HTTPStatus.NOT_FOUND, "not found")
            return
        if self.headers.get_content_type() != "application/json":
            self._json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "bad Content-Length"})
            return
        try:
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except RecursionError:  # thousands of nested brackets: malformed, not a crash
                raise ValueError("malformed JSON: nested too deeply") from None
            if not isinstance(body, dict):
                raise ValueError("send a JSON object")
            queue = self.server.queue
            if path == "/api/undo":
                result = queue.undo()
            elif path == "/api/decide_many":
                items = body.get("decisions")
                if not isinstance(items, list) or not all(isinstance(d, dict) for d in items):
                    raise ValueError("decisions must be a list of objects")
                result = queue.decide_many([_one_decision(d) for d in items])
            else:
                result = queue.decide(*_one_decision(body))
        except RowsRefused as e:  # before ValueError: the page marks each refused row
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(e), "refused": e.refused})
        except IndexError as e:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(e)})
        except (LookupError, QueueChanged) as e:  # nothing to undo; the file changed
            self._json(HTTPStatus.CONFLICT, {"error": str(e)})
        except ProjectLocked as e:  # another command writes the folder: try again later
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(e)})
        except ValueError as e:  # json.JSONDecodeError is one
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except WriteError as e:  # names the file and why
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": str(e)})
        except OSError as e:
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"could not write {self.server.queue.path}: {e}"},
            )
        else:
            self._json(HTTPStatus.OK, result)


def _one_decision(body: dict[str, Any]) -> tuple[int, str, str]:
    """``{"row": int, "decision": str, "new_label": str | null}``, checked for its types."""
    row, decision, label = body.get("row"), body.get("decision"), body.get("new_label")
    if not isinstance(row, int) or isinstance(row, bool):
        raise ValueError("row must be an integer")
    if not isinstance(decision, str) or not isinstance(label, str | None):
        raise ValueError("decision and new_label must be strings")
    return row, decision, label or ""


def serve(
    queue_csv: str | Path, port: int = DEFAULT_PORT, allow_hosts: Sequence[str] = ()
) -> tuple[ReviewServer, str]:
    """Check the queue and bind a review server on 127.0.0.1; ``port=0`` picks a free port.

    ``allow_hosts`` (``HOST:PORT`` each, :func:`parse_allowed_host`) are
    further ``Host`` headers to answer, for a page opened through an SSH
    tunnel or a port forward; the server still binds 127.0.0.1 only and the
    API still needs the token.

    Returns the server (not yet serving: call ``serve_forever`` or
    :meth:`ReviewServer.start_background`) and its URL. Raises
    :class:`InputError` for a queue that does not validate or a port that is
    taken.
    """
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be between 0 and 65535, got {port}")
    for h in allow_hosts:  # before the queue is read: the cheap check first
        parse_allowed_host(h)
    queue = ReviewQueue(queue_csv)
    try:
        server = ReviewServer(queue, port, allow_hosts)
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise InputError(
                f"cannot listen on {HOST}:{port} ({e.strerror}): "
                "pass another --port, or --port 0 for a free one"
            ) from None
        raise
    return server, server.url
