"""HTTP servers on 127.0.0.1 that misbehave on purpose, and an index that needs basic auth."""

from __future__ import annotations

import base64
import contextlib
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

from wheelbarrow.share.serve import IndexServer
from wheelbarrow.share.serve import _Handler as _IndexHandler

__all__ = ["Misbehaving", "basic_auth_handler", "misbehaving_server"]

# No test waits longer than this on a server: whatever a client does, the
# server's threads end (the client hangs up, or the test stops the server).
_SERVER_PATIENCE = 30.0


@dataclass(slots=True, kw_only=True)
class Misbehaving:
    """A running misbehaving server: ``url`` + one of the paths below.

    - ``/ok``: ``payload`` with its Content-Length;
    - ``/endless``: an endless body without Content-Length (ends when the client hangs up);
    - ``/huge``: a Content-Length of 1 TB, then an endless body;
    - ``/stall``: half of ``payload`` with the full Content-Length, then nothing;
    - ``/trickle``: ``payload`` one byte every ``trickle_interval`` seconds;
    - ``/redirect?to=URL``: a 302 to URL.

    ``sent`` counts the body bytes written per path; ``authorization`` keeps the
    Authorization header (None when absent) of every request, by path.
    """

    url: str
    payload: bytes
    trickle_interval: float
    sent: dict[str, int] = field(default_factory=dict)
    authorization: dict[str, list[str | None]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: Misbehaving


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _state(self) -> Misbehaving:
        return cast(_Server, self.server).state

    def _count(self, n: int) -> None:
        sent = self._state().sent
        sent[self.path] = sent.get(self.path, 0) + n

    def _body(self, chunks: Iterator[bytes]) -> None:
        state = self._state()
        deadline = time.monotonic() + _SERVER_PATIENCE
        try:
            for chunk in chunks:
                if state.stop.is_set() or time.monotonic() > deadline:
                    break
                self.wfile.write(chunk)
                self.wfile.flush()
                self._count(len(chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up: what these paths are for
        self.close_connection = True

    def do_GET(self) -> None:
        state = self._state()
        payload = state.payload
        path, _, query = self.path.partition("?")
        state.authorization.setdefault(path, []).append(self.headers.get("Authorization"))
        if path == "/redirect":
            self.send_response(302)
            self.send_header("Location", urllib.parse.parse_qs(query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if self.path == "/endless":
            self.send_header("Connection", "close")
            self.end_headers()
            self._body(_forever(b"x" * 65536))
        elif self.path == "/huge":
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self._body(_forever(b"x" * 65536))
        elif self.path == "/stall":
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self._body(iter([payload[: len(payload) // 2]]))
            state.stop.wait(_SERVER_PATIENCE)
        elif self.path == "/trickle":
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self._body(_slowly(payload, state.trickle_interval, state.stop))
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self._body(iter([payload]))


def _forever(chunk: bytes) -> Iterator[bytes]:
    while True:
        yield chunk


def _slowly(payload: bytes, interval: float, stop: threading.Event) -> Iterator[bytes]:
    for i in range(len(payload)):
        yield payload[i : i + 1]
        if stop.wait(interval):
            return


@contextlib.contextmanager
def misbehaving_server(payload: bytes, *, trickle_interval: float = 0.2) -> Iterator[Misbehaving]:
    """Serve the misbehaving paths of :class:`Misbehaving` on 127.0.0.1 meanwhile."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    state = Misbehaving(
        url=f"http://127.0.0.1:{httpd.server_address[1]}",
        payload=payload,
        trickle_interval=trickle_interval,
    )
    httpd.state = state
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()


def basic_auth_handler(
    username: str, password: str, *, on_refused: Callable[[str], None]
) -> type[BaseHTTPRequestHandler]:
    """The index server's handler, answering 401 unless the request carries these credentials.

    ``on_refused`` is called with the path of every refused request.
    """
    wanted = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    class _AuthHandler(_IndexHandler):
        def _answer(self, *, send_body: bool) -> None:
            if self.headers.get("Authorization") != wanted:
                server = cast(IndexServer, self.server)
                if server.request_log is not None:
                    server.request_log(self.command, self.path)
                on_refused(self.path)
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="private index"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super()._answer(send_body=send_body)

    return _AuthHandler
