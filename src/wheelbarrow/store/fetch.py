"""Fetching locked wheels into the store, in parallel, hash-checked while streaming.

Every download is bounded: it stops as soon as it passes the size the lock
gives (or a cap when the lock gives none), when no byte comes for a while,
when bytes come slower than a minimum rate, and at an overall deadline; so a
broken or hostile index can neither fill the disk nor hang a build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlparse

from wheelbarrow._core.errors import FetchError, HashMismatchError, InputError
from wheelbarrow._core.redact import redact_urls, remember
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.text import plural
from wheelbarrow.app.credentials import Credential, Credentials, credentials_for, split_userinfo
from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.store.store import BlobWriter, Store
from wheelbarrow.store.wheelcheck import PARALLEL_FROM

if TYPE_CHECKING:
    import httpx

    from wheelbarrow.app.directory import App
    from wheelbarrow.app.requirements import IndexOptions

CHUNK = 1 << 20
DEFAULT_WORKERS = 8
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_SIZE_ENV = "WHEELBARROW_MAX_DOWNLOAD_SIZE"
TIMEOUT_ENV = "WHEELBARROW_DOWNLOAD_TIMEOUT"
# The biggest wheels published (CUDA builds of deep-learning libraries) are
# about 2.5 GB; a file bigger than this without a locked size is an index gone wrong.
DEFAULT_MAX_BYTES = 4 * 1024**3
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# A download past this many bytes goes in a lane of its own (see _Lanes): the size past which
# a wheel is checked once whole, by several threads, and not as it streams in.
BIG_DOWNLOAD = PARALLEL_FROM
FAST_LANE = 32 << 20  # bytes/s: a big download this fast keeps the next one waiting
LANE_PROBE = 0.25  # seconds a big download runs before its speed counts


class _Cancelled(Exception):
    """Another download failed, or the user interrupted: stop this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """One file that went into the store."""

    artefact: Artefact
    nbytes: int
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadLimits:
    """How much, and for how long, one file may be downloaded, whatever the index does.

    ``max_bytes`` caps files whose size the lock does not give (a locked size
    is always the limit); ``deadline`` is the seconds one file may take, all
    attempts together; ``stall`` the seconds without a byte before an
    attempt is given up; ``min_rate`` the bytes per second an attempt must
    average over each ``rate_window`` seconds (0: no minimum).
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    deadline: float = 3600.0
    stall: float = 60.0
    min_rate: int = 1024
    rate_window: float = 60.0
    connect: float = 30.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DownloadLimits:
        """The defaults, with ``WHEELBARROW_MAX_DOWNLOAD_SIZE`` (bytes, or with a unit: 8G)
        and ``WHEELBARROW_DOWNLOAD_TIMEOUT`` (seconds) applied."""
        limits = cls()
        size = environ.get(MAX_SIZE_ENV, "").strip()
        if size:
            found = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", size, re.IGNORECASE)
            value = int(found[1]) * _UNITS[found[2].upper()] if found else 0
            if value <= 0:
                raise InputError(
                    f"{MAX_SIZE_ENV}={size!r}: not a size",
                    hint="give bytes, or a number with K, M, G or T "
                    f"(for example {MAX_SIZE_ENV}=8G)",
                )
            limits = dataclasses.replace(limits, max_bytes=value)
        timeout = environ.get(TIMEOUT_ENV, "").strip()
        if timeout:
            try:
                seconds = float(timeout)
            except ValueError:
                seconds = math.nan
            if not seconds > 0 or math.isinf(seconds):
                raise InputError(
                    f"{TIMEOUT_ENV}={timeout!r}: not a number of seconds",
                    hint=f"give the seconds one file may take (for example {TIMEOUT_ENV}=7200)",
                )
            limits = dataclasses.replace(limits, deadline=seconds)
        return limits


class Fetches(Protocol):
    """What the builder needs from a fetcher (:class:`Fetcher` is the real one)."""

    def fetch(
        self, artefacts: Sequence[Artefact], store: Store, reporter: Reporter
    ) -> Sequence[Fetched]: ...


class Fetcher:
    """Downloads artefacts with one shared HTTP client and a pool of threads.

    ``client_factory`` makes the ``httpx.Client`` (the CLI's default honours
    the usual proxy and certificate variables); tests pass their own.
    ``credentials`` answers which user and password go with a URL (see
    :mod:`wheelbarrow.app.credentials`); ``limits`` bounds every download.
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], httpx.Client] | None = None,
        workers: int = DEFAULT_WORKERS,
        retries: int = 3,
        backoff: float = 0.5,
        credentials: Credentials | None = None,
        limits: DownloadLimits | None = None,
    ) -> None:
        self._client_factory = client_factory or default_client
        self._workers = max(1, workers)
        self._retries = retries
        self._backoff = backoff
        self._credentials = credentials
        self._limits = limits or DownloadLimits()
        self._lanes = _Lanes()

    @classmethod
    def for_app(
        cls,
        app: App,
        given: IndexOptions,
        *,
        given_by: str,
        environ: Mapping[str, str],
        workers: int = DEFAULT_WORKERS,
    ) -> Fetcher:
        """The fetcher of a build of ``app``: credentials from its index options and direct
        URLs, ``given`` (the command line or config vars, named by ``given_by``), the
        environment and netrc; limits from the environment. Secrets found are
        remembered, so no output of this process shows them."""
        credentials = credentials_for(app, given, given_by=given_by, environ=environ)
        remember(credentials.secrets)
        return cls(
            workers=workers, credentials=credentials, limits=DownloadLimits.from_environ(environ)
        )

    def fetch(
        self, artefacts: Sequence[Artefact], store: Store, reporter: Reporter
    ) -> list[Fetched]:
        """Put every artefact in the store; on failure, raise one error naming all that failed.

        Completed files stay in the store (they are verified); the failed
        ones leave nothing behind.
        """
        if not artefacts:
            return []
        total = sum(a.size for a in artefacts if a.size is not None)
        known = all(a.size is not None for a in artefacts)
        reporter.download_started(len(artefacts), total if known else None)
        cancel = threading.Event()
        done: list[Fetched] = []
        errors: list[FetchError] = []
        client = (
            self._client_factory() if any(a.url and _is_http(a.url) for a in artefacts) else None
        )
        try:
            # The biggest first: the longest download, then the longest check of a wheel
            # as it enters the store, start at once instead of last.
            ordered = sorted(artefacts, key=lambda a: -(a.size or 0))
            with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="fetch") as pool:
                futures = {
                    pool.submit(self._fetch_one, a, store, reporter, client, cancel): a
                    for a in ordered
                }
                try:
                    for future in as_completed(futures):
                        exc = future.exception()
                        if exc is None:
                            done.append(future.result())
                        elif isinstance(exc, FetchError):
                            errors.append(exc)
                        elif not isinstance(exc, _Cancelled):
                            cancel.set()
                            raise exc
                except BaseException:
                    cancel.set()
                    raise
        finally:
            if client is not None:
                client.close()
            reporter.download_finished()
        if errors:
            hashes = [e for e in errors if isinstance(e, HashMismatchError)]
            kind = HashMismatchError if len(hashes) == len(errors) else FetchError
            raise kind(
                "\n".join(e.message for e in errors),
                hint=errors[0].hint or "check the network and the index, then build again",
            )
        return done

    def _fetch_one(
        self,
        artefact: Artefact,
        store: Store,
        reporter: Reporter,
        client: httpx.Client | None,
        cancel: threading.Event,
    ) -> Fetched:
        label = f"{artefact.name} {artefact.version} ({artefact.filename})"
        where = redact_urls(artefact.location)
        budget = _Budget(label=label, where=where, artefact=artefact, limits=self._limits)
        attempt = 0
        while True:
            attempt += 1
            try:
                with store.writer(
                    sha256=artefact.sha256,
                    size=artefact.size,
                    label=label,
                    filename=artefact.filename,
                ) as w:
                    self._copy(artefact, w, reporter, client, cancel, budget)
                    nbytes = w.size
                break
            except _Retryable as exc:
                reporter.download_advanced(-exc.nbytes)
                budget.check_deadline(exc.nbytes)
                if attempt > self._retries or cancel.is_set():
                    raise FetchError(
                        f"{label}: {exc.reason} (after {plural(attempt, 'attempt')}) from {where}",
                        hint="check the network or the index, then build again",
                    ) from exc
                time.sleep(min(self._backoff * 2 ** (attempt - 1), budget.remaining()))
        reporter.download_file_done(artefact.filename, nbytes)
        return Fetched(artefact=artefact, nbytes=nbytes, seconds=time.monotonic() - budget.start)

    def _copy(
        self,
        artefact: Artefact,
        writer: BlobWriter,
        reporter: Reporter,
        client: httpx.Client | None,
        cancel: threading.Event,
        budget: _Budget,
    ) -> None:
        """One attempt: copy a local file, or download the artefact, into ``writer``."""
        if artefact.path is not None or (artefact.url and artefact.url.startswith("file:")):
            _copy_local(artefact, writer, reporter, cancel, budget.attempt())
            return
        if client is None or not artefact.url:
            raise FetchError(f"{artefact.name} {artefact.version}: the lock gives no URL or path")
        big = artefact.size is not None and artefact.size > BIG_DOWNLOAD
        with self._lanes.lane(cancel) if big else contextlib.nullcontext() as lane:
            meter = budget.attempt()  # after the wait: its rate counts from the first byte
            if lane is not None:
                lane.meter = meter
            self._download(artefact, writer, reporter, client, cancel, budget, meter)

    def _download(
        self,
        artefact: Artefact,
        writer: BlobWriter,
        reporter: Reporter,
        client: httpx.Client,
        cancel: threading.Event,
        budget: _Budget,
        meter: _Meter,
    ) -> None:
        import httpx

        url, credential = self._authenticate(artefact.url or "")
        auth = (credential.username, credential.password) if credential else None
        left = budget.remaining()
        timeout = httpx.Timeout(min(self._limits.connect, left), read=min(self._limits.stall, left))
        try:
            with client.stream("GET", url, auth=auth, timeout=timeout) as response:
                self._check_status(response.status_code, url, credential, budget)
                length = response.headers.get("Content-Length", "")
                if length.isdigit():
                    budget.check_announced(int(length))
                    if artefact.size is None:
                        reporter.download_expected(int(length))
                # The network gives a TLS record (16 KB) at a time; the file and the hash get
                # a megabyte at a time: each write and each hash update gives up the GIL and
                # takes it back, hand-offs that slow every download running beside it.
                pending = bytearray()
                for chunk in response.iter_bytes():
                    if cancel.is_set():
                        raise _Cancelled
                    meter.take(len(chunk))
                    pending += chunk
                    reporter.download_advanced(len(chunk))
                    if len(pending) >= CHUNK:
                        writer.write(bytes(pending))
                        pending.clear()
                if pending:
                    writer.write(bytes(pending))
        except httpx.TimeoutException as exc:
            budget.check_deadline(meter.seen)
            why = "no data" if isinstance(exc, httpx.ReadTimeout) else "no connection"
            raise _Retryable(f"{why} for {_seconds(self._limits.stall)} s", meter.seen) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {redact_urls(str(exc))}", meter.seen) from exc

    def _check_status(
        self, status: int, url: str, credential: Credential | None, budget: _Budget
    ) -> None:
        """Raise for an answer other than 200: retryable, refused, or gone."""
        if status in _RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {status}", 0)
        if status in (401, 403):
            raise FetchError(
                f"{budget.label}: GET {budget.where} answered HTTP {status}",
                hint=self._refused_hint(url, credential),
            )
        if status != 200:
            raise FetchError(
                f"{budget.label}: GET {budget.where} answered HTTP {status}",
                hint="the file is gone from the index (or the index is down): "
                "lock again to take what it has now",
            )

    def _authenticate(self, url: str) -> tuple[str, Credential | None]:
        """The URL to request (without credentials) and the credential to send with it."""
        clean, user, password = split_userinfo(url)
        if user is not None:
            return clean, Credential(
                username=user, password=password or "", source="the file's URL in the lock"
            )
        found = self._credentials.for_url(clean) if self._credentials is not None else None
        return clean, found

    def _refused_hint(self, url: str, sent: Credential | None) -> str:
        if self._credentials is not None:
            return self._credentials.refused_hint(url, sent)
        if sent is not None:
            return f"the index refused the credentials from {sent.source}: check them"
        return "the index needs credentials: give them in the index URL or in ~/.netrc"


def _copy_local(
    artefact: Artefact,
    writer: BlobWriter,
    reporter: Reporter,
    cancel: threading.Event,
    meter: _Meter,
) -> None:
    """Copy an artefact the lock gives as a local path (or ``file:`` URL) into ``writer``."""
    path = artefact.path or Path(unquote(urlparse(artefact.url or "").path))
    try:
        if artefact.size is None:
            reporter.download_expected(path.stat().st_size)
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                if cancel.is_set():
                    raise _Cancelled
                meter.take(len(chunk))
                writer.write(chunk)
                reporter.download_advanced(len(chunk))
    except FileNotFoundError as exc:
        raise FetchError(
            f"{artefact.name} {artefact.version}: {path} does not exist",
            hint="the lock points at a local file that moved: lock again",
        ) from exc


class _Lanes:
    """Big downloads one at a time while the one running is fast; another as soon as every big
    one running is slow.

    Python threads downloading at once share the GIL: each TLS record read, file write and
    hash update gives it up and takes it back. On a fast network that costs more than it
    gains: here the index sends one connection 250 MB/s, and textsim's three big wheels
    (36, 17 and 10 MB) took 0.55 s side by side against 0.24 s one after another. On a slow
    connection, downloads side by side are what makes the whole fast. So a big download
    waits while every big one running has run ``probe`` seconds at ``fast`` bytes/s or more
    (or has not yet run that long); small files never wait.
    """

    def __init__(
        self,
        *,
        fast: float = FAST_LANE,
        probe: float = LANE_PROBE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fast, self._probe, self._clock = fast, probe, clock
        self._changed = threading.Condition()
        self._running: list[_Lane] = []

    @contextlib.contextmanager
    def lane(self, cancel: threading.Event) -> Iterator[_Lane]:
        """Wait for a lane (or for ``cancel``), hold it until the block ends."""
        with self._changed:
            while self._running and not all(map(self._slow, self._running)):
                if cancel.is_set():
                    raise _Cancelled
                self._changed.wait(self._probe / 4)
            lane = _Lane(self._clock())
            self._running.append(lane)
        try:
            yield lane
        finally:
            with self._changed:
                self._running.remove(lane)
                self._changed.notify_all()

    def _slow(self, lane: _Lane) -> bool:
        elapsed = self._clock() - lane.start
        seen = lane.meter.seen if lane.meter is not None else 0
        return elapsed >= self._probe and seen < self._fast * elapsed


class _Lane:
    """One big download's lane: when it was given, and the meter of its bytes."""

    __slots__ = ("meter", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.meter: _Meter | None = None


class _Budget:
    """What one file may still take: bytes (its locked size or the cap) and time (all attempts)."""

    def __init__(
        self, *, label: str, where: str, artefact: Artefact, limits: DownloadLimits
    ) -> None:
        self.label = label
        self.where = where
        self.limits = limits
        self.start = time.monotonic()
        self.max_bytes = artefact.size if artefact.size is not None else limits.max_bytes
        self._why = (
            "the size the lock gives" if artefact.size is not None else "the download size limit"
        )
        self._hint = (
            "the index serves another file than the one locked: check the index, then lock again"
            if artefact.size is not None
            else f"if the file really is that big, raise {MAX_SIZE_ENV} (for example "
            f"{MAX_SIZE_ENV}=8G) and build again"
        )

    def remaining(self) -> float:
        """Seconds left before the deadline (never below zero)."""
        return max(0.0, self.start + self.limits.deadline - time.monotonic())

    def check_deadline(self, seen: int) -> None:
        """Raise the deadline's error once it has passed."""
        if self.remaining() <= 0:
            raise FetchError(
                f"{self.label}: not done after {_seconds(self.limits.deadline)} s, the download "
                f"time limit ({seen:,} bytes received) from {self.where}",
                hint="the index is too slow or stalled: try again later, or raise "
                f"{TIMEOUT_ENV} (seconds)",
            )

    def check_announced(self, nbytes: int) -> None:
        """Refuse a response whose Content-Length already passes the limit."""
        if nbytes > self.max_bytes:
            raise FetchError(
                f"{self.label}: {self.where} announces {nbytes:,} bytes, more than "
                f"{self.max_bytes:,} bytes, {self._why}",
                hint=self._hint,
            )

    def too_big(self) -> FetchError:
        """The error of a body that went past the limit."""
        return FetchError(
            f"{self.label}: {self.where} sent more than {self.max_bytes:,} bytes, {self._why}; "
            "stopped there",
            hint=self._hint,
        )

    def attempt(self) -> _Meter:
        """A meter for one attempt."""
        return _Meter(self)


class _Meter:
    """Counts one attempt's bytes; raises as soon as a limit is passed."""

    def __init__(self, budget: _Budget) -> None:
        self._budget = budget
        self.seen = 0
        self._window_start = time.monotonic()
        self._window_bytes = 0

    def take(self, nbytes: int) -> None:
        """Account for ``nbytes`` about to be written; raise if that passes a limit."""
        budget, limits = self._budget, self._budget.limits
        if self.seen + nbytes > budget.max_bytes:
            raise budget.too_big()
        budget.check_deadline(self.seen)
        self.seen += nbytes
        self._window_bytes += nbytes
        now = time.monotonic()
        elapsed = now - self._window_start
        if limits.min_rate and elapsed >= limits.rate_window:
            if self._window_bytes < limits.min_rate * elapsed:
                raise _Retryable(
                    f"slower than {limits.min_rate:,} bytes/s over "
                    f"{_seconds(limits.rate_window)} s",
                    self.seen,
                )
            self._window_start, self._window_bytes = now, 0


def _seconds(value: float) -> str:
    return f"{value:g}"


class _Retryable(Exception):
    def __init__(self, reason: str, nbytes: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.nbytes = nbytes


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def default_client() -> httpx.Client:
    """An HTTP client with the usual environment (proxies, SSL_CERT_FILE) honoured."""
    import httpx

    return httpx.Client(
        follow_redirects=True,
        timeout=httpx.Timeout(30.0, read=120.0),
        limits=httpx.Limits(max_connections=DEFAULT_WORKERS * 2),
        headers={"User-Agent": "wheelbarrow"},
    )
