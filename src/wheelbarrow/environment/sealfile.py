"""The seal's file format (see :mod:`wheelbarrow.environment.seal`), with nothing else imported:
a warm install writes a small environment's seal without the checking machinery."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

SEAL = ".wheelbarrow-seal"
# A stored environment's stamp for the shared layout (environment/stamp.py): like the seal, it
# describes the tree and is no part of it.
STAMP = ".wheelbarrow-stamp"
UNSEALED = frozenset({SEAL, STAMP})
HEADER = "wheelbarrow-seal 1\n"


def file_line(rel: str, size: int, mtime_ns: int, inode: int, sha256: str) -> str:
    """One regular file's line: ``F``, its path, size, mtime (ns), inode and sha256."""
    return f"F\t{quote(rel)}\t{size}\t{mtime_ns}\t{inode}\t{sha256}\n"


def link_line(rel: str, target: str) -> str:
    """One symlink's line: ``L``, its path and its target."""
    return f"L\t{quote(rel)}\t{quote(target)}\n"


def seal_bytes(files: Iterable[tuple[str, int, int, int, str]], links: Mapping[str, str]) -> bytes:
    """A whole seal: the header, then a line per file and per link, each in path order."""
    lines = [HEADER]
    lines += [file_line(*f) for f in sorted(files)]
    lines += [link_line(rel, t) for rel, t in sorted(links.items())]
    return "".join(lines).encode("utf-8", "surrogateescape")


def quote(text: str) -> str:
    """A path as one field: JSON-quoted when it holds a tab, a newline or a quote first."""
    if "\t" in text or "\n" in text or text.startswith('"'):
        return json.dumps(text)
    return text


def unquote(field_: str) -> str:
    """The path a field quotes."""
    return str(json.loads(field_)) if field_.startswith('"') else field_
