"""Real uv projects for tests: a pyproject.toml and a uv.lock that ``uv lock`` made.

Locking asks the real package index (mark such tests ``@pytest.mark.network``);
uv's cache lives where the caller says (a temporary directory), so tests never
touch the user's. Path and git dependencies are made here too: a git source is
a local repository (``git init`` and one commit) named by a ``file://`` URL,
since only the package index is reachable.

    env = uv_environ(tmp_path / "uv-cache")
    lib = make_package(tmp_path / "app" / "libs" / "lib", "lib", dependencies=["six==1.15.0"])
    repo = make_git_package(tmp_path / "repo", "gitlib", dependencies=["idna==2.10"])
    app = make_uv_project(
        tmp_path / "app", env,
        dependencies=["lib", "gitlib", "iniconfig==1.1.1"],
        sources={"lib": {"path": "libs/lib"}, "gitlib": {"git": repo}},
        groups={"dev": ["packaging==20.9"]},
    )
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.utils import canonicalize_name

# The build backend of the projects made here, from the index, as `uv init` writes it.
UV_BUILD = ("uv_build>=0.8,<0.20", "uv_build")


def uv_bin() -> str:
    """The uv that wheelbarrow depends on (the one the CLI runs)."""
    from uv import find_uv_bin

    return str(find_uv_bin())


def uv_environ(cache: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to run uv in: ``base`` (default: this process's) with its cache in
    ``cache``, no Python downloads and no progress bars; uv's own settings that would change
    what a lock means (``UV_INDEX_URL``, ``UV_FROZEN``, ...) are dropped."""
    source = base if base is not None else os.environ
    env = {k: v for k, v in source.items() if not k.startswith("UV_")}
    env.update(UV_CACHE_DIR=str(cache), UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    return env


def run_uv(
    args: Sequence[str], cwd: Path, environ: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run ``uv ARGS`` in ``cwd`` and return what it did (never raises on failure)."""
    return subprocess.run(
        [uv_bin(), *args], cwd=cwd, env=dict(environ), capture_output=True, text=True, check=False
    )


def uv_lock(root: Path, environ: Mapping[str, str], *args: str) -> None:
    """``uv lock`` the project at ``root`` for real (against the index); fails the test on error."""
    done = run_uv(["lock", *args], root, environ)
    assert done.returncode == 0, f"uv lock failed in {root}:\n{done.stderr}"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is a JSON string for what tests write
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _module(name: str) -> str:
    return canonicalize_name(name).replace("-", "_")


def make_package(
    directory: Path,
    name: str,
    version: str = "0.1.0",
    *,
    dependencies: Sequence[str] = (),
    build_system: bool = True,
) -> Path:
    """A project directory: ``pyproject.toml`` and ``src/<module>/__init__.py`` (which sets
    ``NAME`` and ``VERSION``), built with uv_build from the index unless ``build_system`` is
    False (then it has no ``[build-system]``, which uv takes as not a package). Returns it."""
    module = directory / "src" / _module(name)
    module.mkdir(parents=True, exist_ok=True)
    (module / "__init__.py").write_text(
        f"NAME = {name!r}\nVERSION = {version!r}\n", encoding="utf-8"
    )
    (directory / "pyproject.toml").write_text(
        _pyproject(name, version, dependencies=dependencies, build_system=build_system),
        encoding="utf-8",
    )
    return directory


def _pyproject(
    name: str,
    version: str,
    *,
    dependencies: Sequence[str],
    build_system: bool,
    requires_python: str | None = None,
    extra: str = "",
) -> str:
    lines = ["[project]", f"name = {_toml_value(name)}", f"version = {_toml_value(version)}"]
    if requires_python is not None:
        lines.append(f"requires-python = {_toml_value(requires_python)}")
    lines.append(f"dependencies = {_toml_value(list(dependencies))}")
    text = "\n".join(lines) + "\n"
    if build_system:
        requires, backend = UV_BUILD
        text += f'\n[build-system]\nrequires = ["{requires}"]\nbuild-backend = "{backend}"\n'
    return text + extra


def make_git_package(
    directory: Path, name: str, version: str = "0.1.0", *, dependencies: Sequence[str] = ()
) -> str:
    """:func:`make_package` in a new git repository with one commit; returns its ``file://``
    URL, to use as ``{"git": url}`` in ``sources`` (uv locks the commit)."""
    make_package(directory, name, version, dependencies=dependencies)
    git = ["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(directory)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    return directory.as_uri()


def make_uv_project(
    directory: Path,
    environ: Mapping[str, str],
    *,
    name: str = "app",
    version: str = "0.1.0",
    dependencies: Sequence[str] = (),
    groups: Mapping[str, Sequence[str]] | None = None,
    extras: Mapping[str, Sequence[str]] | None = None,
    sources: Mapping[str, Mapping[str, object]] | None = None,
    members: Sequence[str] = (),
    package: bool = True,
    build_system: bool = True,
    tool_uv: Mapping[str, object] | None = None,
    requires_python: str | None = ">=3.9",
    python_version: str | None = None,
    lock: bool = True,
) -> Path:
    """A uv project in ``directory`` (created), locked for real with ``uv lock`` unless ``lock``
    is False; returns ``directory``.

    - ``dependencies``: its ``[project] dependencies`` (pin OLD versions, e.g.
      ``requests==2.25.1``, so that "deployed == locked, not newest" can fail).
    - ``groups``: PEP 735 ``[dependency-groups]`` (``dev`` is uv's default group).
    - ``extras``: ``[project.optional-dependencies]``.
    - ``sources``: ``[tool.uv.sources]``, e.g. ``{"lib": {"path": "libs/lib"}}``,
      ``{"gitlib": {"git": make_git_package(...)}}``, ``{"core": {"workspace": True}}``;
      make path dependencies and workspace members first with :func:`make_package`.
    - ``members``: ``[tool.uv.workspace] members`` globs (a workspace rooted here).
    - ``package``: False writes ``[tool.uv] package = false`` (not installed itself, as
      ``uv sync`` does); ``build_system``: False writes no ``[build-system]`` (the same
      for uv). Otherwise the project is a uv_build package with ``src/<module>``.
    - ``tool_uv``: more ``[tool.uv]`` settings, e.g. ``{"environments": [...]}``.
    - ``requires_python``: None leaves it out (uv then takes the locking interpreter's).
    - ``python_version``: writes ``.python-version`` (uv and Heroku read it); None: no pin.
    """
    directory.mkdir(parents=True, exist_ok=True)
    extra = ""
    if extras:
        extra += "\n[project.optional-dependencies]\n" + "".join(
            f"{key} = {_toml_value(list(value))}\n" for key, value in extras.items()
        )
    if groups:
        extra += "\n[dependency-groups]\n" + "".join(
            f"{key} = {_toml_value(list(value))}\n" for key, value in groups.items()
        )
    settings = {**(tool_uv or {}), **({} if package else {"package": False})}
    if settings:
        extra += "\n[tool.uv]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in settings.items())
    if sources:
        extra += "\n[tool.uv.sources]\n" + "".join(
            f"{key} = {_toml_value(value)}\n" for key, value in sources.items()
        )
    if members:
        extra += f"\n[tool.uv.workspace]\nmembers = {_toml_value(list(members))}\n"
    text = _pyproject(
        name,
        version,
        dependencies=dependencies,
        build_system=build_system,
        requires_python=requires_python,
        extra=extra,  # TOML lets [project.optional-dependencies] follow [build-system]
    )
    (directory / "pyproject.toml").write_text(text, encoding="utf-8")
    if build_system:
        module = directory / "src" / _module(name)
        module.mkdir(parents=True, exist_ok=True)
        (module / "__init__.py").write_text(
            f"NAME = {name!r}\nVERSION = {version!r}\n", encoding="utf-8"
        )
    if python_version is not None:
        (directory / ".python-version").write_text(python_version + "\n", encoding="utf-8")
    if lock:
        uv_lock(directory, environ)
    return directory


def locked_versions(root: Path) -> dict[str, str]:
    """``{name: version}`` of the registry packages ``root/uv.lock`` pins (for cross-checks)."""
    import tomllib

    data = tomllib.loads((root / "uv.lock").read_text(encoding="utf-8"))
    return {
        canonicalize_name(p["name"]): p["version"]
        for p in data.get("package", [])
        if "registry" in p.get("source", {})
    }
