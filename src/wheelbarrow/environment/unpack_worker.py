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
_made_dirs: set[str] = set()
if TYPE_CHECKING:  # only annotations use it: they stay strings
    Written = list[Any]  # [DEST, SIZE, MTIME_NS, INODE, SHA256]


class _Mismatch(Exception):
    pass


class _Wheel:
    """A wheel open for the worker's life: read at the offsets its task gives."""

    def __init__(self, path: str, sha256: str) -> None:
        self.path = path
        self.sha256 = sha256
        self.file = open(path, "rb")  # noqa: SIM115 - kept open for the worker's life
        self.checked = False
        self._archive: zipfile.ZipFile | None = None

    def check(self) -> None:
        """Hash the whole file against its sha256, once (for a member RECORD does not hash)."""
        if self.checked:
            return
        digest = hashlib.sha256()
        self.file.seek(0)
        while True:
            chunk = self.file.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
        if digest.hexdigest() != self.sha256:
            raise _Mismatch(
                f"{self.path}: sha256 is {digest.hexdigest()}, the wheelhouse says {self.sha256}"
            )
        self.checked = True

    def archive(self) -> zipfile.ZipFile:
        """The file as a zip archive, for members neither stored nor deflated."""
        if self._archive is None:
            self._archive = zipfile.ZipFile(self.file)
        return self._archive


_open_wheels: dict[str, _Wheel] = {}


def _wheel(path: str, sha256: str) -> _Wheel:
    wheel = _open_wheels.get(path)
    if wheel is None:
        wheel = _open_wheels[path] = _Wheel(path, sha256)
    return wheel


def _create(dest: str, executable: bool) -> int:
    """A new file at ``dest`` (its directory made as needed), open for writing; fails if one
    is there."""
    parent = os.path.dirname(dest)
    if parent not in _made_dirs:
        os.makedirs(parent, exist_ok=True)
        _made_dirs.add(parent)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    if executable:  # as installer does: x wherever r is, after the umask
        mode = os.fstat(fd).st_mode
        os.fchmod(fd, mode | (mode & 0o444) >> 2)
    return fd


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _written(fd: int, dest: str, size: int, digest: str) -> Written:
    st = os.fstat(fd)  # after the last write: the stat the file keeps
    os.close(fd)
    return [dest, size, st.st_mtime_ns, st.st_ino, digest]


def _unpack(wheel: _Wheel, member: list[Any]) -> tuple[Written, bytes]:
    """Write one member to its place; returns its record and, for a source, its bytes.

    Each member's bytes are checked against the sha256 its RECORD gives (RECORD read
    by wheelbarrow from the file it hashed whole): what is unpacked is what was
    checked. A member RECORD does not hash is written once the whole file is.
    """
    name, dest, executable, dfile, expected = member[:5]
    if expected is None:
        wheel.check()
    digest = hashlib.sha256()
    size = 0
    chunks = []
    f = _create(dest, executable)
    for chunk in _member_chunks(wheel, name, *member[5:]):
        _write(f, chunk)
        digest.update(chunk)
        size += len(chunk)
        if dfile is not None:
            chunks.append(chunk)
    record = _written(f, dest, size, digest.hexdigest())
    if expected is not None and record[4] != expected:
        raise _Mismatch(f"{wheel.path}: {name} has sha256 {record[4]}, its RECORD says {expected}")
    return record, b"".join(chunks)


def _member_chunks(
    wheel: _Wheel,
    name: str,
    file_size: int,
    offset: int,
    compress_size: int,
    compress_type: int,
    flag_bits: int,
) -> Iterator[bytes]:
    """A member's bytes, at most about 1 MiB at a time, stopping past the size it has.

    No CRC-32 is computed: every member is checked by sha256 (its own, or the whole
    wheel's), which is stronger.

    Stored and deflated members are read straight from the file at the offset
    given (no central directory parsed again); deflated ones are inflated by ISA-L
    when this Python can load wheelbarrow's copy (three times zlib's speed), else
    by zlib. Other compressions and encryption go through zipfile.
    """
    if flag_bits & 1 or compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        with wheel.archive().open(name) as stream:
            while True:
                chunk = stream.read(_CHUNK)
                if not chunk:
                    return
                yield chunk
    f = wheel.file
    _seek_data(f, name, offset, flag_bits)
    inflate = _INFLATE.decompressobj(-15) if compress_type == zipfile.ZIP_DEFLATED else None
    left, size = compress_size, 0
    pending = b""
    while True:
        if not pending:
            if not left:
                break
            pending = f.read(min(_CHUNK, left))
            if not pending:
                raise EOFError(f"{name}: the archive ends inside it")
            left -= len(pending)
        if inflate is None:
            out, pending = pending, b""
        else:
            try:
                out = inflate.decompress(pending, _CHUNK)
            except _INFLATE.error as exc:  # ISA-L's own error class: told as zlib's
                raise zlib.error(f"{name}: {exc}") from exc
            pending = inflate.unconsumed_tail
        size += len(out)
        if size > file_size:
            break
        yield out
        if inflate is not None and inflate.eof:
            break
    if size != file_size:
        raise zipfile.BadZipFile(f"{name}: {size} bytes, the archive says {file_size}")


def _seek_data(f: IO[bytes], name: str, offset: int, flag_bits: int) -> None:
    """Move ``f`` to the data of the member whose local header is at ``offset``."""
    f.seek(offset)
    header = f.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"{name}: bad local file header")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    encoding = "utf-8" if flag_bits & 0x800 else "cp437"  # as zipfile reads names
    if f.read(name_length).decode(encoding, "replace") != name:
        raise zipfile.BadZipFile(f"{name}: its local header names another file")
    f.seek(offset + 30 + name_length + extra_length)


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
    _write(f, data)
    return _written(f, cfile, len(data), hashlib.sha256(data).hexdigest())


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Unpack (and compile) one task's members; the answer to send back."""
    files = []
    failed = []
    try:
        wheel = _wheel(task["wheel"], task["sha256"])
        for member in task["members"]:
            dest, dfile = member[1], member[3]
            record, data = _unpack(wheel, member)
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
    """ISA-L's zlib module from the directory given after the parent's pid (wheelbarrow's
    site-packages), when this Python can load it (the same version and ABI); else zlib."""
    if len(sys.argv) > 3:
        sys.path.append(sys.argv[3])
        try:
            from isal import isal_zlib

            return isal_zlib
        except Exception:  # noqa: BLE001, S110 - another Python's extension: zlib instead
            pass
        finally:
            sys.path.remove(sys.argv[3])
    return zlib


_INFLATE = zlib


def _die_with_parent() -> None:
    """On Linux, be killed when the process that started this one dies (killed or not), so
    that no worker goes on writing into a scratch directory the next run cleans.

    Elsewhere a worker stops at the end of its task, when it finds its input closed.
    """
    if not sys.platform.startswith("linux"):
        return
    parent = int(sys.argv[2])  # given: the parent may be gone before this runs
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no libc to ask: the closed input still stops it
        return
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


def main() -> None:
    """Answer tasks until stdin closes."""
    global _INFLATE  # chosen once, at the start
    _die_with_parent()
    _INFLATE = _inflater()
    warnings.simplefilter("ignore")  # SyntaxWarnings of the compiled sources: as compileall -q
    out = sys.stdout
    for line in sys.stdin:
        out.write(json.dumps(run_task(json.loads(line))) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
