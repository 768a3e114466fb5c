"""Reading a PEP 751 lock and choosing, per package, the wheel or source the target needs."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from packaging.pylock import (
    Package,
    PackageWheel,
    Pylock,
    PylockUnsupportedVersionError,
    PylockValidationError,
)
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from wheelbarrow._core.errors import InputError, NoCompatibleWheelError
from wheelbarrow.app.target import Target

if TYPE_CHECKING:
    from wheelbarrow.app.config import BuildConfig


Kind = Literal["wheel", "sdist", "directory", "vcs"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Artefact:
    """What the wheelhouse takes for one package, exactly as the lock names it.

    A ``wheel`` goes in as it is; an ``sdist``, local ``directory`` or ``vcs``
    checkout is built into a wheel first. ``sha256`` identifies the content:
    the file's hash for wheels and sdists, a tree digest for a directory, the
    commit for a VCS source.
    """

    name: NormalizedName
    version: str
    filename: str
    url: str | None
    path: Path | None
    sha256: str
    size: int | None
    kind: Kind = "wheel"
    commit: str | None = None
    # Where in a VCS checkout the project lives (a monorepo's ``#subdirectory=``).
    subdirectory: str | None = None

    @property
    def location(self) -> str:
        """The URL or path it comes from, for messages."""
        return self.url or str(self.path)

    @property
    def label(self) -> str:
        """``name version`` for messages, or the name alone while the version is unknown."""
        return self.name if self.version == "?" else f"{self.name} {self.version}"

    @property
    def is_file(self) -> bool:
        """Whether it is a file to fetch into the store (a wheel or an sdist)."""
        return self.kind in ("wheel", "sdist")


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    """A parsed lock file, and the inputs digest wheelbarrow wrote into it (if it did)."""

    path: Path
    pylock: Pylock
    inputs: str | None
    tool: dict[str, Any]
    sha256: str = ""  # of the file's bytes


# The last parse of each lock file, by its bytes: choosing the target reads the lock's
# [tool.wheelbarrow] table and planning then reads the whole lock, and a lock is parsed
# once for both (a changed file is parsed again).
_PARSED: dict[Path, tuple[bytes, dict[str, Any]]] = {}


def lock_data(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The bytes of the TOML file ``path`` and what they parse to (not to be changed: it is
    shared with the next reader of the same bytes).

    Raises FileNotFoundError, UnicodeDecodeError and TOMLDecodeError as reading does.
    """
    raw = path.read_bytes()
    cached = _PARSED.get(path)
    if cached is not None and cached[0] == raw:
        return cached
    data = tomllib.loads(raw.decode("utf-8"))
    _PARSED[path] = (raw, data)
    return raw, data


def read_lock(path: Path) -> Lock:
    """Parse and validate ``path``; errors name the file and what is wrong."""
    try:
        raw, data = lock_data(path)
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
    tool = wheelbarrow_table(data)
    inputs = tool.get("inputs")
    return Lock(
        path=path,
        pylock=pylock,
        inputs=inputs if isinstance(inputs, str) else None,
        tool=tool,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def wheelbarrow_table(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[tool.wheelbarrow]`` table of a parsed lock; ``{}`` when absent or not a table.

    PEP 751 leaves ``[tool]`` to each tool, so a lock whose ``tool`` or
    ``tool.wheelbarrow`` is something else was not written by wheelbarrow.
    """
    tool = data.get("tool")
    table = tool.get("wheelbarrow") if isinstance(tool, dict) else None
    return table if isinstance(table, dict) else {}


def lock_admits(lock: Lock, target: Target) -> bool:
    """Whether the lock's requires-python holds for the target (for every 3.X.y of a ``3.X``)."""
    required = lock.pylock.requires_python
    return required is None or required.contains(target.python.full)


def marker_environment(target: Target) -> dict[str, str]:
    """The target's PEP 508 environment as the plain mapping ``Marker.evaluate`` is typed for."""
    # Target.environment is packaging's Environment, a TypedDict of strings, which mypy
    # does not take for a Mapping[str, str].
    return {name: str(value) for name, value in target.environment.items()}


def lock_environment(lock: Lock, target: Target) -> dict[str, str | AbstractSet[str]]:
    """The environment a lock's package markers are evaluated in (PEP 751): the target's, no
    extras, the lock's default groups."""
    return {
        **marker_environment(target),
        "extras": frozenset(),
        "dependency_groups": frozenset(lock.pylock.default_groups or []),
    }


def select_wheels(lock: Lock, target: Target) -> tuple[Artefact, ...]:
    """The wheel of each package the target installs; no source builds allowed."""
    from wheelbarrow.app.config import ALL, BuildConfig

    return select_artefacts(lock, target, BuildConfig(only_binary=frozenset({ALL})))


def select_artefacts(lock: Lock, target: Target, config: BuildConfig) -> tuple[Artefact, ...]:
    """What to put in the wheelhouse for each package the target installs, sorted by name.

    Follows the PEP 751 installer steps (markers, requires-python, the best
    wheel by tag priority) and then the build settings: a package with a
    compatible wheel takes it unless ``no-binary`` names it; otherwise its
    sdist, directory or VCS source is built, unless ``only-binary`` forbids
    that. Every package that can be had neither way is collected first and
    reported together.
    """
    # Not packaging's Pylock.select, which walks the same PEP 751 steps: it is new in
    # packaging 26.1 (wheelbarrow supports 25.0 on); it raises at the first package with
    # neither a fitting wheel nor an sdist, so not every missing package could be named
    # at once; it yields a package's wheel even when no-binary asks for its source, and
    # a wheel given as a direct archive URL whatever its tags; it rejects a lock whose
    # `environments` leave out the target, and finds duplicates only by the names as
    # written, not canonicalised; and its errors are not ours (file, package, hint).
    pylock = lock.pylock
    env = lock_environment(lock, target)
    python = target.environment["python_full_version"]
    if pylock.requires_python and not pylock.requires_python.contains(python):
        raise InputError(
            f"{lock.path}: requires Python {pylock.requires_python}, the target is {python}",
            hint="lock again for this target",
        )
    rank = {tag: i for i, tag in enumerate(target.tags)}
    chosen: list[Artefact] = []
    missing: list[str] = []
    seen: set[str] = set()
    for package in pylock.packages:
        if package.marker and not package.marker.evaluate(env, context="lock_file"):
            continue
        name = canonicalize_name(package.name)
        if name in seen:
            raise InputError(
                f"{lock.path}: {name} is selected twice for {target}",
                hint="lock again for this target",
            )
        seen.add(name)
        if package.requires_python and not package.requires_python.contains(python):
            raise InputError(
                f"{lock.path}: {name} requires Python {package.requires_python}, "
                f"the target is {python}",
                hint="lock again for this target",
            )
        version = str(package.version) if package.version else "?"
        wheel = _best_wheel(package, rank)
        source = _source(lock, package, name, version)
        direct = _archive_wheel(lock, package, name, version, rank) if wheel is None else None
        if direct is not None:
            chosen.append(direct)
        elif wheel is not None and not config.forces_source(name):
            chosen.append(_artefact(lock, package, wheel))
        elif source is not None and not config.forbids_source(name):
            chosen.append(source)
        else:
            missing.append(f"{name} {version} ({_why_missing(package, wheel, source)})")
    if missing:
        raise NoCompatibleWheelError(sorted(missing), target=str(target))
    return tuple(sorted(chosen, key=lambda a: a.name))


def _why_missing(package: Package, wheel: PackageWheel | None, source: Artefact | None) -> str:
    """What the lock has of a package the target cannot have, and why that is not enough."""
    has = []
    if package.wheels:
        has.append("wheels for other targets" if wheel is None else "a wheel")
    if source is not None:
        has.append(f"a{'n' if source.kind == 'sdist' else ''} {source.kind}")
    why = "only-binary forbids a source build" if source is not None else "no source"
    if wheel is not None:
        why = "no-binary asks for a source build, and the lock has no source"
    return f"has {' and '.join(has) or 'nothing'}; {why}"


def _best_wheel(package: Package, rank: dict[Any, int]) -> PackageWheel | None:
    best: tuple[int, PackageWheel] | None = None
    for wheel in package.wheels or ():
        tags = parse_wheel_filename(wheel.filename)[-1]
        score = min((rank[t] for t in tags if t in rank), default=None)
        if score is not None and (best is None or score < best[0]):
            best = (score, wheel)
    return best[1] if best else None


def _source(lock: Lock, package: Package, name: NormalizedName, version: str) -> Artefact | None:
    """The package's buildable source, if the lock names one."""
    if package.directory is not None:
        return _directory_source(lock, package.directory.path, name, version)
    if package.vcs is not None:
        commit = package.vcs.commit_id
        subdirectory = package.vcs.subdirectory or None
        if subdirectory is not None and (
            subdirectory.startswith("/") or ".." in Path(subdirectory).parts
        ):
            raise InputError(
                f"{lock.path}: {name}'s subdirectory {subdirectory!r} leaves its repository",
                hint="name a directory inside the repository",
            )
        return Artefact(
            name=name,
            version=version,
            filename=f"{name}-{commit[:12]}",
            url=package.vcs.url,
            path=_local_path(lock, name, package.vcs.path) if package.vcs.path else None,
            # The same commit holds several projects in a monorepo: the directory counts.
            sha256=f"git-{commit}" + (f":{subdirectory}" if subdirectory else ""),
            size=None,
            kind="vcs",
            commit=commit,
            subdirectory=subdirectory,
        )
    archive = package.sdist or package.archive
    if archive is None or (package.sdist is None and _archive_name(archive).endswith(".whl")):
        return None  # a direct wheel URL is not a source (see _archive_wheel)
    sha256 = archive.hashes.get("sha256")
    if sha256 is None:
        raise InputError(
            f"{lock.path}: the source of {name} has no sha256 hash",
            hint="lock again with `wheelbarrow lock`",
        )
    filename = getattr(archive, "filename", None) or Path(archive.path or archive.url or "").name
    return Artefact(
        name=name,
        version=version,
        filename=filename,
        url=archive.url,
        path=_local_path(lock, name, archive.path) if archive.path else None,
        sha256=sha256.lower(),
        size=archive.size,
        kind="sdist",
    )


def _directory_source(lock: Lock, directory: str, name: NormalizedName, version: str) -> Artefact:
    """A local project directory the lock names, which must be a readable directory."""
    from wheelbarrow._core.digests import tree_digest

    path = _local_path(lock, name, directory).resolve()
    try:
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long, a loop of links
        raise InputError(
            f"{lock.path}: {name} points at {path}, which cannot be read: {exc.strerror}",
            hint="fix the path in the requirements and lock again",
        ) from exc
    if not is_dir:
        raise InputError(
            f"{lock.path}: {name} points at {path}, which is not a directory",
            hint="fix the path in the requirements and lock again",
        )
    return Artefact(
        name=name,
        # uv locks a local directory without its version; its pyproject may say it.
        version=(_declared_version(path) or version) if version == "?" else version,
        filename=path.name,
        url=None,
        path=path,
        sha256=tree_digest(path),
        size=None,
        kind="directory",
    )


def _archive_name(archive: Any) -> str:
    from urllib.parse import unquote, urlparse

    where = archive.path or urlparse(archive.url or "").path
    return unquote(Path(where).name)


def _archive_wheel(
    lock: Lock, package: Package, name: NormalizedName, version: str, rank: dict[Any, int]
) -> Artefact | None:
    """A ``name @ https://.../x-1.0-py3-none-any.whl`` requirement: uv locks it as an
    archive, yet it is a wheel to install as it is (if the target accepts its tags)."""
    archive = package.archive
    if archive is None or package.sdist is not None:
        return None
    filename = _archive_name(archive)
    if not filename.endswith(".whl"):
        return None
    try:
        tags = parse_wheel_filename(filename)[-1]
    except InvalidWheelFilename as exc:
        raise InputError(f"{lock.path}: {name} points at {filename!r}: {exc}") from exc
    if not any(t in rank for t in tags):
        return None
    sha256 = archive.hashes.get("sha256")
    if sha256 is None:
        raise InputError(
            f"{lock.path}: the wheel {filename} of {name} has no sha256 hash",
            hint="lock again with `wheelbarrow lock`",
        )
    return Artefact(
        name=name,
        version=version,
        filename=filename,
        url=archive.url,
        path=_local_path(lock, name, archive.path) if archive.path else None,
        sha256=sha256.lower(),
        size=archive.size,
    )


def _local_path(lock: Lock, name: str, path: str) -> Path:
    """A path written in the lock, relative to its directory; refused if no file can have it."""
    if "\0" in path:
        raise InputError(
            f"{lock.path}: the path of {name} holds a NUL byte: {path!r}",
            hint="fix the path in the requirements and lock again",
        )
    return lock.path.parent / path


def _declared_version(project: Path) -> str | None:
    """The static ``[project] version`` of a local project, if its pyproject.toml has one.

    Anything unreadable gives None: the build reads the file again and reports it.
    """
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    table = data.get("project")
    version = table.get("version") if isinstance(table, dict) else None
    if not isinstance(version, str) or "version" in (table or {}).get("dynamic", ()):
        return None
    try:
        return str(Version(version))
    except InvalidVersion:
        return None


def _artefact(lock: Lock, package: Package, source: PackageWheel) -> Artefact:
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
        path=_local_path(lock, name, source.path) if source.path else None,
        sha256=sha256.lower(),
        size=source.size,
    )
