"""A wheel checked as it enters the store or a wheelhouse: a zip, true to its RECORD and name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, cast

from wheelbarrow._core.errors import MalformedWheelError

_CHUNK = 1 << 20
PARALLEL_FROM = 4 << 20  # compressed bytes past which a wheel is checked by several threads

if TYPE_CHECKING:
    import zipfile
    from collections.abc import Callable
    from email.message import Message

    from packaging.utils import NormalizedName
    from packaging.version import Version


def is_wheel(filename: str) -> bool:
    """Whether ``filename`` names a wheel (the other files of the store are sdists)."""
    return filename.endswith(".whl")


def check_wheel(
    path: Path, *, filename: str | None = None, streamed: StreamedMembers | None = None
) -> None:
    """Raise :class:`MalformedWheelError` unless ``path`` is a sound wheel called ``filename``.

    Sound means: a zip archive with one ``.dist-info`` directory whose RECORD
    lists every member with the hash and size it has, and whose METADATA gives
    the name and version of the file name. ``filename`` defaults to the path's
    name (files entering the store are checked under a temporary name).
    Reading errors other than the archive's own (a full or failing disk)
    propagate as they are. ``streamed`` holds what was found of the members while
    the file's bytes were written (:class:`StreamedMembers`): those it hashed are
    not read again.
    """
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    filename = filename or path.name
    try:
        name, version, _, _ = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        raise MalformedWheelError(
            f"{filename}: not a wheel file name: {exc}", path=filename
        ) from exc
    metadata = _checked_metadata(path, filename, streamed)
    _check_name_and_version(filename, name, version, metadata)


def _checked_metadata(path: Path, filename: str, streamed: StreamedMembers | None) -> Message:
    """The METADATA of the wheel at ``path``, once its RECORD is checked against its contents."""
    import zipfile  # here, not at the top: the store imports this module on every command
    import zlib
    from email.parser import HeaderParser

    from installer.exceptions import InstallerError
    from installer.sources import WheelFile

    try:
        with zipfile.ZipFile(path) as archive:
            archive.filename = filename  # installer parses the name; a scratch file has none
            source = WheelFile(archive)
            issues = []
            try:
                # Names and entries by installer (cheap); the contents below, faster.
                source.validate_record(validate_contents=False)
            except source.validation_error as exc:
                issues = [
                    str(issue).removeprefix(f"In {filename}, ")
                    for issue in getattr(exc, "issues", [exc])
                ]
            issues += check_contents(
                path, archive, source.read_dist_info("RECORD"), streamed=streamed
            )
            if issues:
                shown = "\n".join(f"  - {issue}" for issue in issues[:10])
                more = f"\n  - and {len(issues) - 10} more" if len(issues) > 10 else ""
                raise MalformedWheelError(
                    f"{filename}: its RECORD does not match its contents:\n{shown}{more}",
                    path=filename,
                )
            return HeaderParser().parsestr(source.read_dist_info("METADATA"))
    except zipfile.BadZipFile as exc:
        raise MalformedWheelError(f"{filename}: not a zip archive ({exc})", path=filename) from exc
    except (InstallerError, KeyError, UnicodeDecodeError, zlib.error, EOFError) as exc:
        raise MalformedWheelError(
            f"{filename}: cannot be read as a wheel: {type(exc).__name__}: {exc}", path=filename
        ) from exc


def _check_name_and_version(
    filename: str, name: NormalizedName, version: Version, metadata: Message
) -> None:
    """Raise unless METADATA's Name and Version are those of the file name."""
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    meta_name, meta_version = metadata.get("Name"), metadata.get("Version")
    if not meta_name or not meta_version:
        raise MalformedWheelError(
            f"{filename}: its METADATA gives no Name or no Version", path=filename
        )
    try:
        parsed = Version(meta_version)
    except InvalidVersion as exc:
        raise MalformedWheelError(
            f"{filename}: its METADATA gives an invalid version {meta_version!r}", path=filename
        ) from exc
    if parsed != version:
        raise MalformedWheelError(
            f"{filename}: the file name says version {version}, its METADATA says {meta_version}",
            path=filename,
        )
    if canonicalize_name(meta_name) != name:
        raise MalformedWheelError(
            f"{filename}: the file name says {name}, its METADATA says {meta_name}",
            path=filename,
        )


def check_contents(
    path: Path,
    archive: zipfile.ZipFile,
    record_text: str,
    *,
    streamed: StreamedMembers | None = None,
) -> list[str]:
    """The members whose size or hash is not what ``record_text`` (the RECORD) says.

    Each member is inflated in bounded chunks straight from the archive's file
    (ISA-L's inflate where installed, about twice zlib's speed, without the GIL),
    its size, CRC-32 and RECORD hash checked: what installs later is what was checked.
    A big wheel's members are checked by several threads, each with its own file.
    A member ``streamed`` hashed as the file was written, at the offset and with the
    name and compressed size the central directory gives, is checked by that hash.
    """
    import csv
    import hashlib
    import os

    records = {row[0]: row for row in csv.reader(record_text.splitlines()) if row}
    todo: list[_Entry] = []
    found: list[tuple[int, str]] = []
    for index, info in enumerate(archive.infolist()):
        row = records.get(info.filename)
        if info.filename.endswith("/") or row is None or len(row) < 3 or "=" not in row[1]:
            continue  # directories; what RECORD does not hash was reported above
        algorithm, _, value = row[1].partition("=")
        if algorithm in hashlib.algorithms_guaranteed and row[2].isdigit():
            entry = (index, info, algorithm, value, int(row[2]))
            seen = streamed.seen(info) if streamed is not None and algorithm == "sha256" else None
            if seen is None:
                todo.append(entry)
            elif issue := _streamed_issue(entry, seen):
                found.append((index, issue))
    total = sum(entry[1].compress_size for entry in todo)
    parts = min(len(todo), os.cpu_count() or 1, 4) if total > PARALLEL_FROM else 1
    if parts <= 1:
        found += _check_entries(path, archive, todo)
    else:
        from concurrent.futures import ThreadPoolExecutor

        groups: list[list[_Entry]] = [[] for _ in range(parts)]
        loads = [0] * parts
        for entry in sorted(todo, key=lambda e: -e[1].compress_size):  # the biggest first
            least = loads.index(min(loads))
            groups[least].append(entry)
            loads[least] += entry[1].compress_size
        with ThreadPoolExecutor(max_workers=parts) as pool:
            found += [
                i for g in pool.map(lambda g: _check_entries(path, archive, g), groups) for i in g
            ]
    return [issue for _, issue in sorted(found)]


_Entry = tuple[int, "zipfile.ZipInfo", str, str, int]  # index, member, algorithm, value, size


def _check_entries(
    path: Path, archive: zipfile.ZipFile, entries: list[_Entry]
) -> list[tuple[int, str]]:
    """(index, issue) for each of ``entries`` that does not match RECORD, read from its own
    open ``path``."""
    import base64
    import hashlib

    issues = []
    with path.open("rb") as f:
        for index, info, algorithm, value, expected in entries:
            digest = hashlib.new(algorithm)
            size = _inflate_into(f, archive, info, digest, expected)
            b64 = base64.urlsafe_b64encode(digest.digest()).decode("ascii").rstrip("=")
            if size != expected or b64 != value:
                issues.append((index, f"hash / size of {info.filename} didn't match RECORD"))
    return issues


def _inflate_into(
    f: BinaryIO, archive: zipfile.ZipFile, info: zipfile.ZipInfo, digest: Any, limit: int
) -> int:
    """Feed a member's bytes to ``digest``; returns its size (stopping once past ``limit``).

    Raises :class:`zipfile.BadZipFile` for a member whose CRC-32 is not its header's.
    """
    import struct
    import zipfile
    import zlib

    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 1:
        with archive.open(info) as stream:  # other compressions, encryption: zipfile's way
            size = 0
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
            return size
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{info.filename}: bad local file header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    f.seek(info.header_offset + 30 + name_length + extra_length)
    inflate, error = (
        _inflater() if info.compress_type == zipfile.ZIP_DEFLATED else (None, zlib.error)
    )
    left, size, crc, crc32 = info.compress_size, 0, 0, _crc32()
    pending = b""
    while size <= limit:
        if not pending:
            if not left:
                break
            pending = f.read(min(_CHUNK, left))
            if not pending:
                raise EOFError(f"{info.filename}: the archive ends inside it")
            left -= len(pending)
        if inflate is None:
            out, pending = pending, b""
        else:
            try:
                out = inflate.decompress(pending, _CHUNK)
            except error as exc:  # ISA-L's own error class: told as zlib's
                raise zlib.error(f"{info.filename}: {exc}") from exc
            pending = inflate.unconsumed_tail
            if inflate.eof and not pending and left:
                break
        digest.update(out)
        crc = crc32(out, crc)
        size += len(out)
        if inflate is not None and inflate.eof:
            break
    if size <= limit and crc != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return size


def _crc32() -> Callable[[bytes | memoryview, int], int]:
    """CRC-32: ISA-L's where installed (about five times zlib's speed here), else zlib's."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; another platform may lack it
        import zlib

        return zlib.crc32
    crc32: Callable[[bytes | memoryview, int], int] = isal_zlib.crc32
    return crc32


def _inflater() -> tuple[Any, type[Exception]]:
    """A raw-deflate decompressor and its error: ISA-L's where installed, else zlib's."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; another platform may lack it
        import zlib

        return zlib.decompressobj(-15), zlib.error
    return isal_zlib.decompressobj(-15), cast("type[Exception]", isal_zlib.error)


class _Seen(NamedTuple):
    """A member as it streamed past: its local header's name and compression, the bytes
    it took, and the size, CRC-32 and sha256 of what they inflate to."""

    name: str
    method: int
    compress_size: int
    size: int
    crc: int
    sha256: bytes


def _streamed_issue(entry: _Entry, seen: _Seen) -> str | None:
    """What :func:`_check_entries` would find of ``entry``, from its streamed hash."""
    import base64
    import zipfile

    _, info, _, value, expected = entry
    if seen.size <= expected and seen.crc != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    b64 = base64.urlsafe_b64encode(seen.sha256).decode("ascii").rstrip("=")
    if seen.size != expected or b64 != value:
        return f"hash / size of {info.filename} didn't match RECORD"
    return None


class _Member:
    """The member whose bytes are streaming past: inflated (never past the size its local
    header gives), hashed and summed as they come."""

    def __init__(self, offset: int, name: str, method: int, size: int, usize: int) -> None:
        import hashlib

        self.offset, self.name, self.method = offset, name, method
        self.compress_size, self.left, self.usize = size, size, usize
        self.inflate = _inflater()[0] if method == 8 else None
        self.digest = hashlib.sha256()
        self.crc32 = _crc32()
        self.size = self.crc = 0

    def take(self, data: memoryview) -> bool:
        """Account for ``data``; False once it inflates past the size its header gives."""
        if self.inflate is None:
            return self._out(data)
        out = self.inflate.decompress(data, _CHUNK)
        while self._out(out):
            if not self.inflate.unconsumed_tail:
                return True
            out = self.inflate.decompress(self.inflate.unconsumed_tail, _CHUNK)
        return False

    def _out(self, out: bytes | memoryview) -> bool:
        self.size += len(out)
        if self.size > self.usize:
            return False
        self.digest.update(out)
        self.crc = self.crc32(out, self.crc)
        return True

    def seen(self) -> _Seen | None:
        """What it was, once all its bytes are in (None if they do not end its stream)."""
        if self.inflate is not None and not self.inflate.eof:
            return None
        return _Seen(
            self.name, self.method, self.compress_size, self.size, self.crc, self.digest.digest()
        )


class StreamedMembers:
    """The members of a wheel hashed as its bytes are written, one after the other, so that
    checking it against its RECORD once it is whole reads them again only where this could
    not follow.

    It follows the local headers from the start of the file: a member stored or deflated
    whose sizes its header gives is inflated as its bytes come (ISA-L's inflate, sha256 and
    CRC-32 all without the GIL). At anything else (the central directory, a data
    descriptor, zip64, encryption, another compression, a stream that does not end where
    its header says, more bytes than it says) it stops, keeping what it saw: the check takes
    a member from here only where the central directory names it at the same offset, with
    the same name, compression and compressed size, and reads the rest from the file.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._at = 0  # the file offset of _buf[0]
        self._member: _Member | None = None
        self._seen: dict[int, _Seen] = {}
        self._stopped = False

    def feed(self, data: bytes) -> None:
        """The next bytes of the file."""
        if self._stopped:
            return
        try:
            # Only a header cut by the chunk's end waits here: members' bytes are not copied.
            self._follow(self._buf + data if self._buf else data)
        except Exception:  # noqa: BLE001 - a member this cannot follow is read from the file
            self._stop()

    def seen(self, info: zipfile.ZipInfo) -> _Seen | None:
        """The member the central directory entry ``info`` names, if it streamed past whole."""
        seen = self._seen.get(info.header_offset)
        if (
            seen is None
            or seen.name != info.orig_filename
            or seen.method != info.compress_type
            or seen.compress_size != info.compress_size
        ):
            return None
        return seen

    def _stop(self) -> None:
        self._stopped, self._member, self._buf = True, None, b""

    def _follow(self, buf: bytes) -> None:
        import struct

        view, pos = memoryview(buf), 0
        while True:
            member = self._member
            if member is None:
                if len(buf) - pos < 30:
                    break
                if buf[pos : pos + 4] != b"PK\x03\x04":
                    self._stop()  # the central directory, or what this does not follow
                    return
                _, flags, method, _, _, _, size, usize, name_length, extra_length = (
                    struct.unpack_from("<HHHHHIIIHH", buf, pos + 4)
                )
                data = pos + 30 + name_length + extra_length
                if len(buf) < data:
                    break
                if flags & 0x9 or method not in (0, 8) or 0xFFFFFFFF in (size, usize):
                    self._stop()  # encrypted, a data descriptor, another compression, zip64
                    return
                name = bytes(buf[pos + 30 : pos + 30 + name_length])
                text = name.decode("utf-8" if flags & 0x800 else "cp437")
                self._member = _Member(self._at + pos, text, method, size, usize)
                pos = data
                continue
            take = min(member.left, len(buf) - pos)
            if member.left and not take:
                break
            member.left -= take
            if not member.take(view[pos : pos + take]):
                self._stop()
                return
            pos += take
            if not member.left:
                seen = member.seen()
                if seen is None:
                    self._stop()
                    return
                self._seen[member.offset] = seen
                self._member = None
        self._buf = buf[pos:]
        self._at += pos
