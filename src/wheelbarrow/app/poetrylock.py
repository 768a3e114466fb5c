"""Read a Poetry project's poetry.lock into exact pins for a target, without Poetry.

The lock lists every package Poetry resolved for every platform and group; what
one deployment needs is found the way ``poetry sync --only main`` finds it: walk
from the selected groups' dependencies in pyproject.toml through each locked
package's ``[package.dependencies]``, keeping what their markers and extras
select for the target. Freshness is Poetry's own check (``poetry_freshness``);
the roots and Poetry's constraint syntax are read by ``poetry_constraints``.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.text import plural
from wheelbarrow.app.managers import (
    POETRY_LOCK,
    PYPROJECT,
    Groups,
    LockedPin,
    ManagedLock,
)
from wheelbarrow.app.poetry_constraints import (
    Dependency,
    poetry_dependency,
    project_roots,
    requires_python,
)
from wheelbarrow.app.poetry_freshness import check_fresh, writer_version
from wheelbarrow.app.poetry_toml import (
    as_mapping,
    load_toml,
    malformed,
    parse_marker,
    require_table,
)
from wheelbarrow.app.target import Target

__all__ = ["is_poetry_project", "read_poetry_lock"]

_SUPPORTED_LOCK_MAJORS = (1, 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Package:
    """One ``[[package]]`` of poetry.lock."""

    name: str  # normalised
    version: str
    hashes: tuple[str, ...]
    dependencies: tuple[Dependency, ...]
    extras: Mapping[str, frozenset[str]]  # extra -> names of the dependencies it adds
    source: Mapping[str, Any]
    markers: Marker | None  # lock 2.1: when the package applies at all (any group)


def is_poetry_project(root: Path) -> bool:
    """Whether ``root/pyproject.toml`` states dependencies only Poetry reads.

    Such a project needs its poetry.lock: ``[tool.poetry.dependencies]`` (besides
    ``python``), ``[tool.poetry.dev-dependencies]`` or ``[tool.poetry.group]``.
    """
    try:
        data = tomllib.loads((root / PYPROJECT).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    poetry = data.get("tool", {}).get("poetry")
    if not isinstance(poetry, dict):
        return False
    deps = poetry.get("dependencies")
    own = isinstance(deps, dict) and any(name != "python" for name in deps)
    return own or bool(poetry.get("dev-dependencies")) or bool(poetry.get("group"))


def read_poetry_lock(root: Path, *, groups: Groups, target: Target) -> ManagedLock:
    """The exact pins of ``root``'s poetry.lock that ``target`` needs for ``groups``.

    Raises :class:`StaleLockError` when pyproject.toml changed since Poetry wrote
    the lock, and :class:`InputError` for a missing or malformed file, an unknown
    group or extra, or a dependency the lock lacks.
    """
    pyproject_path = root / PYPROJECT
    lock_path = root / POETRY_LOCK
    if not lock_path.is_file():
        raise InputError(
            f"{lock_path}: not found; {pyproject_path} is a Poetry project, and without "
            "its lock the versions deployed would not be the ones you tested",
            hint="run `poetry lock` and commit poetry.lock",
        )
    pyproject = load_toml(pyproject_path)
    lock_bytes = lock_path.read_bytes()
    lock = load_toml(lock_path, lock_bytes)
    metadata = require_table(lock, "metadata", lock_path)
    lock_version = _lock_version(metadata, lock_path)
    writer = writer_version(lock_bytes)
    relevant = check_fresh(pyproject, metadata, writer, lock_path, pyproject_path)

    packages = _packages(lock, metadata, lock_version, lock_path)
    roots = project_roots(pyproject, groups, pyproject_path)
    environment = {key: str(value) for key, value in target.environment.items()}
    chosen = _walk(roots, packages, environment, lock_path)
    notes = tuple(
        f"{name} is a develop (editable) path dependency in {PYPROJECT}: it is built into a "
        "wheel and installed non-editable"
        for name in sorted(chosen)
        if chosen[name].source.get("develop")
    )
    pins = tuple(_pin(chosen[name], root, lock_path) for name in sorted(chosen, key=lambda n: n))
    tool_poetry = pyproject.get("tool", {}).get("poetry", {})
    project = _project_pin(pyproject, root)
    if project is not None:
        # As `poetry sync --only main` (Heroku's command) installs the project itself.
        pins += (project,)
        notes += (
            f"the project {project.name} itself is built into a wheel and installed "
            "(package-mode; set `package-mode = false` under [tool.poetry] if it is not a package)",
        )
    digest = hashlib.sha256()
    digest.update(lock_bytes)
    digest.update(json.dumps(relevant, sort_keys=True).encode())
    digest.update(json.dumps(groups.as_dict(), sort_keys=True).encode())
    return ManagedLock(
        manager="poetry",
        path=lock_path,
        digest=digest.hexdigest(),
        pins=pins,
        index_urls=_index_urls(tool_poetry, pyproject_path),
        requires_python=requires_python(pyproject),
        notes=notes,
    )


def _project_pin(pyproject: Mapping[str, Any], root: Path) -> LockedPin | None:
    """The project itself, when Poetry would install it: package mode, with a build backend."""
    tool_poetry = as_mapping(as_mapping(pyproject.get("tool", {})).get("poetry", {}))
    if tool_poetry.get("package-mode", True) is False or "build-system" not in pyproject:
        return None
    project = as_mapping(pyproject.get("project", {}))
    name = project.get("name", tool_poetry.get("name"))
    version = project.get("version", tool_poetry.get("version", ""))
    if not isinstance(name, str) or not name:
        return None
    return LockedPin(
        name=canonicalize_name(name),
        version=str(version),
        hashes=(),
        requirement=f"{name} @ {root.resolve().as_uri()}",
    )


def _lock_version(metadata: Mapping[str, Any], lock_path: Path) -> Version:
    text = metadata.get("lock-version")
    try:
        version = Version(str(text))
    except InvalidVersion:
        version = None
    if version is None or version.major not in _SUPPORTED_LOCK_MAJORS:
        raise InputError(
            f"{lock_path}: [metadata] lock-version {text!r} is not a poetry.lock format "
            "wheelbarrow reads (1.x or 2.x)",
            hint="lock again with Poetry 1.x or 2.x (`poetry lock`) and commit poetry.lock",
        )
    if "content-hash" not in metadata:
        raise InputError(
            f"{lock_path}: [metadata] has no content-hash, so its freshness cannot be checked",
            hint="lock again with `poetry lock` and commit poetry.lock",
        )
    return version


# --- the lock's packages -----------------------------------------------------


def _packages(
    lock: Mapping[str, Any], metadata: Mapping[str, Any], lock_version: Version, lock_path: Path
) -> dict[str, list[_Package]]:
    entries = lock.get("package", [])
    if not isinstance(entries, list):
        raise malformed(lock_path, "[[package]] is not an array of tables")
    # Lock format 1.x keeps the files of every package in [metadata.files].
    legacy_files = metadata.get("files", {}) if lock_version.major < 2 else {}
    found: dict[str, list[_Package]] = {}
    for number, entry in enumerate(entries, start=1):
        where = f"[[package]] #{number}"
        if not isinstance(entry, dict):
            raise malformed(lock_path, f"{where} is not a table")
        name, version = entry.get("name"), entry.get("version")
        if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
            raise malformed(lock_path, f"{where} lacks a name or version")
        where = f"[[package]] {name} {version}"
        files = entry.get("files")
        if files is None:
            files = legacy_files.get(name, legacy_files.get(canonicalize_name(name), []))
        package = _Package(
            name=canonicalize_name(name),
            version=version,
            hashes=_hashes(files, lock_path, where),
            dependencies=_locked_dependencies(entry.get("dependencies", {}), lock_path, where),
            extras=_locked_extras(entry.get("extras", {}), lock_path, where),
            source=as_mapping(entry.get("source", {})),
            markers=_package_markers(entry.get("markers"), lock_path, where),
        )
        found.setdefault(package.name, []).append(package)
    return found


def _hashes(files: Any, lock_path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(files, list):
        raise malformed(lock_path, f"{where}: files is not a list")
    hashes: list[str] = []
    for item in files:
        value = item.get("hash") if isinstance(item, dict) else None
        if not isinstance(value, str):
            raise malformed(lock_path, f"{where}: a files entry has no hash")
        if value.startswith("sha256:") and value not in hashes:
            hashes.append(value)
    return tuple(hashes)


def _locked_dependencies(table: Any, lock_path: Path, where: str) -> tuple[Dependency, ...]:
    if not isinstance(table, dict):
        raise malformed(lock_path, f"{where}: [package.dependencies] is not a table")
    deps: list[Dependency] = []
    for name, spec in table.items():
        deps.extend(poetry_dependency(name, spec, lock_path, f"{where}: dependency {name}"))
    return tuple(deps)


def _locked_extras(table: Any, lock_path: Path, where: str) -> dict[str, frozenset[str]]:
    if not isinstance(table, dict):
        raise malformed(lock_path, f"{where}: [package.extras] is not a table")
    extras: dict[str, frozenset[str]] = {}
    for extra, requirements in table.items():
        if not isinstance(requirements, list):
            raise malformed(lock_path, f"{where}: extra {extra} is not a list")
        names = set()
        for text in requirements:
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", str(text))
            if not match:
                raise malformed(lock_path, f"{where}: extra {extra} lists {text!r}")
            names.add(canonicalize_name(match[1]))
        extras[canonicalize_name(extra)] = frozenset(names)
    return extras


def _package_markers(value: Any, lock_path: Path, where: str) -> Marker | None:
    """Lock 2.1's ``markers``: one marker, or one per group (any of them applies)."""
    if value is None:
        return None
    texts = list(value.values()) if isinstance(value, dict) else [value]
    if not all(isinstance(text, str) for text in texts):
        raise malformed(lock_path, f"{where}: markers is neither a string nor a table of them")
    return parse_marker(" or ".join(f"({text})" for text in texts), lock_path, where)


# --- selecting for the target ------------------------------------------------


def _walk(
    roots: Iterable[Dependency],
    packages: Mapping[str, list[_Package]],
    environment: dict[str, str],
    lock_path: Path,
) -> dict[str, _Package]:
    chosen: dict[str, _Package] = {}
    extras_of: dict[str, set[str]] = {}
    pending: list[tuple[Dependency, frozenset[str]]] = [(d, frozenset()) for d in roots]
    missing: list[str] = []
    while pending:
        dep, parent_extras = pending.pop()
        if not _applies(dep, environment, parent_extras):
            continue
        package = chosen.get(dep.name) or _choose(dep, packages, environment)
        if package is None:
            missing.append(dep.name)
            continue
        known = extras_of.setdefault(dep.name, set())
        if dep.name in chosen and dep.extras <= known:
            continue
        chosen[dep.name] = package
        known |= dep.extras
        active = frozenset(known)
        added = {n for e in active for n in package.extras.get(e, ())}
        for sub in package.dependencies:
            if sub.optional and sub.name not in added:
                continue
            pending.append((sub, active))
    if missing:
        names = sorted(set(missing))
        raise InputError(
            f"{lock_path}: the lock has no {plural(len(names), 'package')} "
            f"{', '.join(names)} that the project needs",
            hint="lock again with `poetry lock` and commit poetry.lock",
        )
    return chosen


def _applies(dep: Dependency, environment: dict[str, str], extras: frozenset[str]) -> bool:
    if dep.python and not any(
        s.contains(environment["python_full_version"], prereleases=True) for s in dep.python
    ):
        return False
    if dep.marker is None:
        return True
    return any(dep.marker.evaluate({**environment, "extra": e}) for e in (extras or {""}))


def _choose(
    dep: Dependency, packages: Mapping[str, list[_Package]], environment: dict[str, str]
) -> _Package | None:
    candidates = packages.get(dep.name, [])
    if len(candidates) > 1:
        # Poetry locks one entry per version when markers split a package's versions.
        candidates = [
            p
            for p in candidates
            if p.markers is None or p.markers.evaluate({**environment, "extra": ""})
        ] or candidates
        if dep.versions:
            candidates = [
                p
                for p in candidates
                if any(s.contains(p.version, prereleases=True) for s in dep.versions)
            ] or candidates
        candidates = sorted(candidates, key=lambda p: _version_key(p.version))
    return candidates[-1] if candidates else None


def _version_key(text: str) -> tuple[int, Version | str]:
    try:
        return (1, Version(text))
    except InvalidVersion:
        return (0, text)


def _pin(package: _Package, root: Path, lock_path: Path) -> LockedPin:
    source = package.source
    kind = source.get("type")
    requirement = None
    if kind in ("directory", "file"):
        location = Path(str(source.get("url", "")))
        absolute = location if location.is_absolute() else (root / location)
        requirement = f"{package.name} @ {absolute.resolve().as_uri()}"
    elif kind == "git":
        url = str(source.get("url", ""))
        commit = source.get("resolved_reference") or source.get("reference") or ""
        requirement = f"{package.name} @ git+{url}{'@' + commit if commit else ''}"
        if source.get("subdirectory"):
            requirement += f"#subdirectory={source['subdirectory']}"
    elif kind == "url":
        requirement = f"{package.name} @ {source.get('url', '')}"
    elif kind not in (None, "legacy"):
        raise malformed(
            lock_path, f"[[package]] {package.name}: source type {kind!r} is not one Poetry writes"
        )
    return LockedPin(
        name=package.name, version=package.version, hashes=package.hashes, requirement=requirement
    )


def _index_urls(tool_poetry: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    sources = tool_poetry.get("source", [])
    if not isinstance(sources, list):
        raise malformed(path, "[[tool.poetry.source]] is not an array of tables")
    urls = []
    for source in sources:
        url = source.get("url") if isinstance(source, dict) else None
        if isinstance(url, str) and url not in urls:
            urls.append(url)
    return tuple(urls)
