"""Checking the whole store: blobs by their names, environments by their seals and RECORDs,
wheelhouses by their manifests; and removing what is bad, so that it is made again."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from wheelbarrow._core.errors import StoreError
from wheelbarrow._core.report import Reporter
from wheelbarrow.environment.seal import SealedFile, read_seal, scan_tree, sha256_file
from wheelbarrow.store.dependents import live
from wheelbarrow.store.store import Store

Kind = Literal["blob", "named", "wheelhouse", "environment"]
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MARKER = ".wheelbarrow-env.json"  # environment.MARKER (not imported: it imports installer)
_MANIFEST = "wheelhouse.json"  # wheelhouse.MANIFEST


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing in the store that is not what it should be."""

    kind: Kind
    path: str  # relative to the store's root
    problem: str

    def as_json(self) -> dict[str, str]:
        """For ``--json``."""
        return {"kind": self.kind, "path": self.path, "problem": self.problem}


@dataclass(frozen=True, slots=True, kw_only=True)
class Removal:
    """An entry ``--repair`` removed, and why."""

    path: str  # relative to the store's root
    why: str

    def as_json(self) -> dict[str, str]:
        """For ``--json``."""
        return {"path": self.path, "why": self.why}


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """What ``verify`` found, and with ``repair`` what it removed (store-relative paths)."""

    store: Path
    counts: dict[str, int]
    hashed_bytes: int
    problems: tuple[Problem, ...]
    removed: tuple[Removal, ...] = ()
    seconds: float = 0.0

    @property
    def remaining(self) -> tuple[Problem, ...]:
        """The problems whose entry is still in the store."""
        gone = {r.path for r in self.removed}
        return tuple(p for p in self.problems if _entry_of(p.path) not in gone)

    def as_json(self) -> dict[str, object]:
        """The versioned machine-readable form (``--json``)."""
        return {
            "version": 1,
            "store": str(self.store),
            "checked": dict(self.counts),
            "hashed_bytes": self.hashed_bytes,
            "problems": [p.as_json() for p in self.problems],
            "removed": [r.as_json() for r in self.removed],
            "clean": not self.remaining,
            "seconds": round(self.seconds, 3),
        }


def _entry_of(rel: str) -> str:
    """The removable entry a problem's path is in: ``envs/KEY``, ``wheelhouses/KEY``, a blob."""
    parts = rel.split("/")
    if parts[0] in ("envs", "wheelhouses"):
        return "/".join(parts[:2])
    if parts[0] == "named":
        return "/".join(parts[:3])
    return rel


@dataclass
class _Progress:
    """Bytes hashed, told to the reporter as a bar (files and bytes) on a terminal."""

    reporter: Reporter
    done: int = 0

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        self.reporter.download_advanced(nbytes)


@dataclass
class _Found:
    problems: list[Problem] = field(default_factory=list)
    bad_blobs: set[str] = field(default_factory=set)
    good_inodes: dict[tuple[int, int], str] = field(default_factory=dict)  # (dev, ino) -> sha256


# Long by its docstring alone: each check is a function of its own below.
def verify_store(
    store: Store,
    reporter: Reporter,
    *,
    repair: bool = False,
    workers: int = 4,
    clock: Callable[[], float] = time.monotonic,
) -> VerifyReport:
    """Check every blob, named link, wheelhouse and environment of ``store``.

    Every blob is hashed and compared with its name; every wheelhouse's files
    with its manifest (a hard link to a blob already hashed is not hashed
    again); every environment with its seal, hashing every file, and its
    RECORDs with what the seal holds. With ``repair``, a bad blob goes, and
    with it the wheelhouses and environments made from it; bad wheelhouses and
    environments go too; the next build or install makes them again. Nothing
    outside the store is read or touched (symlinks are never followed).
    """
    start = clock()
    root = store.root
    if not root.is_dir():
        raise StoreError(
            f"{root}: no store here", hint="pass --store DIR, or build something first"
        )
    found = _Found()
    blobs = _list_blobs(root)
    named = _list_named(root)
    houses = _list(root / "wheelhouses")
    envs = _list(root / "envs")
    counts = {
        "blobs": len(blobs),
        "named": len(named),
        "wheelhouses": len(houses),
        "environments": len(envs),
    }
    total = sum(_size(p) for p in blobs) + sum(_tree_size(p) for p in envs)
    reporter.message(
        "step",
        f"Checking {len(blobs)} blob(s), {len(houses)} wheelhouse(s) and "
        f"{len(envs)} environment(s) in {root}",
    )
    progress = _Progress(reporter)
    reporter.download_started(len(blobs) + len(envs), total)
    try:
        _check_blobs(root, blobs, found, progress, workers)
        _check_named(root, named, found, progress)
        for house in houses:
            _check_wheelhouse(root, house, found, progress)
        for env in envs:
            _check_environment(root, env, found, progress, workers)
    finally:
        reporter.download_finished()
    problems = tuple(found.problems)
    removed: tuple[Removal, ...] = ()
    if repair and problems:
        removed = tuple(_repair(store, problems, found, houses, envs))
    return VerifyReport(
        store=root,
        counts=counts,
        hashed_bytes=progress.done,
        problems=problems,
        removed=removed,
        seconds=clock() - start,
    )


def _list(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if not p.is_symlink() and p.is_dir())
    except FileNotFoundError:
        return []


def _list_blobs(root: Path) -> list[Path]:
    base = root / "blobs" / "sha256"
    return sorted(p for d in _list(base) for p in d.iterdir())


def _list_named(root: Path) -> list[Path]:
    base = root / "named"
    return sorted(p for d in _list(base) for h in _list(d) for p in h.iterdir())


def _size(path: Path) -> int:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return 0
    return st.st_size if not path.is_symlink() else 0


def _tree_size(root: Path) -> int:
    return sum(st.st_size for st in scan_tree(root).files.values())


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _check_blobs(
    root: Path, blobs: Sequence[Path], found: _Found, progress: _Progress, workers: int
) -> None:
    regular = []
    for blob in blobs:
        name = blob.name
        if blob.is_symlink() or not blob.is_file():
            found.problems.append(
                Problem(kind="blob", path=_rel(root, blob), problem="not a regular file")
            )
        elif not _HEX64.fullmatch(name) or blob.parent.name != name[:2]:
            found.problems.append(
                Problem(kind="blob", path=_rel(root, blob), problem="not named by a sha256")
            )
        else:
            regular.append(blob)

    def one(blob: Path) -> tuple[Path, str, os.stat_result]:
        st = blob.stat()
        return blob, sha256_file(blob), st

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for blob, digest, st in pool.map(one, regular):
            progress.advance(st.st_size)
            if digest == blob.name:
                found.good_inodes[(st.st_dev, st.st_ino)] = digest
            else:
                found.bad_blobs.add(blob.name)
                found.problems.append(
                    Problem(
                        kind="blob",
                        path=_rel(root, blob),
                        problem=f"its content hashes to {digest or 'nothing'}, not its name",
                    )
                )


def _known_digest(path: Path, found: _Found) -> str | None:
    """The sha256 of a file that is a hard link to a blob already hashed, else None."""
    st = path.stat()
    return found.good_inodes.get((st.st_dev, st.st_ino))


def _check_named(root: Path, named: Sequence[Path], found: _Found, progress: _Progress) -> None:
    for path in named:
        sha256 = path.parent.name
        if path.is_symlink() or not path.is_file():
            found.problems.append(
                Problem(kind="named", path=_rel(root, path), problem="not a regular file")
            )
            continue
        digest = _known_digest(path, found)
        if digest is None:
            digest = sha256_file(path)
            progress.advance(path.stat().st_size)
        if digest != sha256:
            # A copy of its own (a hard link to a good blob would have matched): it
            # alone goes, and store.named makes it again from the blob.
            found.problems.append(
                Problem(
                    kind="named",
                    path=_rel(root, path),
                    problem=f"its content hashes to {digest or 'nothing'}, not {sha256}",
                )
            )


def _check_wheelhouse(root: Path, house: Path, found: _Found, progress: _Progress) -> None:
    rel = _rel(root, house)
    try:
        manifest = json.loads((house / _MANIFEST).read_text(encoding="utf-8"))
        wheels = manifest["wheels"]
        entries = [(str(w["filename"]), str(w["sha256"])) for w in wheels]
    except FileNotFoundError:
        found.problems.append(
            Problem(kind="wheelhouse", path=rel, problem=f"incomplete: no {_MANIFEST}")
        )
        return
    except (ValueError, KeyError, TypeError) as exc:
        found.problems.append(
            Problem(kind="wheelhouse", path=rel, problem=f"{_MANIFEST} cannot be read: {exc}")
        )
        return
    for filename, sha256 in entries:
        path = house / filename
        if "/" in filename or filename.startswith("."):
            found.problems.append(
                Problem(
                    kind="wheelhouse",
                    path=rel,
                    problem=f"the manifest names a bad file {filename!r}",
                )
            )
            continue
        if path.is_symlink() or not path.is_file():
            found.problems.append(
                Problem(kind="wheelhouse", path=f"{rel}/{filename}", problem="missing")
            )
            continue
        digest = _known_digest(path, found)
        if digest is None:
            digest = sha256_file(path)
            progress.advance(path.stat().st_size)
        if digest != sha256:
            found.problems.append(
                Problem(
                    kind="wheelhouse",
                    path=f"{rel}/{filename}",
                    problem=f"its content hashes to {digest or 'nothing'}, "
                    f"the manifest says {sha256}",
                )
            )


def _check_environment(
    root: Path, env: Path, found: _Found, progress: _Progress, workers: int
) -> None:
    rel = _rel(root, env)
    if not (env / _MARKER).is_file():
        found.problems.append(
            Problem(kind="environment", path=rel, problem=f"incomplete: no {_MARKER}")
        )
        return
    seal = read_seal(env)
    if seal is None:
        found.problems.append(
            Problem(
                kind="environment",
                path=rel,
                problem="no seal (made by an older wheelbarrow): it cannot be checked",
            )
        )
        return
    check = seal.check(env, deep=True, workers=workers)
    progress.advance(check.hashed_bytes)
    for p in check.problems:
        found.problems.append(
            Problem(kind="environment", path=f"{rel}/{p.path}", problem=p.problem)
        )
    if check.ok:
        for path, problem in _record_problems(env, seal.files):
            found.problems.append(
                Problem(kind="environment", path=f"{rel}/{path}", problem=problem)
            )


def _record_problems(env: Path, sealed: Mapping[str, SealedFile]) -> Iterable[tuple[str, str]]:
    """Files the installed RECORDs list whose sha256 the (checked) seal contradicts.

    Scripts in ``bin/`` are rewritten for the environment's place after they
    are installed, so only their presence is checked.
    """
    for record in sorted(env.glob("lib/python*/site-packages/*.dist-info/RECORD")):
        site = record.parent.parent
        for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
            path, _, rest = line.partition(",")
            digest = rest.partition(",")[0]
            if not path:
                continue
            full = os.path.normpath(f"{site}/{path}")
            if not full.startswith(os.fspath(env) + os.sep):
                yield _rel(env, record), f"lists {path}, outside the environment"
                continue
            rel = full[len(os.fspath(env)) + 1 :]
            entry = sealed.get(rel)
            if entry is None:
                yield rel, f"listed in {_rel(env, record)}, missing"
                continue
            if not digest.startswith("sha256=") or rel.startswith("bin/"):
                continue
            want = digest.removeprefix("sha256=")
            have = base64.urlsafe_b64encode(bytes.fromhex(entry.sha256)).rstrip(b"=").decode()
            if want != have:
                yield rel, f"differs from its hash in {_rel(env, record)}"


def _marker_shas(env: Path) -> set[str]:
    try:
        data = json.loads((env / _MARKER).read_text(encoding="utf-8"))
        return {str(w["sha256"]) for w in data.get("wheels", []) if isinstance(w, dict)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _manifest_shas(house: Path) -> set[str]:
    try:
        data = json.loads((house / _MANIFEST).read_text(encoding="utf-8"))
        return {str(w["sha256"]) for w in data.get("wheels", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def _repair(
    store: Store,
    problems: Sequence[Problem],
    found: _Found,
    houses: Sequence[Path],
    envs: Sequence[Path],
) -> list[Removal]:
    """Remove what is bad, and what was made from a bad blob; returns what went."""
    root = store.root
    doomed: dict[str, str] = {}  # entry -> why
    for p in problems:
        doomed.setdefault(_entry_of(p.path), f"{p.kind}: {p.problem}")
    for house in houses:
        if _manifest_shas(house) & found.bad_blobs:
            doomed.setdefault(_rel(root, house), "made from a damaged blob")
    for env in envs:
        if _marker_shas(env) & found.bad_blobs:
            doomed.setdefault(_rel(root, env), "made from a damaged blob")
    for entry in doomed:
        parts = entry.split("/")
        if parts[0] == "envs" and len(parts) == 2 and (users := live(root, parts[1])):
            shown = ", ".join(str(u) for u in users[:3]) + (" ..." if len(users) > 3 else "")
            doomed[entry] += f"; the environments that share it must be installed again: {shown}"
    removed = []
    for entry in sorted(doomed):
        path = root / entry
        parts = entry.split("/")
        if parts[0] == "envs":
            lock_name = f"env-{parts[1]}"
        elif parts[0] == "wheelhouses":
            lock_name = f"wheelhouse-{parts[1]}"
        else:
            lock_name = None
        if lock_name is None:
            if parts[0] == "blobs" and path.name in found.bad_blobs:
                discard_blob(store, path.name)
            else:
                _remove(store, path)
        else:
            with store.lock(lock_name):
                _remove(store, path)
        removed.append(Removal(path=entry, why=doomed[entry]))
    return removed


def _remove(store: Store, path: Path) -> None:
    """Take ``path`` out of the store by a rename (readers see it or nothing), then delete it."""
    if not os.path.lexists(path):
        return
    with store.scratch("removed-") as holder:
        path.rename(holder / "entry")


def discard_blob(store: Store, sha256: str) -> None:
    """Remove a damaged blob and its named links, so that it is fetched or built again."""
    blob = store.blob(sha256)
    with store.scratch("removed-") as holder:
        if os.path.lexists(blob):
            blob.rename(holder / "blob")
        named = store.root / "named" / sha256[:2] / sha256
        if os.path.lexists(named):
            named.rename(holder / "named")


def check_linked_blobs(store: Store, directory: Path, files: Sequence[tuple[str, str]]) -> None:
    """Hash files just linked from blobs into ``directory``: a damaged blob makes nothing.

    ``files`` are (file name, sha256). Damaged blobs are removed, so that the
    next build fetches (or builds) them again.
    """
    from wheelbarrow.environment.seal import hash_files

    digests = hash_files(directory, [name for name, _ in files])
    damaged = [(name, sha256) for name, sha256 in files if digests[name] != sha256]
    if not damaged:
        return
    for _, sha256 in damaged:
        discard_blob(store, sha256)
    raise StoreError(
        "\n".join(
            f"{name}: the store's copy no longer matches its sha256 "
            f"(it hashes to {digests[name] or 'nothing'}, not {sha256}): removed it"
            for name, sha256 in damaged
        ),
        hint="build again: what was removed is fetched (or built) again; "
        "`wheelbarrow verify` checks the whole store",
    )
