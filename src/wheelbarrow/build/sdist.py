"""Unpacking sdists safely: no member escapes its directory, sizes and counts bounded."""

from __future__ import annotations

import contextlib
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

from wheelbarrow._core.errors import ArchiveError, UnsafeArchiveError
from wheelbarrow._core.files import temporary_sibling

__all__ = [
    "MAX_MEMBERS",
    "MAX_UNPACKED_BYTES",
    "unpack_sdist",
]

MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_MEMBERS = 200_000
# A symlink stored in a zip is a member whose content is the target path.
_MAX_ZIP_LINK_TARGET = 4096
# Linux gives up after 40 symlinks in one lookup; so does our resolver.
_MAX_LINK_HOPS = 40
# Extraction filters (PEP 706) came in 3.11.4; wheelbarrow runs on 3.11.0 and later.
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
_UNSAFE_HINT = "the archive would write outside its directory; get the sdist from a trusted source"

Kind = Literal["file", "dir", "symlink", "hardlink"]


# -- unpacking ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Member:
    """An archive member reduced to what the safety checks look at."""

    name: str  # as stored, for messages
    parts: tuple[str, ...]  # normalised relative path
    kind: Kind
    link: str = ""  # a symlink's target, or the member a hard link repeats


def unpack_sdist(
    archive: Path,
    dest: Path,
    *,
    label: str,
    max_bytes: int = MAX_UNPACKED_BYTES,
    max_members: int = MAX_MEMBERS,
) -> Path:
    """Unpack a ``.tar[.gz|.bz2|.xz]`` or ``.zip`` sdist into ``dest`` and return the project root.

    The root is the archive's single top-level directory, as sdists have, or
    ``dest`` itself when there are several top-level entries. ``dest`` must not
    exist: the archive is unpacked beside it and renamed into place, so a
    refused or broken archive leaves nothing. Members that would land outside
    ``dest`` (absolute paths, ``..``, links out), device files and archives
    larger than the limits are refused with :class:`UnsafeArchiveError` naming
    ``label`` and the member. Raises ``FileExistsError`` when ``dest`` exists.
    """
    if not archive.is_file():
        raise ArchiveError(f"cannot read {label}: {archive} does not exist")
    if dest.exists():
        raise FileExistsError(f"{dest} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(dest)
    tmp.mkdir()
    try:
        if archive.name.lower().endswith(".zip"):
            members = _unpack_zip(
                archive, tmp, label=label, max_bytes=max_bytes, max_members=max_members
            )
        else:
            members = _unpack_tar(
                archive, tmp, label=label, max_bytes=max_bytes, max_members=max_members
            )
        top = _single_top_directory(members)
        try:
            tmp.rename(dest)
        except OSError as exc:
            raise FileExistsError(f"{dest} appeared while {label} was unpacked") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest / top if top else dest


def _refuse(label: str, member: str, reason: str, *, hint: str = _UNSAFE_HINT) -> NoReturn:
    raise UnsafeArchiveError(
        f"refusing to unpack {label}: member {member!r} {reason}", member=member, hint=hint
    )


def _too_big(label: str, what: str) -> NoReturn:
    raise UnsafeArchiveError(
        f"refusing to unpack {label}: it holds more than {what}",
        hint="an sdist this large is unexpected; check that the archive is the right one",
    )


def _parts(name: str, *, label: str, separators: str = "/") -> tuple[str, ...]:
    """The normalised parts of a member name; refuses absolute paths and ``..``."""
    if name.startswith(tuple(separators)) or re.match(r"[A-Za-z]:", name):
        _refuse(label, name, "has an absolute path")
    parts = tuple(p for p in re.split(f"[{re.escape(separators)}]", name) if p not in ("", "."))
    if ".." in parts:
        _refuse(label, name, "has a '..' component")
    if "\0" in name:
        _refuse(label, name, "has a NUL byte in its name")
    return parts


def _check_members(members: Sequence[_Member], *, label: str) -> None:
    """Refuse members that could write or point outside the root, whatever the extraction order.

    Names are already relative without ``..``. What is left: a name stored
    twice (a file replaced by a link), a member under a symlink or a file (a
    write through a link), a hard link to anything but an earlier file, and a
    symlink whose target leaves the root, followed through the archive's own
    symlinks as the kernel would.
    """
    kinds: dict[tuple[str, ...], Kind] = {}
    for member in members:
        previous = kinds.get(member.parts)
        if previous is not None and not (previous == "dir" and member.kind == "dir"):
            _refuse(label, member.name, "appears more than once")
        if member.kind == "hardlink":
            try:
                target = _parts(member.link, label=label)
            except UnsafeArchiveError:
                _refuse(
                    label, member.name, f"is a hard link to {member.link!r}, outside the archive"
                )
            if kinds.get(target) != "file":
                _refuse(
                    label, member.name, f"is a hard link to {member.link!r}, not an earlier file"
                )
        kinds[member.parts] = member.kind
    links = {"/".join(m.parts): m.link for m in members if m.kind == "symlink"}
    for member in members:
        if not member.parts:
            if member.kind != "dir":
                _refuse(label, member.name, "has an empty name")
            continue
        for i in range(1, len(member.parts)):
            ancestor = kinds.get(member.parts[:i])
            if ancestor not in (None, "dir"):
                _refuse(
                    label, member.name, f"lies under {'/'.join(member.parts[:i])!r}, a {ancestor}"
                )
        if member.kind == "symlink":
            if not member.link or member.link.startswith("/"):
                _refuse(label, member.name, f"is a symlink to {member.link!r}, not a relative path")
            start = [*member.parts[:-1], *member.link.split("/")]
            if _resolve(start, links) is None:
                _refuse(label, member.name, f"is a symlink to {member.link!r}, outside the archive")


def _resolve(parts: list[str], links: dict[str, str]) -> list[str] | None:
    """Where a path inside the root leads once the archive's symlinks are followed; None if out."""
    resolved: list[str] = []
    pending = list(parts)
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(part)
        target = links.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS or target.startswith("/"):
                return None
            resolved.pop()
            pending[:0] = target.split("/")
    return resolved


def _single_top_directory(members: Sequence[_Member]) -> str | None:
    tops = {m.parts[0] for m in members if m.parts}
    if len(tops) != 1:
        return None
    (top,) = tops
    is_dir = any((m.parts == (top,) and m.kind == "dir") or len(m.parts) > 1 for m in members)
    return top if is_dir else None


def _unpack_tar(
    archive: Path, dest: Path, *, label: str, max_bytes: int, max_members: int
) -> list[_Member]:
    unreadable = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)
    with _open_tar(archive, label=label) as tar:
        infos: list[tarfile.TarInfo] = []
        members: list[_Member] = []
        total = 0
        try:
            # Checked while reading the headers, so a bomb stops at the limit
            # rather than after decompressing everything.
            for info in tar:
                if len(infos) >= max_members:
                    _too_big(label, f"{max_members} members")
                members.append(_tar_member(info, label=label))
                infos.append(info)
                if info.isreg():
                    total += info.size
                    if total > max_bytes:
                        _too_big(label, f"{_human(max_bytes)} of files")
        except (*unreadable, OSError) as exc:
            raise ArchiveError(f"cannot read {label}: {exc}", hint="download it again") from exc
        _check_members(members, label=label)
        try:
            if _HAS_DATA_FILTER:
                # The data filter is the second line of defence: it re-checks each
                # path against the real filesystem and drops setuid bits and owners.
                with _writing(dest):
                    tar.extractall(dest, members=infos, filter="data")
            else:
                _extract_checked(tar, infos, members, dest, label=label)
        except (*unreadable,) as exc:
            if _HAS_DATA_FILTER and isinstance(exc, tarfile.FilterError):
                member = exc.tarinfo.name if exc.tarinfo is not None else ""
                _refuse(label, member, f"is unsafe: {exc}")
            raise ArchiveError(f"cannot read {label}: {exc}", hint="download it again") from exc
    return members


def _extract_checked(
    tar: tarfile.TarFile,
    infos: Sequence[tarfile.TarInfo],
    members: Sequence[_Member],
    dest: Path,
    *,
    label: str,
) -> None:
    """Extract members that :func:`_check_members` passed, as the data filter would.

    For Pythons without extraction filters (before 3.11.4, such as Debian 12's
    3.11.2). Files are created new (never through a link, never replacing
    anything), with the data filter's modes: no setuid/setgid/sticky bits, no
    group or other write, always owner read and write. Owners are not copied.
    Symlinks come last, so that no write can go through one.
    """
    times: list[tuple[Path, float]] = []
    for info, member in zip(infos, members, strict=True):
        target = dest.joinpath(*member.parts)
        if member.kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
            times.append((target, info.mtime))
        elif member.kind == "file":
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_tar_file(tar, info, target, label=label)
            times.append((target, info.mtime))
        elif member.kind == "hardlink":
            # The checks made the link's target an earlier regular file of the archive.
            source = dest.joinpath(*_parts(member.link, label=label))
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(source, target, follow_symlinks=False)
            except OSError:  # a filesystem without hard links: copy, as tarfile does
                shutil.copy2(source, target, follow_symlinks=False)
    for member in members:
        if member.kind == "symlink":
            target = dest.joinpath(*member.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(member.link)
    # Directories last: writing into one changes its mtime.
    for path, mtime in reversed(times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def _write_tar_file(
    tar: tarfile.TarFile, info: tarfile.TarInfo, target: Path, *, label: str
) -> None:
    mode = info.mode & 0o755
    if not mode & 0o100:
        mode &= ~0o111  # not executable by its owner: by nobody, as with the data filter
    mode |= 0o600
    source = tar.extractfile(info)
    if source is None:  # pragma: no cover - regular members always have a file object
        _refuse(label, info.name, "has no data")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with _writing(target), os.fdopen(fd, "wb") as out, source:
        # os.open applied the umask; the data filter sets the mode as computed.
        os.fchmod(out.fileno(), mode)
        shutil.copyfileobj(source, out, 1 << 20)


def _open_tar(archive: Path, *, label: str) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        raise ArchiveError(
            f"cannot read {label}: {exc}",
            hint="download it again, or check that it is a tar or zip",
        ) from exc


def _tar_member(info: tarfile.TarInfo, *, label: str) -> _Member:
    parts = _parts(info.name, label=label)
    if info.isdir():
        kind: Kind = "dir"
    elif info.issym():
        kind = "symlink"
    elif info.islnk():
        kind = "hardlink"
    elif info.isreg():
        kind = "file"
    elif info.isdev():
        _refuse(label, info.name, "is a device file or FIFO")
    else:
        _refuse(label, info.name, "has an unsupported type")
    return _Member(name=info.name, parts=parts, kind=kind, link=info.linkname)


def _unpack_zip(
    archive: Path, dest: Path, *, label: str, max_bytes: int, max_members: int
) -> list[_Member]:
    unreadable = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > max_members:
                _too_big(label, f"{max_members} members")
            if sum(info.file_size for info in infos) > max_bytes:
                _too_big(label, f"{_human(max_bytes)} of files")
            members = [_zip_member(zf, info, label=label) for info in infos]
            _check_members(members, label=label)
            for info, member in zip(infos, members, strict=True):
                target = dest.joinpath(*member.parts)
                if member.kind == "dir":
                    target.mkdir(parents=True, exist_ok=True)
                elif member.kind == "file":
                    _write_zip_file(zf, info, target, label=label)
            # Links last: nothing is written after them, so no write can go
            # through one, whatever order the archive lists them in.
            for member in members:
                if member.kind == "symlink":
                    target = dest.joinpath(*member.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.symlink_to(member.link)
    except (*unreadable, RuntimeError) as exc:
        # RuntimeError: an encrypted member.
        raise ArchiveError(
            f"cannot read {label}: {exc}",
            hint="download it again, or check that it is a tar or zip",
        ) from exc
    return members


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, label: str) -> _Member:
    # Zips made on Windows may use backslashes; treat them as separators for
    # the checks so "..\\x" is refused too.
    parts = _parts(info.filename, label=label, separators="/\\")
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    if stat.S_ISLNK(mode):
        if info.file_size > _MAX_ZIP_LINK_TARGET:
            _refuse(label, info.filename, "is a symlink with an overlong target")
        link = zf.read(info).decode("utf-8", errors="replace")
        return _Member(name=info.filename, parts=parts, kind="symlink", link=link)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        _refuse(label, info.filename, "is a device file or FIFO")
    kind: Kind = "dir" if info.is_dir() or stat.S_ISDIR(mode) else "file"
    return _Member(name=info.filename, parts=parts, kind=kind)


def _write_zip_file(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, *, label: str
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = info.external_attr >> 16 if info.create_system == 3 else 0
    # zipfile drops permissions; keep the executable bit that configure
    # scripts need, and nothing else (no setuid, no world-writable).
    perm = 0o755 if mode & 0o100 else 0o644
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, perm)
    written = 0
    with _writing(target), os.fdopen(fd, "wb") as out, zf.open(info) as src:
        while chunk := src.read(1 << 20):
            written += len(chunk)
            if written > info.file_size:
                _refuse(label, info.filename, "holds more data than its header says")
            out.write(chunk)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Name ``path`` in an OSError that does not say where (a write to a full disk)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


def _human(size: int) -> str:
    if size % 1024**3 == 0:
        return f"{size // 1024**3} GiB"
    if size % 1024**2 == 0:
        return f"{size // 1024**2} MiB"
    return f"{size} bytes"
