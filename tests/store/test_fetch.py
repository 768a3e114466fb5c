"""Fetching: parallel, hash-checked while streaming, nothing partial left in the store."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from packaging.utils import canonicalize_name
from support.servers import Misbehaving, misbehaving_server

from wheelbarrow._core.errors import FetchError, HashMismatchError, InputError
from wheelbarrow._core.report import RecordingReporter
from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.store.fetch import DownloadLimits, Fetcher
from wheelbarrow.store.store import Store

PAYLOAD = b"wheel bytes " * 50_000  # 600 kB: several chunks


class _Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD; /half sends half then drops; /flaky fails twice with 503 first."""

    protocol_version = "HTTP/1.1"
    hits: ClassVar[dict[str, int]] = {}

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        hits = type(self).hits
        hits[self.path] = hits.get(self.path, 0) + 1
        if self.path == "/flaky" and hits[self.path] <= 2:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/missing":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.path.startswith("/half"):
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(PAYLOAD)


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` on 127.0.0.1 in a thread; its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[str]:
    """A server on 127.0.0.1 with misbehaving paths."""
    _Handler.hits = {}
    with serving(_Handler) as url:
        yield url


def artefact(
    url: str, *, sha256: str | None = None, name: str = "demo", size: int | None = None
) -> Artefact:
    return Artefact(
        name=canonicalize_name(name),
        version="1.0",
        filename=f"{name}-1.0.tar.gz",
        url=url,
        path=None,
        sha256=sha256 or hashlib.sha256(PAYLOAD).hexdigest(),
        size=size,
    )


@pytest.fixture
def bad_server() -> Iterator[Misbehaving]:
    """A server on 127.0.0.1 with endless, huge, stalled and trickling bodies of PAYLOAD."""
    with misbehaving_server(PAYLOAD, trickle_interval=0.05) as server:
        yield server


def store_files(store: Store) -> list[Path]:
    return [p for p in store.root.rglob("*") if p.is_file() and "locks" not in p.parts]


class TestFetch:
    def test_downloads_land_in_the_store_under_their_hash(self, tmp_path, server):
        """A fetched file is stored read-only under blobs/sha256/ and reported."""
        store = Store(tmp_path / "store")
        reporter = RecordingReporter()
        a = artefact(f"{server}/ok")
        done = Fetcher(backoff=0).fetch([a], store, reporter)
        assert [f.nbytes for f in done] == [len(PAYLOAD)]
        assert store.blob(a.sha256).read_bytes() == PAYLOAD
        assert store.blob(a.sha256).stat().st_mode & 0o222 == 0
        assert reporter.files_done == [a.filename]
        assert reporter.bytes_done == len(PAYLOAD)

    def test_parallel_downloads_all_arrive(self, tmp_path, server):
        """Several files fetched at once each end up in the store."""
        store = Store(tmp_path / "store")
        payloads = [artefact(f"{server}/ok?{i}", name=f"p{i}") for i in range(6)]
        Fetcher(workers=3, backoff=0).fetch(payloads, store, RecordingReporter())
        assert store.has(payloads[0].sha256)
        assert len(store_files(store)) == 1  # same content: one blob

    def test_hash_mismatch_is_refused_and_nothing_is_written(self, tmp_path, server):
        """Bytes that do not hash to the lock's value never enter the store."""
        store = Store(tmp_path / "store")
        a = artefact(f"{server}/ok", sha256="0" * 64)
        with pytest.raises(HashMismatchError, match="the lock says 0000"):
            Fetcher(backoff=0).fetch([a], store, RecordingReporter())
        assert store_files(store) == []

    def test_interrupted_download_leaves_no_partial_file(self, tmp_path, server):
        """A connection dropped midway fails after retries and leaves nothing behind."""
        store = Store(tmp_path / "store")
        a = artefact(f"{server}/half")
        with pytest.raises(FetchError, match="after 3 attempt"):
            Fetcher(retries=2, backoff=0).fetch([a], store, RecordingReporter())
        assert store_files(store) == []
        assert _Handler.hits["/half"] == 3

    def test_transient_errors_are_retried(self, tmp_path, server):
        """Two 503 answers and then a good one still give the file."""
        store = Store(tmp_path / "store")
        a = artefact(f"{server}/flaky")
        Fetcher(retries=3, backoff=0).fetch([a], store, RecordingReporter())
        assert store.has(a.sha256)
        assert _Handler.hits["/flaky"] == 3

    def test_all_failures_are_reported_together(self, tmp_path, server):
        """One failing file does not hide another; good files still land."""
        store = Store(tmp_path / "store")
        good = artefact(f"{server}/ok", name="good")
        bad1 = artefact(f"{server}/missing", name="bad1")
        bad2 = artefact(f"{server}/ok", name="bad2", sha256="1" * 64)
        with pytest.raises(FetchError) as info:
            Fetcher(backoff=0).fetch([good, bad1, bad2], store, RecordingReporter())
        assert "bad1 1.0 (bad1-1.0.tar.gz): GET" in info.value.message
        assert "HTTP 404" in info.value.message
        assert "bad2 1.0" in info.value.message
        assert store.has(good.sha256)

    def test_local_path_artefacts_are_copied(self, tmp_path):
        """A lock entry with a path (not a URL) is read from disk and checked the same way."""
        src = tmp_path / "demo-1.0.tar.gz"
        src.write_bytes(PAYLOAD)
        a = Artefact(
            name=canonicalize_name("demo"),
            version="1.0",
            filename=src.name,
            url=None,
            path=src,
            sha256=hashlib.sha256(PAYLOAD).hexdigest(),
            size=len(PAYLOAD),
        )
        store = Store(tmp_path / "store")
        Fetcher().fetch([a], store, RecordingReporter())
        assert store.blob(a.sha256).read_bytes() == PAYLOAD


class TestOrder:
    def test_the_biggest_files_are_fetched_first(self, tmp_path):
        """With one worker, files go largest first (the lock's order aside), unsized last."""
        files = []
        for name, size in (("small", 10), ("unsized", 5), ("big", 3000), ("mid", 200)):
            path = tmp_path / f"{name}-1.0.tar.gz"
            path.write_bytes(name.encode() * size)
            files.append(
                Artefact(
                    name=canonicalize_name(name),
                    version="1.0",
                    filename=path.name,
                    url=None,
                    path=path,
                    sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                    size=None if name == "unsized" else path.stat().st_size,
                )
            )
        reporter = RecordingReporter()
        Fetcher(workers=1).fetch(files, Store(tmp_path / "store"), reporter)
        assert reporter.files_done == [
            "big-1.0.tar.gz",
            "mid-1.0.tar.gz",
            "small-1.0.tar.gz",
            "unsized-1.0.tar.gz",
        ]


def tmp_entries(store: Store) -> list[str]:
    return sorted(p.name for p in store.tmp_dir().iterdir())


class TestLimits:
    def test_a_body_longer_than_the_locked_size_stops_at_that_size(self, tmp_path, bad_server):
        """An endless body for a file the lock says is 600 kB stops just past 600 kB, names
        the file and the limit, and leaves nothing in store/tmp."""
        store = Store(tmp_path / "store")
        a = artefact(f"{bad_server.url}/endless", size=len(PAYLOAD))
        with pytest.raises(FetchError) as info:
            Fetcher(backoff=0).fetch([a], store, RecordingReporter())
        assert a.filename in info.value.message
        assert f"{len(PAYLOAD):,} bytes, the size the lock gives" in info.value.message
        assert store_files(store) == [] and tmp_entries(store) == []
        # What the server got to send is bounded by the limit plus what the sockets hold.
        assert bad_server.sent["/endless"] < len(PAYLOAD) + 16 * 1024 * 1024

    def test_without_a_locked_size_the_cap_applies(self, tmp_path, bad_server):
        """A lock without a size gets the download cap; the error says how to raise it."""
        store = Store(tmp_path / "store")
        a = artefact(f"{bad_server.url}/endless")
        limits = DownloadLimits(max_bytes=1_000_000)
        with pytest.raises(FetchError) as info:
            Fetcher(backoff=0, limits=limits).fetch([a], store, RecordingReporter())
        assert a.filename in info.value.message
        assert "1,000,000 bytes, the download size limit" in info.value.message
        assert "WHEELBARROW_MAX_DOWNLOAD_SIZE" in (info.value.hint or "")
        assert store_files(store) == [] and tmp_entries(store) == []

    def test_a_content_length_over_the_limit_is_refused_before_the_body(self, tmp_path, bad_server):
        """A response announcing 1 TB for a 600 kB file is refused without reading the body."""
        store = Store(tmp_path / "store")
        a = artefact(f"{bad_server.url}/huge", size=len(PAYLOAD))
        with pytest.raises(FetchError, match="announces 1,000,000,000,000 bytes"):
            Fetcher(backoff=0).fetch([a], store, RecordingReporter())
        assert store_files(store) == [] and tmp_entries(store) == []

    def test_a_stalled_body_times_out(self, tmp_path, bad_server):
        """A body that stops coming fails after the stall limit, on every attempt."""
        store = Store(tmp_path / "store")
        a = artefact(f"{bad_server.url}/stall", size=len(PAYLOAD))
        limits = DownloadLimits(stall=0.3, deadline=20)
        start = time.monotonic()
        with pytest.raises(FetchError) as info:
            Fetcher(retries=1, backoff=0, limits=limits).fetch([a], store, RecordingReporter())
        assert time.monotonic() - start < 10
        assert a.filename in info.value.message
        assert "no data for 0.3 s" in info.value.message
        assert "(after 2 attempt" in info.value.message
        assert store_files(store) == [] and tmp_entries(store) == []

    def test_a_trickle_is_stopped_by_the_deadline(self, tmp_path, bad_server):
        """Bytes arriving slowly but steadily stop at the download's overall deadline."""
        store = Store(tmp_path / "store")
        a = artefact(f"{bad_server.url}/trickle", size=len(PAYLOAD))
        limits = DownloadLimits(deadline=1.0, min_rate=0)
        start = time.monotonic()
        with pytest.raises(FetchError) as info:
            Fetcher(backoff=0, limits=limits).fetch([a], store, RecordingReporter())
        assert 0.9 < time.monotonic() - start < 6
        assert a.filename in info.value.message
        assert "not done after 1 s, the download time limit" in info.value.message
        assert "WHEELBARROW_DOWNLOAD_TIMEOUT" in (info.value.hint or "")
        assert store_files(store) == [] and tmp_entries(store) == []

    def test_a_trickle_below_the_minimum_rate_is_stopped(self, tmp_path, bad_server):
        """Fewer bytes per second than the minimum rate, over its window, stops the download."""
        store = Store(tmp_path / "store")
        a = artefact(f"{bad_server.url}/trickle", size=len(PAYLOAD))
        limits = DownloadLimits(min_rate=1000, rate_window=0.5)
        start = time.monotonic()
        with pytest.raises(FetchError) as info:
            Fetcher(retries=0, backoff=0, limits=limits).fetch([a], store, RecordingReporter())
        assert time.monotonic() - start < 6
        assert "slower than 1,000 bytes/s over 0.5 s" in info.value.message
        assert store_files(store) == [] and tmp_entries(store) == []

    def test_a_local_file_longer_than_the_locked_size_is_cut_off(self, tmp_path):
        """A local path is held to the locked size too."""
        src = tmp_path / "demo-1.0.tar.gz"
        src.write_bytes(PAYLOAD * 3)
        a = Artefact(
            name=canonicalize_name("demo"),
            version="1.0",
            filename=src.name,
            url=None,
            path=src,
            sha256=hashlib.sha256(PAYLOAD).hexdigest(),
            size=len(PAYLOAD),
        )
        store = Store(tmp_path / "store")
        with pytest.raises(FetchError, match="the size the lock gives"):
            Fetcher().fetch([a], store, RecordingReporter())
        assert tmp_entries(store) == []


class TestCredentials:
    def test_a_download_carries_the_credentials_of_its_index(self, tmp_path, bad_server):
        """A file on the index's host gets the index's credentials as basic auth."""
        from wheelbarrow.app.credentials import find_credentials

        index = bad_server.url.replace("//", "//alice:s3cret-pass@") + "/simple/"
        creds = find_credentials([("the command line", index)], environ={"NETRC": "/none"})
        a = artefact(f"{bad_server.url}/ok")
        Fetcher(backoff=0, credentials=creds).fetch([a], Store(tmp_path), RecordingReporter())
        expected = "Basic " + base64.b64encode(b"alice:s3cret-pass").decode()
        assert bad_server.authorization["/ok"] == [expected]

    def test_credentials_do_not_follow_a_redirect_to_another_host(self, tmp_path, bad_server):
        """A redirect away from the index's host (a CDN, object storage) drops the credentials."""
        from wheelbarrow.app.credentials import find_credentials

        with misbehaving_server(PAYLOAD) as elsewhere:
            index = bad_server.url.replace("//", "//alice:s3cret-pass@") + "/simple/"
            creds = find_credentials([("the command line", index)], environ={"NETRC": "/none"})
            a = artefact(f"{bad_server.url}/redirect?to={elsewhere.url}/ok")
            Fetcher(backoff=0, credentials=creds).fetch([a], Store(tmp_path), RecordingReporter())
            assert bad_server.authorization["/redirect"][0] is not None
            assert elsewhere.authorization["/ok"] == [None]

    def test_credentials_in_the_locked_url_are_sent_and_never_shown(self, tmp_path, bad_server):
        """A lock URL with user:password@ is fetched with them; its errors mask the password."""
        url = bad_server.url.replace("//", "//alice:s3cret-pass@")
        store = Store(tmp_path)
        Fetcher(backoff=0).fetch([artefact(f"{url}/ok")], store, RecordingReporter())
        assert bad_server.authorization["/ok"][0] is not None
        with pytest.raises(FetchError) as info:
            Fetcher(backoff=0).fetch(
                [artefact(f"{url}/endless", size=10)], Store(tmp_path / "s2"), RecordingReporter()
            )
        assert "s3cret-pass" not in info.value.message + (info.value.hint or "")
        assert "alice:****@127.0.0.1" in info.value.message


class TestDownloadLimits:
    def test_the_environment_sets_the_cap_and_the_deadline(self):
        """WHEELBARROW_MAX_DOWNLOAD_SIZE takes a size with a unit, WHEELBARROW_DOWNLOAD_TIMEOUT
        seconds."""
        limits = DownloadLimits.from_environ(
            {"WHEELBARROW_MAX_DOWNLOAD_SIZE": "2G", "WHEELBARROW_DOWNLOAD_TIMEOUT": "90"}
        )
        assert limits.max_bytes == 2 * 1024**3
        assert limits.deadline == 90
        assert DownloadLimits.from_environ({}) == DownloadLimits()

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("WHEELBARROW_MAX_DOWNLOAD_SIZE", "lots"),
            ("WHEELBARROW_MAX_DOWNLOAD_SIZE", "0"),
            ("WHEELBARROW_DOWNLOAD_TIMEOUT", "-1"),
            ("WHEELBARROW_DOWNLOAD_TIMEOUT", "soon"),
        ],
    )
    def test_a_bad_value_is_an_error_naming_the_variable(self, name, value):
        """A value that is not a positive size or number of seconds names the variable."""
        with pytest.raises(InputError, match=f"{name}={value!r}"):
            DownloadLimits.from_environ({name: value})


class TestStore:
    def test_writer_interrupted_midway_leaves_nothing(self, tmp_path):
        """An exception inside the writer removes its scratch file."""
        store = Store(tmp_path / "store")
        with (
            pytest.raises(KeyboardInterrupt),
            store.writer(sha256="a" * 64, size=None, label="x") as w,
        ):
            w.write(b"partial")
            raise KeyboardInterrupt
        assert store_files(store) == []

    def test_scratch_of_a_dead_writer_is_cleaned_at_once_and_a_live_ones_stays(self, tmp_path):
        """A scratch blob whose owner died (its lock is free) goes however new it is; one
        being written stays however old it is; files not named like scratch stay."""
        import os

        store = Store(tmp_path / "store")
        dead = store.tmp_dir() / "blob-4242-0a1b2c3d"
        dead.write_bytes(b"x")  # no lock beside it: its owner is gone
        (store.tmp_dir() / "notes.txt").write_text("not ours to judge")
        with (
            pytest.raises(HashMismatchError),
            store.writer(sha256="a" * 64, size=None, label="x") as w,
        ):
            w.write(b"partial")
            live = [
                p for p in store.tmp_dir().iterdir() if p.name.startswith("blob-") and p != dead
            ]
            assert len(live) == 2  # the scratch file and its lock
            for p in live:
                os.utime(p, (1, 1))  # ancient: age does not matter
            assert store.clean_stale_tmp() == 1
            assert all(p.exists() for p in live)
        assert not dead.exists()
        assert (store.tmp_dir() / "notes.txt").exists()


class TestAtomicWrite:
    def test_new_files_honour_the_umask(self, tmp_path):
        """A file written atomically is readable by others as usual (0644 under umask 022)."""
        import os

        from wheelbarrow._core.files import atomic_write_text

        old = os.umask(0o022)
        try:
            atomic_write_text(tmp_path / "f", "x")
        finally:
            os.umask(old)
        assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644

    def test_replaced_files_keep_their_mode(self, tmp_path):
        """Rewriting a file keeps the mode its owner gave it; no scratch file remains."""
        from wheelbarrow._core.files import atomic_write_text

        path = tmp_path / "f"
        path.write_text("old")
        path.chmod(0o640)
        atomic_write_text(path, "new")
        assert path.read_text() == "new"
        assert path.stat().st_mode & 0o777 == 0o640
        assert [p.name for p in tmp_path.iterdir()] == ["f"]


BIG = 5 << 20  # past fetch.BIG_DOWNLOAD: a big download, in a lane of its own


class _BigHandler(BaseHTTPRequestHandler):
    """Serves BIG bytes of its path's name, at full speed or (``/slow/...``) at about
    6 MB/s; keeps when each request came and when its last byte was sent."""

    protocol_version = "HTTP/1.1"
    spans: ClassVar[dict[str, tuple[float, float]]] = {}

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        start = time.monotonic()
        body = _big_body(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        step = 64 << 10
        for i in range(0, len(body), step if self.path.startswith("/slow") else len(body)):
            self.wfile.write(body[i : i + (step if self.path.startswith("/slow") else len(body))])
            if self.path.startswith("/slow"):
                time.sleep(0.01)
        self.wfile.flush()
        type(self).spans[self.path] = (start, time.monotonic())


def _big_body(path: str) -> bytes:
    return (path.encode() * (BIG // len(path) + 1))[:BIG]


@pytest.fixture
def big_server() -> Iterator[str]:
    _BigHandler.spans = {}
    with serving(_BigHandler) as url:
        yield url


def big_artefact(base: str, path: str) -> Artefact:
    body = _big_body(path)
    name = path.strip("/").replace("/", "-")
    return Artefact(
        name=canonicalize_name(name),
        version="1.0",
        filename=f"{name}-1.0.tar.gz",
        url=base + path,
        path=None,
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
    )


def served_spans(n: int) -> list[tuple[float, float]]:
    """The spans of the ``n`` big requests, once each handler has recorded its own (a client
    may have every byte before the handler's thread gets to it)."""
    deadline = time.monotonic() + 10
    while len(_BigHandler.spans) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_BigHandler.spans) == n, _BigHandler.spans
    return list(_BigHandler.spans.values())


def overlapping(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))


class TestBigDownloads:
    def test_fast_big_downloads_go_one_at_a_time_and_small_ones_beside_them(
        self, tmp_path, big_server, server
    ):
        """On a fast connection, big files never download side by side (threads sharing the
        GIL move less together than one alone); the small ones do not wait for them."""
        bigs = [big_artefact(big_server, f"/fast/{i}") for i in range(3)]
        smalls = [artefact(f"{server}/small{i}", name=f"small{i}") for i in range(4)]
        store = Store(tmp_path / "store")
        done = Fetcher(workers=8).fetch([*bigs, *smalls], store, RecordingReporter())
        assert len(done) == 7 and all(store.has(a.sha256) for a in [*bigs, *smalls])
        assert not overlapping(served_spans(3)), _BigHandler.spans
        assert set(_Handler.hits) == {f"/small{i}" for i in range(4)}

    def test_slow_big_downloads_go_side_by_side(self, tmp_path, big_server):
        """A big download slower than the fast lane's rate lets the next one start beside it."""
        bigs = [big_artefact(big_server, f"/slow/{i}") for i in range(2)]
        store = Store(tmp_path / "store")
        Fetcher(workers=8).fetch(bigs, store, RecordingReporter())
        assert all(store.has(a.sha256) for a in bigs)
        assert overlapping(served_spans(2)), _BigHandler.spans


class TestLanes:
    def test_a_waiting_big_download_stops_when_the_build_is_cancelled(self):
        """A download waiting for a lane gives up as soon as another one failed."""
        from wheelbarrow.store import fetch

        lanes = fetch._Lanes(fast=0.0, probe=0.05)  # no rate is slow: the first keeps its lane
        cancel = threading.Event()
        outcome: list[str] = []

        def second() -> None:
            try:
                with lanes.lane(cancel):
                    outcome.append("ran")
            except fetch._Cancelled:
                outcome.append("cancelled")

        with lanes.lane(cancel):
            waiting = threading.Thread(target=second)
            waiting.start()
            time.sleep(0.2)
            assert outcome == []  # still waiting behind the first
            cancel.set()
            waiting.join(timeout=30)
        assert outcome == ["cancelled"]
