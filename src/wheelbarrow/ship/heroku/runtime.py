"""The app's CPython: what it is, the config vars choosing it, a tree put in place once it runs."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from wheelbarrow._core.errors import PythonRuntimeError, ToolError
from wheelbarrow._core.files import temporary_sibling
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.target import PythonVersion

__all__ = [
    "APP_DIR",
    "DOWNLOADS_JSON_VAR",
    "RUNTIME_HOME",
    "SET_ONE_HINT",
    "SHA256_VAR",
    "SUPPORTED_MINORS",
    "TARBALL_VAR",
    "URL_VAR",
    "Runtime",
    "dotted",
    "install_tree",
    "matches",
    "probe",
    "read_env_dir",
]

URL_VAR: Final = "WHEELBARROW_PYTHON_URL"
"""Config var: URL template (or file path / ``file://`` URL) of an install_only CPython tarball."""
TARBALL_VAR: Final = "WHEELBARROW_PYTHON_TARBALL"
"""Config var: path of a local install_only tarball (relative paths are inside BUILD_DIR)."""
SHA256_VAR: Final = "WHEELBARROW_PYTHON_SHA256"
"""Config var: the tarball's expected sha256, checked before anything is unpacked."""
DOWNLOADS_JSON_VAR: Final = "UV_PYTHON_DOWNLOADS_JSON_URL"
"""Config var read by uv: a JSON list of Python downloads (a file or URL) for a private source."""
SUPPORTED_MINORS: Final = tuple(range(9, 15))
"""Python 3.X minors the buildpack provides: 3.9 to 3.14."""
RUNTIME_HOME: Final = Path(".heroku") / "python"
"""Where a standalone runtime lands, relative to BUILD_DIR (and to /app at run time)."""
APP_DIR: Final = Path("/app")
"""Where the slug runs."""
_PROBE: Final = "import sys; print(sys.version_info[:3])"
_PROBE_OUTPUT: Final = re.compile(r"^\((\d+), (\d+), (\d+)\)$")
_ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SET_ONE_HINT: Final = (
    f"set the config var {URL_VAR} to an install_only tarball URL such as "
    "https://…/cpython-{version}-{arch}-unknown-linux-gnu-install_only.tar.gz "
    f"(or {TARBALL_VAR} to a file)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """The CPython an app is built with, and where it comes from.

    A ``standalone`` runtime lives in ``home`` (``BUILD_DIR/.heroku/python``),
    ships in the slug and runs from ``/app/.heroku/python`` since the build is
    relocatable. A ``stack`` runtime is the stack's own interpreter (``home``
    is None); the run image has the same one at the same path.
    """

    python: Path
    version: str
    kind: Literal["standalone", "stack"]
    home: Path | None
    source: str

    def slug_python(self, build_dir: Path, app_dir: Path = APP_DIR) -> str:
        """The interpreter's path at run time: under ``app_dir`` for standalone, else unchanged.

        >>> runtime.slug_python(Path("/tmp/build_1234"))
        '/app/.heroku/python/bin/python3'
        """
        if self.home is None:
            return str(self.python)
        try:
            relative = self.python.relative_to(build_dir)
        except ValueError as exc:
            raise ValueError(
                f"{self.python} is not inside the build directory {build_dir}"
            ) from exc
        return str(app_dir / relative)


def read_env_dir(env_dir: Path) -> dict[str, str]:
    """The config vars in a buildpack's ENV_DIR: one file per variable, named after it.

    One final newline is dropped from each value, nothing else. Directories,
    special files and names that are not variable names (``.gitkeep``,
    ``my-var``) are skipped. A missing ENV_DIR has no variables.
    """
    if not env_dir.is_dir():
        return {}
    values: dict[str, str] = {}
    for path in sorted(env_dir.iterdir()):
        if not _ENV_NAME.match(path.name) or not path.is_file():
            continue
        # surrogateescape: the value round-trips to os.environ whatever its bytes.
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        values[path.name] = text.removesuffix("\n")
    return values


def install_tree(
    fill: Callable[[Path], Path],
    *,
    source: str,
    version: PythonVersion,
    build_dir: Path,
    runner: Runner,
) -> Runtime:
    """Put the tree ``fill(scratch)`` returns at ``build_dir/.heroku/python`` once it runs."""
    heroku = build_dir / RUNTIME_HOME.parent
    home = build_dir / RUNTIME_HOME
    created = not heroku.exists()
    heroku.mkdir(parents=True, exist_ok=True)
    scratch = temporary_sibling(heroku / "python")
    try:
        root = fill(scratch)
        relative = interpreter_in(root, version, source=source)
        found = probe(root / relative, runner)
        if isinstance(found, str):
            raise PythonRuntimeError(
                f"the Python from {source} does not run here: {found}",
                hint="use a python-build-standalone install_only build for "
                "x86_64-unknown-linux-gnu (or the stack's architecture)",
            )
        if not matches(version, found):
            raise PythonRuntimeError(
                f"the tarball {source} holds Python {dotted(found)}, "
                f"but the app asks for Python {version}",
                hint=f"point {URL_VAR} at a build of Python {version}",
            )
        if home.is_symlink() or home.is_file():
            home.unlink()
        elif home.exists():
            shutil.rmtree(home)
        root.rename(home)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        if created:
            shutil.rmtree(heroku, ignore_errors=True)
        raise
    # The archive's top directory moved out; what is left is its empty parent.
    shutil.rmtree(scratch, ignore_errors=True)
    return Runtime(
        python=home / relative,
        version=dotted(found),
        kind="standalone",
        home=home,
        source=source,
    )


def interpreter_in(root: Path, version: PythonVersion, *, source: str) -> Path:
    for name in ("python3", f"python{version.short}"):
        if (root / "bin" / name).exists():
            return Path("bin", name)
    raise PythonRuntimeError(
        f"the tarball {source} has no bin/python3: not an install_only CPython build",
        hint="use a python-build-standalone *-install_only.tar.gz",
    )


def probe(python: Path, runner: Runner) -> tuple[int, int, int] | str:
    """The interpreter's version, or why it could not be had."""
    # -I: PYTHONHOME/PYTHONPATH of the build must not decide what we see;
    # -B: the probe must not add .pyc files to a tree that ships.
    try:
        done = runner([str(python), "-I", "-B", "-c", _PROBE])
    except (OSError, ToolError) as exc:
        # A binary for another architecture or libc: "Exec format error" and the like.
        return str(exc)
    match = _PROBE_OUTPUT.match(done.stdout.strip())
    if done.returncode != 0 or match is None:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        return f"exit status {done.returncode}" + (f": {detail[-1]}" if detail else "")
    return int(match[1]), int(match[2]), int(match[3])


def matches(wanted: PythonVersion, found: tuple[int, int, int]) -> bool:
    return found[:2] == (wanted.major, wanted.minor) and wanted.micro in (None, found[2])


def dotted(version: tuple[int, int, int]) -> str:
    return ".".join(str(part) for part in version)
