"""``build --output DIR``: export a wheelhouse to the user's directory, replacing only our own.

``DIR`` is replaced only when wheelbarrow made it: it is absent, empty, or a
previous export, which a marker file inside names (with the wheelhouse key
and every entry the export put there). Anything else, a user's directory, a
regular file, a symbolic link, or an export the user added files to, is
refused and named, and nothing is touched.

The export is written beside ``DIR`` in a scratch entry (see
:mod:`wheelbarrow._core.scratch`), every wheel hashed against the manifest while
it is copied, then swapped with ``DIR`` in one step (``renameat2`` with
``RENAME_EXCHANGE`` on Linux, two renames elsewhere). Exports to one ``DIR``
are serialised by a ``flock`` on its parent directory, which leaves no file
behind; a killed export's scratch entry is removed by the next one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import functools
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelbarrow import __version__
from wheelbarrow._core.errors import InputError, StoreError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.scratch import clean_stale, scratch

MARKER = ".wheelbarrow-export.json"
MANIFEST = "wheelhouse.json"
SIMPLE = "simple"
SBOM = "sbom.cdx.json"  # sbom.FILENAME, without importing the SBOM's module
PROVENANCE_DIR = "provenance"  # <wheel>.intoto.json for each wheel built from source
_CHUNK = 1 << 20


class ExportError(InputError):
    """``--output`` names something wheelbarrow did not make, so it will not replace it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportReport:
    """What an export wrote."""

    path: Path
    key: str
    wheels: int
    nbytes: int
    replaced: bool
    provenance: int = 0  # the source-built wheels' provenance statements it holds


@contextlib.contextmanager
def export_lock(dest: Path) -> Iterator[None]:
    """Hold the lock that serialises exports to ``dest``: a ``flock`` on its parent directory.

    A directory lock leaves nothing behind in the user's directory, and holds
    across the swap, which replaces ``dest`` itself.
    """
    parent = dest.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def export_wheelhouse(source: Path, dest: Path, *, sbom: bytes | None = None) -> ExportReport:
    """Copy the wheelhouse at ``source`` (wheels, ``simple/``, manifest) to ``dest``, with its
    bill of materials ``sbom`` (CycloneDX JSON, see sbom.py) as ``sbom.cdx.json`` when given.

    Raises :class:`ExportError` when ``dest`` is not ours to replace, and
    :class:`StoreError` when a wheel's bytes differ from the manifest (a
    damaged store); ``dest`` is then left as it was.
    """
    manifest = _manifest(source)
    dest = dest.absolute()
    prefix = f".{dest.name}.wheelbarrow-export-"
    with export_lock(dest):
        clean_stale(dest.parent, prefix)  # left by a killed export to the same place
        replaced = _replaceable(dest)
        with scratch(dest.parent, prefix) as holder:
            work = holder / "export"
            nbytes = _copy(source, work, manifest)
            if sbom is not None:  # an entry like the others: the marker lists it
                (work / SBOM).write_bytes(sbom)
            statements = _copy_provenance(source, work, manifest)
            entries = sorted(p.name for p in work.iterdir())
            atomic_write_text(
                work / MARKER,
                json.dumps(
                    {
                        "version": 1,
                        "key": manifest["key"],
                        "created-by": f"wheelbarrow {__version__}",
                        "files": entries,
                    },
                    indent=2,
                )
                + "\n",
            )
            if replaced:
                _swap(work, dest, holder / "old")  # the old export goes with the scratch entry
            else:
                work.rename(dest)
    return ExportReport(
        path=dest,
        key=manifest["key"],
        wheels=len(manifest["wheels"]),
        nbytes=nbytes,
        replaced=replaced,
        provenance=statements,
    )


def _manifest(source: Path) -> dict[str, Any]:
    path = source / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"{path}: cannot be read ({exc})",
            hint="the store is damaged: run `wheelbarrow verify --repair`, then build again",
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("wheels"), list):
        raise StoreError(
            f"{path}: not a wheelhouse manifest",
            hint="the store is damaged: run `wheelbarrow verify --repair`, then build again",
        )
    return data


def _replaceable(dest: Path) -> bool:
    """Whether ``dest`` exists and is ours to replace; raises when it is not ours."""
    if dest.is_symlink():
        raise ExportError(
            f"{dest}: is a symbolic link; wheelbarrow replaces only a directory it exported",
            hint="pass the directory it points to, or another --output",
        )
    if not dest.exists():
        return False
    if not dest.is_dir():
        raise ExportError(
            f"{dest}: is a file, not a directory",
            hint="pass a new or empty directory (or a previous export) to --output",
        )
    entries = {p.name for p in dest.iterdir()}
    if not entries:
        return True
    marker = _read_json(dest / MARKER)
    if marker is not None and isinstance(marker.get("files"), list):
        ours = {str(name) for name in marker["files"]} | {MARKER}
        foreign = sorted(entries - ours)
        if foreign:
            raise ExportError(
                f"{dest}: a previous export, but it now holds files wheelbarrow did not put "
                f"there: {_listing(foreign)}",
                hint="move those files elsewhere (the export is replaced whole), "
                "or pass another --output",
            )
        return True
    if _unmarked_export(dest, entries):
        return True
    raise ExportError(
        f"{dest}: is not empty and was not exported by wheelbarrow "
        f"(it holds {_listing(sorted(entries))})",
        hint="pass a new or empty directory to --output; wheelbarrow replaces only "
        "its own previous export there",
    )


def _unmarked_export(dest: Path, entries: set[str]) -> bool:
    """An export made before markers existed: only its manifest's wheels (and their metadata),
    simple/ and manifest."""
    manifest = _read_json(dest / MANIFEST)
    if (
        manifest is None
        or not str(manifest.get("created-by", "")).startswith("wheelbarrow ")
        or not isinstance(manifest.get("wheels"), list)
    ):
        return False
    wheels = {str(w.get("filename")) for w in manifest["wheels"] if isinstance(w, dict)}
    metadata = {f"{w}.metadata" for w in wheels}
    return entries <= wheels | metadata | {SIMPLE, MANIFEST} and not (dest / SIMPLE).is_symlink()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _listing(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _copy(source: Path, work: Path, manifest: dict[str, Any]) -> int:
    """Copy the manifest's wheels (checked), ``simple/`` and the manifest into ``work``."""
    work.mkdir()
    nbytes = 0
    for wheel in manifest["wheels"]:
        filename, sha256 = str(wheel["filename"]), str(wheel["sha256"])
        if "/" in filename or filename.startswith("."):
            raise StoreError(
                f"{source / MANIFEST}: lists {filename!r}, not a wheel file name",
                hint="the store is damaged: run `wheelbarrow verify --repair`, then build again",
            )
        nbytes += _copy_checked(source / filename, work / filename, sha256)
        # The pages name each wheel's PEP 658 metadata file: it goes with them.
        if (metadata := source / f"{filename}.metadata").is_file():
            shutil.copyfile(metadata, work / metadata.name)
    if (source / SIMPLE).is_dir():
        shutil.copytree(source / SIMPLE, work / SIMPLE, copy_function=shutil.copyfile)
    shutil.copyfile(source / MANIFEST, work / MANIFEST)
    return nbytes


def _copy_provenance(source: Path, work: Path, manifest: dict[str, Any]) -> int:
    """Copy the provenance statement of each wheel built from source into
    ``work/provenance/<wheel>.intoto.json``, from the build cache of the store the wheelhouse
    ``source`` is in; how many (a wheel built before provenance existed has none)."""
    from wheelbarrow.build.provenance import find_provenance

    built = [
        (str(w["filename"]), str(w["sha256"]))
        for w in manifest["wheels"]
        if isinstance(w, dict) and w.get("source")
    ]
    store = source.parent.parent  # STORE/wheelhouses/KEY
    found = find_provenance(store / "built", built) if source.parent.name == "wheelhouses" else {}
    if not found:
        return 0
    (work / PROVENANCE_DIR).mkdir()
    for filename, statement in sorted(found.items()):
        shutil.copyfile(statement, work / PROVENANCE_DIR / f"{filename}.intoto.json")
    return len(found)


def _copy_checked(src: Path, dst: Path, sha256: str) -> int:
    """Copy one file, hashing it on the way; a digest other than ``sha256`` is a damaged store."""
    digest = hashlib.sha256()
    size = 0

    class _Hashing:
        def write(self, chunk: bytes) -> int:
            nonlocal size
            digest.update(chunk)
            size += len(chunk)
            return out.write(chunk)

    try:
        with src.open("rb") as inp, dst.open("xb") as out:
            shutil.copyfileobj(inp, _Hashing(), _CHUNK)
    except FileNotFoundError as exc:
        raise StoreError(
            f"{src}: missing from the wheelhouse",
            hint="the store is damaged: run `wheelbarrow verify --repair`, then build again",
        ) from exc
    if digest.hexdigest() != sha256:
        raise StoreError(
            f"{src}: sha256 is {digest.hexdigest()}, the wheelhouse manifest says {sha256}",
            hint="the store is damaged: run `wheelbarrow verify --repair`, then build again",
        )
    return size


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _swap(new: Path, dest: Path, old: Path) -> None:
    """Put ``new`` at ``dest`` and the previous ``dest`` at ``old``, atomically where possible."""
    if _exchange(new, dest):
        new.rename(old)
        return
    # Without an exchange there is a moment with no ``dest``; never one with half of one.
    dest.rename(old)
    new.rename(dest)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = _libc()
    function = getattr(libc, "renameat2", None) if libc is not None else None
    if function is None:
        return False
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    if function(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # filesystem or kernel lacks it
        return False
    raise OSError(err, os.strerror(err), str(b))


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
