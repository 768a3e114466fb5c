"""What a plan is asked for: the command line's options, and the defaults of the running machine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from wheelbarrow.app.config import RepairMode
from wheelbarrow.app.directory import App
from wheelbarrow.app.managers import Groups
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.target import PythonVersion

__all__ = ["Host", "Options", "python_source"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What the user asked for on the command line."""

    python: str | None = None
    platform: str | None = None
    index: IndexOptions = field(default_factory=IndexOptions)
    no_binary: tuple[str, ...] = ()
    only_binary: tuple[str, ...] = ()
    repair: RepairMode | None = None
    build_jobs: int | None = None
    # The optional parts of a package manager's lock to deploy (bin/test-compile: dev).
    groups: Groups = field(default_factory=Groups)
    # `lock --force`: replace a pylock.toml that another tool wrote.
    force: bool = False
    # `lock --upgrade` / `--upgrade-package NAME`: resolve afresh, ignoring the old pins.
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    # A --python/--platform of the command line that is not the default lock's target
    # gets its own pylock.<name>.toml (PEP 751) instead of replacing pylock.toml.
    side_by_side: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """Defaults taken from the running machine (read by the caller, not here)."""

    python: PythonVersion
    platform: str
    uv: str
    environ: Mapping[str, str]
    toolchain: Callable[[], Mapping[str, str]] = dict  # versions of cc, gfortran, BLAS...
    # The CPython versions uv knows (`uv python list --all-versions`); asked only when locking.
    known_pythons: Callable[[], Sequence[str]] = tuple


def python_source(app: App, options: Options) -> str:
    """What chose the target Python, for messages: the command line, a version file, or neither."""
    if options.python:
        return "--python"
    if app.python_source:
        return str(app.root / app.python_source)
    return "the target Python"
