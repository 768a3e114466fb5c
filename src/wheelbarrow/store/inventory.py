"""The store's inventory: every removable entry, what it refers to, when it was last used.

``store du`` (:mod:`wheelbarrow.store.du`) and ``store gc``
(:mod:`wheelbarrow.store.gc`) both start from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wheelbarrow._core.scratch import LOCK_SUFFIX
from wheelbarrow.store.store import IMAGE_SBOM_CACHE, SBOM_CACHE, Store

HEX24 = re.compile(r"[0-9a-f]{24}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BUILD_ENV = re.compile(r"build-[0-9a-f]{28}")
ENV_MARKER = ".wheelbarrow-env.json"  # environment.MARKER (not imported: it imports installer)
_MANIFEST = "wheelhouse.json"  # wheelhouse.MANIFEST


@dataclass(frozen=True, slots=True)
class Inode:
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
class Inventory:
    root: Path
    walk: bool = True  # whether to read every file's inode (sizes); not needed to decide
    entries: dict[str, Entry] = field(default_factory=dict)
    inodes: dict[tuple[int, int], Inode] = field(default_factory=dict)
    du_kind: dict[tuple[int, int], str] = field(default_factory=dict)
    foreign: list[tuple[Path, int]] = field(default_factory=list)

    def add(self, entry: Entry) -> Entry:
        if self.walk:
            for path in entry.paths:
                self._take(path, entry.inodes)
        self.entries[entry.id] = entry
        return entry

    def _take(self, path: Path, into: dict[tuple[int, int], int]) -> None:
        for ident, info in walk_inodes(path):
            self.inodes.setdefault(ident, info)
            into[ident] = into.get(ident, 0) + 1

    def count(self, path: Path, kind: str) -> None:
        """Attribute every inode under ``path`` not yet counted to the ``du`` kind ``kind``."""
        for ident, info in walk_inodes(path):
            self.inodes.setdefault(ident, info)
            self.du_kind.setdefault(ident, kind)

    def count_entry(self, entry: Entry, kind: str) -> None:
        """:meth:`count` for an entry, from the inodes read when it was added."""
        for ident in entry.inodes:
            self.du_kind.setdefault(ident, kind)

    def size(self, idents: Iterable[tuple[int, int]]) -> int:
        return sum(self.inodes[i].nbytes for i in set(idents))


def walk_inodes(path: Path) -> Iterator[tuple[tuple[int, int], Inode]]:
    """Every inode under ``path`` (itself included), never following symbolic links."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    is_dir = stat.S_ISDIR(st.st_mode)
    yield (st.st_dev, st.st_ino), Inode(st.st_blocks * 512, st.st_nlink, is_dir)
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
                yield (st.st_dev, st.st_ino), Inode(st.st_blocks * 512, st.st_nlink, directory)
                if directory:
                    stack.append(entry.path)


def latest_mtime(*paths: Path) -> float:
    """The latest mtime of the paths that exist (0 when none does)."""
    latest = 0.0
    for path in paths:
        with contextlib.suppress(OSError):
            latest = max(latest, os.lstat(path).st_mtime)
    return latest


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _subdirs(directory: Path, pattern: re.Pattern[str]) -> list[Path]:
    """The real directories (not links) in ``directory`` whose names match ``pattern``."""
    return [p for p in children(directory, pattern) if p.is_dir() and not p.is_symlink()]


def children(directory: Path, pattern: re.Pattern[str], suffix: str = "") -> list[Path]:
    if not real_dir(directory):
        return []
    found = []
    for name in names_in(directory):
        if name.endswith(suffix) and pattern.fullmatch(
            name.removesuffix(suffix) if suffix else name
        ):
            found.append(directory / name)
    return found


def names_in(directory: Path) -> list[str]:
    """The sorted names in ``directory``; none when it is gone (another gc, verify --repair)."""
    try:
        return sorted(p.name for p in directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def lease_used(store: Store, lease: str, key: str) -> float:
    return latest_mtime(store.leases_dir() / f"{lease}-{key}{LOCK_SUFFIX}")


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


def take_inventory(store: Store, *, walk: bool = True) -> Inventory:
    """Every removable entry of the store with its references, last use and (``walk``) inodes."""
    root = store.root
    inv = Inventory(root, walk=walk)
    if not real_dir(root):
        return inv
    blob_paths, named_files = _blob_paths(root)
    builds_by_wheel = _add_builds(inv, root)
    _add_wheelhouses(inv, store, builds_by_wheel)
    _add_environments(inv, store, named_files)
    _add_layers(inv, root)
    _add_sboms(inv, root)
    _add_buildlocks(inv, root)
    _add_apps(inv, root)
    _add_blobs(inv, root, blob_paths)
    return inv


def _blob_paths(root: Path) -> tuple[dict[str, list[Path]], dict[str, set[str]]]:
    """Each blob's paths (its ``named/`` link directories and the blob), and the blobs
    behind each file name in ``named/``."""
    blobs_dir = root / "blobs" / "sha256"
    named_dir = root / "named"
    blob_paths: dict[str, list[Path]] = {}
    for shard in _subdirs(named_dir, re.compile(r"[0-9a-f]{2}")):
        for d in _subdirs(shard, _HEX64):
            blob_paths.setdefault(d.name, []).append(d)
    named_files: dict[str, set[str]] = {}  # file name -> blob digests, from named/
    for sha, dirs in blob_paths.items():
        for d in dirs:
            for name in names_in(d):
                named_files.setdefault(name, set()).add(sha)
    for shard in _subdirs(blobs_dir, re.compile(r"[0-9a-f]{2}")):
        for blob in children(shard, _HEX64):
            if blob.is_file() and not blob.is_symlink():
                blob_paths.setdefault(blob.name, []).append(blob)
    return blob_paths, named_files


def _add_builds(inv: Inventory, root: Path) -> dict[str, set[str]]:
    """Build cache entries; returns which of them made each wheel."""
    builds_by_wheel: dict[str, set[str]] = {}
    for d in _subdirs(root / "built", _HEX32):
        result = read_json(d / "result.json") or {}
        entry = Entry(
            kind="build",
            name=d.name,
            paths=(d,),
            used=latest_mtime(d, d / "result.json", d / "build.log"),
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
    return builds_by_wheel


def _add_wheelhouses(inv: Inventory, store: Store, builds_by_wheel: Mapping[str, set[str]]) -> None:
    """Wheelhouses: each keeps the blobs it lists and the builds that made its wheels."""
    for d in _subdirs(store.root / "wheelhouses", _HEX32):
        manifest = read_json(d / _MANIFEST)
        entry = Entry(
            kind="wheelhouse",
            name=d.name,
            paths=(d,),
            used=max(latest_mtime(d, d / _MANIFEST), lease_used(store, "wheelhouse", d.name)),
        )
        for sha in _manifest_shas(manifest):
            entry.refs.add(f"blob:{sha}")
            entry.refs.update(builds_by_wheel.get(sha, ()))
        inv.add(entry)


def _add_environments(inv: Inventory, store: Store, named_files: Mapping[str, set[str]]) -> None:
    """Environments, and build environments (which keep the blobs of the wheels in them)."""
    for d in _subdirs(store.root / "envs", re.compile(r"[0-9a-f]{32}|build-[0-9a-f]{28}")):
        marker = read_json(d / ENV_MARKER)
        if _BUILD_ENV.fullmatch(d.name):
            entry = Entry(
                kind="build-environment",
                name=d.name,
                paths=(d,),
                used=latest_mtime(d, d / ENV_MARKER),
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
                used=max(latest_mtime(d, d / ENV_MARKER), lease_used(store, "env", d.name)),
                wheelhouse=house if isinstance(house, str) else None,
            )
        inv.add(entry)


def _add_layers(inv: Inventory, root: Path) -> None:
    """Image layers made from environments: each keeps its blob."""
    for record in children(root / "oci" / "env-layers", _HEX32, ".json"):
        data = read_json(record) or {}
        entry = Entry(kind="layer", name=record.stem, paths=(record,), used=latest_mtime(record))
        digest = data.get("digest")
        if isinstance(digest, str) and digest.startswith("sha256:"):
            entry.refs.add(f"blob:{digest.removeprefix('sha256:')}")
        inv.add(entry)


SBOM_DIRS = (SBOM_CACHE, IMAGE_SBOM_CACHE)


def _add_sboms(inv: Inventory, root: Path) -> None:
    """The bills of materials the store keeps (files a user put beside them are not)."""
    for where in SBOM_DIRS:
        for path in children(root / where, _HEX64, ".cdx.json"):
            if path.is_file() and not path.is_symlink():
                name = f"{where}/{path.name}"
                inv.add(Entry(kind="sbom", name=name, paths=(path,), used=latest_mtime(path)))


def _add_buildlocks(inv: Inventory, root: Path) -> None:
    """Cached locks of build requirements."""
    for d in _subdirs(root / "buildlocks", _HEX32):
        inv.add(
            Entry(
                kind="buildlock",
                name=d.name,
                paths=(d,),
                used=latest_mtime(d, *(d / n for n in names_in(d))),
            )
        )


def _add_apps(inv: Inventory, root: Path) -> None:
    """App records: each keeps its app's last wheelhouse."""
    for record in children(root / "apps", HEX24, ".json"):
        data = read_json(record) or {}
        app, key = data.get("app"), data.get("key")
        entry = Entry(
            kind="app",
            name=record.stem,
            paths=(record,),
            used=latest_mtime(record),
            app=app if isinstance(app, str) else None,
            wheelhouse=key if isinstance(key, str) else None,
        )
        if entry.wheelhouse:
            entry.refs.add(f"wheelhouse:{entry.wheelhouse}")
        inv.add(entry)


def _add_blobs(inv: Inventory, root: Path, blob_paths: Mapping[str, list[Path]]) -> None:
    """Blobs, each with its ``named/`` links."""
    blobs_dir = root / "blobs" / "sha256"
    named_dir = root / "named"
    for sha, paths in blob_paths.items():
        # named/ links go first: a blob without them is complete, links without it are not.
        ordered = tuple(sorted(paths, key=lambda p: not str(p).startswith(str(named_dir))))
        blob = blobs_dir / sha[:2] / sha
        links = [d / n for d in paths if d != blob for n in names_in(d)]
        inv.add(Entry(kind="blob", name=sha, paths=ordered, used=latest_mtime(blob, *links)))


def live_app(entry: Entry) -> bool:
    """An app record whose app is still there: a root of what is kept."""
    return entry.kind == "app" and entry.app is not None and Path(entry.app).is_dir()


def needed_by_apps(inv: Inventory) -> set[str]:
    """What the apps' last builds need: the closure of the live app records' references."""
    needed: set[str] = set()
    todo = [e.id for e in inv.entries.values() if live_app(e)]
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


def references_of(inv: Inventory, start: Entry) -> set[str]:
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


def scratch_entries(tmp: Path) -> Iterator[str]:
    """Names of the scratch entries in ``tmp`` (their ``.lock`` files not counted)."""
    if not real_dir(tmp):
        return
    for name in names_in(tmp):
        if not name.endswith(LOCK_SUFFIX):
            yield name
