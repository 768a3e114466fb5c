"""Read a Pipenv project's Pipfile.lock into exact pins for a target, without Pipenv.

Pipfile.lock already lists every package of each section with its exact version,
hashes and markers, so the pins are its ``default`` section (``develop`` and
other categories on request), less those whose markers exclude the target.
Freshness is Pipenv's own check: ``_meta.hash.sha256`` against the hash of the
Pipfile, computed as Pipenv (and plette before it) computes it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.utils import canonicalize_name

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.managers import (
    PIPFILE,
    PIPFILE_LOCK,
    Groups,
    LockedPin,
    ManagedLock,
    StaleLockError,
)
from wheelbarrow.app.target import Target

__all__ = ["pipfile_hashes", "read_pipfile_lock"]

# plette's PIPFILE_SECTIONS: the Pipfile tables that are not package categories.
_NOT_CATEGORIES = frozenset(
    {"source", "packages", "dev-packages", "requires", "scripts", "pipfile", "pipenv"}
)
_SECTION_OF = {"packages": "default", "dev-packages": "develop"}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")
_FIX = "run `pipenv lock` to update it, then commit Pipfile.lock"


def read_pipfile_lock(root: Path, *, groups: Groups, target: Target) -> ManagedLock:
    """The exact pins of ``root``'s Pipfile.lock that ``target`` needs for ``groups``.

    ``groups.dev`` adds the ``develop`` section, ``groups.names`` further
    categories of the Pipfile. Raises :class:`StaleLockError` when the Pipfile
    changed since Pipenv wrote the lock, and :class:`InputError` for a missing or
    malformed file or an unknown category.
    """
    pipfile_path = root / PIPFILE
    lock_path = root / PIPFILE_LOCK
    if not lock_path.is_file():
        # Heroku's Python buildpack refuses the same, in these words.
        raise InputError(
            f"{lock_path}: not found. A 'Pipfile' file was found, however, the associated "
            "'Pipfile.lock' Pipenv lockfile wasn't. This means your app dependency versions "
            "aren't pinned, which means the package versions deployed might not match those "
            "installed in other environments",
            hint="run 'pipenv lock' locally to generate the lockfile, and make sure that "
            "'Pipfile.lock' isn't listed in '.gitignore'",
        )
    lock_bytes = lock_path.read_bytes()
    lock = _load_lock(lock_path, lock_bytes)
    meta = lock.get("_meta")
    if not isinstance(meta, dict):
        raise _malformed(lock_path, "no _meta object")
    if not pipfile_path.is_file():
        raise InputError(
            f"{pipfile_path}: not found, so {lock_path} cannot be checked against it",
            hint="commit the Pipfile that Pipfile.lock was made from",
        )
    pipfile = _load_pipfile(pipfile_path)
    _check_fresh(pipfile, meta, lock_path, pipfile_path)
    sections = _sections(pipfile, groups, pipfile_path)
    pins, notes = _pins(lock, sections, root=root, lock_path=lock_path, target=target)

    digest = hashlib.sha256()
    digest.update(lock_bytes)
    digest.update(json.dumps(groups.as_dict(), sort_keys=True).encode())
    return ManagedLock(
        manager="pipenv",
        path=lock_path,
        digest=digest.hexdigest(),
        pins=tuple(pins[name] for name in sorted(pins)),
        index_urls=_index_urls(meta, lock_path),
        python=_python(meta, lock_path),
        notes=tuple(notes),
    )


def _sections(pipfile: Mapping[str, Any], groups: Groups, pipfile_path: Path) -> list[str]:
    """The lock's sections that ``groups`` choose: default, develop, then named categories."""
    if groups.extras:
        raise InputError(
            f"{pipfile_path}: a Pipfile has no extras to choose "
            f"({', '.join(groups.extras)} asked for)",
            hint="choose Pipfile categories (groups) instead of extras",
        )
    sections = ["default"] + (["develop"] if groups.dev else [])
    categories = {canonicalize_name(c): c for c in pipfile if c not in _NOT_CATEGORIES}
    for name in groups.names:
        category = categories.get(canonicalize_name(name))
        if category is None:
            known = ", ".join(sorted(categories.values())) or "none"
            raise InputError(
                f"{pipfile_path}: no package category named {name} (the Pipfile's: {known})",
                hint="choose categories the Pipfile defines",
            )
        sections.append(category)
    return sections


def _pins(
    lock: Mapping[str, Any], sections: Sequence[str], *, root: Path, lock_path: Path, target: Target
) -> tuple[dict[str, LockedPin], list[str]]:
    """The pins of ``sections`` whose markers ``target`` meets, the first section winning."""
    environment = {key: str(value) for key, value in target.environment.items()}
    environment["extra"] = ""
    pins: dict[str, LockedPin] = {}
    notes: list[str] = []
    for section in sections:
        entries = lock.get(section, {})
        if not isinstance(entries, dict):
            raise _malformed(lock_path, f'"{section}" is not an object')
        for name, entry in entries.items():
            pin = _pin(name, entry, root, lock_path, f'"{section}" → "{name}"')
            # The default section wins over develop, as `pipenv install --dev` keeps it.
            if pin.name in pins:
                continue
            if pin.marker is not None and not Marker(pin.marker).evaluate(environment):
                continue
            pins[pin.name] = pin
            if isinstance(entry, dict) and entry.get("editable"):
                notes.append(
                    f"{pin.name} is editable in {PIPFILE_LOCK}: it is built into a wheel and "
                    "installed non-editable"
                )
    return pins, notes


# --- freshness ---------------------------------------------------------------


def pipfile_hashes(pipfile: Mapping[str, Any], lock_sources: Any = None) -> list[str]:
    """The ``_meta.hash.sha256`` values Pipenv accepts for ``pipfile``, newest Pipenv's first.

    Pipenv hashes the Pipfile with package names in their normalised form
    (``Flask`` and ``flask`` alike); plette, which Pipenv used before, hashes
    them as written. A Pipfile without ``[[source]]`` is hashed with the default
    source plette inserts; ``lock_sources`` (the lock's ``_meta.sources``) gives
    it, since Pipenv writes that same source into the lock.
    """
    data = dict(pipfile)
    if "source" not in data:
        data["source"] = _default_source(lock_sources)
    return [_hash(data, normalise=True), _hash(data, normalise=False)]


def _default_source(lock_sources: Any) -> list[Any]:
    if (
        isinstance(lock_sources, list)
        and len(lock_sources) == 1
        and isinstance(lock_sources[0], dict)
        and lock_sources[0].get("name") == "pypi"
        and lock_sources[0].get("verify_ssl") is True
    ):
        return [dict(lock_sources[0])]
    # A lock made from a Pipfile with another source: no hash can match it.
    return [{"name": "pypi", "url": "", "verify_ssl": True}]


def _hash(data: Mapping[str, Any], *, normalise: bool) -> str:
    def section(values: Any) -> Any:
        if normalise and isinstance(values, dict):
            return {canonicalize_name(k): v for k, v in values.items()}
        return values

    content: dict[str, Any] = {
        "_meta": {"sources": data["source"], "requires": data.get("requires", {})},
        "default": section(data.get("packages", {})),
        "develop": section(data.get("dev-packages", {})),
    }
    for category, values in data.items():
        if category in _NOT_CATEGORIES or category in ("default", "develop"):
            continue
        content[category] = section(values)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_fresh(
    pipfile: Mapping[str, Any], meta: Mapping[str, Any], lock_path: Path, pipfile_path: Path
) -> None:
    recorded = meta.get("hash", {}).get("sha256") if isinstance(meta.get("hash"), dict) else None
    expected = pipfile_hashes(pipfile, meta.get("sources"))
    if recorded in expected:
        return
    raise StaleLockError(
        f"{lock_path}: out of date: {pipfile_path} changed since Pipfile.lock was made "
        f"(Pipenv says: Your Pipfile.lock ({recorded}) is out of date. "
        f"Expected: ({expected[0]}).)",
        hint=_FIX,
    )


# --- entries -----------------------------------------------------------------


def _pin(name: str, entry: Any, root: Path, lock_path: Path, where: str) -> LockedPin:
    if not isinstance(entry, dict):
        raise _malformed(lock_path, f"{where} is not an object")
    normalised = canonicalize_name(name)
    marker = entry.get("markers")
    if marker is not None:
        if not isinstance(marker, str):
            raise _malformed(lock_path, f"{where}: markers is not a string")
        try:
            Marker(marker)
        except InvalidMarker as exc:
            raise _malformed(lock_path, f"{where}: {marker!r} is not a marker: {exc}") from exc
    hashes = entry.get("hashes", [])
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise _malformed(lock_path, f"{where}: hashes is not a list of strings")
    version = entry.get("version")
    if version is not None and not isinstance(version, str):
        raise _malformed(lock_path, f"{where}: version is not a string")
    pinned = version.lstrip("=").strip() if version else ""
    requirement = _direct_reference(normalised, entry, root, lock_path, where)
    if requirement is None and (not version or not version.startswith("==") or not pinned):
        raise _malformed(lock_path, f'{where}: version {version!r} is not an exact "==X" pin')
    return LockedPin(
        name=normalised,
        version=pinned,
        hashes=tuple(h for h in hashes if h.startswith("sha256:")),
        marker=marker,
        requirement=requirement,
    )


def _direct_reference(
    name: str, entry: Mapping[str, Any], root: Path, lock_path: Path, where: str
) -> str | None:
    extras = entry.get("extras") or []
    spelled = f"{name}[{','.join(sorted(map(str, extras)))}]" if extras else name
    if "git" in entry:
        url = str(entry["git"])
        url = url if url.startswith("git+") else f"git+{url}"
        ref = entry.get("ref")
        reference = f"{spelled} @ {url}{'@' + str(ref) if ref else ''}"
        if entry.get("subdirectory"):
            reference += f"#subdirectory={entry['subdirectory']}"
        return reference
    location = entry.get("path", entry.get("file"))
    if location is None:
        return None
    if not isinstance(location, str) or not location:
        raise _malformed(lock_path, f"{where}: path/file is not a string")
    if _SCHEME.match(location):
        return f"{spelled} @ {location}"
    path = Path(location)
    absolute = (path if path.is_absolute() else root / path).resolve()
    return f"{spelled} @ {absolute.as_uri()}"


def _index_urls(meta: Mapping[str, Any], lock_path: Path) -> tuple[str, ...]:
    sources = meta.get("sources", [])
    if not isinstance(sources, list):
        raise _malformed(lock_path, '"_meta" → "sources" is not a list')
    urls: list[str] = []
    for source in sources:
        url = source.get("url") if isinstance(source, dict) else None
        if not isinstance(url, str):
            raise _malformed(lock_path, '"_meta" → "sources" has an entry without a url')
        if url not in urls:
            urls.append(url)  # ${VAR} kept as written: expanded where the index is used
    return tuple(urls)


def _python(meta: Mapping[str, Any], lock_path: Path) -> str | None:
    requires = meta.get("requires", {})
    if not isinstance(requires, dict):
        raise _malformed(lock_path, '"_meta" → "requires" is not an object')
    for key in ("python_full_version", "python_version"):
        value = requires.get(key)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise _malformed(lock_path, f'"_meta" → "requires" → "{key}" is not a version')
            return value.strip()
    return None


# --- files -------------------------------------------------------------------


def _load_lock(path: Path, data: bytes) -> dict[str, Any]:
    try:
        lock = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _malformed(path, f"not UTF-8 text: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise _malformed(
            path, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    if not isinstance(lock, dict):
        raise _malformed(path, "not a JSON object")
    return lock


def _load_pipfile(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: not valid TOML: {exc}", hint="fix the TOML syntax of the Pipfile"
        ) from exc


def _malformed(path: Path, detail: str) -> InputError:
    return InputError(
        f"{path}: {detail}",
        hint="lock again with `pipenv lock`: Pipfile.lock is written by Pipenv, not by hand",
    )
