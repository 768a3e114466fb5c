"""Rendering: rich progress on a terminal, plain lines otherwise, JSON on request."""

from __future__ import annotations

import _thread
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from wheelbarrow._core.errors import WheelbarrowError, error_text
from wheelbarrow._core.redact import redact, redact_data
from wheelbarrow._core.report import (
    Level,
    NullReporter,
    Reporter,
    build_finished_line,
    build_started_line,
)
from wheelbarrow._core.text import human_size, plural

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


def error(exc: WheelbarrowError, *, json_mode: bool) -> None:
    """Print an error and its hint to stderr (and a JSON error object with ``--json``).

    Credentials are masked here, whatever the message quotes (see :mod:`wheelbarrow._core.redact`).
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
    sys.stderr.write(error_text(message, hint))


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


class PlainReporter:
    """Lines on stderr, for logs and pipes."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = _thread.allocate_lock()

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
        self._write(f"  fetched {filename} ({human_size(nbytes)})")

    def download_finished(self) -> None:
        """Nothing."""

    def build_started(self, label: str, log: Path) -> None:
        """One line as a build starts."""
        self._write(redact(build_started_line(label)))

    def build_finished(self, label: str, *, ok: bool, seconds: float, result: str) -> None:
        """One line as a build ends: how long it took and how it ended."""
        self._write(redact(build_finished_line(label, ok=ok, seconds=seconds, result=result)))


# Escape sequences and other control characters a backend's output may hold (colours, \r bars).
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")
_TAIL_BYTES = 8192


def last_log_line(path: Path) -> str:
    """The last line of a build log that says something, without escape sequences."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
    except OSError:
        return ""
    for line in reversed(data.decode("utf-8", errors="replace").splitlines()):
        text = " ".join(_CONTROL.sub("", line).split())
        if text:
            return redact(text)
    return ""


def _elapsed(seconds: float) -> str:
    whole = max(0, int(seconds))
    if whole < 3600:
        return f"{whole // 60}:{whole % 60:02d}"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class BuildsView:
    """What a terminal shows while source builds run: each build, how long, its log's last line.

    A rich renderable, drawn again at every refresh of the live display, so
    the logs are tailed as the builds write them. Thread-safe.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._running: dict[str, tuple[float, Path]] = {}
        self._lock = _thread.allocate_lock()

    def start(self, label: str, log: Path) -> None:
        """Show a build that started now, tailing ``log``."""
        with self._lock:
            self._running[label] = (self._clock(), log)

    def finish(self, label: str) -> None:
        """Stop showing a build."""
        with self._lock:
            self._running.pop(label, None)

    @property
    def running(self) -> int:
        """How many builds are on show."""
        with self._lock:
            return len(self._running)

    def __rich__(self) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            running = sorted(self._running.items())
        now = self._clock()
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, justify="right")
        table.add_column(no_wrap=True, overflow="ellipsis", ratio=1, style="dim")
        for label, (started, log) in running:
            # Text, not markup: a log line's "[fixture-backend]" is not a style.
            table.add_row(Text(label), Text(_elapsed(now - started)), Text(last_log_line(log)))
        title = Text(f"Building {plural(len(running), 'package')} from source", style="bold")
        return Group(title, table)


class RichReporter:
    """A live progress bar (files and bytes) on a terminal, and a live view of running builds.

    Rich keeps one live display at a time: wheels a backend asks for while
    builds are on show are listed as lines, without a bar.
    """

    def __init__(
        self, console: Console | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        from rich.console import Console

        self._console = console or Console(stderr=True, no_color="NO_COLOR" in os.environ)
        self._progress: Any = None
        self._task: Any = None
        self._files = 0
        self._done = 0
        self._unsized = False
        self._lock = _thread.allocate_lock()
        self._builds = BuildsView(clock)
        self._live: Any = None

    def message(self, level: Level, text: str) -> None:
        """Print a styled message above the bar."""
        style = {"step": "bold", "info": "", "warning": "yellow"}[level]
        prefix = {"step": "", "info": "  ", "warning": "warning: "}[level]
        self._console.print(
            prefix + redact(text), style=style or None, highlight=False, markup=False
        )

    def download_started(self, files: int, total_bytes: int | None) -> None:
        """Show the bar (unless builds are on show: then each file is one line)."""
        with self._lock:
            self._files, self._done = files, 0
            self._unsized = total_bytes is None
            if self._live is not None:
                return
            self._start_bar(files, total_bytes)

    def _start_bar(self, files: int, total_bytes: int | None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

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
            self._console.print(
                f"  fetched {filename} ({human_size(nbytes)})", highlight=False, markup=False
            )

    def download_finished(self) -> None:
        """Remove the bar."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    def build_started(self, label: str, log: Path) -> None:
        """Show the build among the running ones (a line instead while a bar is on show)."""
        with self._lock:
            self._builds.start(label, log)
            if self._progress is not None:
                self._console.print(build_started_line(label), highlight=False, markup=False)
            elif self._live is None:
                from rich.live import Live

                self._live = Live(
                    self._builds,
                    console=self._console,
                    transient=True,
                    refresh_per_second=4,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                self._live.start(refresh=True)

    def build_finished(self, label: str, *, ok: bool, seconds: float, result: str) -> None:
        """Say how the build ended, above the running ones; the view goes with the last."""
        line = build_finished_line(label, ok=ok, seconds=seconds, result=result)
        with self._lock:
            if self._live is not None and self._builds.running <= 1:
                self._live.stop()  # the last one: the view goes (it is transient)
                self._live = None
            self._builds.finish(label)
            self._console.print(
                redact(line), style=None if ok else "red", highlight=False, markup=False
            )


def make_reporter(*, quiet: bool, json_mode: bool) -> Reporter:
    """The reporter for this run: silent, rich on a terminal, plain otherwise.

    With ``--json`` human messages still go to stderr, keeping stdout for the report.
    """
    if quiet:
        return NullReporter()
    if sys.stderr.isatty() and os.environ.get("TERM") != "dumb" and not json_mode:
        return RichReporter()
    return PlainReporter(sys.stderr)
