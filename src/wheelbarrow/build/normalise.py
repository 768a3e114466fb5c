"""Wheels built here rewritten byte for byte the same way: fixed order, times, modes, RECORD."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import time
import zipfile
from pathlib import Path

from wheelbarrow._core.errors import RepairError
from wheelbarrow._core.files import temporary_sibling

__all__ = ["ZIP_EPOCH_MIN", "normalise_wheel", "zip_date_time"]

# The earliest and latest times a zip header can hold (DOS dates: 1980 to 2107).
ZIP_EPOCH_MIN = 315532800  # 1980-01-01T00:00:00Z
_ZIP_EPOCH_MAX = 4354819198  # 2107-12-31T23:59:58Z
_RECORD = re.compile(r"^[^/]+\.dist-info/RECORD$")
# Signatures of RECORD are not listed in it (the wheel spec); rewriting RECORD voids them.
_UNLISTED = (".dist-info/RECORD.jws", ".dist-info/RECORD.p7s")
_CHUNK = 1 << 20


def zip_date_time(epoch: int) -> tuple[int, int, int, int, int, int]:
    """The zip header time for ``epoch`` seconds (UTC), clamped to what a zip can hold."""
    clamped = min(max(epoch, ZIP_EPOCH_MIN), _ZIP_EPOCH_MAX)
    return time.gmtime(clamped)[:6]


def normalise_wheel(wheel: Path, out_dir: Path, *, epoch: int) -> Path:
    """Write ``wheel`` into ``out_dir`` (same name) normalised, and return the new path.

    Every member keeps its name and bytes; only the archive around them is
    fixed: members in name order with the ``.dist-info`` directory last and its
    RECORD last of all (the wheel spec's convention), every time ``epoch``
    (clamped to 1980..2107), modes 0644, or 0755 for a member executable by its
    owner (directories 0755), no extra fields or comments, deflate at zlib's
    default level, and RECORD rewritten from the members' own hashes in that
    order. The same members give the same bytes, whatever tool zipped them and
    when. ``wheel`` is not modified.

    Raises :class:`RepairError` when ``wheel`` is not a readable wheel, names a
    member twice, or has a RECORD whose hash of a member disagrees with it
    (the backend wrote a broken wheel: rewriting RECORD would hide that).
    """
    date_time = zip_date_time(epoch)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / wheel.name
    tmp = temporary_sibling(out_dir / wheel.name)
    try:
        with zipfile.ZipFile(wheel) as source:
            infos = source.infolist()
            record = _record_member(wheel, infos)
            listed = _listed_hashes(wheel, source.read(record))
            with zipfile.ZipFile(tmp, "w") as out:
                rows = []
                for info in sorted(infos, key=lambda i: _order(i.filename, record)):
                    if info.filename == record:
                        continue
                    digest, size = _copy(source, info, out, date_time)
                    if info.is_dir():
                        continue
                    _check_listed(wheel, info.filename, listed, digest, size)
                    if not info.filename.endswith(_UNLISTED):
                        rows.append((info.filename, f"sha256={digest}", str(size)))
                rows.append((record, "", ""))
                out.writestr(_info(record, date_time, executable=False), _record_text(rows))
        tmp.replace(final)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        tmp.unlink(missing_ok=True)
        raise RepairError(
            f"{wheel}: cannot normalise the wheel ({exc})", hint="rebuild it"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _record_member(wheel: Path, infos: list[zipfile.ZipInfo]) -> str:
    """The name of the wheel's RECORD; refuses a wheel without one or with repeated names."""
    names = [info.filename for info in infos]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RepairError(
            f"{wheel.name}: the archive holds {', '.join(repeated)} more than once",
            hint="fix the package's build (its backend wrote a member twice)",
        )
    records = [name for name in names if _RECORD.match(name)]
    if len(records) != 1:
        raise RepairError(
            f"{wheel.name}: not a wheel: {len(records)} .dist-info/RECORD files",
            hint="a wheel has exactly one NAME-VERSION.dist-info/RECORD",
        )
    return records[0]


def _order(name: str, record: str) -> tuple[bool, bool, str]:
    """Payload first, then the .dist-info directory, its RECORD last of all."""
    dist_info = record.split("/", 1)[0] + "/"
    return (name.startswith(dist_info), name == record, name)


def _copy(
    source: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    out: zipfile.ZipFile,
    date_time: tuple[int, int, int, int, int, int],
) -> tuple[str, int]:
    """Copy one member with the fixed header; its sha256 (RECORD's encoding) and size."""
    executable = bool((info.external_attr >> 16) & 0o100)
    fixed = _info(info.filename, date_time, executable=executable, directory=info.is_dir())
    if info.is_dir():
        out.writestr(fixed, b"")
        return "", 0
    # Sizes known up front, so zip64 headers are used for exactly the members that need them.
    fixed.file_size = info.file_size
    digest = hashlib.sha256()
    size = 0
    with source.open(info) as reader, out.open(fixed, "w") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii"), size


def _info(
    name: str,
    date_time: tuple[int, int, int, int, int, int],
    *,
    executable: bool,
    directory: bool = False,
) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=date_time)
    info.create_system = 3  # Unix, so the mode bits below are read
    if directory:
        info.external_attr = (0o40755 << 16) | 0x10  # 0x10: the MS-DOS directory flag
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = (0o100755 if executable else 0o100644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _listed_hashes(wheel: Path, record: bytes) -> dict[str, tuple[str, str]]:
    """RECORD's ``path -> (hash, size)`` for the rows that carry a sha256."""
    listed = {}
    text = record.decode("utf-8", errors="replace")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 3 and row[1].startswith("sha256="):
            listed[row[0]] = (row[1].removeprefix("sha256="), row[2])
        elif row and len(row) not in (1, 3):
            raise RepairError(
                f"{wheel.name}: its RECORD has a malformed row {','.join(row)!r}",
                hint="fix the package's build (RECORD rows are path,hash,size)",
            )
    return listed


def _check_listed(
    wheel: Path, name: str, listed: dict[str, tuple[str, str]], digest: str, size: int
) -> None:
    said = listed.get(name)
    if said is not None and (said[0] != digest or said[1] not in ("", str(size))):
        raise RepairError(
            f"{wheel.name}: its RECORD says {name} has sha256={said[0]} ({said[1]} bytes), "
            f"but it has sha256={digest} ({size} bytes)",
            hint="the backend wrote a broken wheel: rebuild it, or report it upstream",
        )


def _record_text(rows: list[tuple[str, str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()
