"""Progress and messages from the core, rendered by whoever calls it (the CLI, a test)."""

from __future__ import annotations

import _thread
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

Level = Literal["step", "info", "warning"]


class Reporter(Protocol):
    """Where the core tells what it does. Implementations must be thread-safe.

    ``message`` is for lines a person reads; the ``download_*`` calls drive a
    progress display (files and bytes) while files are fetched in parallel.
    ``download_expected`` adds to the byte total when a size becomes known
    only from a response (locks need not record sizes).

    ``build_started`` and ``build_finished`` bracket each source build, from
    the thread that runs it (several run at once). ``log`` is the file the
    build writes as it goes, for a display to tail; ``result`` says how it
    ended (``repaired to manylinux_2_28_x86_64 (nothing vendored)``, or why it
    failed) and ``seconds`` how long it took.
    """

    def message(self, level: Level, text: str) -> None: ...

    def download_started(self, files: int, total_bytes: int | None) -> None: ...

    def download_expected(self, nbytes: int) -> None: ...

    def download_advanced(self, nbytes: int) -> None: ...

    def download_file_done(self, filename: str, nbytes: int) -> None: ...

    def download_finished(self) -> None: ...

    def build_started(self, label: str, log: Path) -> None: ...

    def build_finished(self, label: str, *, ok: bool, seconds: float, result: str) -> None: ...


def duration(seconds: float) -> str:
    """``7.2s``, ``3m05s``, ``1h02m``: how long a build took, for people.

    >>> duration(7.25), duration(185), duration(3720)
    ('7.2s', '3m05s', '1h02m')
    """
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def build_started_line(label: str) -> str:
    """The line that says a source build started."""
    return f"Building {label} from source"


def build_finished_line(label: str, *, ok: bool, seconds: float, result: str) -> str:
    """The line that says how a source build ended, with its duration.

    >>> build_finished_line("cext 1.0", ok=True, seconds=3.21, result="kept as built")
    'Built cext 1.0 in 3.2s: kept as built'
    >>> build_finished_line("cext 1.0", ok=False, seconds=3.21, result="the build failed")
    'Failed to build cext 1.0 after 3.2s: the build failed'
    """
    if ok:
        return f"Built {label} in {duration(seconds)}: {result}"
    return f"Failed to build {label} after {duration(seconds)}: {result}"


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

    def build_started(self, label: str, log: Path) -> None:
        """Discard the start of a build."""

    def build_finished(self, label: str, *, ok: bool, seconds: float, result: str) -> None:
        """Discard the end of a build."""


@dataclass
class RecordingReporter:
    """A reporter that keeps what it was told, for tests and for ``--json`` reports."""

    messages: list[tuple[Level, str]] = field(default_factory=list)
    files_done: list[str] = field(default_factory=list)
    bytes_done: int = 0
    builds: list[tuple[str, str]] = field(default_factory=list)  # ("started" or the result, label)
    _lock: _thread.LockType = field(default_factory=_thread.allocate_lock, repr=False)

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

    def build_started(self, label: str, log: Path) -> None:
        """Keep that a build started."""
        with self._lock:
            self.builds.append(("started", label))

    def build_finished(self, label: str, *, ok: bool, seconds: float, result: str) -> None:
        """Keep how a build ended."""
        with self._lock:
            self.builds.append(("built" if ok else "failed", label))
