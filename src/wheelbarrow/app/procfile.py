"""The app's Procfile: its process types (``web: gunicorn app:app``), parsed once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROCFILE", "ProcessType", "Procfile", "parse_procfile", "read_procfile"]

PROCFILE = "Procfile"

# Heroku's rule: a name of letters, digits, "_" and "-", a colon, a command.
# Space around the name is allowed, as wheelbarrow always has; any other line
# (a comment, a blank line, one without a name or a command) is not a process.
_PROCESS_LINE = re.compile(r"\s*(?P<name>[A-Za-z0-9_-]+)\s*:(?P<command>.*)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessType:
    """One ``name: command`` line of a Procfile, and where it stands (1-based)."""

    name: str
    command: str
    line: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Procfile:
    """A Procfile and its process types, in the file's order (a repeated name is kept).

    >>> parse_procfile("# processes\\nweb: gunicorn app:app\\n", path=path).processes
    (ProcessType(name='web', command='gunicorn app:app', line=2),)
    """

    path: Path
    processes: tuple[ProcessType, ...]

    def command(self, name: str) -> str | None:
        """The command of the first process type called ``name``, or None."""
        return next((p.command for p in self.processes if p.name == name), None)


def parse_procfile(text: str, *, path: Path) -> Procfile:
    """The process types of a Procfile's ``text``; lines that are none are skipped."""
    processes = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _PROCESS_LINE.fullmatch(line)
        if match is None:
            continue
        command = match["command"].strip()
        if command:
            processes.append(ProcessType(name=match["name"], command=command, line=number))
    return Procfile(path=path, processes=tuple(processes))


def read_procfile(app_dir: Path) -> Procfile | None:
    """The app's Procfile, or None without one.

    Bytes that are not UTF-8 read as U+FFFD: a stray byte in a comment must not
    stop a build, and a command holding one fails where it runs, saying so.
    """
    path = app_dir / PROCFILE
    if not path.is_file():
        return None
    return parse_procfile(path.read_text(encoding="utf-8", errors="replace"), path=path)
