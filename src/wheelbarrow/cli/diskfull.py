"""A full disk (ENOSPC, EDQUOT) as an error naming the device and the path being written."""

from __future__ import annotations

import argparse
import errno
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from wheelbarrow._core.errors import WheelbarrowError

NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(WheelbarrowError):
    """A device ran out of space (or the user's quota on it) while wheelbarrow wrote there."""


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT error ``exc`` is or was raised from, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in NO_SPACE:
            return current
        current = current.__cause__ or current.__context__
    return None


def disk_full_error(exc: OSError, places: Sequence[Path]) -> DiskFullError:
    """The error to show for ``exc``; ``places`` are where the command writes, to guess from.

    The path comes from the error (a copy's destination is its second file
    name). A write to an open file does not say which file it was: then the
    device is the one of ``places`` with the least room left, and the message
    names that place.
    """
    written = exc.filename2 if exc.filename2 is not None else exc.filename
    if written is not None:
        path = Path(os.fsdecode(written))
        what = str(path)
    else:
        path = _least_room(places)
        what = f"in {path}"
    device = mount_point(path)
    problem = "disk quota exceeded" if exc.errno == errno.EDQUOT else "no space left"
    return DiskFullError(
        f"{problem} on {device} while writing {what}",
        hint=f"free space on {device} (see `df -h {device}`), or point the store (--store), "
        "--into or --output at a device with room; nothing half-written was kept",
    )


def places(args: argparse.Namespace) -> list[Path]:
    """Where a command run with ``args`` writes: the store, its outputs, the app, the temp dir."""
    found = [
        Path(str(getattr(args, name))) for name in ("into", "output") if getattr(args, name, None)
    ]
    store = getattr(args, "store", None) or os.environ.get("WHEELBARROW_STORE")
    if store:
        found.append(Path(store))
    else:
        from platformdirs import user_cache_dir

        found.append(Path(user_cache_dir("wheelbarrow", appauthor=False)))
    if getattr(args, "app", None):
        found.append(Path(str(args.app)))
    found.append(Path(tempfile.gettempdir()))
    return found


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem ``path`` is (or would be) on."""
    current = _existing(path.absolute())
    while not os.path.ismount(current) and current != current.parent:
        current = current.parent
    return current


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def _least_room(places: Sequence[Path]) -> Path:
    """The place on the device with the fewest free bytes (the first place when none can say)."""

    def free(place: Path) -> int:
        try:
            stats = os.statvfs(_existing(place.absolute()))
        except OSError:
            return 1 << 62
        return stats.f_bavail * stats.f_frsize

    return min(places, key=free, default=Path.cwd())
