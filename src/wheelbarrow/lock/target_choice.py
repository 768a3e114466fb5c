"""Which target a plan is for, and which lock file holds the lock for that target."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.directory import App
from wheelbarrow.app.target import PythonVersion, Target
from wheelbarrow.lock.lockfile import lock_data, wheelbarrow_table
from wheelbarrow.lock.options import Host, Options

__all__ = ["lock_name", "lock_path_for", "recorded_target", "resolve_target"]


def recorded_target(lock_path: Path) -> Mapping[str, str]:
    """The target a wheelbarrow lock was written for ({} if none)."""
    try:
        data = lock_data(lock_path)[1]
    except (FileNotFoundError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    tool = wheelbarrow_table(data)
    return {k: v for k, v in tool.items() if k in ("python", "platform") and isinstance(v, str)}


def resolve_target(app: App, options: Options, host: Host) -> Target:
    """The target from, in order: the command line, the app's version files, the lock, the host.

    The lock's Python counts only while it still satisfies the app's
    ``requires-python``: a changed requirement picks a new target (and relocks).
    """
    recorded = recorded_target(app.lock_path)
    python, source = _recorded_python(app, recorded)
    if options.python:
        python, source = options.python, "--python"
    elif app.python is not None:
        python, source = str(app.python), str(app.python_source)
    elif python is None:
        version, source = app.choose_python(host.python)
        python = str(version)
    platform = options.platform or recorded.get("platform") or host.platform
    return Target.parse(python=python, platform=platform, python_source=source)


def _recorded_python(app: App, recorded: Mapping[str, str]) -> tuple[str | None, str]:
    text = recorded.get("python")
    if text is None:
        return None, ""
    try:
        version = PythonVersion.parse(text, source=str(app.lock_path))
    except InputError:
        return None, ""  # a damaged lock names no usable target: choose afresh
    if app.requires_python is not None and not app.requires_python.contains(version.full):
        return None, ""
    return text, str(app.lock_path)


def lock_name(target: Target) -> str:
    """The ``<name>`` of a side-by-side ``pylock.<name>.toml`` for ``target`` (PEP 751)."""
    python = "_".join(str(part) for part in target.python.full.split("."))
    if target.python.micro is None:
        python = f"{target.python.major}_{target.python.minor}"
    return f"py{python}-{target.platform}"


def lock_path_for(app: App, target: Target, options: Options, host: Host) -> Path:
    """Where the lock for ``target`` lives.

    ``pylock.toml`` is the default target's lock. A target the command line
    names that is not the one the app would get without it gets its own
    ``pylock.<name>.toml``, so locking for a second target neither replaces the
    first one's lock nor becomes the default. A pylock.toml another tool wrote
    may cover several targets and is always the lock.
    """
    default = app.lock_path
    if not options.side_by_side or not default.is_file() or not recorded_target(default):
        return default
    plain = replace(options, python=None, platform=None)
    if target == resolve_target(app, plain, host):
        return default
    return app.root / f"pylock.{lock_name(target)}.toml"
