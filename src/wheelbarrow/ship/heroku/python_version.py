"""The app's Python version, chosen as Heroku's Python buildpack chooses it (as of its v351).

The official buildpack reads, in order: ``runtime.txt`` (deprecated), ``.python-version``,
then Pipfile.lock's ``python_full_version`` and ``python_version``. A uv app must pin its
Python in ``.python-version``. End-of-life and unreleased versions are refused. Where
nothing pins the version, Heroku picks its default and warns; wheelbarrow warns the same
way but picks by ``requires-python`` or the interpreter running the build (see
:meth:`wheelbarrow.app.directory.App.choose_python`), so a pyproject-only or requirements-only app
with no pin still deploys.

Messages open with the official buildpack's headline (``Error: …`` / ``Warning: …``), so
that a user who searches for it finds Heroku's documentation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from wheelbarrow._core.errors import TargetError, UnsupportedPythonError
from wheelbarrow.app.managers import detect_manager

if TYPE_CHECKING:
    from wheelbarrow.app.target import PythonVersion

__all__ = [
    "NEWEST_MINOR",
    "OLDEST_MINOR",
    "PythonChoice",
    "choose_python",
    "requested_version",
]

OLDEST_MINOR: Final = 10
"""The oldest Python 3 minor the official buildpack builds (3.9 was removed on 2026-01-07)."""
NEWEST_MINOR: Final = 14
"""The newest Python 3 minor it recognises."""

RUNTIME_TXT: Final = "runtime.txt"
PYTHON_VERSION_FILE: Final = ".python-version"
PIPFILE_LOCK: Final = "Pipfile.lock"

# As the official buildpack reads them: integers without redundant leading zeros.
_INT: Final = r"(0|[1-9][0-9]*)"
_VERSION: Final = rf"{_INT}\.{_INT}(?:\.{_INT})?"
_RUNTIME_TXT: Final = re.compile(rf"^\s*python-({_VERSION})\s*$")
_VERSION_LINE: Final = re.compile(rf"^\s*({_VERSION})\s*$")
_BLANK_OR_COMMENT: Final = re.compile(r"^\s*(#.*)?$")
_MAX_SHOWN: Final = 100

_PIN_ADVICE: Final = (
    "create a file named .python-version (with the leading '.', no extension) in the app's "
    "root directory holding only the major version, such as {minor}: pinning a patch "
    "version stops the app from getting Python's security fixes"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonChoice:
    """The Python the buildpack builds with, where that came from, and what to warn about.

    ``origin`` is the file that pins it (``runtime.txt``, ``.python-version``,
    ``Pipfile.lock``) or, when nothing does, how wheelbarrow chose it; ``pinned``
    says which. ``warnings`` are whole messages, each opening with its headline.
    """

    version: PythonVersion
    origin: str
    pinned: bool
    warnings: tuple[str, ...] = ()

    @property
    def described(self) -> str:
        """``specified in .python-version`` or ``chosen by …``, for the build log."""
        return f"specified in {self.origin}" if self.pinned else f"chosen by {self.origin}"


def choose_python(
    app_dir: Path, *, fallback: Callable[[], tuple[PythonVersion, str]]
) -> PythonChoice:
    """The Python version for the app in ``app_dir``, read as Heroku's Python buildpack reads it.

    ``fallback`` gives the version (and how it was chosen) when no file pins
    one; it is called only then. Raises :class:`TargetError` for a version file
    that cannot be read, and :class:`UnsupportedPythonError` for end-of-life and
    unknown versions, each naming the file.
    """
    manager = detect_manager(app_dir)
    manager_name = manager.name if manager is not None else None
    warnings: list[str] = []
    found = _requested(app_dir, manager_name)
    if found is None:
        if manager_name == "uv":
            raise TargetError(
                "Error: No Python version was specified.\n"
                f"{app_dir / 'uv.lock'}: an app using uv must pin its Python version in a "
                ".python-version file, as on Heroku",
                hint="run 'uv python pin 3.X' in the app's root directory (3.X being the app's "
                "major Python version, without the patch number) and commit .python-version",
            )
        version, how = fallback()
        warnings.append(
            "Warning: No Python version was specified.\n"
            f"The app does not pin its Python version, so wheelbarrow chose Python {version} "
            f"({how}).\nRelying on that is not recommended: it can change and may differ from "
            "your development environment and CI.\nTo pin it, "
            + _PIN_ADVICE.format(minor=version.short)
            + ".\nHeroku's own Python buildpack would pick its default version here."
        )
        return PythonChoice(version=version, origin=how, pinned=False, warnings=tuple(warnings))
    text, origin = found
    version = _checked(text, origin)
    if origin == RUNTIME_TXT:
        if manager_name == "uv":
            raise TargetError(
                "Error: The runtime.txt file isn't supported when using uv.\n"
                f"{app_dir / RUNTIME_TXT}: an app using uv must pin its Python version in a "
                ".python-version file instead",
                hint=f"delete runtime.txt, run 'uv python pin {version.short}' in the app's "
                "root directory and commit .python-version",
            )
        warnings.append(
            "Warning: The runtime.txt file is deprecated.\n"
            "runtime.txt has been replaced by the more widely supported .python-version file, "
            "and Heroku will make this warning an error.\nDelete runtime.txt and "
            + _PIN_ADVICE.format(minor=version.short)
            + "."
        )
    return PythonChoice(version=version, origin=origin, pinned=True, warnings=tuple(warnings))


def _requested(app_dir: Path, manager: str | None) -> tuple[str, str] | None:
    """The version text and the file it came from, in the official buildpack's order."""
    runtime_txt = app_dir / RUNTIME_TXT
    if runtime_txt.is_file():
        contents = _read(runtime_txt)
        match = _RUNTIME_TXT.match(contents)
        if match is None:
            raise TargetError(
                "Error: Invalid Python version in runtime.txt.\n"
                f"{runtime_txt}: {_shown(contents)!r} is not of the form python-3.X or "
                "python-3.X.Y",
                hint="runtime.txt is deprecated: delete it and "
                + _PIN_ADVICE.format(minor=f"3.{NEWEST_MINOR}"),
            )
        return match[1], RUNTIME_TXT
    version_file = app_dir / PYTHON_VERSION_FILE
    if version_file.is_file():
        return _parse_version_file(version_file), PYTHON_VERSION_FILE
    lock = app_dir / PIPFILE_LOCK
    if manager == "pipenv" and lock.is_file():
        text = _pipfile_lock_python(lock)
        if text is not None:
            return text, PIPFILE_LOCK
    return None


def _parse_version_file(path: Path) -> str:
    lines = [line for line in _read(path).splitlines() if not _BLANK_OR_COMMENT.match(line)]
    example = f"3.{NEWEST_MINOR}"
    if not lines:
        raise TargetError(
            "Error: Invalid Python version in .python-version.\n"
            f"{path}: no Python version was found in it (lines starting with '#' are comments)",
            hint=f"write the app's major Python version in it, such as {example}",
        )
    if len(lines) > 1:
        shown = "\n".join(f"  {line.strip()}" for line in lines[:5])
        raise TargetError(
            "Error: Invalid Python version in .python-version.\n"
            f"{path}: multiple versions were found in it:\n{shown}",
            hint="keep only one Python version; start comment lines with '#'",
        )
    match = _VERSION_LINE.match(lines[0])
    if match is None:
        raise TargetError(
            "Error: Invalid Python version in .python-version.\n"
            f"{path}: {_shown(lines[0].strip())!r} is not of the form 3.X or 3.X.Y",
            hint=f"write only the major version, such as {example}: no quotes, no 'python-' "
            "prefix, no wildcards; comments go on their own line after '#'",
        )
    return match[1]


def _pipfile_lock_python(path: Path) -> str | None:
    """``_meta.requires.python_full_version``, else ``python_version``; None when neither."""
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as exc:
        raise TargetError(
            f"Error: Can't parse Pipfile.lock.\n{path}:{exc.lineno}: not valid JSON ({exc.msg})",
            hint="run 'pipenv lock' to regenerate Pipfile.lock",
        ) from exc
    meta = data.get("_meta") if isinstance(data, dict) else None
    requires = meta.get("requires") if isinstance(meta, dict) else None
    if not isinstance(requires, dict):
        return None
    value = requires.get("python_full_version") or requires.get("python_version")
    if value is None:
        return None
    if not isinstance(value, str) or _VERSION_LINE.match(value) is None:
        raise TargetError(
            "Error: Invalid Python version in Pipfile.lock.\n"
            f"{path}: the 'python_version' or 'python_full_version' field holds {value!r}, "
            "which is not of the form 3.X or 3.X.Y",
            hint="set python_version in the Pipfile's [requires] to a version such as "
            f"3.{NEWEST_MINOR}, then run 'pipenv lock'",
        )
    return value.strip()


def requested_version(app_dir: Path) -> tuple[str, str] | None:
    """The version text the app pins and the file that pins it, without checking the version.

    For the Cloud Native Buildpack's detect, which runs on the stack's Python with the
    standard library only. Raises :class:`TargetError` for a file that cannot be read.
    """
    manager = detect_manager(app_dir)
    return _requested(app_dir, manager.name if manager is not None else None)


def _checked(text: str, origin: str) -> PythonVersion:
    """``text`` as a version Heroku builds, else its end-of-life or unknown-version refusal."""
    from wheelbarrow.app.target import PythonVersion  # packaging: not needed by detect

    parts = [int(part) for part in text.split(".")]
    major, minor = parts[0], parts[1]
    if major < 3 or (major == 3 and minor < OLDEST_MINOR):
        raise UnsupportedPythonError(
            "Error: The requested Python version has reached end-of-life.\n"
            f"{origin}: Python {major}.{minor} has reached its upstream end-of-life and no "
            "longer receives security updates, so it is not supported",
            hint=f"upgrade to at least Python 3.{OLDEST_MINOR} by changing the version in "
            f"{origin} (Python 3.{NEWEST_MINOR} if you can)",
        )
    if major > 3 or minor > NEWEST_MINOR:
        raise UnsupportedPythonError(
            "Error: The requested Python version isn't recognised.\n"
            f"{origin}: Python {major}.{minor} is not a released Python version that this "
            "buildpack knows",
            hint=f"switch to a supported version (such as Python 3.{NEWEST_MINOR}) in {origin}",
        )
    return PythonVersion(major=major, minor=minor, micro=parts[2] if len(parts) > 2 else None)


def _read(path: Path) -> str:
    try:
        # utf-8-sig: editors on Windows start files with a byte order mark.
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TargetError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
            hint="write the version as plain text, such as 3.12",
        ) from exc


def _shown(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"
