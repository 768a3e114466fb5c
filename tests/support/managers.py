"""Real Poetry and Pipenv projects for tests: written here, locked by the real tools.

``scripts/setup`` installs Poetry 1.8, Poetry 2 and Pipenv, each in its own
environment under ``.tools/`` of the checkout. The makers below write a
project's ``pyproject.toml`` or ``Pipfile``, run the real ``poetry lock`` or
``pipenv lock`` against the real package index (so tests using them are
``@pytest.mark.network``), and return the project directory. The tools' caches,
configuration and virtual environments stay inside the ``home`` directory given
(a tmp path), never the user's home.

Typical use, once per test class::

    @pytest.fixture(scope="class")
    def project(self, tmp_path_factory):
        root = tmp_path_factory.mktemp("app")
        return make_poetry_project(root, POETRY_2, PYPROJECT, home=root.parent / "home")
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CHECKOUT = Path(__file__).resolve().parents[2]
TOOLS = CHECKOUT / ".tools"

PoetryVersion = Literal["1.8", "2"]
POETRY_1: PoetryVersion = "1.8"
POETRY_2: PoetryVersion = "2"


@dataclass(frozen=True, slots=True)
class ToolRun:
    """One run of a package manager: its exit code and what it printed (both streams)."""

    code: int
    output: str


def poetry_executable(version: PoetryVersion) -> Path:
    """The ``poetry`` of ``scripts/setup`` for ``version`` ("1.8" or "2")."""
    return _tool(f"poetry-{version}", "poetry")


def pipenv_executable() -> Path:
    """The ``pipenv`` of ``scripts/setup``."""
    return _tool("pipenv", "pipenv")


def _tool(env: str, name: str) -> Path:
    path = TOOLS / env / "bin" / name
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: run scripts/setup, which installs it")
    return path


# What the tools keep of this process's environment: the basics, and how this machine reaches
# the package index (its proxies, and the CA bundles that hold a TLS-inspecting proxy's
# certificate: Poetry's requests trusts only certifi's bundle without REQUESTS_CA_BUNDLE).
_KEPT = frozenset({"PATH", "LANG", "LC_ALL", "TMPDIR"})
_KEPT |= frozenset({"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"})
_PROXIES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})


def tool_environ(home: Path) -> dict[str, str]:
    """An environment for Poetry and Pipenv that keeps every file they write under ``home``.

    Caches, configuration and virtual environments go there; Poetry makes no
    virtual environment (locking needs none), Pipenv makes its own in the project.
    """
    home.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in _KEPT or k.lower() in _PROXIES}
    return {
        **keep,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "POETRY_CACHE_DIR": str(home / "cache" / "poetry"),
        "POETRY_CONFIG_DIR": str(home / "config" / "poetry"),
        "POETRY_DATA_DIR": str(home / "data" / "poetry"),
        "POETRY_VIRTUALENVS_CREATE": "false",
        "POETRY_NO_INTERACTION": "1",
        "PIPENV_CACHE_DIR": str(home / "cache" / "pipenv"),
        "PIPENV_VENV_IN_PROJECT": "1",
        "PIPENV_IGNORE_VIRTUALENVS": "1",
        "PIPENV_NOSPIN": "1",
        "PIPENV_YES": "1",
        "PIPENV_VERBOSITY": "-1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "WORKON_HOME": str(home / "virtualenvs"),
        "NO_COLOR": "1",
        "TERM": "dumb",
    }


def run_poetry(version: PoetryVersion, project: Path, *args: str, home: Path) -> ToolRun:
    """Run the real Poetry ``version`` in ``project`` with ``args``; never raises on failure."""
    return _run([str(poetry_executable(version)), "--no-ansi", *args], project, home)


def run_pipenv(
    project: Path, *args: str, home: Path, env: Mapping[str, str] | None = None
) -> ToolRun:
    """Run the real Pipenv in ``project`` with ``args``; never raises on failure.

    ``env`` adds variables (e.g. one a ``[[source]]`` URL names as ``${VAR}``).
    """
    return _run([str(pipenv_executable()), *args], project, home, env)


def _run(
    command: list[str], project: Path, home: Path, env: Mapping[str, str] | None = None
) -> ToolRun:
    done = subprocess.run(
        command,
        cwd=project,
        env={**tool_environ(home), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    return ToolRun(code=done.returncode, output=done.stdout)


def make_poetry_project(
    directory: Path, version: PoetryVersion, pyproject: str, *, home: Path
) -> Path:
    """Write ``pyproject`` (dedented) into ``directory`` and lock it with the real Poetry.

    ``version`` is ``POETRY_1`` ("1.8") or ``POETRY_2`` ("2"). Returns
    ``directory``, which then holds ``pyproject.toml`` and the ``poetry.lock`` that
    Poetry wrote. Raises AssertionError with Poetry's output when locking fails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    write_pyproject(directory, pyproject)
    done = run_poetry(version, directory, "lock", home=home)
    assert done.code == 0, f"poetry {version} lock failed:\n{done.output}"
    return directory


def write_pyproject(directory: Path, pyproject: str) -> Path:
    """(Re)write ``directory/pyproject.toml`` from ``pyproject``, dedented; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "pyproject.toml"
    path.write_text(textwrap.dedent(pyproject).lstrip(), encoding="utf-8")
    return path


def poetry_lock_is_fresh(version: PoetryVersion, project: Path, *, home: Path) -> ToolRun:
    """Ask the real Poetry whether ``project``'s poetry.lock matches its pyproject.toml.

    Poetry 2 runs ``poetry check --lock``, Poetry 1.8 ``poetry lock --check``
    (its spelling); code 0 means fresh.
    """
    args = ("check", "--lock") if version == POETRY_2 else ("lock", "--check")
    return run_poetry(version, project, *args, home=home)


def make_pipenv_project(directory: Path, pipfile: str, *, home: Path) -> Path:
    """Write ``pipfile`` (dedented) as ``directory/Pipfile`` and lock it with the real Pipenv.

    Returns ``directory``, which then holds ``Pipfile`` and the ``Pipfile.lock``
    that ``pipenv lock`` wrote (and Pipenv's ``.venv``, made for locking). A
    ``[requires] python_version`` in ``pipfile`` must name a Python on PATH.
    Raises AssertionError with Pipenv's output when locking fails.
    """
    directory.mkdir(parents=True, exist_ok=True)
    write_pipfile(directory, pipfile)
    done = run_pipenv(directory, "lock", home=home)
    assert done.code == 0, f"pipenv lock failed:\n{done.output}"
    return directory


def write_pipfile(directory: Path, pipfile: str) -> Path:
    """(Re)write ``directory/Pipfile`` from ``pipfile``, dedented; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "Pipfile"
    path.write_text(textwrap.dedent(pipfile).lstrip(), encoding="utf-8")
    return path


def pipenv_lock_is_fresh(project: Path, *, home: Path) -> ToolRun:
    """Ask the real Pipenv (``pipenv verify``) whether Pipfile.lock matches the Pipfile."""
    return run_pipenv(project, "verify", home=home)
