"""A stored environment that others share: made read-only, and stamped so a warm install can
trust it without walking it.

Environments in the shared layout (:mod:`wheelbarrow.environment.shared`) run on a stored
environment in place. Before the first one does, :func:`prepare` checks the stored tree
against its seal (a stat pass, hashing what differs), takes the write bits off every file,
and writes a stamp (``.wheelbarrow-stamp``, beside the seal and, like it, no part of the
tree): the seal file's stat and the marker's, each directory's ctime and inode, the files
outside ``site-packages`` that each environment gets a copy of (scripts, ``pyvenv.cfg``)
with their sha256, and the symlinks there.

:func:`current` is what a warm install checks instead of the seal: one ``lstat`` per
directory, no file opened, no file hashed. A directory's ctime changes whenever an entry in
it is created, removed or renamed, or its mode or owner change; so an added ``.pth`` file or
module, a removed or renamed one, a file replaced the way ``sed -i``, most editors and
installers replace files, a new ``__pycache__`` entry, or a new seal all make the stamp
stale, and the next install checks the seal in full again (and sets the environment aside
and builds it again if it changed). What the stamp cannot see is a file written in place
(opened for writing, appended to): read-only modes refuse that to everyone but root and a
user who first gives the file its write bit back; ``wheelbarrow verify`` hashes every file
and catches it, and so does the stat pass of every clone, derivation or image made from it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from wheelbarrow.environment.marker import MARKER
from wheelbarrow.environment.sealfile import SEAL, STAMP

# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


FORMAT = 1


def inside(rel: str, site: str) -> bool:
    """Whether the relative path ``rel`` is ``site`` or in it."""
    return rel == site or rel.startswith(site + "/")


def prepare(stored: Path, site: str) -> dict[str, Any]:
    """Check ``stored`` in full, make its files read-only and stamp it; returns the stamp.

    ``site`` is its ``site-packages`` (relative). Raises
    :class:`~wheelbarrow._core.errors.EnvironmentEditedError` when it no longer matches its
    seal, naming what changed; nothing is stamped then.
    """
    from wheelbarrow._core.errors import EnvironmentEditedError
    from wheelbarrow._core.files import atomic_write_text
    from wheelbarrow.environment.seal import describe, read_seal, scan_tree

    seal = read_seal(stored)
    if seal is None or not (stored / MARKER).is_file():
        raise EnvironmentEditedError(
            f"{stored}: is incomplete or has no seal", hint="install again: it is made afresh"
        )
    scan = scan_tree(stored)
    check = seal.check(stored, scan)
    if not check.ok:
        raise EnvironmentEditedError(
            f"{stored}: changed after it was sealed: {describe(check.problems)}",
            hint="install again: the stored environment is set aside and made again",
        )
    if check.restated:  # same bytes, new stats: record them, so the next check is a stat pass
        seal = seal.refreshed(check.restated)
        seal.write(stored)
    base = os.fspath(stored) + os.sep
    for rel, st in scan.files.items():  # str paths: once per file, over thousands
        if st.st_mode & 0o222:
            os.chmod(base + rel, stat.S_IMODE(st.st_mode) & ~0o222)  # noqa: PTH101
    stamp = {
        "format": FORMAT,
        "site": site,
        "seal": _stat_of(stored / SEAL),
        "marker": _stat_of(stored / MARKER),
        "dirs": [[rel, st.st_ctime_ns, st.st_ino] for rel, st in sorted(scan.dirs.items())],
        "own": {
            rel: f.sha256
            for rel, f in sorted(seal.files.items())
            if not inside(rel, site) and rel != MARKER
        },
        "links": {rel: t for rel, t in sorted(seal.links.items()) if not inside(rel, site)},
    }
    atomic_write_text(stored / STAMP, json.dumps(stamp) + "\n")
    return stamp


def current(stored: Path) -> dict[str, Any] | None:
    """The stamp of ``stored`` if nothing it describes has changed since; else None."""
    try:
        stamp = json.loads((stored / STAMP).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("format") != FORMAT:
        return None
    try:
        if _stat_of(stored / SEAL) != stamp["seal"] or _stat_of(stored / MARKER) != stamp["marker"]:
            return None
        base = os.fspath(stored) + os.sep
        for rel, ctime_ns, inode in stamp["dirs"]:
            st = os.lstat(base + rel)
            if st.st_ctime_ns != ctime_ns or st.st_ino != inode or not stat.S_ISDIR(st.st_mode):
                return None
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return stamp


def _stat_of(path: Path) -> list[int]:
    st = os.lstat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]
