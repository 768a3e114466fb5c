"""What the slug's strip learnt about an environment's test packages, kept in the build cache.

Finding the test packages a slug may lose reads every module of each package that has some
(numpy, scipy, scikit-learn: thousands), to keep those that a module outside them imports.
The next compile of the same environment takes the list, and the sizes, from the cache;
one with a changed pin (another environment) reads again only the packages whose files
changed: what each package's modules import of test packages is kept by the hashes its
distribution's RECORD gives for its files.
"""

# Walks over site-packages work on str paths with os.* on purpose, as slug.py does.
# ruff: noqa: PTH112, PTH114, PTH118, PTH123, PTH208

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

FORMAT = 1
Sized = list[tuple[str, int, int]]  # absolute path, files, bytes


class Scans:
    """What each top-level package's modules import of test packages, by a digest of the
    RECORD lines of the distributions that installed it (and of its test packages found)."""

    def __init__(self, known: dict[str, list[str]]) -> None:
        self._known = known
        self.used: dict[str, list[str]] = {}  # what this strip looked up or found: kept next
        self._records: dict[str, dict[str, str]] = {}

    def imports(self, root: str, top: str, tests: Sequence[str]) -> list[str] | None:
        """What ``root/top``'s modules were found to import of test packages, if known."""
        digest = self._digest(root, top, tests)
        found = self._known.get(digest) if digest else None
        if digest and found is not None:
            self.used[digest] = found
        return found

    def keep(self, root: str, top: str, tests: Sequence[str], imports: list[str]) -> None:
        """Remember what ``root/top``'s modules import of test packages."""
        digest = self._digest(root, top, tests)
        if digest:
            self.used[digest] = imports

    def _digest(self, root: str, top: str, tests: Sequence[str]) -> str | None:
        if root not in self._records:
            self._records[root] = _records_by_top(root)
        record = self._records[root].get(top)
        if record is None:
            return None  # no RECORD names it: nothing says what its files are
        text = json.dumps([top, record, sorted(tests)])
        return hashlib.sha256(text.encode()).hexdigest()


def _records_by_top(root: str) -> dict[str, str]:
    """For each top-level name in ``root``, a digest of the RECORD lines under it (path and
    hash of every file), from every distribution that installed some."""
    lines: dict[str, list[str]] = {}
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return {}
    for name in names:
        if not name.endswith(".dist-info"):
            continue
        try:
            with open(os.path.join(root, name, "RECORD"), encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        for row in rows:
            if len(row) >= 2 and row[0] and not row[0].startswith(("/", "..")):
                lines.setdefault(row[0].split("/", 1)[0], []).append(f"{row[0]},{row[1]}")
    return {
        top: hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest() for top, v in lines.items()
    }


class KnownTests:
    """The build cache's file of what the last strip found: the environment it stripped,
    its test packages and their sizes, and the imports of each package it read."""

    def __init__(self, path: Path | None, env: str | None) -> None:
        self.path, self.env = path, env
        self._data = _read(path) if path is not None else {}
        scans = self._data.get("scans")
        known = scans if isinstance(scans, dict) else {}
        self.scans = Scans(
            {
                k: v
                for k, v in known.items()
                if isinstance(v, list) and all(isinstance(x, str) for x in v)
            }
        )

    def tests(self, build_dir: Path, sites: list[str]) -> Sized | None:
        """The test packages (absolute paths, files, bytes) of the same environment, when the
        file is about it and each is still a directory there."""
        data = self._data
        listed = data.get("tests")
        if self.env is None or data.get("env") != self.env or data.get("site-packages") != sites:
            return None
        try:
            found = [(os.path.join(build_dir, t), int(f), int(b)) for t, f, b in listed or ()]
        except (TypeError, ValueError):
            return None
        if not all(os.path.isdir(t) and not os.path.islink(t) for t, _, _ in found):
            return None
        return found

    def keep(self, build_dir: Path, sites: list[str], tests: Sized) -> None:
        """Write what this strip found (the imports it looked up or read, and no others)."""
        from wheelbarrow._core.files import atomic_write_text

        if self.path is None:
            return
        data = {
            "format": FORMAT,
            "env": self.env,
            "site-packages": sites,
            "tests": [[_relative(t, build_dir), f, b] for t, f, b in tests],
            "scans": self.scans.used,
        }
        atomic_write_text(self.path, json.dumps(data) + "\n")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def _relative(path: str, root: Path) -> str:
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else Path(rel).as_posix()


def test_like(names: Iterator[str], test_dirs: frozenset[str]) -> Iterator[str]:
    """The imported module names that could be a test package or inside one (a part of the
    dotted name is a test directory's name)."""
    for name in names:
        if any(part in test_dirs for part in name.split(".")):
            yield name
