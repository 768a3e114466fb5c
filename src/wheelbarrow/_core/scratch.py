"""Scratch space a killed run leaves provably stale, and leases that keep store entries in use.

Every scratch entry ``PARENT/PREFIX<token>`` (a directory or a file) has a
sibling ``PARENT/PREFIX<token>.lock`` that its owner creates first and holds
with ``flock`` for as long as the entry exists. The kernel drops the lock when
the owner dies, however it dies (``kill -9`` included), so the next run proves
an entry stale by taking its lock, and never needs an age limit:

- a ``.lock`` whose lock can be taken belongs to a dead owner: its entry goes;
- an entry without its ``.lock`` was left by an owner that died between the
  two removals (the entry is removed first, the lock last): it goes too.

A lease is a shared ``flock`` on ``LOCKS/<name>.lock``: builds and installs
hold one on each wheelhouse and environment they use, and garbage collection
removes an entry only while it holds the exclusive lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

LOCK_SUFFIX = ".lock"


def _take(path: str) -> int | None:
    """Create ``path`` and hold its lock; None when someone else holds it (a cleaner, briefly)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A cleaner may have unlinked the file between our open and our lock:
        # then the lock guards nothing, and we start again with a new name.
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise FileNotFoundError(path)
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def scratch(parent: Path, prefix: str, *, directory: bool = True) -> Iterator[Path]:
    """A new scratch directory (or, with ``directory=False``, a path for a file) in ``parent``.

    The entry is removed on exit unless it was renamed away: renaming the
    finished result into place is how callers keep it.
    """
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        name = f"{prefix}{os.getpid()}-{os.urandom(4).hex()}"
        lock_path = os.path.join(parent, name + LOCK_SUFFIX)
        fd = _take(lock_path)
        if fd is not None:
            break
    path = parent / name
    try:
        if directory:
            path.mkdir()
        yield path
    finally:
        try:
            _remove(path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
            os.close(fd)


def clean_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove the scratch entries in ``parent`` starting with ``prefix`` whose owners are gone.

    Returns what was removed. Entries of live owners, and anything not named
    like a scratch entry, are left alone.
    """
    try:
        names = os.listdir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return []
    present = set(names)
    removed: list[Path] = []
    for name in sorted(names):
        if not name.startswith(prefix):
            continue
        path = os.path.join(parent, name)
        if name.endswith(LOCK_SUFFIX):
            entry = path.removesuffix(LOCK_SUFFIX)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its owner is alive
                if os.path.lexists(entry):
                    _remove(Path(entry))
                    removed.append(Path(entry))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            finally:
                os.close(fd)
        elif name + LOCK_SUFFIX not in present and _looks_like_scratch(name, prefix):
            # Listed without its lock: check again, the owner may have just made it.
            if os.path.lexists(path + LOCK_SUFFIX):
                continue
            _remove(Path(path))
            removed.append(Path(path))
    return removed


_SCRATCH_TAIL = re.compile(r"(?:^|.*\D)\d+-[0-9a-f]{8}$")


def _looks_like_scratch(name: str, prefix: str) -> bool:
    """``PREFIX...<pid>-<8 hex>``: the names :func:`scratch` gives (``prefix`` may be empty)."""
    return _SCRATCH_TAIL.match(name[len(prefix) :]) is not None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        with contextlib.suppress(OSError):
            os.rmdir(path)  # emptied by renaming its result away, as callers mostly do
            return
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        if path.exists():  # a read-only subdirectory, or a file appearing meanwhile
            shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def lease(locks: Path, name: str, *, exclusive: bool = False) -> Iterator[None]:
    """Hold ``LOCKS/<name>.lock``: shared by users of an entry, exclusive for whoever removes it."""
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{name}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def try_exclusive(locks: Path, name: str) -> contextlib.AbstractContextManager[bool]:
    """Take ``name``'s lease exclusively if nobody holds it; yields whether it was taken."""
    return _try_exclusive(locks, name)


@contextlib.contextmanager
def _try_exclusive(locks: Path, name: str) -> Iterator[bool]:
    locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / f"{name}{LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)
