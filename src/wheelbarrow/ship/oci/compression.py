"""How image layers are compressed: gzip in parallel chunks (ISA-L, else zlib), or zstd.

Both give the same bytes for the same tar, run after run, whatever the number
of threads: gzip cuts the tar into fixed-size chunks and deflates each on its
own (as ``pigz --independent`` does), in one gzip member; zstd runs libzstd's
multi-threaded mode, whose output does not depend on the number of workers.
The bytes do depend on the library, its version, the level and the chunk size,
so :attr:`Compression.key` names them all for the layer cache.
"""

from __future__ import annotations

import collections
import contextlib
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from wheelbarrow._core.errors import ImageError
from wheelbarrow.share.oci.mediatypes import OCI_LAYER_GZIP, OCI_LAYER_ZSTD

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

GZIP, ZSTD = "gzip", "zstd"
ALGORITHMS = (GZIP, ZSTD)
# The library used for each algorithm when none is named, and each one's level.
_LIBRARIES = {GZIP: ("isal", "zlib"), ZSTD: ("zstandard",)}
_LEVELS = {"isal": 3, "zlib": 6, "zstandard": 3}
CHUNK = 1 << 20
# The most threads a layer is compressed with; more gain nothing on one tar stream.
_MAX_THREADS = 8
# ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): no name, no time, no host.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class Sink(Protocol):
    """Where compressed bytes go."""

    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Compression:
    """How a layer's tar is compressed: ``algorithm`` (gzip or zstd), by ``library`` at ``level``.

    ``version`` is the library's (and for ISA-L, also its binding's), ``chunk``
    the size of the pieces gzip deflates one by one.
    """

    algorithm: str
    library: str
    version: str
    level: int
    chunk: int = CHUNK

    @property
    def media_type(self) -> str:
        """The OCI layer media type of a tar compressed this way."""
        return OCI_LAYER_ZSTD if self.algorithm == ZSTD else OCI_LAYER_GZIP

    @property
    def key(self) -> str:
        """Everything the compressed bytes depend on, for a cache key.

        >>> Compression(algorithm="gzip", library="zlib", version="1.3", level=6).key
        'gzip/zlib-1.3/level-6/chunk-1048576'
        """
        library = f"{self.library}-{self.version}"
        return f"{self.algorithm}/{library}/level-{self.level}/chunk-{self.chunk}"

    def describe(self) -> str:
        """One line for a report: ``gzip (isal 1.9.1/2.32.1, level 3)``."""
        return f"{self.algorithm} ({self.library} {self.version}, level {self.level})"


def layer_compression(algorithm: str = GZIP, *, library: str | None = None) -> Compression:
    """How to compress layers with ``algorithm``, by ``library`` or the best one installed.

    gzip uses ISA-L (the ``isal`` package) and falls back to the standard
    library's zlib where it is missing; zstd needs ``zstandard``.
    """
    if algorithm not in ALGORITHMS:
        raise ImageError(
            f"unknown layer compression {algorithm!r}",
            hint=f"use one of: {', '.join(ALGORITHMS)}",
        )
    candidates = _LIBRARIES[algorithm] if library is None else (library,)
    for name in candidates:
        if name not in _LIBRARIES[algorithm]:
            raise ImageError(
                f"{name!r} is not a {algorithm} library wheelbarrow knows",
                hint=f"use one of: {', '.join(_LIBRARIES[algorithm])}",
            )
        version = _version(name)
        if version is not None:
            return Compression(
                algorithm=algorithm, library=name, version=version, level=_LEVELS[name]
            )
    raise ImageError(
        f"{algorithm} layers need the Python package {candidates[0]}, which is not installed",
        hint=f"pip install {candidates[0]} (it is one of wheelbarrow's dependencies)",
    )


def _version(library: str) -> str | None:
    """The library's version, or ``None`` when it cannot be imported."""
    try:
        if library == "isal":
            import isal
            from isal import _isal

            return f"{isal.__version__}/{_isal.ISAL_VERSION}"
        if library == "zstandard":
            import zstandard

            return f"{zstandard.__version__}/{'.'.join(map(str, zstandard.ZSTD_VERSION))}"
    except ImportError:
        return None
    return zlib.ZLIB_RUNTIME_VERSION


def default_threads() -> int:
    """The CPUs this process may run on, at most eight."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_THREADS))


class Compressor(Protocol):
    """A stream that compresses what is written to it into a :class:`Sink`."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


@contextlib.contextmanager
def compressing(
    compression: Compression, sink: Sink, *, threads: int | None = None
) -> Iterator[Compressor]:
    """A stream to write the tar into; leaving the block writes the end of the compressed data.

    On an error inside the block the work in flight is dropped and nothing more
    is written to ``sink``.
    """
    workers = default_threads() if threads is None else max(1, threads)
    if compression.algorithm == ZSTD:
        zstd = _Zstd(compression, sink, workers)
        yield zstd
        zstd.finish()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="gzip") as pool:
        gzip = _ParallelGzip(compression, sink, pool if workers > 1 else None, workers)
        try:
            yield gzip
        except BaseException:
            gzip.cancel()
            raise
        gzip.finish()


class _ParallelGzip:
    """One gzip member of chunks deflated independently, in ``pool``, written in order.

    Each chunk is raw deflate ending in a sync flush (byte-aligned, not final),
    so the chunks concatenate into one deflate stream, closed by an empty final
    block; the CRC and length follow as in any gzip file.
    """

    def __init__(
        self,
        compression: Compression,
        sink: Sink,
        pool: ThreadPoolExecutor | None,
        workers: int,
    ) -> None:
        self._chunk = compression.chunk
        self._deflate, self._crc32 = _deflater(compression)
        self._sink = sink
        self._pool = pool
        self._in_flight = 2 * workers
        self._pending: collections.deque[Future[bytes]] = collections.deque()
        self._buffer = bytearray()
        self._crc = 0
        self._size = 0
        sink.write(_GZIP_HEADER)

    def write(self, data: bytes, /) -> int:
        self._crc = self._crc32(data, self._crc)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._chunk:
            self._submit(bytes(self._buffer[: self._chunk]))
            del self._buffer[: self._chunk]
        return len(data)

    def flush(self) -> None:
        """Nothing: a flush must not cut a chunk short, or the bytes would depend on it."""

    def finish(self) -> None:
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        while self._pending:
            self._sink.write(self._pending.popleft().result())
        self._sink.write(self._deflate(b"", True))
        self._sink.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))

    def cancel(self) -> None:
        for future in self._pending:
            future.cancel()
        self._pending.clear()

    def _submit(self, chunk: bytes) -> None:
        if self._pool is None:
            self._sink.write(self._deflate(chunk, False))
            return
        self._pending.append(self._pool.submit(self._deflate, chunk, False))
        while len(self._pending) > self._in_flight:
            self._sink.write(self._pending.popleft().result())


def _deflater(
    compression: Compression,
) -> tuple[Callable[[bytes, bool], bytes], Callable[[bytes, int], int]]:
    """``deflate(chunk, last)`` (raw deflate: sync-flushed, or final) and ``crc32`` of a library.

    Both libraries release the GIL while they compress, so the chunks go in parallel.
    """
    level = compression.level
    if compression.library == "isal":
        from isal import isal_zlib

        def deflate_isal(chunk: bytes, last: bool) -> bytes:
            stream = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
            mode = isal_zlib.Z_FINISH if last else isal_zlib.Z_SYNC_FLUSH
            return stream.compress(chunk) + stream.flush(mode)

        return deflate_isal, isal_zlib.crc32

    def deflate_zlib(chunk: bytes, last: bool) -> bytes:
        stream = zlib.compressobj(level, zlib.DEFLATED, -15)
        return stream.compress(chunk) + stream.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    return deflate_zlib, zlib.crc32


class _Zstd:
    """One zstd frame with a checksum, from libzstd's multi-threaded mode (at least one worker).

    With one worker or many the frame is the same, and it does not depend on
    how the input is cut into writes; single-threaded mode (no worker) would
    give other bytes, so it is never used.
    """

    def __init__(self, compression: Compression, sink: Sink, workers: int) -> None:
        import zstandard

        compressor = zstandard.ZstdCompressor(
            level=compression.level, threads=workers, write_checksum=True
        )
        self._stream = compressor.compressobj()
        self._sink = sink

    def write(self, data: bytes, /) -> int:
        out = self._stream.compress(data)
        if out:
            self._sink.write(out)
        return len(data)

    def flush(self) -> None:
        """Nothing: the frame is written whole by :meth:`finish`."""

    def finish(self) -> None:
        self._sink.write(self._stream.flush())
