"""What takes the store's space (``store du``): by kind and by app, each file counted once."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wheelbarrow.store.inventory import (
    Entry,
    Inode,
    Inventory,
    live_app,
    names_in,
    real_dir,
    references_of,
    scratch_entries,
    take_inventory,
    walk_inodes,
)
from wheelbarrow.store.store import Store

# The kinds ``store du`` reports, in the order a shared file is counted (once, in the first).
KINDS = (
    "blobs",
    "wheelhouses",
    "environments",
    "build environments",
    "build cache and logs",
    "image layers",
    "bills of materials",
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
        "sbom",
        "runtimes",
        "tmp",
        "locks",
    }
)

_ZIP_MAGIC = b"PK\x03\x04"


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


def _blob_du_kind(inv: Inventory, entry: Entry, distributions: set[str]) -> str:
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
    "sbom": "bills of materials",
    "app": "other",
}


def usage(store: Store) -> Usage:
    """What takes the space: by kind and by app, each file counted once however many its links."""
    inv = take_inventory(store)
    root = store.root
    per_kind = _entries_by_kind(inv)
    # Blobs first: a wheelhouse's wheels are links to them, and count there.
    for kind in KINDS:
        for entry in per_kind[kind]:
            inv.count_entry(entry, kind)
    inv.count(root / "build-history", "build cache and logs")
    inv.count(root / "tmp", "tmp")
    foreign = _count_the_rest(inv, root)
    kinds = _kind_usage(inv, per_kind, root)
    apps = _app_usage(inv)
    total = sum(k.nbytes for k in kinds) + sum(n for _, n in foreign)
    return Usage(
        store=root, nbytes=total, kinds=tuple(kinds), apps=tuple(apps), foreign=tuple(foreign)
    )


def _entries_by_kind(inv: Inventory) -> dict[str, list[Entry]]:
    """The inventory's entries under the ``du`` kind each counts in."""
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
    return per_kind


def _count_the_rest(inv: Inventory, root: Path) -> list[tuple[Path, int]]:
    """Count the store's root and the rest of what wheelbarrow makes there as ``other``;
    returns what it does not make, with the size of each."""
    foreign: list[tuple[Path, int]] = []
    if real_dir(root):
        st = os.lstat(root)
        inv.inodes.setdefault((st.st_dev, st.st_ino), Inode(st.st_blocks * 512, st.st_nlink, True))
        inv.du_kind.setdefault((st.st_dev, st.st_ino), "other")
        for name in names_in(root):
            path = root / name
            if name in KNOWN and real_dir(path):
                inv.count(path, "other")
            else:
                foreign.append((path, sum(i.nbytes for _, i in walk_inodes(path))))
    return foreign


def _kind_usage(inv: Inventory, per_kind: Mapping[str, list[Entry]], root: Path) -> list[KindUsage]:
    kinds = []
    for kind in KINDS:
        nbytes = sum(inv.inodes[i].nbytes for i, k in inv.du_kind.items() if k == kind)
        entries = len(per_kind[kind])
        if kind == "tmp":
            entries = sum(1 for _ in scratch_entries(root / "tmp"))
        kinds.append(KindUsage(kind=kind, nbytes=nbytes, entries=entries))
    return kinds


def _app_usage(inv: Inventory) -> list[AppUsage]:
    """Each app's last build: its wheelhouse, environments and all they refer to."""
    apps = []
    for entry in sorted(
        (e for e in inv.entries.values() if e.kind == "app"), key=lambda e: e.app or ""
    ):
        closure = references_of(inv, entry)
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
                app_present=live_app(entry),
                wheelhouse=entry.wheelhouse,
                wheelhouse_present=f"wheelhouse:{entry.wheelhouse}" in inv.entries,
                environments=tuple(envs),
                nbytes=inv.size(idents),
            )
        )
    return apps
