"""Building a wheelhouse: fetch what the store lacks, lay it out under its key, index it."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from wheelbarrow import __version__
from wheelbarrow._core.errors import StoreError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.text import agree, plural
from wheelbarrow.app.target import Target
from wheelbarrow.lock.key import wheelhouse_key
from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from wheelbarrow.build.context import Built
    from wheelbarrow.lock.plan import Plan
    from wheelbarrow.store.fetch import Fetches

BuildSources = Callable[[Sequence[Artefact]], Sequence["Built"]]

MANIFEST = "wheelhouse.json"
SIMPLE = "simple"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A package whose wheel differs from the app's previous wheelhouse.

    ``detail`` says what changed when the version did not (``rebuilt: build
    settings changed``, ``same version, new file``).
    """

    name: str
    old: str | None
    new: str | None
    detail: str | None = None

    def __str__(self) -> str:
        if self.old is None:
            return f"{self.name} {self.new} (added)"
        if self.new is None:
            return f"{self.name} {self.old} (removed)"
        if self.old != self.new:
            return f"{self.name} {self.old} -> {self.new}"
        return f"{self.name} {self.new} ({self.detail or 'new file'})"

    def as_json(self) -> dict[str, str | None]:
        """For the build report."""
        return {"name": self.name, "old": self.old, "new": self.new, "detail": self.detail}


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildReport:
    """What ``build`` did, for the CLI to render as text or JSON."""

    key: str
    path: Path
    status: Literal["up-to-date", "built"]
    target: Target
    packages: int
    changes: tuple[Change, ...] = ()
    fetched: tuple[str, ...] = ()
    fetched_bytes: int = 0
    reused: tuple[str, ...] = field(default=())
    built: tuple[Built, ...] = ()
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        """The versioned machine-readable form (``--json``)."""
        return {
            "version": 1,
            "key": self.key,
            "wheelhouse": str(self.path),
            "status": self.status,
            "target": self.target.as_dict(),
            "packages": self.packages,
            "changes": [c.as_json() for c in self.changes],
            "fetched": list(self.fetched),
            "fetched_bytes": self.fetched_bytes,
            "reused": list(self.reused),
            "built": [b.as_json() for b in self.built],
            "seconds": round(self.seconds, 3),
        }


def manifest_of(store: Store, key: str) -> dict[str, Any] | None:
    """The manifest of a complete wheelhouse, or None when there is none under ``key``."""
    try:
        manifest: dict[str, Any] = json.loads(
            (store.wheelhouse(key) / MANIFEST).read_text(encoding="utf-8")
        )
    except FileNotFoundError:
        return None
    return manifest


def build_wheelhouse(
    artefacts: Sequence[Artefact],
    target: Target,
    *,
    store: Store,
    fetcher: Fetches,
    reporter: Reporter,
    settings: Mapping[str, object],
    previous_key: str | None = None,
    build_sources: BuildSources | None = None,
    lock_sha256: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BuildReport:
    """Make the wheelhouse for ``artefacts`` exist in ``store`` and say what that took.

    When the key is already complete this returns at once without any
    network access. Otherwise only blobs missing from the store are fetched.
    """
    start = clock()
    key = wheelhouse_key(artefacts, target, settings)
    report = functools.partial(
        BuildReport, key=key, path=store.wheelhouse(key), target=target, packages=len(artefacts)
    )
    if manifest_of(store, key) is not None:
        return report(status="up-to-date", seconds=clock() - start)

    previous = manifest_of(store, previous_key) if previous_key else None
    with store.lock(f"wheelhouse-{key}"):
        done = manifest_of(store, key)
        if done is not None:  # built by another process meanwhile
            changes = _changes(previous, done.get("wheels", [])) if previous else ()
            return report(status="up-to-date", changes=changes, seconds=clock() - start)
        files = [a for a in artefacts if a.is_file]
        missing = [a for a in files if not store.has(a.sha256)]
        reused = tuple(a.filename for a in files if a not in missing)
        if missing:
            reporter.message(
                "step",
                f"Fetching {plural(len(missing), 'file')}"
                + (f", {len(reused)} already in the store" if reused else ""),
            )
        fetched = fetcher.fetch(missing, store, reporter)
        built = _build_sources(artefacts, build_sources)
        entries = _entries(artefacts, built)
        _lay_out_wheelhouse(entries, target, key, store, lock_sha256)
    changes = _changes(previous, entries, built) if previous else ()
    return report(
        status="built",
        changes=changes,
        fetched=tuple(a.filename for a in missing),
        fetched_bytes=sum(f.nbytes for f in fetched),
        reused=reused,
        built=tuple(built),
        seconds=clock() - start,
    )


def _build_sources(
    artefacts: Sequence[Artefact], build_sources: BuildSources | None
) -> Sequence[Built]:
    """The wheels built from the artefacts that are sources; refused when no builder is set up."""
    sources = [a for a in artefacts if a.kind != "wheel"]
    if not sources:
        return ()
    if build_sources is None:
        raise StoreError(
            f"{plural(len(sources), 'package')} "
            f"{agree(len(sources), 'needs', 'need')} a source build, and none is set up: "
            + ", ".join(f"{a.label} ({a.filename if a.is_file else a.location})" for a in sources),
            hint="provide wheels for them, or build with `wheelbarrow build`, which "
            "builds from source",
        )
    return build_sources(sources)


def _entries(artefacts: Sequence[Artefact], built: Sequence[Built]) -> list[dict[str, Any]]:
    """The manifest's wheel entries: downloaded wheels, and wheels built from sources."""
    by_source = {b.source.sha256: b for b in built}
    entries: list[dict[str, Any]] = []
    for a in artefacts:
        entry: dict[str, Any] = {"name": a.name, "version": a.version}
        if a.kind == "wheel":
            entry.update(filename=a.filename, sha256=a.sha256)
        else:
            b = by_source[a.sha256]
            entry.update(
                # A local directory's lock entry may have no version; the wheel has one.
                version=b.version,
                filename=b.wheel,
                sha256=b.sha256,
                source={"kind": a.kind, "filename": a.filename, "sha256": a.sha256},
                repair=b.repair,
            )
        entries.append(entry)
    return entries


def _lay_out_wheelhouse(
    entries: Sequence[Mapping[str, Any]],
    target: Target,
    key: str,
    store: Store,
    lock_sha256: str | None,
) -> None:
    """Lay out the wheelhouse in a scratch directory, then rename it into place whole."""
    from wheelbarrow.wheelhouse.index import (  # not on the no-op path
        IndexFile,
        write_index,
        write_metadata_file,
    )

    final = store.wheelhouse(key)
    with store.scratch(f"wheelhouse-{key[:16]}-") as work:
        files = []
        for entry in entries:
            filename, sha256 = entry["filename"], entry["sha256"]
            blob = store.blob(sha256)
            if not blob.is_file():
                raise StoreError(f"{filename}: missing from the store after fetching")
            _link_or_copy(blob, work / filename)
            files.append(
                IndexFile(
                    filename=filename,
                    sha256=sha256,
                    href=f"../../{filename}",
                    size=blob.stat().st_size,
                )
            )
        # A flipped byte in a stored blob stops here, before any wheelhouse holds it.
        from wheelbarrow.environment.verify import check_linked_blobs

        check_linked_blobs(store, work, [(f.filename, f.sha256) for f in files])
        # PEP 658 metadata beside each wheel: resolvers read it instead of the whole wheel.
        files = [replace(f, metadata_sha256=write_metadata_file(work / f.filename)) for f in files]
        write_index(files, work / SIMPLE)
        manifest = {
            "version": 1,
            "key": key,
            "created-by": f"wheelbarrow {__version__}",
            "target": target.as_dict(),
            # Which lock this was built from: lets install find it without
            # knowing the build's settings (see find_wheelhouse).
            "lock-sha256": lock_sha256,
            "wheels": list(entries),
        }
        # The manifest is written last: its presence marks a complete wheelhouse.
        atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists() and not (final / MANIFEST).is_file():
            # Without its manifest it never was complete (or was damaged): replace it.
            os.rename(final, work / ".damaged")
            shutil.rmtree(work / ".damaged")
        try:
            os.rename(work, final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _changes(
    previous: Mapping[str, Any],
    entries: Sequence[Mapping[str, Any]],
    built: Sequence[Built] = (),
) -> tuple[Change, ...]:
    """What differs from the previous wheelhouse, package by package, by the wheels' content.

    Both sides are manifest entries, so a package built from source is compared
    by the wheel it became: reused from the build cache it is no change, rebuilt
    it is one even at the same version.
    """
    old = {w["name"]: w for w in previous.get("wheels", [])}
    new = {w["name"]: w for w in entries}
    builds = {b.sha256: b for b in built}
    changes = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before is not None and after is not None:
            if before.get("sha256") == after.get("sha256"):
                continue
            detail = None
            if before.get("version") == after.get("version"):
                detail = _what_changed(before, after, builds)
            changes.append(
                Change(name=name, old=before.get("version"), new=after["version"], detail=detail)
            )
        elif after is not None:
            changes.append(Change(name=name, old=None, new=after["version"]))
        elif before is not None:
            changes.append(Change(name=name, old=before.get("version"), new=None))
    return tuple(changes)


def _what_changed(
    before: Mapping[str, Any], after: Mapping[str, Any], builds: Mapping[str, Built]
) -> str:
    """Why a package of the same version has another wheel than in the previous wheelhouse."""
    if "source" not in after:
        return "now a downloaded wheel" if "source" in before else "same version, new file"
    if "source" not in before:
        return "now built from source"
    build = builds.get(after["sha256"])
    if build is not None and not build.reused:
        return f"rebuilt: {build.why}" if build.why else "rebuilt"
    if before["source"].get("sha256") != after["source"].get("sha256"):
        return "new source, wheel from the build cache"
    return "built with other settings, wheel from the build cache"


def record_app_build(store: Store, app_root: Path, key: str) -> None:
    """Remember the app's latest wheelhouse, so the next build can say what changed."""
    atomic_write_text(
        store.app_state(app_root), json.dumps({"app": str(app_root.resolve()), "key": key}) + "\n"
    )


def previous_app_key(store: Store, app_root: Path) -> str | None:
    """The key recorded by :func:`record_app_build`, if any."""
    try:
        data = json.loads(store.app_state(app_root).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    key = data.get("key")
    return key if isinstance(key, str) else None


def find_wheelhouse(
    store: Store,
    key: str,
    *,
    app_root: Path,
    lock_sha256: str,
    target: Target,
    directories: Sequence[Artefact] = (),
) -> tuple[str, dict[str, Any]] | None:
    """The app's last wheelhouse if it was built from this lock and target and from the local
    project ``directories`` as they are now, else ``key``'s.

    ``install`` cannot know the build's settings (``--no-binary``, repair
    mode), which are part of the key; the lock and target it does know, and
    the app's last build is what the user last asked for. A local project is
    locked by its path, not its content, so the lock alone cannot tell that one
    was edited since that build: its tree's digest must be the one the build
    recorded, or the wheelhouse would ship the old code.
    """
    last = _last_build(store, app_root)
    if (
        last is not None
        and last[1].get("lock-sha256") == lock_sha256
        and last[1].get("target") == target.as_dict()
        and not _edited_since(last[1], directories)
    ):
        return last
    manifest = manifest_of(store, key)
    return (key, manifest) if manifest is not None else None


def _last_build(store: Store, app_root: Path) -> tuple[str, dict[str, Any]] | None:
    """The key and manifest of the app's last wheelhouse, if it is still in the store."""
    previous = previous_app_key(store, app_root)
    manifest = manifest_of(store, previous) if previous else None
    return (previous, manifest) if previous is not None and manifest is not None else None


def refuse_edited_local_projects(store: Store, plan: Plan) -> None:
    """For a plan with no wheelhouse: when the app's last one is missing only because a local
    project was edited since it was built, say so, naming the projects, and what to run."""
    last = _last_build(store, plan.app.root)
    edited = _edited_since(last[1], local_projects(plan)) if last is not None else []
    if edited:
        names = ", ".join(f"{a.name} ({a.path})" for a in edited)
        raise StoreError(
            f"{names}: edited since the last build of {plan.app.root}, whose wheelhouse "
            "has the code as it was",
            hint=f"run `wheelbarrow build {plan.app.root}` to build it again "
            "(this command never builds)",
        )


def _edited_since(manifest: dict[str, Any], directories: Sequence[Artefact]) -> list[Artefact]:
    """The local projects among ``directories`` whose tree is not the one the wheelhouse of
    ``manifest`` was built from."""
    built = {
        str(w.get("name")): (w.get("source") or {}).get("sha256")
        for w in manifest.get("wheels", [])
        if isinstance(w, dict)
    }
    return [d for d in directories if built.get(d.name) != d.sha256]


def local_projects(plan: Plan) -> tuple[Artefact, ...]:
    """The plan's local project directories (built from their trees, locked by their paths)."""
    return tuple(a for a in plan.artefacts if a.kind == "directory")


def require_wheelhouse(store: Store, plan: Plan) -> tuple[str, dict[str, Any]]:
    """The key and manifest of the plan's wheelhouse, which must exist (never builds it)."""
    found = find_wheelhouse(
        store,
        plan.key,
        app_root=plan.app.root,
        lock_sha256=plan.lock.sha256,
        target=plan.target,
        directories=local_projects(plan),
    )
    if found is None:
        refuse_edited_local_projects(store, plan)
        raise StoreError(
            f"no wheelhouse for {plan.lock.path} in {store.root} (key {plan.key})",
            hint=f"run `wheelbarrow build {plan.app.root}` first (this command never downloads)",
        )
    return found
