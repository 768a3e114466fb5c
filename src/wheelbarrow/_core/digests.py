"""Content digests: canonical JSON, files and source trees, each written once."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

# hashlib is imported where a file or a tree is hashed: it loads OpenSSL, which costs a warm
# install a tenth of its time, for hashing a few kilobytes (small_sha256).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _hashlib import HASH


def small_sha256(data: bytes = b"") -> HASH:
    """A sha256 object for a few kilobytes (a record's name, a requirements file): the
    standard library's own implementation where CPython has it, which loads no shared
    library; else hashlib's. Big files go through :func:`file_sha256` (OpenSSL's is several
    times faster per byte). The digests are the same either way.
    """
    try:
        module = __import__("_sha2" if sys.version_info >= (3, 12) else "_sha256")
    except ImportError:  # a CPython built with OpenSSL's hashes only
        import hashlib

        return hashlib.sha256(data)
    made: HASH = module.sha256(data)
    return made


def json_sha256(data: object) -> str:
    """The sha256 (hex) of ``data`` as canonical JSON: sorted keys, no spaces.

    Keys, locks and build records hash what they depend on this way, so equal
    inputs give equal digests whatever order they were assembled in.
    """
    import hashlib  # not small_sha256: an SBOM's inputs list every wheel of a wheelhouse

    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def file_sha256(path: Path | str) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks."""
    import hashlib

    with open(path, "rb") as f:  # noqa: PTH123 - str paths from os.scandir walks too
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- local source trees --------------------------------------------------------

# Never part of a project's source, and each changes on every run (caches) or
# is huge (environments, VCS data): copying or hashing them would only add
# cost and spurious cache misses.
_SKIP_ANYWHERE = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".venv", ".tox", ".nox"}
    | {".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
# build/ and dist/ are the outputs of earlier builds only at the project's top;
# deeper down they can be real packages (pypa/build has src/build). An app that is
# its own package (`-e .`, a uv or Poetry project) also holds, at its top, the
# buildpack's runtime and environment (.heroku/) and its PEP 751 locks, which
# wheelbarrow rewrites: none of them is source, and a new lock must not rebuild it.
_SKIP_TOP = frozenset({"build", "dist", ".heroku"})
_APP_LOCK = re.compile(r"pylock(\.[^.]+)?\.toml")


def _skipped(name: str, *, top: bool) -> bool:
    return (
        name in _SKIP_ANYWHERE
        or name.endswith(".egg-info")
        or (top and (name in _SKIP_TOP or _APP_LOCK.fullmatch(name) is not None))
    )


def source_entries(root: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """``(relative posix path, absolute path, lstat)`` of each directory, file and symlink
    of a project's source, sorted.

    Skips VCS data, environments, caches, ``*.egg-info``, the top-level
    ``build/``, ``dist/``, ``.heroku/`` and the app's locks, and a crate's top
    ``target/``. Symlinked directories are not entered. Sockets, FIFOs and
    devices are skipped: they are not source, and reading a FIFO would block.
    """
    stack: list[tuple[str, str]] = [("", str(root))]
    # cargo's output (and maturin's wheels) at the top of a crate: gigabytes, not source.
    crate = (root / "Cargo.toml").is_file()
    while stack:
        rel_dir, abs_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            if _skipped(entry.name, top=not rel_dir) or (
                crate and not rel_dir and entry.name == "target"
            ):
                continue
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((rel, entry.path))
                yield rel, Path(entry.path), st
            elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                yield rel, Path(entry.path), st
        stack.extend(reversed(subdirs))


def tree_digest(root: Path) -> str:
    """A sha256 (hex) over the sorted relative paths, executable bits and contents of a tree.

    Covers what :func:`source_entries` yields; symlinks count by their target
    text, directories only through what they hold, mtimes and owners not at all.
    """
    import hashlib

    digest = hashlib.sha256()
    for rel, path, st in source_entries(root):
        if stat.S_ISDIR(st.st_mode):
            continue
        # NUL never occurs in a path or link target, so these records cannot
        # run into each other.
        if stat.S_ISLNK(st.st_mode):
            record = [b"l", os.fsencode(rel), os.fsencode(path.readlink())]
        else:
            executable = b"x" if st.st_mode & 0o100 else b"-"
            record = [b"f", os.fsencode(rel), executable, file_sha256(path).encode()]
        digest.update(b"\0".join(record) + b"\0\0")
    return digest.hexdigest()
