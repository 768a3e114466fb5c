"""Removing what nothing needs from the store (``store gc``); ``store du`` is in du.py.

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
    before what refers to it. The bills of materials the store keeps (``sbom/``,
    ``oci/sbom/``) are a cache that nothing refers to: they go by age or size like the
    rest, and are made again when next needed.

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

What environments outside the store use
    An environment installed in the shared layout runs on a stored one
    (:mod:`wheelbarrow.store.dependents` holds the store's records of them): a stored
    environment with a live record is kept like what an app's last build needs, whatever its
    age or the size limit, and is checked again under its exclusive lease. Records whose
    directory is gone or holds something else are pruned under that lease, so that gc after
    the environment is deleted removes what it used.

Nothing half-removed
    Every entry leaves its place by one rename into a scratch directory of
    the store's ``tmp/`` (a blob's ``named/`` links first, then the blob), and
    is deleted from there. A killed gc leaves only scratch, which the next
    run proves stale and removes. Only names wheelbarrow gives are touched:
    anything else in the store, and anything at its root that wheelbarrow
    does not make, is left alone (``store du`` lists it).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.scratch import LOCK_SUFFIX, _looks_like_scratch, clean_stale, try_exclusive
from wheelbarrow.store import dependents
from wheelbarrow.store.inventory import (
    ENV_MARKER,
    HEX24,
    Entry,
    Inventory,
    children,
    latest_mtime,
    lease_used,
    live_app,
    needed_by_apps,
    read_json,
    real_dir,
    scratch_entries,
    take_inventory,
    walk_inodes,
)
from wheelbarrow.store.store import BUILDING_LEASE, Store

DEFAULT_OLDER_THAN = 7 * 86400.0

# An entry's kind (for gc), the ``du`` kind it counts under, its order among removals.
_RANK = {
    "app": 0,
    "wheelhouse": 1,
    "environment": 1,
    "layer": 1,
    "sbom": 1,
    "buildlock": 1,
    "build": 2,
    "build-environment": 3,
    "blob": 4,
}
_PER_ENTRY_LEASE = {"wheelhouse": "wheelhouse", "environment": "env"}
_SWEPT = frozenset({"layer", "buildlock", "build", "build-environment", "blob"})
# Kinds nothing refers to and nobody holds: a reader finds the file whole or not at all (it
# was written by a rename), and makes it again when it is gone.
_UNGUARDED = frozenset({"sbom"})

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
    inv: Inventory,
    policy: Policy,
    now: float,
    total: int,
    store_links: Mapping[tuple[int, int], int],
    shared: AbstractSet[str] = frozenset(),
) -> tuple[list[Entry], set[str]]:
    """The entries to remove, referrers before what they refer to; and what is needed (the
    apps' last builds, and the ``shared`` stored environments that environments run on)."""
    needed = needed_by_apps(inv) | shared
    used = _effective_use(inv)
    candidates = sorted(
        (
            e
            for e in inv.entries.values()
            if e.id not in needed and not live_app(e) and not (e.kind == "app" and e.app is None)
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
    inv = take_inventory(store)
    links, total = _store_links(store.root)
    plan, needed = _plan(inv, policy, now, total, links, _shared(store, inv))
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
    if not dry_run:
        _prune_dependents(store)
    freed = _Freed(inv, links)
    removed = [
        _removed(e, freed.remove(e)) for e in sorted(done, key=lambda e: (_RANK[e.kind], e.id))
    ]
    cleaned = stale if dry_run else clean_stale(store.root / "tmp", "")
    scratch = [
        Removed(
            kind="scratch", name=path.name, path=path, nbytes=sizes[path], used=latest_mtime(path)
        )
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
        elif entry.kind in _UNGUARDED:
            why = _rename_away(entry, holder)
        else:
            continue  # swept below, under the building lease
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
    return sum(info.nbytes for _, info in walk_inodes(path))


def _removed(entry: Entry, nbytes: int) -> Removed:
    return Removed(
        kind=entry.kind, name=entry.name, path=entry.paths[-1], nbytes=nbytes, used=entry.used
    )


def _app_keys(store: Store) -> set[str]:
    """The last wheelhouse of every app whose directory exists, read now."""
    keys = set()
    for record in children(store.root / "apps", HEX24, ".json"):
        data = read_json(record) or {}
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
        if lease_used(store, lease, entry.name) > since:
            return "used since gc started"
        keys = _app_keys(store)
        if entry.kind == "wheelhouse" and entry.name in keys:
            return "an app's last build needs it"
        if entry.kind == "environment":
            marker = read_json(entry.paths[0] / ENV_MARKER) or {}
            if marker.get("wheelhouse") in keys:
                return "an app's last build needs it"
            users = dependents.live(store.root, entry.name)
            if users:
                return f"the environment at {users[0]} runs on it"
        return _rename_away(entry, holder)


def _shared(store: Store, inv: Inventory) -> set[str]:
    """The stored environments that environments outside the store run on (their ids)."""
    return {
        f"environment:{key}"
        for key in dependents.keys(store.root)
        if f"environment:{key}" in inv.entries and dependents.live(store.root, key)
    }


def _prune_dependents(store: Store) -> None:
    """Drop the records of environments that are gone or hold something else now, each under
    its stored environment's exclusive lease (an install holds it until its record is true)."""
    for key in dependents.keys(store.root):
        with try_exclusive(store.leases_dir(), f"env-{key}") as got:
            if got:
                dependents.prune(store.root, key)


def _sweep(store: Store, plan: list[Entry], holder: Path) -> Iterator[tuple[Entry, str | None]]:
    """Remove build-guarded entries, under the exclusive ``building`` lease, if nothing refers
    to them now: what refers to them is read again from disk, as builds may have finished."""
    fresh = take_inventory(store, walk=False)
    needed = needed_by_apps(fresh)
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
            # One name in the scratch directory, whatever the entry's name holds ("oci/sbom/...").
            path.rename(holder / f"{entry.kind}-{entry.name.replace('/', '_')}-{i}")
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
    names = set(scratch_entries(tmp)) if real_dir(tmp) else set()
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


def _effective_use(inv: Inventory) -> dict[str, float]:
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

    def __init__(self, inv: Inventory, store_links: Mapping[tuple[int, int], int]) -> None:
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
    if real_dir(root):
        for ident, info in walk_inodes(root):
            if ident not in links:
                total += info.nbytes
            links[ident] = links.get(ident, 0) + 1
    return links, total
