"""Reading a PEP 751 lock and choosing the one wheel per package that the target needs."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.pylock import (
    Package,
    PackageWheel,
    Pylock,
    PylockSelectError,
    PylockUnsupportedVersionError,
    PylockValidationError,
)
from packaging.utils import NormalizedName, canonicalize_name, parse_wheel_filename

from wheelbarrow.errors import InputError, NoCompatibleWheelError
from wheelbarrow.target import Target


@dataclass(frozen=True, slots=True, kw_only=True)
class Artefact:
    """One wheel to put in the wheelhouse, exactly as the lock names it."""

    name: NormalizedName
    version: str
    filename: str
    url: str | None
    path: Path | None
    sha256: str
    size: int | None

    @property
    def location(self) -> str:
        """The URL or path it comes from, for messages."""
        return self.url or str(self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    """A parsed lock file, and the inputs digest wheelbarrow wrote into it (if it did)."""

    path: Path
    pylock: Pylock
    inputs: str | None
    tool: dict[str, Any]


def read_lock(path: Path) -> Lock:
    """Parse and validate ``path``; errors name the file and what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such lock file", hint="run `wheelbarrow lock` first") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc
    try:
        pylock = Pylock.from_dict(data)
    except (PylockValidationError, PylockUnsupportedVersionError) as exc:
        raise InputError(
            f"{path}: not a valid PEP 751 lock: {exc}",
            hint="lock again with `wheelbarrow lock`",
        ) from exc
    tool = data.get("tool", {}).get("wheelbarrow", {})
    inputs = tool.get("inputs") if isinstance(tool, dict) else None
    return Lock(
        path=path,
        pylock=pylock,
        inputs=inputs if isinstance(inputs, str) else None,
        tool=tool if isinstance(tool, dict) else {},
    )


def select_wheels(lock: Lock, target: Target) -> tuple[Artefact, ...]:
    """The wheel of each package the target installs, sorted by name.

    Follows the PEP 751 installer steps (markers, requires-python, best tag)
    through ``packaging.pylock``. Every package without a compatible wheel is
    collected first and reported together.
    """
    try:
        selected = list(lock.pylock.select(environment=target.environment, tags=target.tags))
    except PylockSelectError as exc:
        if "No wheel found" in str(exc):
            raise NoCompatibleWheelError(_missing(lock, target), target=str(target)) from exc
        raise InputError(
            f"{lock.path}: cannot be used for {target}: {exc}", hint="lock again for this target"
        ) from exc
    if any(not isinstance(source, PackageWheel) for _, source in selected):
        raise NoCompatibleWheelError(_missing(lock, target), target=str(target))
    chosen = [_artefact(lock, package, source) for package, source in selected]
    return tuple(sorted(chosen, key=lambda a: a.name))


def _artefact(lock: Lock, package: Package, source: Any) -> Artefact:
    if not isinstance(source, PackageWheel):  # select_wheels checked; keeps mypy exact
        raise TypeError(source)
    name = canonicalize_name(package.name)
    sha256 = source.hashes.get("sha256")
    if sha256 is None:
        raise InputError(
            f"{lock.path}: wheel {source.filename} of {name} has no sha256 hash",
            hint="lock again with `wheelbarrow lock`, which records sha256 hashes",
        )
    return Artefact(
        name=name,
        version=str(package.version) if package.version else "?",
        filename=source.filename,
        url=source.url,
        path=(lock.path.parent / source.path) if source.path else None,
        sha256=sha256.lower(),
        size=source.size,
    )


def _missing(lock: Lock, target: Target) -> list[str]:
    """Every package the target needs that has no wheel for it, with what it has instead."""
    env = dict(
        target.environment,
        extras=frozenset(),
        dependency_groups=frozenset(lock.pylock.default_groups or []),
    )
    missing = []
    for package in lock.pylock.packages:
        if package.marker and not package.marker.evaluate(env, context="lock_file"):  # type: ignore[arg-type]
            continue
        wheels = package.wheels or ()
        if any(parse_wheel_filename(w.filename)[-1] & target.tag_set for w in wheels):
            continue
        has = [
            kind
            for kind, value in (
                ("an sdist", package.sdist),
                ("a directory", package.directory),
                ("a VCS URL", package.vcs),
                ("an archive", package.archive),
            )
            if value is not None
        ]
        if wheels:
            has.insert(0, "wheels for other targets")
        version = f" {package.version}" if package.version else ""
        missing.append(f"{package.name}{version} (has {' and '.join(has) or 'nothing'})")
    return sorted(missing)
