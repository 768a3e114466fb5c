"""The shared libraries a built wheel links here, and whether this machine still has them.

A source build's cache key has two parts. What is known before building
(source, settings, compilers, Python, target) finds the candidate wheels;
what a wheel links is known only after it was built, so it is recorded with
the wheel and checked against the machine whenever the wheel would be
reused. A library a package never links (OpenBLAS for a plain C extension)
then never rebuilds it, and one it does link rebuilds it when its content
changes: the repaired wheel vendors a copy of it.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from wheelbarrow._core.digests import file_sha256
from wheelbarrow._core.errors import ToolError
from wheelbarrow._core.runner import Runner
from wheelbarrow.system.toolchain import DEFAULT_LIB_DIRS

__all__ = [
    "LINKS_FORMAT",
    "PLATFORM_LIBRARIES",
    "SystemLibraries",
    "linked_libraries",
    "links_problem",
]

LINKS_FORMAT = 1
_ELF_MAGIC = b"\x7fELF"
# glibc's libraries, the loader and the GCC runtimes: the first part of the key
# already counts them (the libc and compiler versions), and no repair vendors
# them. Counting their bytes would rebuild everything on a glibc security update.
PLATFORM_LIBRARIES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libdl.so.2",
        "librt.so.1",
        "libpthread.so.0",
        "libutil.so.1",
        "libresolv.so.2",
        "libnsl.so.1",
        "libcrypt.so.1",
        "libmvec.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "libgcc_s.so.1",
        "libstdc++.so.6",
    }
)
# A library's NEEDED entries are followed this deep at most (real trees are 3 or 4 deep).
_MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class _Elf:
    """What the loader reads from one ELF file: its kind, what it needs and where to look."""

    kind: tuple[int, str]  # ELF class and machine: a 32-bit library never satisfies a 64-bit one
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def _read_elf(data: bytes | Path) -> _Elf | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    try:
        stream: IO[bytes] = io.BytesIO(data) if isinstance(data, bytes) else data.open("rb")
        with stream:
            if stream.read(4) != _ELF_MAGIC:
                return None
            stream.seek(0)
            elf = ELFFile(stream)
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            for section in elf.iter_sections():
                if not isinstance(section, DynamicSection):
                    continue
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(str(getattr(tag, "needed", "")))
                    elif tag.entry.d_tag == "DT_RPATH":
                        rpath += str(getattr(tag, "rpath", "")).split(":")
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        runpath += str(getattr(tag, "runpath", "")).split(":")
            return _Elf(
                kind=(int(elf.elfclass), str(elf["e_machine"])),
                needed=tuple(needed),
                rpath=tuple(filter(None, rpath)),
                runpath=tuple(filter(None, runpath)),
            )
    except (ELFError, OSError, ValueError):
        return None


class SystemLibraries:
    """This machine's shared libraries, found the way the dynamic loader finds them.

    The search order is the loader's: ``DT_RPATH`` (when there is no
    ``DT_RUNPATH``), ``LD_LIBRARY_PATH`` (from ``environ``), ``DT_RUNPATH``,
    the ``ldconfig -p`` cache, then ``lib_dirs``. Files are hashed once per
    path, size and mtime; one instance serves every build of a run and may be
    used from several threads.
    """

    def __init__(
        self,
        *,
        runner: Runner,
        which: Callable[[str], str | None],
        environ: Mapping[str, str],
        lib_dirs: Iterable[Path] = DEFAULT_LIB_DIRS,
    ) -> None:
        self._runner = runner
        self._which = which
        self._env_dirs = tuple(p for p in environ.get("LD_LIBRARY_PATH", "").split(":") if p)
        self._lib_dirs = tuple(lib_dirs)
        self._cache: dict[str, list[str]] | None = None
        self._hashes: dict[tuple[str, int, int, int], str] = {}
        self._elves: dict[str, _Elf | None] = {}
        self._lock = threading.Lock()

    def find(
        self,
        soname: str,
        *,
        kind: tuple[int, str] | None = None,
        rpath: Iterable[str] = (),
        runpath: Iterable[str] = (),
    ) -> Path | None:
        """Where the loader would find ``soname`` (of ELF class and machine ``kind``), or None."""
        runpath = tuple(runpath)
        first = () if runpath else tuple(rpath)
        dirs = (*first, *self._env_dirs, *runpath)
        candidates = [str(Path(d) / soname) for d in dirs]
        candidates += self._ld_cache().get(soname, [])
        candidates += [str(d / soname) for d in self._lib_dirs]
        for candidate in candidates:
            path = Path(candidate)
            if not path.is_file():
                continue
            elf = self.elf(path)
            if elf is not None and (kind is None or elf.kind == kind):
                return path
        return None

    def elf(self, path: Path) -> _Elf | None:
        """The loader's view of the ELF file at ``path`` (read once)."""
        key = os.path.realpath(path)
        with self._lock:
            if key in self._elves:
                return self._elves[key]
        elf = _read_elf(Path(key))
        with self._lock:
            self._elves[key] = elf
        return elf

    def sha256(self, path: Path) -> str:
        """The sha256 of the file ``path`` resolves to."""
        real = os.path.realpath(path)
        st = Path(real).stat()
        key = (real, st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            known = self._hashes.get(key)
        if known is not None:
            return known
        digest = file_sha256(real)
        with self._lock:
            self._hashes[key] = digest
        return digest

    def _ld_cache(self) -> dict[str, list[str]]:
        with self._lock:
            if self._cache is not None:
                return self._cache
        cache: dict[str, list[str]] = {}
        # ldconfig lives in /sbin, often off a normal user's PATH.
        program = self._which("ldconfig") or next(
            (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if Path(p).exists()), None
        )
        if program is not None:
            try:
                result = self._runner([program, "-p"])
            except ToolError:
                result = None
            if result is not None and result.returncode == 0:
                for line in result.stdout.splitlines()[1:]:
                    name, arrow, path = line.strip().partition(" => ")
                    if arrow:
                        cache.setdefault(name.split(" ", 1)[0], []).append(path.strip())
        with self._lock:
            self._cache = cache
        return cache


def _expand(paths: Iterable[str], origin: str | None) -> tuple[str, ...]:
    """Search paths with ``$ORIGIN`` expanded; ``None`` is inside the wheel: those are dropped."""
    if origin is None:
        return tuple(p for p in paths if "ORIGIN" not in p)
    return tuple(p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin) for p in paths)


def linked_libraries(wheel: Path, libraries: SystemLibraries) -> dict[str, Any]:
    """What the ELF files of ``wheel`` (as built, before repair) link from this machine.

    Returns the record kept with the built wheel: ``{"format", "libraries":
    {soname: {"path", "file", "sha256"}}}`` for every library outside the
    wheel and outside :data:`PLATFORM_LIBRARIES`, followed through the
    libraries they need in turn (a repair vendors those too). ``path`` is
    where the loader finds it, ``file`` what that resolves to; a library the
    loader cannot find has neither.
    """
    members: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir() or info.file_size < len(_ELF_MAGIC):
                continue
            with archive.open(info) as member:
                if member.read(len(_ELF_MAGIC)) != _ELF_MAGIC:
                    continue
            members[info.filename] = archive.read(info)
    inside = {PurePosixPath(name).name for name in members}
    found: dict[str, dict[str, Any]] = {}
    # (what needs them, where $ORIGIN is: None inside the wheel, how deep)
    pending: list[tuple[_Elf, str | None, int]] = []
    for _name, data in sorted(members.items()):
        elf = _read_elf(data)
        if elf is not None:
            pending.append((elf, None, 0))
    while pending:
        elf, origin, depth = pending.pop(0)
        for soname in elf.needed:
            if soname in inside or soname in PLATFORM_LIBRARIES or soname in found:
                continue
            path = libraries.find(
                soname,
                kind=elf.kind,
                rpath=_expand(elf.rpath, origin),
                runpath=_expand(elf.runpath, origin),
            )
            if path is None:
                found[soname] = {"path": None, "file": None, "sha256": None}
                continue
            found[soname] = {
                "path": str(path),
                "file": os.path.realpath(path),
                "sha256": libraries.sha256(path),
            }
            child = libraries.elf(path)
            if child is not None and depth + 1 < _MAX_DEPTH:
                pending.append((child, str(Path(os.path.realpath(path)).parent), depth + 1))
    return {"format": LINKS_FORMAT, "libraries": dict(sorted(found.items()))}


def links_problem(recorded: Mapping[str, Any] | None, libraries: SystemLibraries) -> str | None:
    """Why a wheel built with ``recorded`` links would not be what a build here makes, or None.

    Each recorded library is looked up where it was found, then (for a wheel
    built on another machine) by its name as the loader would; its content
    must be the same. A library that was not found at build time is not
    checked: nothing of it is in the wheel.
    """
    if not isinstance(recorded, Mapping) or recorded.get("format") != LINKS_FORMAT:
        return "it was built by a wheelbarrow that did not record what it links"
    listed = recorded.get("libraries")
    changes: list[str] = []
    for soname, was in sorted(listed.items() if isinstance(listed, Mapping) else []):
        if not isinstance(was, Mapping) or not was.get("sha256"):
            continue
        where = Path(str(was.get("path") or ""))
        path = where if was.get("path") and where.is_file() else libraries.find(soname)
        if path is None:
            changes.append(f"{soname} (no longer on this machine)")
            continue
        try:
            now = libraries.sha256(path)
        except OSError:
            changes.append(f"{soname} ({path}: cannot be read)")
            continue
        if now == was["sha256"]:
            continue
        old_file, new_file = str(was.get("file") or ""), os.path.realpath(path)
        if old_file and Path(old_file).name != Path(new_file).name:
            changes.append(f"{soname} ({Path(old_file).name} -> {Path(new_file).name})")
        else:
            changes.append(f"{soname} ({new_file}: new content)")
    if not changes:
        return None
    what = "a library" if len(changes) == 1 else "libraries"
    return f"{what} it links changed: " + "; ".join(changes)
