"""Seals of stored environments: what each file was when sealed, so any edit is caught.

Environments are cloned by hard links, so an edit inside one installed
environment edits the store's copy, and every environment sharing it. On the
filesystems these run on (ext4, as root) nothing can prevent that: read-only
modes stop nothing and there are no reflinks. A seal makes it detectable.

For every regular file it records the relative path, size, mtime (ns), inode
and sha256; for every symlink its target. Checking is a stat pass: a file
whose size, mtime and inode are unchanged is taken as unchanged, one whose
stat differs is hashed, and only a differing hash is an edit (a ``touch``
is not). ``deep`` hashes every file, for ``wheelbarrow verify``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from wheelbarrow._core.files import atomic_write_bytes
from wheelbarrow.environment.sealfile import (
    HEADER,
    SEAL,
    STAMP,
    UNSEALED,
    link_line,
    unquote,
)
from wheelbarrow.environment.sealfile import (
    file_line as _line,
)

__all__ = ["SEAL", "STAMP", "UNSEALED", "Scan", "Seal", "SealCheck", "SealProblem", "SealedFile"]

_CHUNK = 1 << 20

Problem = Literal["changed", "missing", "added", "not a file", "link changed"]


class SealedFile(NamedTuple):
    """One regular file as it was sealed.

    A named tuple, not a dataclass: an environment has thousands, read (and a
    clone's written) on every install, and tuples are what JSON gives and takes.
    """

    size: int
    mtime_ns: int
    inode: int
    sha256: str

    def same_stat(self, st: os.stat_result) -> bool:
        """Whether ``st`` is the stat the file had when sealed (its bytes taken as unchanged)."""
        return (
            st.st_size == self.size and st.st_mtime_ns == self.mtime_ns and st.st_ino == self.inode
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SealProblem:
    """A path whose state differs from the seal."""

    path: str
    problem: Problem

    def __str__(self) -> str:
        return f"{self.path} ({self.problem})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Scan:
    """What a tree holds: its regular files with their stats, its symlinks, and (from
    :func:`scan_tree`) its directories with theirs."""

    files: dict[str, os.stat_result] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)
    dirs: dict[str, os.stat_result] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SealCheck:
    """The outcome of checking a tree against its seal.

    ``restated`` lists files whose stat changed while their bytes did not
    (a ``touch``, a copy of the store): a seal refreshed with
    :meth:`Seal.refreshed` makes the next check a stat pass again.
    """

    problems: tuple[SealProblem, ...]
    restated: Mapping[str, os.stat_result]
    hashed_bytes: int

    @property
    def ok(self) -> bool:
        """Whether the tree is what was sealed."""
        return not self.problems


@dataclass(frozen=True, slots=True, kw_only=True)
class Seal:
    """The sealed state of a tree: its files by relative path, and its symlinks.

    ``raw`` is the seal's file as read (empty for a new seal): a clone's seal
    is those bytes with a few lines appended, where later lines win.
    """

    files: Mapping[str, SealedFile]
    links: Mapping[str, str]
    raw: bytes = field(default=b"", compare=False, repr=False)

    def dumps(self) -> bytes:
        """The seal's file: a header line, then one tab-separated line per file and link."""
        lines = [HEADER]
        lines += [_file_line(rel, f) for rel, f in sorted(self.files.items())]
        lines += [link_line(rel, t) for rel, t in sorted(self.links.items())]
        return "".join(lines).encode("utf-8", "surrogateescape")

    def write(self, root: Path) -> None:
        """Write the seal into ``root`` (atomically: a reader sees the old seal or this one)."""
        atomic_write_bytes(root / SEAL, self.dumps())

    def write_amended(self, root: Path, changed: Mapping[str, SealedFile]) -> None:
        """Write into ``root`` this seal as read, with ``changed`` entries replacing its own.

        For a hard-link clone, whose files are the sealed ones but for those
        rewritten for its place: copying the bytes costs far less than a new seal.
        """
        if not self.raw:
            Seal(files={**self.files, **changed}, links=self.links).write(root)
            return
        extra = "".join(_file_line(rel, f) for rel, f in sorted(changed.items()))
        atomic_write_bytes(root / SEAL, self.raw + extra.encode("utf-8", "surrogateescape"))

    def check(
        self, root: Path, scan: Scan | None = None, *, deep: bool = False, workers: int = 4
    ) -> SealCheck:
        """Compare ``root`` (or a ``scan`` of it already made while walking it) with the seal."""
        scan = scan if scan is not None else scan_tree(root)
        problems: list[SealProblem] = []
        to_hash: list[str] = []
        for rel, sealed in self.files.items():
            st = scan.files.get(rel)
            if st is None:
                problem: Problem = (
                    "not a file" if rel in scan.links or rel in scan.others else "missing"
                )
                problems.append(SealProblem(path=rel, problem=problem))
            elif deep or not sealed.same_stat(st):
                to_hash.append(rel)
        for rel, target in self.links.items():
            if rel not in scan.links:
                problems.append(SealProblem(path=rel, problem="missing"))
            elif scan.links[rel] != target:
                problems.append(SealProblem(path=rel, problem="link changed"))
        for rel in [*scan.files, *scan.links, *scan.others]:
            if rel not in self.files and rel not in self.links and not regenerable(rel):
                problems.append(SealProblem(path=rel, problem="added"))
        digests = hash_files(root, to_hash, workers=workers)
        restated: dict[str, os.stat_result] = {}
        hashed = 0
        for rel in to_hash:
            hashed += scan.files[rel].st_size
            digest = digests[rel]
            if digest != self.files[rel].sha256:
                problems.append(SealProblem(path=rel, problem="changed" if digest else "missing"))
            elif not self.files[rel].same_stat(scan.files[rel]):
                restated[rel] = scan.files[rel]
        problems.sort(key=lambda p: p.path)
        return SealCheck(problems=tuple(problems), restated=restated, hashed_bytes=hashed)

    def refreshed(self, restated: Mapping[str, os.stat_result]) -> Seal:
        """This seal with new stats for files whose bytes were found unchanged."""
        files = dict(self.files)
        for rel, st in restated.items():
            old = files[rel]
            files[rel] = SealedFile(
                size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, sha256=old.sha256
            )
        return Seal(files=files, links=self.links)

    def cloned(self, placed: Mapping[str, os.stat_result], rewritten: Mapping[str, str]) -> Seal:
        """The seal of a clone of the sealed tree, checked sound as it was cloned.

        ``placed`` gives the stat of each file in the clone; ``rewritten`` the
        sha256 of the files changed for the clone's place (scripts, pyvenv.cfg).
        """
        files = {}
        sealed = self.files
        for rel, st in placed.items():
            sha256 = rewritten.get(rel) or (sealed[rel].sha256 if rel in sealed else None)
            if sha256 is not None:
                files[rel] = SealedFile(st.st_size, st.st_mtime_ns, st.st_ino, sha256)
        return Seal(files=files, links=self.links)

    def paths(self) -> set[str]:
        """Every path the seal knows."""
        return set(self.files) | set(self.links)


def regenerable(rel: str) -> bool:
    """Bytecode caches Python writes itself (build environments run in place gain them)."""
    parts = rel.rsplit("/", 2)
    return len(parts) >= 2 and parts[-2] == "__pycache__" and rel.endswith(".pyc")


def scan_tree(root: Path) -> Scan:
    """Every entry under ``root`` but the seal and the stamp, without following symlinks."""
    scan = Scan()
    base = os.fspath(root)
    cut = len(base) + 1
    stack = [base]
    while stack:
        directory = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                rel = entry.path[cut:]
                if entry.is_symlink():
                    scan.links[rel] = os.readlink(entry.path)  # noqa: PTH115 - str paths, per file
                elif entry.is_dir(follow_symlinks=False):
                    scan.dirs[rel] = entry.stat(follow_symlinks=False)
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    if rel not in UNSEALED:
                        scan.files[rel] = entry.stat(follow_symlinks=False)
                else:
                    scan.others.append(rel)
    return scan


def sha256_file(path: Path | str) -> str:
    """The hex sha256 of a file; empty when it is gone (or not a file) by the time it is read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:  # noqa: PTH123 - str paths from the walk
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return ""
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    return digest.hexdigest()


_HASH_BATCH = 32  # files a thread hashes per task: one future per file cost more than hashing


def hash_files(root: Path, rels: Iterable[str], *, workers: int = 4) -> dict[str, str]:
    """sha256 of each relative path under ``root``, in up to ``workers`` threads (no more than
    the processors: hashlib releases the GIL, but files read from the page cache keep a core
    busy each), a batch of files to each task."""
    rels = list(rels)
    base = os.fspath(root) + os.sep
    workers = min(workers, os.cpu_count() or 1)
    if len(rels) < 8 or workers <= 1:
        return {rel: sha256_file(base + rel) for rel in rels}
    from concurrent.futures import ThreadPoolExecutor  # only where there is much to hash

    def batch(start: int) -> list[str]:
        return [sha256_file(base + rel) for rel in rels[start : start + _HASH_BATCH]]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        starts = range(0, len(rels), _HASH_BATCH)
        digests = [d for done in pool.map(batch, starts) for d in done]
    return dict(zip(rels, digests, strict=True))


def make_seal(
    root: Path, *, scan: Scan | None = None, known: Seal | None = None, workers: int = 4
) -> Seal:
    """Seal ``root`` as it is now.

    Files that ``known`` (the seal of the environment this one was cloned
    from) lists with the same stat keep its hash: a hard link is the same file.
    """
    scan = scan if scan is not None else scan_tree(root)
    if scan.others:
        raise ValueError(f"{root}: cannot seal special files: {', '.join(scan.others[:3])}")
    reuse: dict[str, str] = {}
    if known is not None:
        for rel, st in scan.files.items():
            old = known.files.get(rel)
            if old is not None and old.same_stat(st):
                reuse[rel] = old.sha256
    digests = hash_files(root, [r for r in scan.files if r not in reuse], workers=workers)
    digests.update(reuse)
    files = {
        rel: SealedFile(
            size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino, sha256=digests[rel]
        )
        for rel, st in scan.files.items()
    }
    return Seal(files=files, links=dict(scan.links))


def read_seal(root: Path) -> Seal | None:
    """The seal in ``root``, or None when there is none (or it cannot be read)."""
    try:
        raw = (root / SEAL).read_bytes()
    except OSError:
        return None
    lines = raw.decode("utf-8", "surrogateescape").split("\n")
    if lines[0] + "\n" != HEADER:
        return None
    files: dict[str, SealedFile] = {}
    links: dict[str, str] = {}
    try:
        for line in lines[1:]:
            if not line:
                continue
            parts = line.split("\t")
            if parts[0] == "F" and len(parts) == 6:
                files[unquote(parts[1])] = SealedFile(
                    int(parts[2]), int(parts[3]), int(parts[4]), parts[5]
                )
            elif parts[0] == "L" and len(parts) == 3:
                links[unquote(parts[1])] = unquote(parts[2])
            else:
                return None
    except ValueError:
        return None
    return Seal(files=files, links=links, raw=raw)


def _file_line(rel: str, f: SealedFile) -> str:
    return _line(rel, f.size, f.mtime_ns, f.inode, f.sha256)


def describe(problems: Iterable[SealProblem], *, limit: int = 5) -> str:
    """``a (changed), b (missing) and 3 more``."""
    problems = list(problems)
    shown = ", ".join(str(p) for p in problems[:limit])
    more = f" and {len(problems) - limit} more" if len(problems) > limit else ""
    return shown + more
