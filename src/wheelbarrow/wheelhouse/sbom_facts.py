"""What a bill of materials says of each package, read from what wheelbarrow kept.

The wheelhouse manifest (each wheel and its sha256; for a source build, its
source), the stored wheel's METADATA (the license), the build record in
``built/ENTRY/result.json`` (toolchain, Python, repair), the source itself (its
build backend) and, when given, the lock (the index and URL of each file).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.metadata import parse_email
from packaging.utils import canonicalize_name

from wheelbarrow._core.errors import StoreError
from wheelbarrow._core.redact import redact, strip_credentials
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from wheelbarrow.lock.lockfile import Lock

# A License field longer than this, or of several lines, is a license's text, not its
# name: the classifiers then say it better.
_LICENSE_NAME_CHARS = 100
# The setuptools backend PEP 517 assumes for a project without [build-system].
_LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
_METADATA = re.compile(r"[^/]+\.dist-info/METADATA")
_PYPROJECT = re.compile(r"[^/]+/pyproject\.toml")


@dataclass(frozen=True, slots=True, kw_only=True)
class LicenseInfo:
    """A package's license as its metadata declares it: an expression, or names."""

    expression: str | None = None
    names: tuple[str, ...] = ()
    field: str  # which metadata field said so: License-Expression, License or Classifier


@dataclass(frozen=True, slots=True, kw_only=True)
class Downloaded:
    """A wheel fetched from an index (credentials removed from both URLs)."""

    index: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Built:
    """A wheel built here from an sdist or VCS checkout (``commit`` the checkout's)."""

    kind: str
    source_filename: str
    source_sha256: str
    url: str | None = None
    commit: str | None = None
    backend: str | None = None
    repair: str | None = None
    python: str | None = None
    toolchain: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Local(Built):
    """A wheel built from a local directory: on no index."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PackageFacts:
    """One wheel of the wheelhouse and what is known of it."""

    name: str
    version: str
    filename: str
    sha256: str
    license: LicenseInfo | None
    origin: Downloaded | Built


def package_facts(
    store: Store, manifest: Mapping[str, Any], lock: Lock | None
) -> list[PackageFacts]:
    """Every wheel of ``manifest`` (a wheelhouse of ``store``), in the manifest's order."""
    wheels = [w for w in manifest.get("wheels", []) if isinstance(w, dict)]
    origins = _LockOrigins(lock)
    records = _build_records(store) if any("source" in w for w in wheels) else {}
    facts = []
    for wheel in wheels:
        sha256 = str(wheel["sha256"])
        source = wheel.get("source")
        origin: Downloaded | Built
        if isinstance(source, dict):
            origin = _built(store, wheel, source, records.get(sha256, {}), origins)
        else:
            origin = origins.downloaded(sha256)
        facts.append(
            PackageFacts(
                name=str(wheel["name"]),
                version=str(wheel["version"]),
                filename=str(wheel["filename"]),
                sha256=sha256,
                license=read_license(store.blob(sha256), label=str(wheel["filename"])),
                origin=origin,
            )
        )
    return facts


# -- licenses ------------------------------------------------------------------------


def read_license(wheel: Path, *, label: str) -> LicenseInfo | None:
    """The license the wheel's METADATA declares: License-Expression, else License, else the
    ``License ::`` classifiers; None when it declares none.

    Only the METADATA member is read (a zip's directory is at its end): a cheap look
    into a wheel of any size.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            member = next((n for n in archive.namelist() if _METADATA.fullmatch(n)), None)
            if member is None:
                raise StoreError(f"{label}: a wheel without .dist-info/METADATA")
            data = archive.read(member)
    except (OSError, zipfile.BadZipFile) as exc:
        raise StoreError(
            f"{label}: cannot be read from the store ({exc})",
            hint="run `wheelbarrow verify --repair`, then build again",
        ) from exc
    raw, _ = parse_email(data)
    expression = (raw.get("license_expression") or "").strip()
    if expression:
        return LicenseInfo(expression=expression, field="License-Expression")
    text = (raw.get("license") or "").strip()
    classifiers = tuple(
        c.split("::")[-1].strip()
        for c in raw.get("classifiers", [])
        # "License :: OSI Approved" alone names no license.
        if c.startswith("License ::") and c.count("::") >= 2
    )
    if text and (("\n" not in text and len(text) <= _LICENSE_NAME_CHARS) or not classifiers):
        return LicenseInfo(names=(text.splitlines()[0].strip(),), field="License")
    if classifiers:
        return LicenseInfo(names=tuple(dict.fromkeys(classifiers)), field="Classifier")
    return None


# -- where files came from -----------------------------------------------------------


def _clean_url(url: str) -> str:
    """A URL for a file that is kept: no ``user:password@``, nothing known to be secret."""
    return redact(strip_credentials(url))


class _LockOrigins:
    """The index and URL of each file the lock names, by sha256; local directories by name."""

    def __init__(self, lock: Lock | None) -> None:
        self.files: dict[str, tuple[str | None, str | None]] = {}
        self.directories: dict[str, Path] = {}
        self.vcs: dict[str, tuple[str | None, str | None]] = {}  # name: (url, commit)
        if lock is None:
            return
        base = lock.path.parent
        for package in lock.pylock.packages:
            index = _clean_url(package.index) if package.index else None
            for wheel in package.wheels or ():
                sha256 = (wheel.hashes or {}).get("sha256")
                if sha256:
                    self.files[sha256] = (index, _clean_url(wheel.url) if wheel.url else None)
            # An sdist, or a direct URL to an archive (`name @ https://.../x.tar.gz`).
            for source in (package.sdist, package.archive):
                if source is not None and (sha256 := (source.hashes or {}).get("sha256")):
                    self.files[sha256] = (index, _clean_url(source.url) if source.url else None)
            if package.directory is not None:
                self.directories[canonicalize_name(package.name)] = base / package.directory.path
            if (vcs := package.vcs) is not None:
                url = f"{vcs.type}+{_clean_url(vcs.url)}" if vcs.url else None
                self.vcs[canonicalize_name(package.name)] = (url, vcs.commit_id)

    def downloaded(self, sha256: str) -> Downloaded:
        index, url = self.files.get(sha256, (None, None))
        return Downloaded(index=index, url=url)


def _built(
    store: Store,
    wheel: Mapping[str, Any],
    source: Mapping[str, Any],
    record: Mapping[str, Any],
    origins: _LockOrigins,
) -> Built:
    kind = str(source.get("kind", "sdist"))
    sha256 = str(source.get("sha256", ""))
    inputs = _table(record, "inputs")
    toolchain = _table(inputs, "toolchain")
    python = inputs.get("python")
    directory = origins.directories.get(canonicalize_name(str(wheel["name"])))
    backend = record.get("backend")
    if not isinstance(backend, str):
        backend = _backend(store, kind, sha256, str(source.get("filename", "")), directory)
    repair = wheel.get("repair") or record.get("repair")
    common: dict[str, Any] = {
        "kind": kind,
        "source_filename": str(source.get("filename", "")),
        "source_sha256": sha256,
        "backend": backend,
        "repair": str(repair) if repair else None,
        "python": str(python) if python else None,
        "toolchain": {str(k): str(v) for k, v in toolchain.items()},
    }
    if kind == "directory":
        return Local(**common)
    if kind == "vcs":
        url, commit = origins.vcs.get(canonicalize_name(str(wheel["name"])), (None, None))
        # The manifest names the commit too (git-COMMIT[:subdirectory]), lock or no lock.
        commit = commit or sha256.removeprefix("git-").split(":")[0] or None
        return Built(url=url, commit=commit, **common)
    return Built(url=origins.downloaded(sha256).url, **common)


def _table(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _build_records(store: Store) -> dict[str, dict[str, Any]]:
    """Each build record of the store's build cache (``built/ENTRY/result.json``), by the sha256
    of the wheel it made."""
    records: dict[str, dict[str, Any]] = {}
    for result in sorted((store.root / "built").glob("*/result.json")):
        try:
            data = json.loads(result.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("sha256"), str):
            records[data["sha256"]] = data
    return records


def _backend(
    store: Store, kind: str, sha256: str, filename: str, directory: Path | None
) -> str | None:
    """The PEP 517 backend the source names in its pyproject.toml; None when it cannot be read."""
    try:
        if kind == "directory":
            text = (directory / "pyproject.toml").read_text("utf-8") if directory else None
        elif kind == "sdist" and store.has(sha256):
            text = _sdist_pyproject(store.blob(sha256), filename)
        else:
            return None
    except FileNotFoundError:
        return _LEGACY_BACKEND
    except (OSError, tarfile.TarError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    if text is None:
        return _LEGACY_BACKEND
    try:
        table = tomllib.loads(text).get("build-system")
    except tomllib.TOMLDecodeError:
        return None
    backend = table.get("build-backend") if isinstance(table, dict) else None
    return backend if isinstance(backend, str) else _LEGACY_BACKEND


def _sdist_pyproject(path: Path, filename: str) -> str | None:
    """The top ``pyproject.toml`` of an sdist (.tar.gz or .zip), or None when it has none."""
    if filename.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if _PYPROJECT.fullmatch(n)), None)
            return archive.read(member).decode("utf-8") if member else None
    with tarfile.open(path, "r:*") as archive:
        for info in _members(archive):
            if info.isfile() and _PYPROJECT.fullmatch(info.name.removeprefix("./")):
                f = archive.extractfile(info)
                return io.TextIOWrapper(f, encoding="utf-8").read() if f else None
    return None


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    # Streamed: the pyproject.toml is near the start of most sdists, so a big one is not
    # read to its end.
    while (info := archive.next()) is not None:
        yield info
