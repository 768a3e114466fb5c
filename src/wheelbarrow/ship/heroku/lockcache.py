"""The last lock wheelbarrow made for an app, kept in the build cache between builds.

Each build starts from a fresh checkout. An app that does not commit its pylock.toml
would otherwise be locked again against the index every time: slow, impossible while the
index is unreachable, and a new environment whenever an unpinned transitive dependency
has a new release. The lock records the digest of its inputs (``[tool.wheelbarrow]
inputs``); the cache keeps it under that digest, and planning reuses it exactly while
the inputs are unchanged.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from pathlib import Path
from typing import Final

from wheelbarrow._core.files import atomic_write_bytes

__all__ = ["LOCKS_DIR", "keep_lock", "restore_lock"]

LOCKS_DIR: Final = "locks"
"""Where, in a buildpack's cache, the last lock lives (as ``sha256-<inputs digest>.toml``)."""
_DIGEST: Final = re.compile(r"^(?:sha256:)?[0-9a-f]{16,128}$")


def restore_lock(lock_path: Path, cache: Path) -> str | None:
    """Copy the cached lock to ``lock_path`` unless the app has one; return its digest.

    Never overwrites: an app that commits a pylock.toml (wheelbarrow's or another
    tool's) keeps it. None when there is nothing to restore.
    """
    if lock_path.exists() or lock_path.is_symlink():
        return None
    cached = _cached(cache)
    if cached is None:
        return None
    digest, path = cached
    atomic_write_bytes(lock_path, path.read_bytes())
    return digest


def keep_lock(lock_path: Path, cache: Path) -> str | None:
    """Keep ``lock_path`` in ``cache`` under its inputs digest, replacing the previous one.

    Only a lock wheelbarrow wrote (one that records its inputs) is kept; returns
    its digest, or None when nothing was kept.
    """
    digest = _inputs_digest(lock_path)
    if digest is None:
        return None
    folder = cache / LOCKS_DIR
    target = folder / _file_name(digest)
    data = lock_path.read_bytes()
    if not (target.is_file() and target.read_bytes() == data):
        atomic_write_bytes(target, data)
    for old in folder.glob("*.toml"):
        if old != target:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    return digest


def _cached(cache: Path) -> tuple[str, Path] | None:
    folder = cache / LOCKS_DIR
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.toml")):
        digest = _inputs_digest(path)
        if digest is not None and path.name == _file_name(digest):
            return digest, path
    return None


def _file_name(digest: str) -> str:
    return digest.replace(":", "-") + ".toml"


def _inputs_digest(path: Path) -> str | None:
    """The lock's ``[tool.wheelbarrow] inputs``, or None when it has none (or cannot be read)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    tool = data.get("tool")
    own = tool.get("wheelbarrow") if isinstance(tool, dict) else None
    inputs = own.get("inputs") if isinstance(own, dict) else None
    if isinstance(inputs, str) and _DIGEST.match(inputs):
        return inputs
    return None
