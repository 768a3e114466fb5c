"""Serve a static package index and its files over HTTP: PEP 691 negotiation, byte ranges."""

from __future__ import annotations

import io
import logging
import os
import socket
import stat
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self, cast

from packaging.utils import canonicalize_name

from wheelbarrow._core.errors import InputError

__all__ = [
    "HTML_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "UNSATISFIABLE",
    "IndexServer",
    "RequestLog",
    "ServerHandle",
    "make_server",
    "negotiate",
    "parse_range",
]

JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_CONTENT_TYPE = "application/vnd.pypi.simple.v1+html"
_TEXT_HTML = "text/html"
_SIMPLE = "simple"
_CHUNK = 64 * 1024

UNSATISFIABLE = "unsatisfiable"
"""What :func:`parse_range` returns for a range that lies wholly past the end of the file."""

RequestLog = Callable[[str, str], None]
"""Called with the method and the raw request path of every request, before it is answered."""

_logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Offer:
    media_type: str  # what the client names in Accept
    filename: str  # the page file on disk
    content_type: str  # what the response says it is


# Server preference, used only to break ties: HTML first because it is the
# PEP 691 default for clients that accept anything.
_OFFERS = (
    _Offer(_TEXT_HTML, "index.html", "text/html; charset=utf-8"),
    _Offer(HTML_CONTENT_TYPE, "index.html", HTML_CONTENT_TYPE),
    _Offer(JSON_CONTENT_TYPE, "index.json", JSON_CONTENT_TYPE),
)
_ALIASES = {
    "application/vnd.pypi.simple.latest+json": JSON_CONTENT_TYPE,
    "application/vnd.pypi.simple.latest+html": HTML_CONTENT_TYPE,
}


def negotiate(accept: str | None) -> tuple[str, str] | None:
    """Pick the page for an ``Accept`` header: ``(filename, content type)``, or None if none fits.

    Highest quality wins, then the most specific range, then the client's order;
    a missing or empty header gets HTML.
    """
    if accept is None or not accept.strip():
        return _OFFERS[0].filename, _OFFERS[0].content_type
    ranges = _parse_accept(accept)
    best: tuple[float, int, int] | None = None
    chosen: _Offer | None = None
    for offer in _OFFERS:
        score = _score(offer.media_type, ranges)
        if score is not None and score[0] > 0 and (best is None or score > best):
            best, chosen = score, offer
    if chosen is None:
        return None
    return chosen.filename, chosen.content_type


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """The byte range a ``Range`` header asks of a ``size``-byte file (RFC 9110, section 14).

    ``(first, last)``, both inclusive, for one satisfiable range; :data:`UNSATISFIABLE`
    when it starts past the end (or asks for a suffix of nothing); None for the
    whole file: no header, another unit, a malformed header, or several ranges
    (the RFC lets a server answer those with the whole file).
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text + last_text).isdigit() or not (first_text or last_text):
        return None
    if not first_text:  # a suffix: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - length), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid: ignored, so the whole file
    if first >= size:
        return UNSATISFIABLE
    return first, min(int(last_text), size - 1) if last_text else size - 1


def _parse_accept(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for item in accept.split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        if not media_type:
            continue
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0  # a malformed weight makes the range unusable
        media_type = media_type.lower()
        ranges.append((_ALIASES.get(media_type, media_type), quality))
    return ranges


def _score(media_type: str, ranges: list[tuple[str, float]]) -> tuple[float, int, int] | None:
    main_type = media_type.split("/", 1)[0]
    best: tuple[float, int, int] | None = None
    for position, (wanted, quality) in enumerate(ranges):
        if wanted == media_type:
            specificity = 2
        elif wanted == f"{main_type}/*":
            specificity = 1
        elif wanted == "*/*":
            specificity = 0
        else:
            continue
        # A more specific range overrides a wildcard whatever its weight (RFC 9110).
        candidate = (quality, specificity, -position)
        if best is None or (specificity, -position) > (best[1], best[2]):
            best = candidate
    return best


class IndexServer(ThreadingHTTPServer):
    """An HTTP server for a directory holding distribution files and ``simple/``.

    ``/simple/`` and ``/simple/<project>/`` answer with ``index.html`` or
    ``index.json`` by content negotiation; any other regular file under
    ``root`` is served as is. Nothing outside ``root`` and no hidden path is
    ever served, and there are no directory listings.
    """

    # One thread per connection, so a kept-alive idle client never holds a worker
    # another client waits for; daemon threads, so an idle connection never keeps
    # the process alive or makes shutdown wait.
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 drops the SYNs of the sixth and later
    # clients that arrive at once, and each then waits a 1 s (then 3 s, ...)
    # retransmit: p99 of 1.5 to 4 s with 50 clients. The kernel caps it at
    # net.core.somaxconn.
    request_queue_size = 1024

    def __init__(
        self,
        root: Path,
        address: tuple[str, int],
        *,
        request_log: RequestLog | None = None,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise InputError(
                f"{root}: not a directory, cannot serve it",
                hint="write the index first (wheelbarrow.wheelhouse.index.write_index)",
            )
        self.root = root.resolve()
        self.request_log = request_log
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """The base URL, ending in ``/``; the index is at ``url + "simple/"``."""
        host, port = self.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        if ":" in host_text:
            host_text = f"[{host_text}]"
        return f"http://{host_text}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; library code never prints.
        _logger.debug("error while answering %s", client_address, exc_info=True)


class ServerHandle:
    """A bound server: serve in this thread, or in a daemon thread as a context manager."""

    def __init__(self, server: IndexServer) -> None:
        self.server = server
        self._thread: threading.Thread | None = None
        self._serving = False
        self._closed = False
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The base URL, for example ``http://127.0.0.1:8123/``."""
        return self.server.url

    @property
    def simple_url(self) -> str:
        """The index URL to give pip or uv, ending in ``/simple/``."""
        return self.server.url + _SIMPLE + "/"

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        """Answer requests in the calling thread until ``shutdown`` is called."""
        with self._lock:
            self._serving = True
        # shutdown() waits up to one poll interval; the stdlib's 0.5 s makes every
        # test that starts a server half a second slower.
        self.server.serve_forever(poll_interval)

    def shutdown(self) -> None:
        """Stop serving, close the socket and wait for the serving thread; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            serving = self._serving
        # BaseServer.shutdown waits for serve_forever to finish: it would block
        # forever if serving never started.
        if serving:
            self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"wheelbarrow-index {self.url}", daemon=True
        )
        with self._lock:
            # Set before the thread runs so a quick shutdown still waits for it.
            self._serving = True
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def make_server(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    request_log: RequestLog | None = None,
) -> ServerHandle:
    """Bind a server for ``root`` (the directory holding ``simple/``); port 0 picks a free one."""
    return ServerHandle(IndexServer(root, (host, port), request_log=request_log))


class _Handler(BaseHTTPRequestHandler):
    server_version = "wheelbarrow-index"
    sys_version = ""
    # Keep-alive (every answer carries Content-Length), as pip and uv expect: one
    # connection per client instead of one per request.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm the body
    # of a kept-alive answer would wait for the client's delayed ACK.
    disable_nagle_algorithm = True
    # An idle or stuck client must not hold a thread forever.
    timeout = 60

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def end_headers(self) -> None:
        # An HTTP/1.0 client that asked for keep-alive (ab -k, some proxies) keeps
        # the connection only when told so; otherwise it waits for a close that
        # never comes.
        if self.request_version == "HTTP/1.0" and not self.close_connection:
            self.send_header("Connection", "keep-alive")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        # Logging goes nowhere by default: the request_log hook is the way to observe.
        pass

    def _answer(self, *, send_body: bool) -> None:
        server = cast(IndexServer, self.server)
        if server.request_log is not None:
            server.request_log(self.command, self.path)
        raw_path = self.path.split("#", 1)[0]
        raw_path, _, query = raw_path.partition("?")
        parts = _split_path(raw_path)
        if parts is None:
            self._not_found(send_body)
            return
        trailing = raw_path.endswith("/")
        if parts and parts[0] == _SIMPLE and (trailing or len(parts) <= 2):
            self._answer_simple(server.root, parts[1:], trailing, query, send_body=send_body)
            return
        if trailing or not parts:
            self._not_found(send_body)
            return
        self._send_file(server.root, parts, None, send_body=send_body)

    def _answer_simple(
        self, root: Path, rest: list[str], trailing: bool, query: str, *, send_body: bool
    ) -> None:
        if len(rest) > 1:
            self._not_found(send_body)
            return
        if rest and rest[0] in ("index.html", "index.json") and not trailing:
            self._send_file(root, [_SIMPLE, rest[0]], None, send_body=send_body)
            return
        if rest:
            project = canonicalize_name(rest[0])
            if not (root / _SIMPLE / project / "index.html").is_file():
                self._not_found(send_body)
                return
            if project != rest[0] or not trailing:
                self._redirect(f"/{_SIMPLE}/{urllib.parse.quote(project)}/", query)
                return
        elif not trailing:
            self._redirect(f"/{_SIMPLE}/", query)
            return
        choice = negotiate(self.headers.get("Accept"))
        if choice is None:
            self._send_error(HTTPStatus.NOT_ACCEPTABLE, send_body)
            return
        filename, content_type = choice
        self._send_file(root, [_SIMPLE, *rest, filename], content_type, send_body=send_body)

    def _send_file(
        self, root: Path, parts: list[str], content_type: str | None, *, send_body: bool
    ) -> None:
        path = root.joinpath(*parts)
        try:
            # resolve() follows symlinks, so a link pointing outside root is refused too.
            if not path.resolve().is_relative_to(root):
                self._not_found(send_body)
                return
            stream = path.open("rb")
        except OSError:
            self._not_found(send_body)
            return
        with stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                self._not_found(send_body)
                return
            size = info.st_size
            # An If-Range validator is never matched (no ETags here): the whole file, as the
            # RFC asks when it does not match.
            wanted = None if "If-Range" in self.headers else self.headers.get("Range")
            chosen = parse_range(wanted, size)
            if chosen == UNSATISFIABLE:
                self._unsatisfiable(size, send_body)
                return
            first, last = chosen if isinstance(chosen, tuple) else (0, size - 1)
            self.send_response(HTTPStatus.OK if chosen is None else HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Type", content_type or _content_type(parts[-1]))
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Accept-Ranges", "bytes")
            if chosen is not None:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            if parts[0] == _SIMPLE:
                # Pages change whenever the index is rewritten; files never do.
                self.send_header("Cache-Control", "no-cache")
                if content_type is not None:
                    self.send_header("Vary", "Accept")
            self.end_headers()
            if send_body:
                _copy_range(stream, self.wfile, first, last - first + 1)

    def _unsatisfiable(self, size: int, send_body: bool) -> None:
        body = b"416 Range Not Satisfiable\n"
        self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Range", f"bytes */{size}")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _redirect(self, location: str, query: str) -> None:
        if query:
            location += "?" + query
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _not_found(self, send_body: bool) -> None:
        self._send_error(HTTPStatus.NOT_FOUND, send_body)

    def _send_error(self, status: HTTPStatus, send_body: bool) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)


def _copy_range(source: BinaryIO, sink: io.BufferedIOBase, offset: int, length: int) -> None:
    """Copy ``length`` bytes of ``source`` from ``offset`` on, in chunks."""
    source.seek(offset)
    while length > 0:
        chunk = source.read(min(_CHUNK, length))
        if not chunk:
            break  # the file shrank under us: the client sees a short body, not garbage
        sink.write(chunk)
        length -= len(chunk)


def _split_path(raw_path: str) -> list[str] | None:
    """Decode a request path into safe segments, or None if it could leave the root."""
    if not raw_path.startswith("/"):
        return None
    segments = raw_path[1:].split("/")
    if segments and segments[-1] == "":
        segments.pop()
    decoded = []
    for segment in segments:
        # Decoded after splitting, so %2F cannot make a new separator; any
        # segment that is empty, a dot name, hidden, or carries a separator or
        # NUL once decoded is refused outright rather than normalised.
        try:
            text = urllib.parse.unquote(segment, errors="strict")
        except UnicodeDecodeError:
            return None
        if not text or text.startswith(".") or any(c in text for c in "/\\\x00"):
            return None
        decoded.append(text)
    return decoded


def _content_type(filename: str) -> str:
    if filename.endswith(".html"):
        return "text/html; charset=utf-8"
    if filename.endswith(".json"):
        return JSON_CONTENT_TYPE
    return "application/octet-stream"
