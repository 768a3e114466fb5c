"""What takes the store's space (``store du``), and removing what nothing needs (``store gc``).

The store is a cache: each entry can be made again, but what the apps' last
builds need is kept, and so is whatever a running build or install holds.

What is kept
    The roots are the app records (``apps/*.json``) whose app directory
    still exists. Each names the app's last wheelhouse; that wheelhouse, the
    blobs it lists (wheels and the sources of built wheels), the environments
    made from it, the build cache entries of its source-built wheels and the
    build environments those came from (with the wheels in them) are never
    removed. Everything else goes by age or size: ``--older-than`` keeps what
    was used more recently, ``--max-size`` keeps the most recently used of
    the rest while the store fits, and with both what either keeps stays.
    "Used" is the latest of when an entry was made and when a build or
    install last held its lease; an entry something else refers to (a blob a
    wheelhouse lists) counts as used whenever that was, so nothing is removed
    before what refers to it.

What a running build or install holds
    Builds and installs hold a shared lease (:func:`wheelbarrow._core.scratch.lease`)
    on each wheelhouse and environment they use, and gc removes one only
    while it holds the exclusive lease (``try_exclusive``), checking again
    under it that no app's last build has come to need it meanwhile.

    Blobs, build cache entries, build environments, build-requirement locks
    and image layers are guarded as one: a build that fetches or compiles,
    and the image command, hold the shared store-wide ``building`` lease from
    before their first download until their wheelhouse's manifest (or the
    image) is written. Between those two moments their blobs are referenced
    by nothing on disk, so gc sweeps these kinds only while it holds that
    lease exclusively, and works out what is referenced again under it; when
    a build is running it leaves them for the next gc and says so.

Nothing half-removed
    Every entry leaves its place by one rename into a scratch directory of
    the store's ``tmp/`` (a blob's ``named/`` links first, then the blob), and
    is deleted from there. A killed gc leaves only scratch, which the next
    run proves stale and removes. Only names wheelbarrow gives are touched:
    anything else in the store, and anything at its root that wheelbarrow
    does not make, is left alone (``store du`` lists it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.scratch import LOCK_SUFFIX, _looks_like_scratch, clean_stale, try_exclusive
from wheelbarrow.store.store import BUILDING_LEASE, Store

DEFAULT_OLDER_THAN = 7 * 86400.0

# The kinds ``store du`` reports, in the order a shared file is counted (once, in the first).
KINDS = (
    "blobs",
    "wheelhouses",
    "environments",
    "build environments",
    "build cache and logs",
    "image layers",
    "buildlocks",
    "tmp",
    "other",
)
# Top-level names wheelbarrow makes in a store; anything else there is the user's.
KNOWN = frozenset(
    {
        "blobs",
        "named",
        "wheelhouses",
        "envs",
        "built",
        "build-history",
        "buildlocks",
        "apps",
        "oci",
        "runtimes",
        "tmp",
        "locks",
    }
)

_HEX24 = re.compile(r"[0-9a-f]{24}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BUILD_ENV = re.compile(r"build-[0-9a-f]{28}")
_ZIP_MAGIC = b"PK\x03\x04"
_ENV_MARKER = ".wheelbarrow-env.json"  # environment.MARKER (not imported: it imports installer)
_MANIFEST = "wheelhouse.json"  # wheelhouse.MANIFEST

# An entry's kind (for gc), the ``du`` kind it counts under, its order among removals.
_RANK = {
    "app": 0,
    "wheelhouse": 1,
    "environment": 1,
    "layer": 1,
    "buildlock": 1,
    "build": 2,
    "build-environment": 3,
    "blob": 4,
}
_PER_ENTRY_LEASE = {"wheelhouse": "wheelhouse", "environment": "env"}
_SWEPT = frozenset({"layer", "buildlock", "build", "build-environment", "blob"})

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or ``0`` as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if match is None or (match[2] == "" and float(match[1]) != 0):
        raise InputError(
            f"--older-than {text!r}: not a duration",
            hint="write a number and a unit: 45s, 30m, 12h, 7d or 2w (0 for everything)",
        )
    return float(match[1]) * _UNITS[match[2] or "s"]


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GB``, ``100k`` (powers of 1000, as sizes are shown), ``1GiB``
    (powers of 1024) or a number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)b?|b?)\s*", text.lower())
    if match is None:
        raise InputError(
            f"--max-size {text!r}: not a size",
            hint="write a number and a unit: 500M, 2G, 1.5G, 4GiB (or a number of bytes)",
        )
    unit = _SIZES[match[2] or ""]
    if match[3]:
        unit = 1 << (10 * "kmgt".index(match[2]) + 10)
    return int(float(match[1]) * unit)


# --- the inventory -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Inode:
    nbytes: int
    nlink: int
    is_dir: bool


@dataclass(slots=True, kw_only=True)
class Entry:
    """One removable thing of the store: a wheelhouse, an environment, a blob and its links..."""

    kind: str
    name: str
    paths: tuple[Path, ...]  # what goes, in this order
    used: float  # when it was last made or held
    refs: set[str] = field(default_factory=set)  # ids of the entries it keeps
    wheelhouse: str | None = None  # an environment's or app record's wheelhouse key
    app: str | None = None  # an app record's app directory
    inodes: dict[tuple[int, int], int] = field(default_factory=dict)  # inode -> links here

    @property
    def id(self) -> str:
        """``kind:name``, how entries refer to each other."""
        return f"{self.kind}:{self.name}"


@dataclass(slots=True)
class _Inventory:
    root: Path
    walk: bool = True  # whether to read every file's inode (sizes); not needed to decide
    entries: dict[str, Entry] = field(default_factory=dict)
    inodes: dict[tuple[int, int], _Inode] = field(default_factory=dict)
    du_kind: dict[tuple[int, int], str] = field(default_factory=dict)
    foreign: list[tuple[Path, int]] = field(default_factory=list)

    def add(self, entry: Entry) -> Entry:
        if self.walk:
            for path in entry.paths:
                self._take(path, entry.inodes)
        self.entries[entry.id] = entry
        return entry

    def _take(self, path: Path, into: dict[tuple[int, int], int]) -> None:
        for ident, info in _walk(path):
            self.inodes.setdefault(ident, info)
            into[ident] = into.get(ident, 0) + 1

    def count(self, path: Path, kind: str) -> None:
        """Attribute every inode under ``path`` not yet counted to the ``du`` kind ``kind``."""
        for ident, info in _walk(path):
            self.inodes.setdefault(ident, info)
            self.du_kind.setdefault(ident, kind)

    def count_entry(self, entry: Entry, kind: str) -> None:
        """:meth:`count` for an entry, from the inodes read when it was added."""
        for ident in entry.inodes:
            self.du_kind.setdefault(ident, kind)

    def size(self, idents: Iterable[tuple[int, int]]) -> int:
        return sum(self.inodes[i].nbytes for i in set(idents))


def _walk(path: Path) -> Iterator[tuple[tuple[int, int], _Inode]]:
    """Every inode under ``path`` (itself included), never following symbolic links."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    is_dir = stat.S_ISDIR(st.st_mode)
    yield (st.st_dev, st.st_ino), _Inode(st.st_blocks * 512, st.st_nlink, is_dir)
    if not is_dir:
        return
    stack = [os.fspath(path)]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                directory = entry.is_dir(follow_symlinks=False)
                yield (st.st_dev, st.st_ino), _Inode(st.st_blocks * 512, st.st_nlink, directory)
                if directory:
                    stack.append(entry.path)


def _mtime(*paths: Path) -> float:
    """The latest mtime of the paths that exist (0 when none does)."""
    latest = 0.0
    for path in paths:
        with contextlib.suppress(OSError):
            latest = max(latest, os.lstat(path).st_mtime)
    return latest


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _subdirs(directory: Path, pattern: re.Pattern[str]) -> list[Path]:
    """The real directories (not links) in ``directory`` whose names match ``pattern``."""
    return [p for p in _children(directory, pattern) if p.is_dir() and not p.is_symlink()]


def _children(directory: Path, pattern: re.Pattern[str], suffix: str = "") -> list[Path]:
    if not _real_dir(directory):
        return []
    found = []
    for name in _names(directory):
        if name.endswith(suffix) and pattern.fullmatch(
            name.removesuffix(suffix) if suffix else name
        ):
            found.append(directory / name)
    return found


def _names(directory: Path) -> list[str]:
    """The sorted names in ``directory``; none when it is gone (another gc, verify --repair)."""
    try:
        return sorted(p.name for p in directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _lease_used(store: Store, lease: str, key: str) -> float:
    return _mtime(store.leases_dir() / f"{lease}-{key}{LOCK_SUFFIX}")


def _wheels(manifest: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    wheels = manifest.get("wheels") if manifest else None
    return [w for w in wheels if isinstance(w, dict)] if isinstance(wheels, list) else []


def _manifest_shas(manifest: Mapping[str, Any] | None) -> set[str]:
    """The blobs a wheelhouse manifest names: its wheels and the sources built wheels came from."""
    shas = set()
    for wheel in _wheels(manifest):
        shas.add(str(wheel.get("sha256")))
        source = wheel.get("source")
        if isinstance(source, dict) and source.get("sha256"):
            shas.add(str(source["sha256"]))
    return shas


def _inventory(store: Store, *, walk: bool = True) -> _Inventory:
    """Every removable entry of the store with its references, last use and (``walk``) inodes."""
    root = store.root
    inv = _Inventory(root, walk=walk)
    if not _real_dir(root):
        return inv

    blobs_dir = root / "blobs" / "sha256"
    named_dir = root / "named"
    blob_paths: dict[str, list[Path]] = {}
    for shard in _subdirs(named_dir, re.compile(r"[0-9a-f]{2}")):
        for d in _subdirs(shard, _HEX64):
            blob_paths.setdefault(d.name, []).append(d)
    named_files: dict[str, set[str]] = {}  # file name -> blob digests, from named/
    for sha, dirs in blob_paths.items():
        for d in dirs:
            for name in _names(d):
                named_files.setdefault(name, set()).add(sha)
    for shard in _subdirs(blobs_dir, re.compile(r"[0-9a-f]{2}")):
        for blob in _children(shard, _HEX64):
            if blob.is_file() and not blob.is_symlink():
                blob_paths.setdefault(blob.name, []).append(blob)

    # Build cache entries, and which of them made each wheel.
    builds_by_wheel: dict[str, set[str]] = {}
    for d in _subdirs(root / "built", _HEX32):
        result = _read_json(d / "result.json") or {}
        entry = Entry(
            kind="build",
            name=d.name,
            paths=(d,),
            used=_mtime(d, d / "result.json", d / "build.log"),
        )
        if isinstance(result.get("sha256"), str):
            entry.refs.add(f"blob:{result['sha256']}")
            builds_by_wheel.setdefault(result["sha256"], set()).add(entry.id)
        inputs = result.get("inputs")
        if isinstance(inputs, dict) and isinstance(inputs.get("source"), str):
            entry.refs.add(f"blob:{inputs['source']}")
        build_env = result.get("build_env")  # the build environment it was built in
        if isinstance(build_env, str) and _BUILD_ENV.fullmatch(build_env):
            entry.refs.add(f"build-environment:{build_env}")
        inv.add(entry)

    for d in _subdirs(root / "wheelhouses", _HEX32):
        manifest = _read_json(d / _MANIFEST)
        entry = Entry(
            kind="wheelhouse",
            name=d.name,
            paths=(d,),
            used=max(_mtime(d, d / _MANIFEST), _lease_used(store, "wheelhouse", d.name)),
        )
        for sha in _manifest_shas(manifest):
            entry.refs.add(f"blob:{sha}")
            entry.refs.update(builds_by_wheel.get(sha, ()))
        inv.add(entry)

    for d in _subdirs(root / "envs", re.compile(r"[0-9a-f]{32}|build-[0-9a-f]{28}")):
        marker = _read_json(d / _ENV_MARKER)
        if _BUILD_ENV.fullmatch(d.name):
            entry = Entry(
                kind="build-environment", name=d.name, paths=(d,), used=_mtime(d, d / _ENV_MARKER)
            )
            listed = marker.get("wheels") if marker else None
            for name in listed if isinstance(listed, list) else ():
                entry.refs.update(f"blob:{sha}" for sha in named_files.get(str(name), ()))
        else:
            house = marker.get("wheelhouse") if marker else None
            entry = Entry(
                kind="environment",
                name=d.name,
                paths=(d,),
                used=max(_mtime(d, d / _ENV_MARKER), _lease_used(store, "env", d.name)),
                wheelhouse=house if isinstance(house, str) else None,
            )
        inv.add(entry)

    for record in _children(root / "oci" / "env-layers", _HEX32, ".json"):
        data = _read_json(record) or {}
        entry = Entry(kind="layer", name=record.stem, paths=(record,), used=_mtime(record))
        digest = data.get("digest")
        if isinstance(digest, str) and digest.startswith("sha256:"):
            entry.refs.add(f"blob:{digest.removeprefix('sha256:')}")
        inv.add(entry)

    for d in _subdirs(root / "buildlocks", _HEX32):
        inv.add(
            Entry(
                kind="buildlock",
                name=d.name,
                paths=(d,),
                used=_mtime(d, *(d / n for n in _names(d))),
            )
        )

    for record in _children(root / "apps", _HEX24, ".json"):
        data = _read_json(record) or {}
        app, key = data.get("app"), data.get("key")
        entry = Entry(
            kind="app",
            name=record.stem,
            paths=(record,),
            used=_mtime(record),
            app=app if isinstance(app, str) else None,
            wheelhouse=key if isinstance(key, str) else None,
        )
        if entry.wheelhouse:
            entry.refs.add(f"wheelhouse:{entry.wheelhouse}")
        inv.add(entry)

    for sha, paths in blob_paths.items():
        # named/ links go first: a blob without them is complete, links without it are not.
        ordered = tuple(sorted(paths, key=lambda p: not str(p).startswith(str(named_dir))))
        blob = blobs_dir / sha[:2] / sha
        links = [d / n for d in paths if d != blob for n in _names(d)]
        inv.add(Entry(kind="blob", name=sha, paths=ordered, used=_mtime(blob, *links)))
    return inv


def _live_app(entry: Entry) -> bool:
    """An app record whose app is still there: a root of what is kept."""
    return entry.kind == "app" and entry.app is not None and Path(entry.app).is_dir()


def _needed(inv: _Inventory) -> set[str]:
    """What the apps' last builds need: the closure of the live app records' references."""
    needed: set[str] = set()
    todo = [e.id for e in inv.entries.values() if _live_app(e)]
    houses: set[str] = set()
    while todo:
        ident = todo.pop()
        if ident in needed:
            continue
        needed.add(ident)
        entry = inv.entries.get(ident)
        if entry is None:
            continue
        if entry.kind == "wheelhouse":
            houses.add(entry.name)
        todo.extend(entry.refs)
    needed.update(
        e.id for e in inv.entries.values() if e.kind == "environment" and e.wheelhouse in houses
    )
    return needed


def _effective_use(inv: _Inventory) -> dict[str, float]:
    """Each entry's last use, raised to that of whatever refers to it."""
    used = {ident: e.used for ident, e in inv.entries.items()}
    for entry in sorted(inv.entries.values(), key=lambda e: _RANK[e.kind]):
        for ref in entry.refs:
            if ref in used:
                used[ref] = max(used[ref], used[entry.id])
    return used


class _Freed:
    """What removing entries gives back: the disk space of the inodes whose last link goes
    (``total``), and the store's own shrinking (``shrink``): an inode also linked from outside
    the store, such as an environment installed by hard links, leaves the store but stays on disk.
    """

    def __init__(self, inv: _Inventory, store_links: Mapping[tuple[int, int], int]) -> None:
        self._inv = inv
        self._links = store_links
        self._gone: dict[tuple[int, int], int] = {}
        self.total = 0
        self.shrink = 0

    def remove(self, entry: Entry) -> int:
        """Account for ``entry`` going; returns the disk space that frees now."""
        freed = 0
        for ident, links in entry.inodes.items():
            before = self._gone.get(ident, 0)
            after = before + links
            self._gone[ident] = after
            info = self._inv.inodes[ident]
            if info.is_dir:
                if before == 0:
                    freed += info.nbytes
                    self.shrink += info.nbytes
                continue
            if before < info.nlink <= after:
                freed += info.nbytes
            if before < self._links.get(ident, 1) <= after:
                self.shrink += info.nbytes
        self.total += freed
        return freed


def _store_links(root: Path) -> tuple[dict[tuple[int, int], int], int]:
    """Each inode under ``root`` with the number of its links there; and their total size."""
    links: dict[tuple[int, int], int] = {}
    total = 0
    if _real_dir(root):
        for ident, info in _walk(root):
            if ident not in links:
                total += info.nbytes
            links[ident] = links.get(ident, 0) + 1
    return links, total


# --- du ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KindUsage:
    """The space one kind of entry takes."""

    kind: str
    nbytes: int
    entries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppUsage:
    """The space an app's last build takes (files it shares with other apps count in each)."""

    app: str
    app_present: bool
    wheelhouse: str | None
    wheelhouse_present: bool
    environments: tuple[str, ...]
    nbytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What ``store du`` reports."""

    store: Path
    nbytes: int
    kinds: tuple[KindUsage, ...]
    apps: tuple[AppUsage, ...]
    foreign: tuple[tuple[Path, int], ...]

    def as_json(self) -> dict[str, object]:
        """The versioned machine-readable form (``--json``)."""
        return {
            "version": 1,
            "store": str(self.store),
            "bytes": self.nbytes,
            "kinds": [
                {"kind": k.kind, "bytes": k.nbytes, "entries": k.entries} for k in self.kinds
            ],
            "apps": [
                {
                    "app": a.app,
                    "app_present": a.app_present,
                    "wheelhouse": a.wheelhouse,
                    "wheelhouse_present": a.wheelhouse_present,
                    "environments": list(a.environments),
                    "bytes": a.nbytes,
                }
                for a in self.apps
            ],
            "not_wheelbarrows": [{"path": str(p), "bytes": n} for p, n in self.foreign],
        }


def _blob_du_kind(inv: _Inventory, entry: Entry, distributions: set[str]) -> str:
    """Image layers (and configs, base layers) are blobs too; wheels and sdists are ``blobs``."""
    if f"blob:{entry.name}" in distributions:
        return "blobs"
    if any(str(p).startswith(str(inv.root / "named")) for p in entry.paths):
        return "blobs"
    blob = inv.root / "blobs" / "sha256" / entry.name[:2] / entry.name
    try:
        with blob.open("rb") as f:
            head = f.read(4)
    except OSError:
        return "blobs"
    return "blobs" if head == _ZIP_MAGIC else "image layers"


_DU_OF = {
    "wheelhouse": "wheelhouses",
    "environment": "environments",
    "build-environment": "build environments",
    "build": "build cache and logs",
    "buildlock": "buildlocks",
    "app": "other",
}


def usage(store: Store) -> Usage:
    """What takes the space: by kind and by app, each file counted once however many its links."""
    inv = _inventory(store)
    root = store.root
    layer_blobs = {r for e in inv.entries.values() if e.kind == "layer" for r in e.refs}
    distributions = {
        r
        for e in inv.entries.values()
        if e.kind in ("wheelhouse", "build", "build-environment")
        for r in e.refs
        if r.startswith("blob:")
    } - layer_blobs
    per_kind: dict[str, list[Entry]] = {k: [] for k in KINDS}
    for entry in inv.entries.values():
        if entry.kind == "blob":
            kind = _blob_du_kind(inv, entry, distributions)
        elif entry.kind == "layer":
            kind = "image layers"
        else:
            kind = _DU_OF[entry.kind]
        per_kind[kind].append(entry)
    # Blobs first: a wheelhouse's wheels are links to them, and count there.
    for kind in KINDS:
        for entry in per_kind[kind]:
            inv.count_entry(entry, kind)
    inv.count(root / "build-history", "build cache and logs")
    inv.count(root / "tmp", "tmp")
    foreign: list[tuple[Path, int]] = []
    if _real_dir(root):
        st = os.lstat(root)
        inv.inodes.setdefault((st.st_dev, st.st_ino), _Inode(st.st_blocks * 512, st.st_nlink, True))
        inv.du_kind.setdefault((st.st_dev, st.st_ino), "other")
        for name in _names(root):
            path = root / name
            if name in KNOWN and _real_dir(path):
                inv.count(path, "other")
            else:
                foreign.append((path, sum(i.nbytes for _, i in _walk(path))))
    kinds = []
    for kind in KINDS:
        nbytes = sum(inv.inodes[i].nbytes for i, k in inv.du_kind.items() if k == kind)
        entries = len(per_kind[kind])
        if kind == "tmp":
            entries = sum(1 for _ in _scratch_entries(root / "tmp"))
        kinds.append(KindUsage(kind=kind, nbytes=nbytes, entries=entries))
    apps = []
    for entry in sorted(
        (e for e in inv.entries.values() if e.kind == "app"), key=lambda e: e.app or ""
    ):
        closure = _closure(inv, entry)
        envs = sorted(
            e.name
            for e in inv.entries.values()
            if e.kind == "environment" and e.wheelhouse == entry.wheelhouse and entry.wheelhouse
        )
        closure.update(f"environment:{name}" for name in envs)
        idents = {i for c in closure if c in inv.entries for i in inv.entries[c].inodes}
        apps.append(
            AppUsage(
                app=entry.app or "?",
                app_present=_live_app(entry),
                wheelhouse=entry.wheelhouse,
                wheelhouse_present=f"wheelhouse:{entry.wheelhouse}" in inv.entries,
                environments=tuple(envs),
                nbytes=inv.size(idents),
            )
        )
    total = sum(k.nbytes for k in kinds) + sum(n for _, n in foreign)
    return Usage(
        store=root, nbytes=total, kinds=tuple(kinds), apps=tuple(apps), foreign=tuple(foreign)
    )


def _closure(inv: _Inventory, start: Entry) -> set[str]:
    seen: set[str] = set()
    todo = list(start.refs)
    while todo:
        ident = todo.pop()
        if ident in seen:
            continue
        seen.add(ident)
        if ident in inv.entries:
            todo.extend(inv.entries[ident].refs)
    return seen


def _scratch_entries(tmp: Path) -> Iterator[str]:
    """Names of the scratch entries in ``tmp`` (their ``.lock`` files not counted)."""
    if not _real_dir(tmp):
        return
    for name in _names(tmp):
        if not name.endswith(LOCK_SUFFIX):
            yield name


# --- gc ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """What gc may remove beyond what the apps' last builds need: by age, by size, or both."""

    older_than: float | None = DEFAULT_OLDER_THAN  # seconds; None: no age rule
    max_size: int | None = None  # bytes; None: no size rule


@dataclass(frozen=True, slots=True, kw_only=True)
class Removed:
    """An entry gc removed (or, in a dry run, would remove)."""

    kind: str
    name: str
    path: Path
    nbytes: int
    used: float

    def as_json(self) -> dict[str, object]:
        """For ``--json``."""
        return {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.path),
            "bytes": self.nbytes,
            "last_used": round(self.used, 3),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Kept:
    """An entry gc meant to remove and kept, and why."""

    kind: str
    name: str
    why: str

    def as_json(self) -> dict[str, str]:
        """For ``--json``."""
        return {"kind": self.kind, "name": self.name, "why": self.why}


@dataclass(frozen=True, slots=True, kw_only=True)
class GcReport:
    """What ``store gc`` did."""

    store: Path
    dry_run: bool
    removed: tuple[Removed, ...]
    kept: tuple[Kept, ...]
    freed: int
    size_before: int
    size_after: int
    needed: int  # bytes the apps' last builds need
    swept: bool  # whether the build-guarded kinds were considered (no build was running)

    def as_json(self) -> dict[str, object]:
        """The versioned machine-readable form (``--json``)."""
        return {
            "version": 1,
            "store": str(self.store),
            "dry_run": self.dry_run,
            "removed": [r.as_json() for r in self.removed],
            "kept": [k.as_json() for k in self.kept],
            "freed_bytes": self.freed,
            "size_before": self.size_before,
            "size_after": self.size_after,
            "needed_bytes": self.needed,
            "swept_build_cache": self.swept,
        }


def _plan(
    inv: _Inventory,
    policy: Policy,
    now: float,
    total: int,
    store_links: Mapping[tuple[int, int], int],
) -> tuple[list[Entry], set[str]]:
    """The entries to remove, referrers before what they refer to; and what is needed."""
    needed = _needed(inv)
    used = _effective_use(inv)
    candidates = sorted(
        (
            e
            for e in inv.entries.values()
            if e.id not in needed and not _live_app(e) and not (e.kind == "app" and e.app is None)
        ),
        key=lambda e: (used[e.id], _RANK[e.kind], e.id),
    )
    cutoff = now - policy.older_than if policy.older_than is not None else None
    old = [e for e in candidates if cutoff is None or used[e.id] < cutoff]
    if policy.max_size is None:
        return sorted(old, key=lambda e: (_RANK[e.kind], e.id)), needed
    freed = _Freed(inv, store_links)
    chosen = []
    for entry in old:  # the least recently used first, until the store fits
        if total - freed.shrink <= policy.max_size:
            break
        freed.remove(entry)
        chosen.append(entry)
    return sorted(chosen, key=lambda e: (_RANK[e.kind], e.id)), needed


def collect(store: Store, policy: Policy, *, now: float, dry_run: bool = False) -> GcReport:
    """Remove what the apps' last builds do not need and ``policy`` does not keep.

    ``now`` is the current time (seconds since the epoch), from the caller's clock.
    """
    inv = _inventory(store)
    links, total = _store_links(store.root)
    plan, needed = _plan(inv, policy, now, total, links)
    needed_bytes = inv.size(i for n in needed if n in inv.entries for i in inv.entries[n].inodes)
    stale = _stale_scratch(store.root / "tmp")
    sizes = {path: _bytes(path) for path in stale}
    done: list[Entry] = []
    kept: list[Kept] = []
    swept = True
    if dry_run:
        done = plan
    elif plan:
        with store.scratch("gc-") as holder:
            swept = _execute(store, plan, holder, now, done, kept)
    freed = _Freed(inv, links)
    removed = [
        _removed(e, freed.remove(e)) for e in sorted(done, key=lambda e: (_RANK[e.kind], e.id))
    ]
    cleaned = stale if dry_run else clean_stale(store.root / "tmp", "")
    scratch = [
        Removed(kind="scratch", name=path.name, path=path, nbytes=sizes[path], used=_mtime(path))
        for path in cleaned
        if path in sizes
    ]
    scratch_bytes = sum(r.nbytes for r in scratch)
    return GcReport(
        store=store.root,
        dry_run=dry_run,
        removed=tuple(removed + scratch),
        kept=tuple(kept),
        freed=freed.total + scratch_bytes,
        size_before=total,
        size_after=total - freed.shrink - scratch_bytes,
        needed=needed_bytes,
        swept=swept,
    )


def _execute(
    store: Store, plan: list[Entry], holder: Path, now: float, done: list[Entry], kept: list[Kept]
) -> bool:
    """Remove the planned entries into ``holder``; returns whether the build-guarded kinds were
    swept (False when a build was running)."""
    for entry in plan:
        if entry.kind in _PER_ENTRY_LEASE or entry.kind == "app":
            why = _remove_leased(store, entry, holder, since=now)
            if why:
                kept.append(Kept(kind=entry.kind, name=entry.name, why=why))
            else:
                done.append(entry)
    swept_plan = [e for e in plan if e.kind in _SWEPT]
    if not swept_plan:
        return True
    with try_exclusive(store.leases_dir(), BUILDING_LEASE) as got:
        if not got:
            kept += [Kept(kind=e.kind, name=e.name, why="a build is running") for e in swept_plan]
            return False
        for entry, why in _sweep(store, swept_plan, holder):
            if why:
                kept.append(Kept(kind=entry.kind, name=entry.name, why=why))
            else:
                done.append(entry)
    return True


def _bytes(path: Path) -> int:
    return sum(info.nbytes for _, info in _walk(path))


def _removed(entry: Entry, nbytes: int) -> Removed:
    return Removed(
        kind=entry.kind, name=entry.name, path=entry.paths[-1], nbytes=nbytes, used=entry.used
    )


def _app_keys(store: Store) -> set[str]:
    """The last wheelhouse of every app whose directory exists, read now."""
    keys = set()
    for record in _children(store.root / "apps", _HEX24, ".json"):
        data = _read_json(record) or {}
        key, app = data.get("key"), data.get("app")
        if isinstance(key, str) and isinstance(app, str) and Path(app).is_dir():
            keys.add(key)
    return keys


def _remove_leased(store: Store, entry: Entry, holder: Path, *, since: float) -> str | None:
    """Remove a wheelhouse, environment or app record under its exclusive lease, or say why not."""
    if entry.kind == "app":
        if entry.app and Path(entry.app).is_dir():
            return "its app is back"
        return _rename_away(entry, holder)
    lease = _PER_ENTRY_LEASE[entry.kind]
    with try_exclusive(store.leases_dir(), f"{lease}-{entry.name}") as got:
        if not got:
            return "in use by a running build or install"
        # Under the lease nobody can start using it; check what happened before we took it.
        if _lease_used(store, lease, entry.name) > since:
            return "used since gc started"
        keys = _app_keys(store)
        if entry.kind == "wheelhouse" and entry.name in keys:
            return "an app's last build needs it"
        if entry.kind == "environment":
            marker = _read_json(entry.paths[0] / _ENV_MARKER) or {}
            if marker.get("wheelhouse") in keys:
                return "an app's last build needs it"
        return _rename_away(entry, holder)


def _sweep(store: Store, plan: list[Entry], holder: Path) -> Iterator[tuple[Entry, str | None]]:
    """Remove build-guarded entries, under the exclusive ``building`` lease, if nothing refers
    to them now: what refers to them is read again from disk, as builds may have finished."""
    fresh = _inventory(store, walk=False)
    needed = _needed(fresh)
    referrers: dict[str, set[str]] = {}
    for other in fresh.entries.values():
        for ref in other.refs:
            referrers.setdefault(ref, set()).add(other.id)
    # Referrers come first in ``plan``; a reference counts while its referrer stays.
    gone: set[str] = set()
    for entry in plan:
        now = fresh.entries.get(entry.id)
        if now is None:
            continue  # removed meanwhile (by another gc, or verify --repair)
        staying = sorted(referrers.get(entry.id, set()) - gone - {entry.id})
        if entry.id in needed:
            yield entry, "an app's last build needs it"
        elif staying:
            yield entry, f"{staying[0].replace(':', ' ', 1)} refers to it"
        else:
            why = _rename_away(now, holder)
            if why is None:
                gone.add(entry.id)
            yield entry, why


def _rename_away(entry: Entry, holder: Path) -> str | None:
    """Move each of the entry's paths into the gc scratch directory, in order, one rename each."""
    for i, path in enumerate(entry.paths):
        try:
            path.rename(holder / f"{entry.kind}-{entry.name}-{i}")
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return f"{path} is on another filesystem than the store's tmp/"
            raise
    return None


def _stale_scratch(tmp: Path) -> list[Path]:
    """The scratch entries in ``tmp`` whose owners are gone (probed; nothing is removed here)."""
    stale = []
    names = set(_scratch_entries(tmp)) if _real_dir(tmp) else set()
    for name in sorted(names):
        lock = tmp / (name + LOCK_SUFFIX)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            if _looks_like_scratch(name, ""):
                stale.append(tmp / name)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        finally:
            os.close(fd)
        stale.append(tmp / name)
    return stale
