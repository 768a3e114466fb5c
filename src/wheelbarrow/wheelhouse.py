"""Building a wheelhouse: fetch what the store lacks, lay it out under its key, index it."""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from wheelbarrow import __version__
from wheelbarrow.errors import StoreError
from wheelbarrow.files import atomic_write_text
from wheelbarrow.key import wheelhouse_key
from wheelbarrow.lockfile import Artefact
from wheelbarrow.report import Reporter
from wheelbarrow.store import Store
from wheelbarrow.target import Target

if TYPE_CHECKING:
    from wheelbarrow.fetch import Fetched

MANIFEST = "wheelhouse.json"
SIMPLE = "simple"


class Fetches(Protocol):
    """What the builder needs from a fetcher (see :class:`wheelbarrow.fetch.Fetcher`)."""

    def fetch(
        self, artefacts: Sequence[Artefact], store: Store, reporter: Reporter
    ) -> Sequence[Fetched]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A package whose wheel differs from the app's previous wheelhouse."""

    name: str
    old: str | None
    new: str | None

    def __str__(self) -> str:
        if self.old is None:
            return f"{self.name} {self.new} (added)"
        if self.new is None:
            return f"{self.name} {self.old} (removed)"
        return f"{self.name} {self.old} -> {self.new}"


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
            "changes": [{"name": c.name, "old": c.old, "new": c.new} for c in self.changes],
            "fetched": list(self.fetched),
            "fetched_bytes": self.fetched_bytes,
            "reused": list(self.reused),
            "seconds": round(self.seconds, 3),
        }


def manifest_of(store: Store, key: str) -> dict[str, Any] | None:
    """The manifest of a complete wheelhouse, or None when there is none under ``key``."""
    try:
        return json.loads((store.wheelhouse(key) / MANIFEST).read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


def build_wheelhouse(
    artefacts: Sequence[Artefact],
    target: Target,
    *,
    store: Store,
    fetcher: Fetches,
    reporter: Reporter,
    settings: Mapping[str, object],
    previous_key: str | None = None,
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
    changes = _changes(previous, artefacts) if previous else ()
    with store.lock(f"wheelhouse-{key}"):
        if manifest_of(store, key) is not None:  # built by another process meanwhile
            return report(status="up-to-date", changes=changes, seconds=clock() - start)
        missing = [a for a in artefacts if not store.has(a.sha256)]
        reused = tuple(a.filename for a in artefacts if a not in missing)
        if missing:
            reporter.message(
                "step",
                f"Fetching {len(missing)} wheel(s)"
                + (f", {len(reused)} already in the store" if reused else ""),
            )
        fetched = fetcher.fetch(missing, store, reporter)
        _materialise(artefacts, target, key, store)
    return report(
        status="built",
        changes=changes,
        fetched=tuple(a.filename for a in missing),
        fetched_bytes=sum(f.nbytes for f in fetched),
        reused=reused,
        seconds=clock() - start,
    )


def _materialise(artefacts: Sequence[Artefact], target: Target, key: str, store: Store) -> None:
    """Lay out the wheelhouse in a scratch directory, then rename it into place whole."""
    from wheelbarrow.index import IndexFile, write_index  # not on the no-op path

    final = store.wheelhouse(key)
    work = Path(os.fspath(store.tmp_dir())) / f"wheelhouse-{key}-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    try:
        files = []
        for a in artefacts:
            blob = store.blob(a.sha256)
            if not blob.is_file():
                raise StoreError(f"{a.filename}: missing from the store after fetching")
            _link_or_copy(blob, work / a.filename)
            files.append(
                IndexFile(
                    filename=a.filename,
                    sha256=a.sha256,
                    href=f"../../{a.filename}",
                    size=blob.stat().st_size,
                )
            )
        write_index(files, work / SIMPLE)
        manifest = {
            "version": 1,
            "key": key,
            "created-by": f"wheelbarrow {__version__}",
            "target": target.as_dict(),
            "wheels": [
                {"name": a.name, "version": a.version, "filename": a.filename, "sha256": a.sha256}
                for a in artefacts
            ],
        }
        # The manifest is written last: its presence marks a complete wheelhouse.
        atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(work, final)
        except OSError:
            if not (final / MANIFEST).is_file():
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _changes(previous: Mapping[str, Any], artefacts: Sequence[Artefact]) -> tuple[Change, ...]:
    old = {w["name"]: (w["version"], w["sha256"]) for w in previous.get("wheels", [])}
    new = {a.name: (a.version, a.sha256) for a in artefacts}
    changes = []
    for name in sorted(old.keys() | new.keys()):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        changes.append(
            Change(
                name=name,
                old=before[0] if before else None,
                new=after[0] if after else None,
            )
        )
    return tuple(changes)


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
