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


class Host:
    """Defaults taken from the running machine (read by the caller, not here).

    ``platform`` and ``uv`` may be given as values or as functions that find them: a
    function is called the first time the value is asked for, and only then. Working out
    the platform tags or finding the uv binary costs a no-op build more than reading its
    lock, and most plans need neither (the lock records its platform; only locking runs uv).
    """

    __slots__ = ("_found", "_platform", "_uv", "environ", "known_pythons", "python", "toolchain")

    def __init__(
        self,
        *,
        python: PythonVersion,
        platform: str | Callable[[], str],
        uv: str | Callable[[], str],
        environ: Mapping[str, str],
        toolchain: Callable[[], Mapping[str, str]] = dict,
        known_pythons: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.python = python
        self._platform = platform
        self._uv = uv
        self.environ = environ
        self.toolchain = toolchain  # versions of cc, gfortran, BLAS...
        # The CPython versions uv knows (`uv python list --all-versions`); asked only when locking.
        self.known_pythons = known_pythons
        self._found: set[str] = set()

    @property
    def platform(self) -> str:
        """This machine's platform tag (``manylinux_2_35_x86_64``), the default target's."""
        if callable(self._platform):
            self._platform = self._platform()
            self._found.add("platform")
        return self._platform

    @property
    def uv(self) -> str:
        """The uv binary that locks."""
        if callable(self._uv):
            self._uv = self._uv()
            self._found.add("uv")
        return self._uv

    @property
    def found(self) -> frozenset[str]:
        """Which of the values given as functions were asked for, and so found, so far."""
        return frozenset(self._found)

    def __repr__(self) -> str:
        return f"Host(python={self.python}, platform={self._platform!r}, uv={self._uv!r})"


def python_source(app: App, options: Options) -> str:
    """What chose the target Python, for messages: the command line, a version file, or neither."""
    if options.python:
        return "--python"
    if app.python_source:
        return str(app.root / app.python_source)
    return "the target Python"
