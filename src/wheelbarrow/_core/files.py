"""Small filesystem primitives: write to a temporary name, then rename."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def temporary_sibling(path: Path, suffix: str = ".tmp") -> Path:
    """A name beside ``path`` for what becomes it by a rename: hidden, and unique to this
    process and call (``.NAME.PID.RANDOM.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}{suffix}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    # os.open with 0o666 honours the umask (mkstemp would force 0600); a file
    # being replaced keeps its mode.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_kept(path: Path) -> bytes:
    """The bytes of a file a cache keeps, its time set to now: reading it is using it, and
    `store gc` removes such files by the time they were last used. Raises what reading
    raises (FileNotFoundError when nothing is kept); a time that cannot be set is no error."""
    data = path.read_bytes()
    with contextlib.suppress(OSError):
        os.utime(path)
    return data
