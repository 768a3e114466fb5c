"""Reading an app directory the way users already describe apps."""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from wheelbarrow._core.errors import InputError, TargetError
from wheelbarrow.app.managers import PIPFILE_LOCK, REQUIREMENT_LOOKALIKES, Detected, detect_manager
from wheelbarrow.app.requirements import Requirements
from wheelbarrow.app.requirements_file import parse_requirements_file, requirements_from_strings
from wheelbarrow.app.target import PythonVersion

REQUIREMENTS_TXT = "requirements.txt"
PYPROJECT = "pyproject.toml"
PYLOCK = "pylock.toml"


@dataclass(frozen=True, slots=True, kw_only=True)
class App:
    """What an app directory says about its dependencies and its Python."""

    root: Path
    requirements: Requirements | None
    requirements_source: Path | None
    python: PythonVersion | None
    python_source: str | None
    requires_python: SpecifierSet | None
    # The package manager whose files describe the app (None: only a pylock.toml of
    # wheelbarrow's own, or nothing).
    manager: Detected | None = None

    @property
    def locked_by_manager(self) -> bool:
        """Whether a package manager's own lock (uv, Poetry, Pipenv) holds the pins."""
        return self.manager is not None and self.manager.name in ("uv", "poetry", "pipenv")

    @property
    def lock_path(self) -> Path:
        """Where the app's PEP 751 lock lives."""
        return self.root / PYLOCK

    def choose_python(self, running: PythonVersion) -> tuple[PythonVersion, str]:
        """The Python to target and where that choice came from.

        An explicit version file wins; then the running interpreter's minor
        version if it satisfies ``requires-python``; then the oldest version that
        does. The running interpreter gives only ``3.X``: its micro release is an
        accident of this machine, and the lock must hold for every ``3.X.y``.
        """
        if self.python is not None and self.python_source is not None:
            return self.python, self.python_source
        running = running.minor_only
        if self.requires_python is None:
            return running, "the running interpreter"
        if self.requires_python.contains(running.full):
            return (
                running,
                f"the running interpreter (satisfies requires-python {self.requires_python})",
            )
        for minor in range(9, 20):
            candidate = PythonVersion(major=3, minor=minor)
            if self.requires_python.contains(candidate.full):
                return candidate, f"requires-python {self.requires_python}"
        raise TargetError(
            f"{self.root / PYPROJECT}: requires-python {str(self.requires_python)!r} "
            "admits no Python 3 version",
            hint="fix requires-python, or pass --python",
        )


def read_app(root: Path, *, environ: Mapping[str, str]) -> App:
    """Read requirements, pyproject.toml, pylock.toml and the Python version of ``root``."""
    if not root.is_dir():
        raise InputError(f"{root}: not a directory", hint="pass the directory of your app")
    pyproject = _read_pyproject(root / PYPROJECT)
    project = pyproject.get("project", {})
    if not isinstance(project, dict):
        raise InputError(f"{root / PYPROJECT}: [project] must be a table")
    requires_python = _requires_python(root / PYPROJECT, project)

    manager = detect_manager(root)  # several managers' files: an error listing them
    requirements: Requirements | None = None
    source: Path | None = None
    if manager is not None and manager.name == "pip":
        source = root / REQUIREMENTS_TXT
        requirements = parse_requirements_file(source, environ=environ)
    elif manager is not None and manager.name in ("uv", "poetry", "pipenv"):
        source = root / manager.files[-1]  # the lock: read when planning
    elif "dependencies" in project:
        deps = project["dependencies"]
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise InputError(
                f"{root / PYPROJECT}: [project] dependencies must be a list of strings"
            )
        source = root / PYPROJECT
        requirements = requirements_from_strings(deps, path=source)
    elif _poetry_dependencies(pyproject):
        raise InputError(
            f"{root / PYPROJECT}: a Poetry project ([tool.poetry.dependencies]) without "
            "poetry.lock: nothing pins its versions",
            hint="run `poetry lock` and commit poetry.lock",
        )
    elif not (root / PYLOCK).is_file():
        raise InputError(
            f"{root}: no {REQUIREMENTS_TXT}, no [project] dependencies in {PYPROJECT} "
            f"and no {PYLOCK}: nothing says what the app needs",
            hint=_lookalike_hint(root)
            or f"list your dependencies in {root / REQUIREMENTS_TXT}, one per line",
        )

    python, python_source = _python_version(root)
    return App(
        root=root,
        requirements=requirements,
        requirements_source=source,
        python=python,
        python_source=python_source,
        requires_python=requires_python,
        manager=manager,
    )


def _poetry_dependencies(pyproject: Mapping[str, object]) -> bool:
    """Whether a Poetry 1 style project lists dependencies beyond its Python."""
    tool = pyproject.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    deps = poetry.get("dependencies") if isinstance(poetry, dict) else None
    return isinstance(deps, dict) and any(str(k).lower() != "python" for k in deps)


def _read_pyproject(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc


def _requires_python(path: Path, project: object) -> SpecifierSet | None:
    if not isinstance(project, dict) or "requires-python" not in project:
        return None
    text = project["requires-python"]
    try:
        return SpecifierSet(str(text))
    except InvalidSpecifier as exc:
        raise InputError(f"{path}: requires-python {text!r} is not a version specifier") from exc


def _python_version(root: Path) -> tuple[PythonVersion | None, str | None]:
    """The version pinned by ``.python-version`` or ``runtime.txt``, in that order."""
    for name in (".python-version", "runtime.txt"):
        path = root / name
        if not path.is_file():
            continue
        try:
            # utf-8-sig: editors on Windows start files with a byte order mark.
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TargetError(
                f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                hint="write the version as plain text, such as 3.12",
            ) from exc
        lines = [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not lines:
            raise TargetError(f"{path}: empty", hint="write a version such as 3.12 in it")
        return PythonVersion.parse(lines[0], source=f"{path}:1"), name
    return _pipfile_lock_python(root / PIPFILE_LOCK)


def _pipfile_lock_python(path: Path) -> tuple[PythonVersion | None, str | None]:
    """Pipfile.lock's ``python_full_version`` or ``python_version``, as Pipenv records them."""
    if not path.is_file():
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None, None  # its reader names the problem when the app is planned
    meta = data.get("_meta") if isinstance(data, dict) else None
    requires = meta.get("requires") if isinstance(meta, dict) else None
    if not isinstance(requires, dict):
        return None, None
    for key in ("python_full_version", "python_version"):
        value = requires.get(key)
        if isinstance(value, str) and value.strip():
            return PythonVersion.parse(value.strip(), source=f"{path}: {key}"), PIPFILE_LOCK
    return None, None


def _lookalike_hint(root: Path) -> str | None:
    names = [p.name for p in root.iterdir()]
    close = difflib.get_close_matches(REQUIREMENTS_TXT, names, n=1, cutoff=0.75)
    close += [n for n in REQUIREMENT_LOOKALIKES if n in names]
    if close:
        return f"found {close[0]!r}: did you mean {REQUIREMENTS_TXT!r}? rename it"
    return None
