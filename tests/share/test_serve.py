"""Tests for wheelbarrow.share.serve: the HTTP server of a static index, real pip/uv against it."""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import LocalIndex, build_local_index, make_sdist, make_wheel
from support.apps import build_ok, make_app

from wheelbarrow._core.errors import InputError
from wheelbarrow.share.serve import (
    HTML_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    IndexServer,
    ServerHandle,
    make_server,
    negotiate,
)

StartIndex = Callable[[Path | Iterable[Path]], LocalIndex]

PIP_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, "
    "text/html; q=0.01"
)
UV_ACCEPT = (
    "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.01"
)
SECRET = b"TOP SECRET outside the root"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def request(
    base_url: str, path: str, *, method: str = "GET", accept: str | None = None
) -> Response:
    """Send ``path`` exactly as written (no client-side normalisation) and read the answer."""
    parts = urllib.parse.urlsplit(base_url)
    assert parts.hostname == "127.0.0.1"
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {} if accept is None else {"Accept": accept}
        connection.request(method, path, headers=headers)
        answer = connection.getresponse()
        return Response(answer.status, answer.headers, answer.read())
    finally:
        connection.close()


@pytest.fixture
def served(tmp_path: Path, local_index: StartIndex) -> LocalIndex:
    """An index with two projects in tmp_path/files, and a secret file beside (outside) it."""
    files = tmp_path / "files"
    make_wheel(files, "mypkg", "1.0", requires=["mydep>=1.0"], requires_python=">=3.8")
    make_sdist(files, "mypkg", "1.0", requires=["mydep>=1.0"])
    make_wheel(files, "mydep", "1.0")
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return local_index(files)


class TestNegotiate:
    @pytest.mark.parametrize(
        ("accept", "expected"),
        [
            (None, ("index.html", "text/html; charset=utf-8")),
            ("", ("index.html", "text/html; charset=utf-8")),
            ("*/*", ("index.html", "text/html; charset=utf-8")),
            ("text/html", ("index.html", "text/html; charset=utf-8")),
            (HTML_CONTENT_TYPE, ("index.html", HTML_CONTENT_TYPE)),
            (JSON_CONTENT_TYPE, ("index.json", JSON_CONTENT_TYPE)),
            ("application/vnd.pypi.simple.latest+json", ("index.json", JSON_CONTENT_TYPE)),
            (PIP_ACCEPT, ("index.json", JSON_CONTENT_TYPE)),
            (UV_ACCEPT, ("index.json", JSON_CONTENT_TYPE)),
            (f"{JSON_CONTENT_TYPE};q=0.5, text/html", ("index.html", "text/html; charset=utf-8")),
            (f"{JSON_CONTENT_TYPE}, */*;q=0.1", ("index.json", JSON_CONTENT_TYPE)),
            (f"*/*, {JSON_CONTENT_TYPE};q=0", ("index.html", "text/html; charset=utf-8")),
        ],
    )
    def test_picks_the_preferred_format(
        self, accept: str | None, expected: tuple[str, str]
    ) -> None:
        """The best acceptable format wins; no header or a wildcard gets HTML."""
        assert negotiate(accept) == expected

    @pytest.mark.parametrize(
        "accept", ["application/json", "text/plain", f"{JSON_CONTENT_TYPE};q=0", "text/html;q=x"]
    )
    def test_nothing_acceptable_gives_none(self, accept: str) -> None:
        """A header that rules out every format we have yields None."""
        assert negotiate(accept) is None


class TestSimplePages:
    def test_root_defaults_to_html(self, served: LocalIndex) -> None:
        """/simple/ without Accept answers the root index.html as text/html."""
        answer = request(served.base_url, "/simple/")

        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
        assert answer.headers["Vary"] == "Accept"
        assert answer.body == (served.files_dir / "simple" / "index.html").read_bytes()

    def test_root_json_on_request(self, served: LocalIndex) -> None:
        """/simple/ asked for PEP 691 JSON answers index.json with the JSON content type."""
        answer = request(served.base_url, "/simple/", accept=JSON_CONTENT_TYPE)

        assert answer.status == 200
        assert answer.headers["Content-Type"] == JSON_CONTENT_TYPE
        assert json.loads(answer.body)["projects"] == [{"name": "mydep"}, {"name": "mypkg"}]

    @pytest.mark.parametrize(
        ("accept", "filename", "content_type"),
        [
            (None, "index.html", "text/html; charset=utf-8"),
            ("text/html", "index.html", "text/html; charset=utf-8"),
            (HTML_CONTENT_TYPE, "index.html", HTML_CONTENT_TYPE),
            (JSON_CONTENT_TYPE, "index.json", JSON_CONTENT_TYPE),
            (PIP_ACCEPT, "index.json", JSON_CONTENT_TYPE),
        ],
    )
    def test_project_page_is_negotiated(
        self, served: LocalIndex, accept: str | None, filename: str, content_type: str
    ) -> None:
        """/simple/<project>/ answers the page file matching the Accept header."""
        answer = request(served.base_url, "/simple/mypkg/", accept=accept)

        assert answer.status == 200
        assert answer.headers["Content-Type"] == content_type
        assert answer.body == (served.files_dir / "simple" / "mypkg" / filename).read_bytes()

    def test_unacceptable_format_is_406(self, served: LocalIndex) -> None:
        """An Accept header naming only formats we lack is refused with 406."""
        assert request(served.base_url, "/simple/mypkg/", accept="application/json").status == 406

    @pytest.mark.parametrize("path", ["/simple/nothere/", "/simple/nothere", "/simple/a/b/"])
    def test_unknown_project_is_404(self, served: LocalIndex, path: str) -> None:
        """A project that is not in the index is 404, with or without a slash."""
        assert request(served.base_url, path).status == 404

    @pytest.mark.parametrize(
        ("path", "location"),
        [
            ("/simple", "/simple/"),
            ("/simple/mypkg", "/simple/mypkg/"),
            ("/simple/MyPkg/", "/simple/mypkg/"),
            ("/simple/MYPKG", "/simple/mypkg/"),
            ("/simple/MyDep", "/simple/mydep/"),
        ],
    )
    def test_redirects_to_the_canonical_slash_form(
        self, served: LocalIndex, path: str, location: str
    ) -> None:
        """Missing slashes and non-normalised names are redirected to the canonical URL."""
        answer = request(served.base_url, path)

        assert (answer.status, answer.headers["Location"]) == (301, location)

    def test_page_files_are_reachable_by_name(self, served: LocalIndex) -> None:
        """/simple/<project>/index.json is served directly as a file too."""
        answer = request(served.base_url, "/simple/mypkg/index.json")

        assert answer.status == 200
        assert json.loads(answer.body)["name"] == "mypkg"


class TestFiles:
    def test_wheel_is_octet_stream_with_length(self, served: LocalIndex) -> None:
        """A wheel is served byte for byte with application/octet-stream and Content-Length."""
        wheel = served.files_dir / "mypkg-1.0-py3-none-any.whl"

        answer = request(served.base_url, f"/{wheel.name}")

        assert answer.status == 200
        assert answer.headers["Content-Type"] == "application/octet-stream"
        assert answer.headers["Content-Length"] == str(wheel.stat().st_size)
        assert answer.body == wheel.read_bytes()

    def test_sdist_is_served(self, served: LocalIndex) -> None:
        """An sdist is served like a wheel."""
        answer = request(served.base_url, "/mypkg-1.0.tar.gz")

        assert answer.status == 200
        assert answer.body == (served.files_dir / "mypkg-1.0.tar.gz").read_bytes()

    def test_head_sends_headers_only(self, served: LocalIndex) -> None:
        """HEAD answers the same status and length as GET, without a body."""
        wheel = served.files_dir / "mydep-1.0-py3-none-any.whl"

        answer = request(served.base_url, f"/{wheel.name}", method="HEAD")

        assert (answer.status, answer.body) == (200, b"")
        assert answer.headers["Content-Length"] == str(wheel.stat().st_size)

    def test_head_on_a_page_negotiates(self, served: LocalIndex) -> None:
        """HEAD on a simple page gives the negotiated type and no body."""
        answer = request(served.base_url, "/simple/", method="HEAD", accept=JSON_CONTENT_TYPE)

        assert (answer.status, answer.headers["Content-Type"]) == (200, JSON_CONTENT_TYPE)
        assert answer.body == b""

    def test_file_name_may_be_percent_encoded(self, served: LocalIndex) -> None:
        """A quoted filename (as index hrefs are written) finds the file."""
        wheel = make_wheel(served.files_dir, "local", "1.0+cpu")

        answer = request(served.base_url, "/" + urllib.parse.quote(wheel.name))

        assert (answer.status, answer.body) == (200, wheel.read_bytes())

    @pytest.mark.parametrize("path", ["/", "/simple/mypkg/index.html/", "/missing.whl", "/x/"])
    def test_no_listings_and_missing_files_are_404(self, served: LocalIndex, path: str) -> None:
        """Directories other than the simple pages, and absent files, are 404."""
        assert request(served.base_url, path).status == 404

    def test_query_strings_are_ignored(self, served: LocalIndex) -> None:
        """A query string does not change which file is served."""
        assert request(served.base_url, "/mydep-1.0-py3-none-any.whl?x=1").status == 200


class TestPathSafety:
    @pytest.mark.parametrize(
        "path",
        [
            "/simple/../../etc/passwd",
            "/../../../../etc/passwd",
            "/../secret.txt",
            "/simple/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/%2E%2E/etc/passwd",
            "/simple/%2e%2e/%2e%2e/etc/passwd",
            "/..%2fsecret.txt",
            "/simple/..%2F..%2Fsecret.txt",
            "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/..%5csecret.txt",
            "/..\\secret.txt",
            "/%2fetc%2fpasswd",
            "//etc/passwd",
            "/simple/%00/",
            "/%ff%fe/",
            "/%252e%252e/secret.txt",
        ],
    )
    def test_traversal_is_refused(self, served: LocalIndex, path: str) -> None:
        """Dot segments, encoded separators and absolute paths never reach outside the root."""
        answer = request(served.base_url, path)

        assert answer.status == 404
        assert SECRET not in answer.body
        assert b"root:" not in answer.body

    def test_symlink_out_of_the_root_is_refused(self, served: LocalIndex) -> None:
        """A symlink inside the root that points outside it is not followed."""
        (served.files_dir / "link.whl").symlink_to(served.files_dir.parent / "secret.txt")

        answer = request(served.base_url, "/link.whl")

        assert answer.status == 404
        assert SECRET not in answer.body

    def test_hidden_paths_are_not_served(self, served: LocalIndex) -> None:
        """Dot files and dot directories (such as an index being staged) stay private."""
        (served.files_dir / ".netrc").write_text("machine x password y")

        assert request(served.base_url, "/.netrc").status == 404


class TestServerHandle:
    def test_url_and_simple_url(self, tmp_path: Path) -> None:
        """The handle reports the bound 127.0.0.1 port as http URLs."""
        build_local_index(tmp_path)
        handle = make_server(tmp_path)
        try:
            port = handle.server.server_address[1]
            assert handle.url == f"http://127.0.0.1:{port}/"
            assert handle.simple_url == f"http://127.0.0.1:{port}/simple/"
        finally:
            handle.shutdown()

    def test_shutdown_without_serving_returns(self, tmp_path: Path) -> None:
        """Shutting down a server that never served does not hang, and is idempotent."""
        build_local_index(tmp_path)
        handle = make_server(tmp_path)

        handle.shutdown()
        handle.shutdown()

    def test_serve_forever_in_own_thread(self, tmp_path: Path) -> None:
        """serve_forever answers until shutdown is called from another thread."""
        build_local_index(tmp_path)
        handle = make_server(tmp_path)
        thread = threading.Thread(target=handle.serve_forever)
        thread.start()
        try:
            assert request(handle.url, "/simple/").status == 200
        finally:
            handle.shutdown()
            thread.join(timeout=10)
        assert not thread.is_alive()

    def test_context_manager_stops_serving(self, tmp_path: Path) -> None:
        """Leaving the with block closes the socket."""
        build_local_index(tmp_path)
        with make_server(tmp_path) as handle:
            url = handle.url
            assert request(url, "/simple/").status == 200

        with pytest.raises(ConnectionRefusedError):
            request(url, "/simple/")

    def test_request_log_sees_every_request(self, tmp_path: Path) -> None:
        """The hook receives the method and the raw path of each request, even refused ones."""
        build_local_index(tmp_path)
        seen: list[tuple[str, str]] = []
        with make_server(tmp_path, request_log=lambda m, p: seen.append((m, p))) as handle:
            request(handle.url, "/simple/")
            request(handle.url, "/%2e%2e/x", method="HEAD")

        assert seen == [("GET", "/simple/"), ("HEAD", "/%2e%2e/x")]

    def test_missing_root_is_an_input_error(self, tmp_path: Path) -> None:
        """Serving a directory that does not exist fails before binding."""
        with pytest.raises(InputError, match="not a directory"):
            make_server(tmp_path / "nowhere")

    def test_is_a_server_handle(self, tmp_path: Path) -> None:
        """make_server returns a ServerHandle wrapping a bound server."""
        build_local_index(tmp_path)
        handle = make_server(tmp_path)
        handle.shutdown()

        assert isinstance(handle, ServerHandle)


class TestUnderLoad:
    """The settings that keep latency low with many clients (bench/bench_serve.py measures it)."""

    CLIENTS = 64

    def test_listen_backlog_holds_many_connections_at_once(self, tmp_path: Path) -> None:
        """Connections arriving before any is accepted all complete their handshake."""
        build_local_index(tmp_path)
        handle = make_server(tmp_path)  # listening, but accepting nothing yet
        sockets = [socket.socket() for _ in range(self.CLIENTS)]
        try:
            for sock in sockets:
                sock.setblocking(False)
                sock.connect_ex(handle.server.server_address[:2])
            # A full accept queue drops the SYN: that connect stays pending for a 1 s
            # retransmit. Half a second is far more than a loopback handshake needs.
            _, writable, _ = select.select([], sockets, [], 0.5)
            connected = [
                s for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            ]
        finally:
            for sock in sockets:
                sock.close()
            handle.shutdown()

        assert len(connected) == self.CLIENTS
        assert handle.server.request_queue_size >= 1024

    def test_connections_are_kept_alive(self, tmp_path: Path) -> None:
        """One HTTP/1.1 connection answers several requests, with Nagle's algorithm off."""
        make_wheel(tmp_path, "mydep", "1.0")
        build_local_index(tmp_path)
        with make_server(tmp_path) as handle:
            parts = urllib.parse.urlsplit(handle.url)
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            try:
                answers = []
                for path in ("/simple/", "/simple/mydep/", "/mydep-1.0-py3-none-any.whl"):
                    connection.request("GET", path)
                    answer = connection.getresponse()
                    answers.append((answer.version, answer.status, answer.will_close))
                    answer.read()
            finally:
                connection.close()
            handler = handle.server.RequestHandlerClass

        assert answers == [(11, 200, False)] * 3
        # Headers and body are written separately: with Nagle on, the body of a
        # kept-alive answer waits for the client's delayed ACK (40 ms).
        assert getattr(handler, "disable_nagle_algorithm", False) is True

    @pytest.mark.parametrize(("ask", "kept"), [("Connection: keep-alive\r\n", True), ("", False)])
    def test_http_1_0_clients_get_keep_alive_only_when_they_ask(
        self, served: LocalIndex, ask: str, kept: bool
    ) -> None:
        """An HTTP/1.0 client asking for keep-alive is told so; one that does not is closed."""
        parts = urllib.parse.urlsplit(served.base_url)
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
            reader = sock.makefile("rb")
            sock.sendall(f"GET /simple/ HTTP/1.0\r\n{ask}\r\n".encode())
            status = reader.readline()
            headers = http.client.parse_headers(reader)
            reader.read(int(headers["Content-Length"]))
            if kept:
                sock.sendall(b"GET /simple/mypkg/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                after = reader.readline()
            else:
                after = reader.read()  # the server closes: end of stream
            reader.close()

        assert status.startswith(b"HTTP/1.1 200")
        assert (headers.get("Connection", "").lower() == "keep-alive") is kept
        assert after.startswith(b"HTTP/1.1 200") if kept else after == b""

    def test_idle_kept_alive_connections_do_not_block_new_clients(self, served: LocalIndex) -> None:
        """Each connection has its own thread: many idle keep-alive clients starve no one."""
        parts = urllib.parse.urlsplit(served.base_url)
        idle = [
            http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
            for _ in range(self.CLIENTS)
        ]
        try:
            for connection in idle:
                connection.request("GET", "/simple/")
                connection.getresponse().read()
            # Every connection above is open and idle now, holding whatever serves it.
            answer = request(served.base_url, "/simple/mypkg/")
        finally:
            for connection in idle:
                connection.close()

        assert answer.status == 200
        assert issubclass(IndexServer, socketserver.ThreadingMixIn)
        assert IndexServer.daemon_threads is True


def _client_env(tmp_path: Path) -> dict[str, str]:
    """The environment minus anything that could point a client at another index or proxy."""
    blocked = ("PIP_", "UV_")
    proxies = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(blocked) and key.lower() not in proxies
    }
    env["NO_PROXY"] = "127.0.0.1"
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_CACHE_DIR"] = str(tmp_path / "uv-cache")
    env["UV_NO_CONFIG"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def app_index(tmp_path: Path, local_index: StartIndex) -> LocalIndex:
    """mypkg 1.0 needing mydep>=1.0, a mypkg 2.0 for Python >= 4 only, and two mydep versions."""
    wheels = tmp_path / "made"
    return local_index(
        [
            make_wheel(wheels, "mypkg", "1.0", requires=["mydep>=1.0"], requires_python=">=3.8"),
            make_wheel(wheels, "mypkg", "2.0", requires=["mydep>=1.0"], requires_python=">=4"),
            make_wheel(wheels, "mydep", "1.0"),
            make_wheel(wheels, "mydep", "1.5"),
        ]
    )


EXPECTED_DOWNLOADS = {"mypkg-1.0-py3-none-any.whl", "mydep-1.5-py3-none-any.whl"}


class TestRealClients:
    def test_pip_installs_from_the_index(self, tmp_path: Path, app_index: LocalIndex) -> None:
        """pip resolves mypkg and its dependency from the index, honouring requires-python."""
        target = tmp_path / "target"
        env = _client_env(tmp_path)

        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--isolated",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--no-input",
                "--index-url",
                app_index.url,
                "--target",
                str(target),
                "mypkg",
            ],
            env,
        )

        check = 'import mypkg, mydep; print(mypkg.__version__, mydep.__version__, end="")'
        result = _run([sys.executable, "-c", check], {**env, "PYTHONPATH": str(target)})
        assert result.stdout == "1.0 1.5"
        assert set(app_index.downloads) == EXPECTED_DOWNLOADS

    def test_uv_installs_into_a_venv(self, tmp_path: Path, app_index: LocalIndex) -> None:
        """uv pip install resolves the same packages from the served index into a venv."""
        uv = shutil.which("uv")
        assert uv is not None, "uv must be on PATH"
        env = _client_env(tmp_path)
        venv = tmp_path / "venv"
        _run([uv, "venv", "--python", sys.executable, str(venv)], env)
        python = venv / "bin" / "python"

        _run(
            [uv, "pip", "install", "--index-url", app_index.url, "--python", str(python), "mypkg"],
            env,
        )

        check = 'import mypkg, mydep; print(mypkg.__version__, mydep.__version__, end="")'
        assert _run([str(python), "-c", check], env).stdout == "1.0 1.5"
        assert set(app_index.downloads) == EXPECTED_DOWNLOADS


@pytest.fixture
def served_wheelhouse(tmp_path: Path, app_index: LocalIndex) -> Iterator[LocalIndex]:
    """A wheelhouse `wheelbarrow build` made of mypkg, served as `wheelbarrow serve` serves it."""
    app = make_app(tmp_path / "app", "mypkg\n")
    report = build_ok(app, tmp_path / "store", app_index.url)
    house = Path(report["wheelhouse"])
    seen: list[tuple[str, str]] = []
    with make_server(house, request_log=lambda method, path: seen.append((method, path))) as srv:
        yield LocalIndex(url=srv.simple_url, base_url=srv.url, files_dir=house, requests=seen)


def _metadata_gets(index: LocalIndex) -> set[str]:
    return {
        p.rsplit("/", 1)[-1] for m, p in index.requests if m == "GET" and p.endswith(".metadata")
    }


class TestCoreMetadataClients:
    """PEP 658/714 against real resolvers: metadata is read from .metadata, not from wheels."""

    def test_uv_locks_without_downloading_a_wheel(
        self, tmp_path: Path, served_wheelhouse: LocalIndex
    ) -> None:
        """`uv lock` against the served wheelhouse reads each wheel's .metadata and no wheel."""
        uv = shutil.which("uv")
        assert uv is not None, "uv must be on PATH"
        project = tmp_path / "project"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            '[project]\nname = "demo"\nversion = "0"\nrequires-python = ">=3.8"\n'
            'dependencies = ["mypkg"]\n'
        )
        env = _client_env(tmp_path)

        _run(
            [uv, "lock", "--directory", str(project), "--default-index", served_wheelhouse.url], env
        )

        lock = (project / "uv.lock").read_text()
        assert 'name = "mypkg"\nversion = "1.0"' in lock
        assert 'name = "mydep"\nversion = "1.5"' in lock
        assert served_wheelhouse.downloads == []
        assert _metadata_gets(served_wheelhouse) == {f"{w}.metadata" for w in EXPECTED_DOWNLOADS}

    def test_pip_resolves_from_metadata_and_downloads_only_what_it_installs(
        self, tmp_path: Path, served_wheelhouse: LocalIndex
    ) -> None:
        """pip's dry run fetches no wheel; its install fetches each installed wheel once."""
        env = _client_env(tmp_path)
        pip = [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir"]
        pip += ["--disable-pip-version-check", "--no-input", "--index-url", served_wheelhouse.url]

        _run([*pip, "--dry-run", "mypkg"], env)
        assert served_wheelhouse.downloads == []
        assert _metadata_gets(served_wheelhouse) == {f"{w}.metadata" for w in EXPECTED_DOWNLOADS}

        served_wheelhouse.requests.clear()
        target = tmp_path / "target"
        _run([*pip, "--target", str(target), "mypkg"], env)
        check = 'import mypkg, mydep; print(mypkg.__version__, mydep.__version__, end="")'
        result = _run([sys.executable, "-c", check], {**env, "PYTHONPATH": str(target)})
        assert result.stdout == "1.0 1.5"
        assert sorted(served_wheelhouse.downloads) == sorted(EXPECTED_DOWNLOADS)
