"""Which package manager describes an app, and the exact pins its lock holds.

Users choose the package manager; wheelbarrow honours its lock. The readers of
each manager's lock (``uvlock``, ``poetrylock``, ``pipfilelock``) turn it into a
:class:`ManagedLock`: either a PEP 751 lock exported by the manager itself (uv),
or exact pins with their hashes (Poetry, Pipenv), which uv then finds on the
index for the target, since neither lock names every file or its URL.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from wheelbarrow._core.errors import InputError

ManagerName = Literal["pip", "pylock", "uv", "poetry", "pipenv", "pyproject"]
LockingManager = Literal["uv", "poetry", "pipenv"]

REQUIREMENTS_TXT = "requirements.txt"
PYLOCK = "pylock.toml"
UV_LOCK = "uv.lock"
POETRY_LOCK = "poetry.lock"
PIPFILE = "Pipfile"
PIPFILE_LOCK = "Pipfile.lock"
PYPROJECT = "pyproject.toml"
# Names people write by mistake for requirements.txt; offered as a hint (read_app, CNB detect).
REQUIREMENT_LOOKALIKES = (
    "requirement.txt",
    "requirements.text",
    "Requirements.txt",
    "requirements.txt.txt",
    "requirments.txt",
    "requirements.in",
    "requirements",
)

# How to tell each manager to deploy without the others' files, for the
# several-managers error.
_KEEP_ONE = {
    "pip": f"keep {REQUIREMENTS_TXT}",
    "uv": f"keep {UV_LOCK} (and pyproject.toml)",
    "poetry": f"keep {POETRY_LOCK} (and pyproject.toml)",
    "pipenv": f"keep {PIPFILE} and {PIPFILE_LOCK}",
}


class StaleLockError(InputError):
    """A package manager's lock no longer matches the project file it was made from."""


class SeveralManagersError(InputError):
    """An app holds the files of more than one package manager."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Groups:
    """Which optional parts of a lock to deploy.

    The default is what the managers deploy for production: ``uv sync
    --no-dev``, ``poetry install --only main``, ``pipenv install --deploy``.
    """

    dev: bool = False  # uv's dev group, Poetry's dev group/dev-dependencies, Pipfile's develop
    names: tuple[str, ...] = ()  # further named groups (PEP 735, Poetry groups)
    extras: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """For digests: the selection changes what is deployed."""
        return {"dev": self.dev, "names": sorted(self.names), "extras": sorted(self.extras)}


@dataclass(frozen=True, slots=True, kw_only=True)
class LockedPin:
    """One package as a manager's lock pins it."""

    name: str  # normalised
    version: str
    hashes: tuple[str, ...]  # "sha256:<hex>" as the lock lists them; () when it lists none
    marker: str | None = None  # PEP 508 marker: when the package applies
    # A direct reference for a package not from an index ("name @ file:///abs/path",
    # "name @ git+https://...@<commit>"); None for index packages.
    requirement: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagedLock:
    """A manager's lock, read: what to deploy and what decides it."""

    manager: LockingManager
    path: Path  # the lock file
    # A hash of everything that decides the deployment (the lock's bytes, the
    # selected groups): while it is unchanged, wheelbarrow's own lock stays current.
    digest: str
    pins: tuple[LockedPin, ...] = ()  # Poetry, Pipenv
    pylock: str | None = None  # uv: the exported PEP 751 lock, used as it is
    # Indexes the lock or project names (Pipfile [[source]], Poetry sources), as written.
    index_urls: tuple[str, ...] = ()
    requires_python: str | None = None
    # The exact Python the lock was made for (Pipfile.lock's python_full_version
    # or python_version); None when it names none.
    python: str | None = None
    notes: tuple[str, ...] = ()  # lines for the user ("the project itself is built as a wheel")


@dataclass(frozen=True, slots=True, kw_only=True)
class Detected:
    """The package manager an app uses, and the files that say so."""

    name: ManagerName
    files: tuple[str, ...]


def is_wheelbarrow_lock(path: Path) -> bool:
    """Whether ``path`` is a lock wheelbarrow wrote (its own, free to rewrite)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    tool = data.get("tool")
    return isinstance(tool, dict) and isinstance(tool.get("wheelbarrow"), dict)


def detect_manager(root: Path) -> Detected | None:
    """The package manager of the app in ``root``; None when no file names one.

    More than one is an error listing them, as Heroku's Python buildpack
    refuses the same. A pylock.toml wheelbarrow wrote belongs to whichever
    manager it was locked from and does not count.
    """
    found: dict[ManagerName, tuple[str, ...]] = {}
    if (root / UV_LOCK).is_file():
        found["uv"] = (UV_LOCK,)
    if (root / POETRY_LOCK).is_file():
        found["poetry"] = (POETRY_LOCK,)
    if (root / PIPFILE_LOCK).is_file() or (root / PIPFILE).is_file():
        found["pipenv"] = tuple(n for n in (PIPFILE, PIPFILE_LOCK) if (root / n).is_file())
    if (root / REQUIREMENTS_TXT).is_file():
        found["pip"] = (REQUIREMENTS_TXT,)
    if len(found) > 1:
        listing = "\n".join(f"  - {', '.join(files)} ({name})" for name, files in found.items())
        choices = "; ".join(_KEEP_ONE[name] for name in found)
        raise SeveralManagersError(
            f"{root}: the files of more than one package manager were found:\n{listing}\n"
            "wheelbarrow cannot tell which one holds the app's dependencies",
            hint=f"delete the files of the managers you do not use: {choices}",
        )
    if found:
        ((name, files),) = found.items()
        return Detected(name=name, files=files)
    lock = root / PYLOCK
    if lock.is_file() and not is_wheelbarrow_lock(lock):
        return Detected(name="pylock", files=(PYLOCK,))
    if (root / PYPROJECT).is_file():
        return Detected(name="pyproject", files=(PYPROJECT,))
    return None


def manager_files_digest(root: Path, detected: Detected) -> str:
    """A hash of the files the manager's lock is made from, read without running anything.

    While it is unchanged the lock wheelbarrow derived stands: an unchanged app
    is planned from local files only. uv workspace members' pyproject.toml files
    count too, since editing one makes uv.lock stale.
    """
    names = list(detected.files)
    if detected.name in ("uv", "poetry"):
        names.append(PYPROJECT)
    paths = [root / name for name in names]
    if detected.name == "uv":
        paths += _workspace_pyprojects(root)
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except FileNotFoundError:
            digest.update(b"(missing)")
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def _workspace_pyprojects(root: Path) -> list[Path]:
    try:
        data = tomllib.loads((root / PYPROJECT).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return []
    workspace = data.get("tool", {}).get("uv", {}).get("workspace", {})
    members = workspace.get("members", []) if isinstance(workspace, dict) else []
    found: list[Path] = []
    for pattern in members if isinstance(members, list) else []:
        if isinstance(pattern, str):
            found += [p / PYPROJECT for p in root.glob(pattern) if (p / PYPROJECT).is_file()]
    return found


def manager_index_urls(
    root: Path, detected: Detected | None, environ: Mapping[str, str]
) -> list[tuple[str, str]]:
    """The indexes a Pipfile or a Poetry project names, as ``(where, url)``, ready to use.

    Pipenv expands ``${VAR}`` in a source's URL; Poetry takes a source's
    credentials from ``POETRY_HTTP_BASIC_<NAME>_USERNAME`` and ``_PASSWORD``.
    Both are done here, so uv and the downloads reach a private index the way
    the manager itself does. Unreadable files give nothing: their reader names
    the problem.
    """
    if detected is None:
        return []
    found: list[tuple[str, str]] = []
    if detected.name == "pipenv" and (root / PIPFILE).is_file():
        data = _toml_or_empty(root / PIPFILE)
        for i, source in enumerate(_tables(data.get("source"))):
            url = source.get("url")
            if isinstance(url, str):
                found.append((f"{PIPFILE} [[source]] {i + 1}", _expand(url, environ)))
    elif detected.name == "poetry":
        tool = (
            data.get("tool") if isinstance(data := _toml_or_empty(root / PYPROJECT), dict) else {}
        )
        poetry = tool.get("poetry") if isinstance(tool, dict) else None
        for source in _tables(poetry.get("source") if isinstance(poetry, dict) else None):
            url, name = source.get("url"), source.get("name")
            if not isinstance(url, str):
                continue
            if isinstance(name, str):
                url = _with_poetry_credentials(url, name, environ)
            found.append((f"{PYPROJECT} [[tool.poetry.source]] {name}", url))
    return found


def _toml_or_empty(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _tables(value: object) -> list[dict[str, object]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _expand(text: str, environ: Mapping[str, str]) -> str:
    """``${VAR}`` and ``$VAR`` as Pipenv expands them (an unset variable is left as written)."""
    return re.sub(
        r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))",
        lambda m: environ.get(m[1] or m[2], m[0]),
        text,
    )


def _with_poetry_credentials(url: str, name: str, environ: Mapping[str, str]) -> str:
    key = re.sub(r"[^A-Z0-9]", "_", name.upper())
    user = environ.get(f"POETRY_HTTP_BASIC_{key}_USERNAME")
    password = environ.get(f"POETRY_HTTP_BASIC_{key}_PASSWORD")
    scheme, sep, rest = url.partition("://")
    if not sep or not (user or password) or "@" in rest.split("/", 1)[0]:
        return url
    userinfo = quote(user or "", safe="") + (":" + quote(password, safe="") if password else "")
    return f"{scheme}://{userinfo}@{rest}"
