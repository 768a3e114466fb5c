"""Progress and messages from the core, rendered by whoever calls it (the CLI, a test)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal, Protocol

Level = Literal["step", "info", "warning"]


class Reporter(Protocol):
    """Where the core tells what it does. Implementations must be thread-safe.

    ``message`` is for lines a person reads; the ``download_*`` calls drive a
    progress display (files and bytes) while files are fetched in parallel.
    ``download_expected`` adds to the byte total when a size becomes known
    only from a response (locks need not record sizes).
    """

    def message(self, level: Level, text: str) -> None: ...

    def download_started(self, files: int, total_bytes: int | None) -> None: ...

    def download_expected(self, nbytes: int) -> None: ...

    def download_advanced(self, nbytes: int) -> None: ...

    def download_file_done(self, filename: str, nbytes: int) -> None: ...

    def download_finished(self) -> None: ...


class NullReporter:
    """A reporter that discards everything: the default for library callers."""

    def message(self, level: Level, text: str) -> None:
        """Discard a message."""

    def download_started(self, files: int, total_bytes: int | None) -> None:
        """Discard the start of downloads."""

    def download_expected(self, nbytes: int) -> None:
        """Discard a size learnt from a response."""

    def download_advanced(self, nbytes: int) -> None:
        """Discard progress."""

    def download_file_done(self, filename: str, nbytes: int) -> None:
        """Discard a finished file."""

    def download_finished(self) -> None:
        """Discard the end of downloads."""


@dataclass
class RecordingReporter:
    """A reporter that keeps what it was told, for tests and for ``--json`` reports."""

    messages: list[tuple[Level, str]] = field(default_factory=list)
    files_done: list[str] = field(default_factory=list)
    bytes_done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def message(self, level: Level, text: str) -> None:
        """Keep a message."""
        with self._lock:
            self.messages.append((level, text))

    def download_started(self, files: int, total_bytes: int | None) -> None:
        """Nothing to keep at the start."""

    def download_expected(self, nbytes: int) -> None:
        """Nothing to keep for a size learnt late."""

    def download_advanced(self, nbytes: int) -> None:
        """Count bytes."""
        with self._lock:
            self.bytes_done += nbytes

    def download_file_done(self, filename: str, nbytes: int) -> None:
        """Keep the name of a finished file."""
        with self._lock:
            self.files_done.append(filename)

    def download_finished(self) -> None:
        """Nothing to keep at the end."""
