"""Rendering: rich progress on a terminal, plain lines otherwise, JSON on request."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import IO, Any

from wheelbarrow.errors import WheelbarrowError
from wheelbarrow.redact import redact, redact_data
from wheelbarrow.report import Level, NullReporter, Reporter


def error(exc: WheelbarrowError, *, json_mode: bool) -> None:
    """Print an error and its hint to stderr (and a JSON error object with ``--json``).

    Credentials are masked here, whatever the message quotes (see :mod:`wheelbarrow.redact`).
    """
    message, hint = redact(exc.message), redact(exc.hint) if exc.hint else exc.hint
    if json_mode:
        payload = {
            "version": 1,
            "error": type(exc).__name__,
            "message": message,
            "hint": hint,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    lines = message.splitlines() or [""]
    sys.stderr.write(f"error: {lines[0]}\n")
    for line in lines[1:]:
        sys.stderr.write(f"  {line}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")


def interrupted() -> None:
    """Say that the user stopped the command."""
    sys.stderr.write("interrupted: nothing half-written was kept\n")


def emit_json(payload: dict[str, Any]) -> None:
    """Write the JSON report to stdout, credentials masked."""
    sys.stdout.write(json.dumps(redact_data(payload), indent=2) + "\n")


def out(text: str) -> None:
    """A result line for the user (stdout), flushed: a pipe reader may be waiting on it."""
    sys.stdout.write(redact(text) + "\n")
    sys.stdout.flush()


def human_bytes(n: float) -> str:
    """``61.2 MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class PlainReporter:
    """Lines on stderr, for logs and pipes."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock:
            self._stream.write(text + "\n")
            self._stream.flush()

    def message(self, level: Level, text: str) -> None:
        """Print a message: steps plain, details indented, warnings marked."""
        prefix = {"step": "", "info": "  ", "warning": "warning: "}[level]
        self._write(prefix + redact(text))

    def download_started(self, files: int, total_bytes: int | None) -> None:
        """Nothing: each file is announced when done."""

    def download_expected(self, nbytes: int) -> None:
        """Nothing: plain output has no bars."""

    def download_advanced(self, nbytes: int) -> None:
        """Nothing: plain output has no bars."""

    def download_file_done(self, filename: str, nbytes: int) -> None:
        """One line per fetched file."""
        self._write(f"  fetched {filename} ({human_bytes(nbytes)})")

    def download_finished(self) -> None:
        """Nothing."""


class RichReporter:
    """A live progress bar (files and bytes) on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console(stderr=True, no_color="NO_COLOR" in os.environ)
        self._progress: Any = None
        self._task: Any = None
        self._files = 0
        self._done = 0
        self._unsized = False
        self._lock = threading.Lock()

    def message(self, level: Level, text: str) -> None:
        """Print a styled message above the bar."""
        style = {"step": "bold", "info": "", "warning": "yellow"}[level]
        prefix = {"step": "", "info": "  ", "warning": "warning: "}[level]
        self._console.print(
            prefix + redact(text), style=style or None, highlight=False, markup=False
        )

    def download_started(self, files: int, total_bytes: int | None) -> None:
        """Show the bar."""
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._files, self._done = files, 0
        self._unsized = total_bytes is None
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(f"0/{files} files", total=total_bytes)

    def download_expected(self, nbytes: int) -> None:
        """Grow the bar's total by a size learnt from a response."""
        with self._lock:
            if self._progress is not None and self._unsized:
                task = self._progress.tasks[0]
                self._progress.update(self._task, total=(task.total or 0) + nbytes)

    def download_advanced(self, nbytes: int) -> None:
        """Move the bar."""
        if self._progress is not None:
            self._progress.update(self._task, advance=nbytes)

    def download_file_done(self, filename: str, nbytes: int) -> None:
        """Count a file."""
        with self._lock:
            self._done += 1
            if self._progress is not None:
                self._progress.update(self._task, description=f"{self._done}/{self._files} files")
                self._progress.console.print(
                    f"  fetched {filename} ({human_bytes(nbytes)})", highlight=False, markup=False
                )

    def download_finished(self) -> None:
        """Remove the bar."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def make_reporter(*, quiet: bool, json_mode: bool) -> Reporter:
    """The reporter for this run: silent, rich on a terminal, plain otherwise.

    With ``--json`` human messages still go to stderr, keeping stdout for the report.
    """
    if quiet:
        return NullReporter()
    if sys.stderr.isatty() and os.environ.get("TERM") != "dumb" and not json_mode:
        return RichReporter()
    return PlainReporter(sys.stderr)
