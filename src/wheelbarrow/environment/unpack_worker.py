"""The worker that unpacks wheel members and compiles their bytecode, run by the target's Python.

Run by ``python -I -S`` as ``__main__`` (standard library only, and kept to
the syntax of Python 3.8: it runs under the environment's interpreter, not
wheelbarrow's; tried with 3.8 to 3.13). It reads one JSON task per line on
stdin and answers one JSON line per task on stdout:

    task:   {"wheel": PATH, "sha256": HEX, "members": [[NAME, DEST, EXECUTABLE, DFILE], ...]}
    answer: {"files": [[DEST, SIZE, MTIME_NS, INODE, SHA256], ...], "failed": [DEST, ...]}
        or: {"error": KIND, "message": TEXT, "errno": N, "filename": PATH}

Each wheel is hashed as it is first opened, and its members are read from
that same open file: what is unpacked is what was checked. Each member is
written once, straight to its place (never to a temporary name: the whole
environment is built under a scratch name and renamed into place). A member
with a DFILE is Python source: it is compiled from the bytes just written,
as ``compileall --invalidation-mode unchecked-hash`` would at the
interpreter's optimisation level, with DFILE (its path in the environment's
final home) as the file name the bytecode records, so the same wheelhouse
gives the same bytes. Source that does not compile is listed in ``failed``
(it has no bytecode, as with compileall).
"""

# str paths by the thousand, in the standard library of Python 3.8:
# ruff: noqa: PTH103, PTH120, PTH123
from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import struct
import sys
import warnings
import zipfile
import zlib
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

_CHUNK = 1 << 20
_open_wheels: dict[str, tuple[IO[bytes], zipfile.ZipFile]] = {}  # each checked once
_made_dirs: set[str] = set()
if TYPE_CHECKING:  # only annotations use it: they stay strings
    Written = list[Any]  # [DEST, SIZE, MTIME_NS, INODE, SHA256]


class _Mismatch(Exception):
    pass


def _wheel(path: str, sha256: str) -> zipfile.ZipFile:
    """The open, checked archive of the wheel at ``path``."""
    entry = _open_wheels.get(path)
    if entry is None:
        f = open(path, "rb")  # noqa: SIM115 - kept open for the worker's life
        digest = hashlib.sha256()
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            f.close()
            raise _Mismatch(f"{path}: sha256 is {digest.hexdigest()}, the wheelhouse says {sha256}")
        f.seek(0)
        entry = (f, zipfile.ZipFile(f))
        _open_wheels[path] = entry
    return entry[1]


def _create(dest: str, executable: bool) -> IO[bytes]:
    """A new file at ``dest`` (its directory made as needed); fails if one is there."""
    parent = os.path.dirname(dest)
    if parent not in _made_dirs:
        os.makedirs(parent, exist_ok=True)
        _made_dirs.add(parent)
    f = open(dest, "xb")  # noqa: SIM115 - closed by the caller
    if executable:  # as installer does: x wherever r is, after the umask
        mode = os.fstat(f.fileno()).st_mode
        os.fchmod(f.fileno(), mode | (mode & 0o444) >> 2)
    return f


def _written(f: IO[bytes], dest: str, size: int, digest: str) -> Written:
    f.flush()  # the stat after the last write: the one the file keeps
    st = os.fstat(f.fileno())
    f.close()
    return [dest, size, st.st_mtime_ns, st.st_ino, digest]


def _unpack(
    archive: zipfile.ZipFile, name: str, dest: str, executable: bool, source: bool
) -> tuple[Written, bytes]:
    """Write one member to ``dest``; returns its record and, for ``source``, its bytes."""
    info = archive.getinfo(name)
    digest = hashlib.sha256()
    size = 0
    chunks = []
    f = _create(dest, executable)
    for chunk in _member_chunks(archive, info):
        f.write(chunk)
        digest.update(chunk)
        size += len(chunk)
        if source:
            chunks.append(chunk)
    return _written(f, dest, size, digest.hexdigest()), b"".join(chunks)


def _member_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes, at most about 1 MiB at a time, its size and CRC-32 checked.

    Deflated members are inflated straight from the archive's file, by ISA-L
    when this Python can load wheelbarrow's copy (three times zlib's speed),
    else by zlib; other compressions go through zipfile.
    """
    if info.flag_bits & 1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    return
                yield chunk
    f = archive.fp
    if f is None:
        raise ValueError(f"{info.filename}: the archive is closed")
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{info.filename}: bad local file header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    f.seek(info.header_offset + 30 + name_length + extra_length)
    inflate = _INFLATE.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    left, size, crc = info.compress_size, 0, 0
    pending = b""
    while True:
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
            except _INFLATE.error as exc:  # ISA-L's own error class: told as zlib's
                raise zlib.error(f"{info.filename}: {exc}") from exc
            pending = inflate.unconsumed_tail
        size += len(out)
        if size > info.file_size:
            break
        crc = zlib.crc32(out, crc)
        yield out
        if inflate is not None and inflate.eof:
            break
    if size != info.file_size or crc != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 or size for file {info.filename!r}")


def _compile(source: bytes, dest: str, dfile: str) -> Written | None:
    """Write the bytecode of ``source`` beside ``dest``; None when it does not compile.

    The .pyc is what py_compile writes in unchecked-hash mode (PEP 552): the
    magic number, flags 0b01, the source's hash, then the marshalled code.
    """
    try:
        code = compile(source, dfile, "exec", dont_inherit=True, optimize=-1)
    except Exception:  # noqa: BLE001 - as py_compile: any failure means no bytecode
        return None
    data = b"".join(
        [
            importlib.util.MAGIC_NUMBER,
            (0b01).to_bytes(4, "little"),
            importlib.util.source_hash(source),
            marshal.dumps(code),
        ]
    )
    cfile = importlib.util.cache_from_source(dest)
    f = _create(cfile, False)
    f.write(data)
    return _written(f, cfile, len(data), hashlib.sha256(data).hexdigest())


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Unpack (and compile) one task's members; the answer to send back."""
    files = []
    failed = []
    try:
        archive = _wheel(task["wheel"], task["sha256"])
        for name, dest, executable, dfile in task["members"]:
            record, data = _unpack(archive, name, dest, executable, dfile is not None)
            files.append(record)
            if dfile is not None:
                pyc = _compile(data, dest, dfile)
                if pyc is None:
                    failed.append(dest)
                else:
                    files.append(pyc)
    except _Mismatch as exc:
        return {"error": "mismatch", "message": str(exc)}
    except OSError as exc:
        return {"error": "os", "message": str(exc), "errno": exc.errno, "filename": exc.filename}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError) as exc:
        return {"error": "malformed", "message": f"{type(exc).__name__}: {exc}"}
    return {"files": files, "failed": failed}


def _inflater() -> Any:
    """ISA-L's zlib module from the directory given after this file's path (wheelbarrow's
    site-packages), when this Python can load it (the same version and ABI); else zlib."""
    if len(sys.argv) > 2:
        sys.path.append(sys.argv[2])
        try:
            from isal import isal_zlib

            return isal_zlib
        except Exception:  # noqa: BLE001, S110 - another Python's extension: zlib instead
            pass
        finally:
            sys.path.remove(sys.argv[2])
    return zlib


_INFLATE = zlib


def main() -> None:
    """Answer tasks until stdin closes."""
    global _INFLATE  # chosen once, at the start
    _INFLATE = _inflater()
    warnings.simplefilter("ignore")  # SyntaxWarnings of the compiled sources: as compileall -q
    out = sys.stdout
    for line in sys.stdin:
        out.write(json.dumps(run_task(json.loads(line))) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
