"""Fetching locked wheels into the store, in parallel, hash-checked while streaming."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from wheelbarrow.errors import FetchError, HashMismatchError
from wheelbarrow.lockfile import Artefact
from wheelbarrow.report import Reporter
from wheelbarrow.store import BlobWriter, Store

if TYPE_CHECKING:
    import httpx

CHUNK = 1 << 20
DEFAULT_WORKERS = 8
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Cancelled(Exception):
    """Another download failed, or the user interrupted: stop this one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """One file that went into the store."""

    artefact: Artefact
    nbytes: int
    seconds: float


class Fetcher:
    """Downloads artefacts with one shared HTTP client and a pool of threads.

    ``client_factory`` makes the ``httpx.Client`` (the CLI's default honours
    the usual proxy and certificate variables); tests pass their own.
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], httpx.Client] | None = None,
        workers: int = DEFAULT_WORKERS,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self._client_factory = client_factory or default_client
        self._workers = max(1, workers)
        self._retries = retries
        self._backoff = backoff

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
            with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="fetch") as pool:
                futures = {
                    pool.submit(self._fetch_one, a, store, reporter, client, cancel): a
                    for a in artefacts
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
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                with store.writer(sha256=artefact.sha256, size=artefact.size, label=label) as w:
                    self._copy(artefact, w, reporter, client, cancel)
                    nbytes = w.size
                break
            except _Retryable as exc:
                reporter.download_advanced(-exc.nbytes)
                if attempt > self._retries or cancel.is_set():
                    raise FetchError(
                        f"{label}: {exc.reason} (after {attempt} attempt(s)) "
                        f"from {artefact.location}",
                        hint="check the network or the index, then build again",
                    ) from exc
                time.sleep(self._backoff * 2 ** (attempt - 1))
        reporter.download_file_done(artefact.filename, nbytes)
        return Fetched(artefact=artefact, nbytes=nbytes, seconds=time.monotonic() - start)

    def _copy(
        self,
        artefact: Artefact,
        writer: BlobWriter,
        reporter: Reporter,
        client: httpx.Client | None,
        cancel: threading.Event,
    ) -> None:
        if artefact.path is not None or (artefact.url and artefact.url.startswith("file:")):
            path = artefact.path or Path(unquote(urlparse(artefact.url or "").path))
            try:
                if artefact.size is None:
                    reporter.download_expected(path.stat().st_size)
                with path.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        if cancel.is_set():
                            raise _Cancelled
                        writer.write(chunk)
                        reporter.download_advanced(len(chunk))
            except FileNotFoundError as exc:
                raise FetchError(
                    f"{artefact.name} {artefact.version}: {path} does not exist",
                    hint="the lock points at a local file that moved: lock again",
                ) from exc
            return
        if client is None or not artefact.url:
            raise FetchError(f"{artefact.name} {artefact.version}: the lock gives no URL or path")
        import httpx

        seen = 0
        try:
            with client.stream("GET", artefact.url) as response:
                if response.status_code in _RETRYABLE_STATUS:
                    raise _Retryable(f"HTTP {response.status_code}", 0)
                if response.status_code != 200:
                    raise FetchError(
                        f"{artefact.name} {artefact.version}: GET {artefact.url} "
                        f"answered HTTP {response.status_code}",
                        hint="the file is gone from the index, or needs credentials: lock again",
                    )
                length = response.headers.get("Content-Length", "")
                if artefact.size is None and length.isdigit():
                    reporter.download_expected(int(length))
                for chunk in response.iter_bytes(CHUNK):
                    if cancel.is_set():
                        raise _Cancelled
                    writer.write(chunk)
                    seen += len(chunk)
                    reporter.download_advanced(len(chunk))
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}", seen) from exc


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
