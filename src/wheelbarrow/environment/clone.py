"""Cloning a stored environment where it runs: reflinks or hard links, checked against its seal."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Collection
from pathlib import Path
from typing import Literal

from wheelbarrow._core.errors import (
    EnvironmentEditedError,
    StoreError,
)
from wheelbarrow._core.scratch import scratch
from wheelbarrow.environment.seal import (
    UNSEALED,
    Scan,
    SealedFile,
    describe,
    read_seal,
)
from wheelbarrow.environment.site import relocate

# What the install target may hold is target.py's (light: the warm install uses it).
from wheelbarrow.environment.target import (
    check_target,
    clean_install_leftovers,
    installed_env_sound,
    scratch_prefix,
    user_files,
)

__all__ = [
    "LinkMode",
    "clean_install_leftovers",
    "clone_env",
    "installed_env_sound",
    "link_tree",
    "user_files",
]

LinkMode = Literal["hardlink", "copy"]


def clone_env(
    source: Path, dest: Path, *, mode: LinkMode = "hardlink", skip: Collection[str] = ()
) -> None:
    """Make ``dest`` a copy of the store environment ``source`` that runs from ``dest``.

    Files are reflinked where the filesystem can (a copy sharing blocks, so
    edits stay apart), else hard-linked (falling back to copies across
    filesystems), or copied with ``mode="copy"``. ``source`` is checked
    against its seal while it is walked. The new tree is built beside
    ``dest`` and renamed into place, so ``dest`` is never half-written. A
    previous wheelbarrow environment at ``dest`` is replaced, unless it holds
    files wheelbarrow did not put there; anything else there is left alone
    and reported.

    ``skip`` names directories (POSIX paths relative to ``source``) left out of the
    clone, as a slug leaves out test suites: they are checked against the seal all
    the same, and the clone's seal does not list them.
    """
    dest = dest.absolute()
    check_target(dest)
    seal = read_seal(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = scratch_prefix(dest)
    clean_install_leftovers(dest)
    with scratch(dest.parent, prefix) as holder:
        work = holder / "env"
        try:
            scan, placed, linked = link_tree(source, work, mode=mode, skip=skip)
        except FileNotFoundError as exc:
            raise StoreError(
                f"{source}: changed while it was being cloned ({exc.filename})",
                hint="install again",
            ) from exc
        if seal is not None:
            check = seal.check(source, scan)
            if not check.ok:
                raise EnvironmentEditedError(
                    f"{source}: changed after it was sealed: {describe(check.problems)}",
                    hint="run `wheelbarrow verify --repair`, then install again",
                )
            if check.restated:  # same bytes, new stats: hash them once, not at every clone
                with contextlib.suppress(OSError):
                    seal.refreshed(check.restated).write(source)
        rewritten = relocate(work, old=str(source), new=str(dest))
        if seal is not None:
            # The clone's own seal: its inodes (the store's, for hard links), and the
            # rewritten files as they are now. Install checks it to say "up to date".
            for rel in rewritten:
                placed[rel] = os.stat(os.path.join(work, rel))
            if linked and not check.restated and not skip:
                # Every file is the sealed one but those rewritten: amend a copy.
                seal.write_amended(
                    work,
                    {
                        rel: SealedFile(st.st_size, st.st_mtime_ns, st.st_ino, rewritten[rel])
                        for rel, st in placed.items()
                        if rel in rewritten
                    },
                )
            else:
                clone = seal.cloned(placed, rewritten)
                if skip:  # nor the links inside what was left out
                    links = {r: t for r, t in clone.links.items() if not _under(r, skip)}
                    clone = dataclasses.replace(clone, links=links)
                clone.write(work)
        if dest.exists():
            os.rename(dest, holder / "old")  # removed with the scratch entry
        os.rename(work, dest)


def _under(rel: str, dirs: Collection[str]) -> bool:
    """Whether the relative path ``rel`` is one of ``dirs`` or inside one."""
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in dirs)


# Linux's FICLONE ioctl: _IOW(0x94, 9, int).
FICLONE = 0x40049409

_NO_REFLINK = {
    errno.EOPNOTSUPP,
    errno.ENOTSUP,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOTTY,
    errno.ENOSYS,
    errno.EPERM,
}


class _Placer:
    """Puts one file of a tree in place: a reflink, else a hard link, else a copy.

    The first refusal of a method is taken for the whole tree (one filesystem),
    so ext4, which has no reflinks, pays for one failed ioctl per tree.
    """

    def __init__(self, mode: LinkMode) -> None:
        self.reflink = mode == "hardlink"
        self.hardlink = mode == "hardlink"
        self.only_hardlinks = True  # every file placed so far is a hard link

    def place(self, src: str, dst: str, st: os.stat_result) -> os.stat_result:
        """Place ``src`` (whose stat is ``st``) at ``dst``; returns the new file's stat."""
        if self.reflink:
            placed = _reflink(src, dst, st)
            if placed is not None:
                self.only_hardlinks = False
                return placed
            self.reflink = False
        if self.hardlink:
            try:
                os.link(src, dst)
                return st  # the same inode: the same stat, but for links and ctime
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                    raise
                self.hardlink = False  # another filesystem: copy from here on
        self.only_hardlinks = False
        shutil.copy2(src, dst)
        if not st.st_mode & stat.S_IWUSR:  # a copy is the environment's own: its owner may edit it
            os.chmod(dst, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)
        return os.stat(dst)


def _reflink(src: str, dst: str, st: os.stat_result) -> os.stat_result | None:
    """Clone ``src`` to a new ``dst`` sharing its blocks; None where the filesystem cannot."""
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.ioctl(dfd, FICLONE, sfd)
            except OSError as exc:
                os.unlink(dst)
                if exc.errno in _NO_REFLINK:
                    return None
                raise
            os.fchmod(dfd, stat.S_IMODE(st.st_mode) | stat.S_IWUSR)  # its own blocks, once edited
            os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
            return os.fstat(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def link_tree(
    src: Path, dst: Path, *, mode: LinkMode, skip: Collection[str] = ()
) -> tuple[Scan, dict[str, os.stat_result], bool]:
    """Recreate ``src`` at ``dst`` (directories made, symlinks copied, files placed).

    Returns what ``src`` held, from the one walk, for checking it against its
    seal; the stat of each file placed; and whether every file is a hard link.
    The seal and the stamp are left out: a clone gets its own seal (editing a clone's
    seal must not edit the store's). The directories ``skip`` names (POSIX paths
    relative to ``src``) are walked for the scan, and nothing of them is made at ``dst``.
    """
    scan = Scan()
    placed: dict[str, os.stat_result] = {}
    placer = _Placer(mode)
    src_s, dst_s = os.fspath(src), os.fspath(dst)
    cut = len(src_s) + 1
    skipped = {os.path.normpath(s).replace("/", os.sep) for s in skip}
    os.mkdir(dst_s)
    stack = [(src_s, True)]
    while stack:
        directory, copy = stack.pop()
        target_dir = dst_s + directory[len(src_s) :]
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = entry.path[cut:]
                d = os.path.join(target_dir, entry.name)
                if entry.is_symlink():
                    target = os.readlink(entry.path)
                    if copy:
                        os.symlink(target, d)
                    scan.links[rel] = target
                elif entry.is_dir(follow_symlinks=False):
                    inside = copy and rel not in skipped
                    if inside:
                        os.mkdir(d)
                    stack.append((entry.path, inside))
                elif entry.is_file(follow_symlinks=False):
                    if rel in UNSEALED:
                        continue
                    st = entry.stat(follow_symlinks=False)
                    scan.files[rel] = st
                    if copy:
                        placed[rel] = placer.place(entry.path, d, st)
                else:
                    scan.others.append(rel)  # sockets, fifos: never part of an environment
    return scan, placed, placer.only_hardlinks
