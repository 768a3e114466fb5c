"""Build output in Heroku's style: ``-----> `` steps, indented details, `` !     `` warnings."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import IO

from wheelbarrow._core.redact import redact
from wheelbarrow._core.report import Level, build_finished_line, build_started_line
from wheelbarrow._core.text import human_size

STEP = "-----> "
DETAIL = " " * 7
WARNING = " !     "


def _lines(text: str) -> list[str]:
    return text.splitlines() or [""]


class HerokuReporter:
    """A :class:`~wheelbarrow._core.report.Reporter` writing a Heroku build log to ``stream``.

    Steps read ``-----> Text``; their details are indented seven spaces so they
    line up under the step's text; warnings and errors prefix every line with
    `` !     `` and stand apart with a blank line before and after. Build logs
    are not terminals: downloads print one detail line per finished file, no
    bar; each source build gets a detail line as it starts and one as it ends,
    with its duration (a failure as a warning). Every call writes whole lines
    at once, under a lock, so messages from parallel downloads and builds
    never interleave. Trailing spaces are dropped, and
    credentials masked (see :mod:`wheelbarrow._core.redact`).

    >>> import io
    >>> out = io.StringIO()
    >>> r = HerokuReporter(out)
    >>> r.step("Installing requirements")
    >>> r.detail("numpy 2.1.3")
    >>> print(out.getvalue(), end="")
    -----> Installing requirements
           numpy 2.1.3
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def _write(self, lines: list[str]) -> None:
        # Every line of the build log passes here: credentials are masked once, for all.
        text = redact("".join(line.rstrip() + "\n" for line in lines))
        with self._lock:
            self._stream.write(text)
            self._stream.flush()

    def step(self, text: str) -> None:
        """``-----> text``; further lines of ``text`` become details."""
        first, *rest = _lines(text)
        self._write([STEP + first, *(DETAIL + line for line in rest)])

    def detail(self, text: str) -> None:
        """Every line of ``text`` indented seven spaces, under the current step."""
        self._write([DETAIL + line for line in _lines(text)])

    def warn(self, text: str) -> None:
        """Every line of ``text`` prefixed `` !     ``, between blank lines."""
        self._write(["", *(WARNING + line for line in _lines(text)), ""])

    def error(self, message: str, hint: str | None = None) -> None:
        """The message's lines prefixed `` !     ``, then a last such line saying what to do.

        The blank lines around the block make it stand out at the end of a
        failed build. Without a hint the block ends after the message.
        """
        lines = [WARNING + line for line in _lines(message)]
        if hint:
            lines += [WARNING + line for line in _lines("Hint: " + hint)]
        self._write(["", *lines, ""])

    def message(self, level: Level, text: str) -> None:
        """Render a core message: ``step`` as a step, ``info`` as a detail, ``warning`` as one."""
        if level == "step":
            self.step(text)
        elif level == "warning":
            self.warn(text)
        else:
            self.detail(text)

    def download_started(self, files: int, total_bytes: int | None) -> None:
        """Nothing: each file is announced when it is done."""

    def download_expected(self, nbytes: int) -> None:
        """Nothing: there is no bar to grow."""

    def download_advanced(self, nbytes: int) -> None:
        """Nothing: there is no bar to move."""

    def download_file_done(self, filename: str, nbytes: int) -> None:
        """One detail line per fetched file, with its size."""
        self.detail(f"Fetched {filename} ({human_size(nbytes)})")

    def download_finished(self) -> None:
        """Nothing: the core reports the outcome as a message."""

    def build_started(self, label: str, log: Path) -> None:
        """``Building NAME VERSION from source``, a detail of the wheelhouse step."""
        self.detail(build_started_line(label))

    def build_finished(self, label: str, *, ok: bool, seconds: float, result: str) -> None:
        """``Built NAME VERSION in 3.2s: …`` as a detail; a failure as a warning."""
        line = build_finished_line(label, ok=ok, seconds=seconds, result=result)
        if ok:
            self.detail(line)
        else:
            self.warn(line)
