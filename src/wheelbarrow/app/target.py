"""The deploy target: a Python version and a platform, and what follows from them."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wheelbarrow._core.errors import TargetError

# packaging is imported where tags are made: an app-only image reads its target from a
# record (cli/image_record.py) and never asks for them, and the import is a fifth of it.
if TYPE_CHECKING:
    from packaging.markers import Environment
    from packaging.tags import Tag

# The platforms uv can resolve for (see `uv pip compile --help`); wheelbarrow
# targets Linux servers, where manylinux wheels are what the index publishes.
_ARCHES = ("x86_64", "aarch64")
_GLIBC_MINORS = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
_MANYLINUX = re.compile(r"^manylinux_2_(?P<minor>\d+)_(?P<arch>[a-z0-9_]+)$")
_LEGACY = {"manylinux2014": 17}
_PYTHON = re.compile(r"^(?:python|cpython|py)?-?(?P<major>3)\.(?P<minor>\d+)(?:\.(?P<micro>\d+))?$")
SUPPORTED_PLATFORMS = tuple(f"manylinux_2_{m}_{a}" for a in _ARCHES for m in _GLIBC_MINORS)
OLDEST_PYTHON = (3, 9)


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonVersion:
    """A CPython version; ``micro`` is None when only ``3.X`` is known."""

    major: int
    minor: int
    micro: int | None = None

    @classmethod
    def parse(cls, text: str, *, source: str = "--python") -> PythonVersion:
        """Parse ``3.12``, ``3.12.4``, ``python-3.12.4`` (runtime.txt) or ``cpython-3.12``."""
        match = _PYTHON.match(text.strip())
        if not match:
            raise TargetError(
                f"{source}: {text.strip()!r} is not a CPython version",
                hint="write it as 3.12 or 3.12.4",
            )
        micro = match["micro"]
        version = cls(
            major=int(match["major"]),
            minor=int(match["minor"]),
            micro=int(micro) if micro is not None else None,
        )
        if (version.major, version.minor) < OLDEST_PYTHON:
            raise TargetError(
                f"{source}: Python {version} is no longer supported",
                hint=f"target Python {OLDEST_PYTHON[0]}.{OLDEST_PYTHON[1]} or newer",
            )
        return version

    @property
    def short(self) -> str:
        """``3.12``: the form uv and interpreter names use."""
        return f"{self.major}.{self.minor}"

    @property
    def minor_only(self) -> PythonVersion:
        """The same version without its micro part: every ``3.X.y``."""
        return PythonVersion(major=self.major, minor=self.minor)

    @property
    def full(self) -> str:
        """``3.12.4``, or ``3.12.0`` when the micro version is unknown (for markers and
        ``requires-python`` checks: a lock for ``3.12`` must hold for every 3.12.x)."""
        return f"{self.major}.{self.minor}.{self.micro or 0}"

    def __str__(self) -> str:
        return self.short if self.micro is None else self.full


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the wheelhouse is built for: a CPython version on a manylinux platform."""

    python: PythonVersion
    platform: str

    @classmethod
    def parse(cls, *, python: str, platform: str, python_source: str = "--python") -> Target:
        """Validate both parts; the platform must be one uv can resolve for."""
        version = PythonVersion.parse(python, source=python_source)
        return cls(python=version, platform=normalise_platform(platform))

    def __str__(self) -> str:
        return f"CPython {self.python.short} on {self.platform}"

    @property
    def arch(self) -> str:
        """The machine architecture, e.g. ``x86_64``."""
        return self.platform.split("_", 3)[3]

    @property
    def glibc(self) -> tuple[int, int]:
        """The glibc version the platform promises."""
        return (2, int(self.platform.split("_")[2]))

    @property
    def uv_platform(self) -> str:
        """The same platform in uv's ``--python-platform`` spelling."""
        return f"{self.arch}-manylinux_2_{self.glibc[1]}"

    def platform_tags(self) -> Iterator[str]:
        """Every platform tag a wheel may carry to run here, best first.

        Mirrors ``packaging.tags._manylinux.platform_tags`` but for a glibc
        chosen by the user, not the running one. Plain ``linux_*`` wheels are
        left out: they are not portable to another machine.
        """
        minor = self.glibc[1]
        for m in range(minor, 4, -1):
            yield f"manylinux_2_{m}_{self.arch}"
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}.get(m)
            if legacy and (self.arch == "x86_64" or legacy == "manylinux2014"):
                yield f"{legacy}_{self.arch}"

    @property
    def tags(self) -> Sequence[Tag]:
        """Wheel tags the target accepts, most specific first."""
        return _tags(self.python.major, self.python.minor, tuple(self.platform_tags()))

    @property
    def tag_set(self) -> frozenset[Tag]:
        """``tags`` as a set, for membership tests."""
        return frozenset(self.tags)

    @property
    def environment(self) -> Environment:
        """The PEP 508 marker environment of the target."""
        return {
            "implementation_name": "cpython",
            "implementation_version": self.python.full,
            "os_name": "posix",
            "platform_machine": self.arch,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": self.python.full,
            "python_version": self.python.short,
            "sys_platform": "linux",
        }

    def as_dict(self) -> dict[str, str]:
        """A JSON-able form, used in keys, locks and reports.

        The Python is written as the user gave it: ``3.12`` (every 3.12.x) or
        ``3.12.4`` (that release), so a changed micro pin changes the lock's inputs.
        """
        return {"python": str(self.python), "platform": self.platform}


@functools.cache
def _tags(major: int, minor: int, platforms: tuple[str, ...]) -> tuple[Tag, ...]:
    from packaging.tags import compatible_tags, cpython_tags

    version = (major, minor)
    return (
        *cpython_tags(version, platforms=platforms),
        *compatible_tags(version, interpreter=f"cp{major}{minor}", platforms=platforms),
    )


def check_known(version: PythonVersion, known: Sequence[str], *, source: str) -> None:
    """Refuse a CPython version that ``known`` (the versions uv knows) does not cover.

    ``3.X`` needs some known ``3.X.y``; ``3.X.Y`` needs ``3.X.Y`` known or a newer
    ``3.X`` micro known (old micro releases may have no download, yet exist).
    Pre-releases in ``known`` count for their minor version.
    """
    micros: dict[tuple[int, int], int] = {}
    finals: list[tuple[int, int, int]] = []
    for text in known:
        match = re.match(r"^(\d+)\.(\d+)\.(\d+)(.*)$", text)
        if match:
            key = (int(match[1]), int(match[2]))
            micros[key] = max(micros.get(key, -1), int(match[3]))
            if not match[4]:
                finals.append((*key, int(match[3])))
    if not micros:
        return  # nothing to check against: uv gave no list
    newest = micros.get((version.major, version.minor))
    if newest is not None and (version.micro is None or version.micro <= newest):
        return
    minors = sorted(k for k in micros if k[0] == 3 and k >= OLDEST_PYTHON)
    span = f"3.{minors[0][1]} to 3.{minors[-1][1]}" if minors else "none"
    latest = ".".join(map(str, max(finals))) if finals else ""
    detail = (
        f"the newest 3.{version.minor} uv knows is 3.{version.minor}.{newest}"
        if newest is not None
        else f"uv knows CPython {span}"
    )
    raise TargetError(
        f"{source}: CPython {version} is not a Python version uv knows ({detail})",
        hint=f"target a released CPython, e.g. {latest or '3.12'}; `uv python list "
        "--all-versions` lists them",
    )


def normalise_platform(text: str) -> str:
    """Accept ``manylinux_2_28_x86_64``, ``manylinux2014_x86_64`` or ``x86_64-manylinux_2_28``."""
    value = text.strip().replace("-", "_").lower()
    for arch in _ARCHES:
        if value.startswith(f"{arch}_manylinux"):
            value = value.removeprefix(f"{arch}_") + f"_{arch}"
    for legacy, minor in _LEGACY.items():
        if value.startswith(legacy + "_"):
            value = f"manylinux_2_{minor}_" + value.removeprefix(legacy + "_")
    match = _MANYLINUX.match(value)
    if not match or value not in SUPPORTED_PLATFORMS:
        raise TargetError(
            f"--platform: {text!r} is not a platform wheelbarrow can target",
            hint="use manylinux_2_M_ARCH with ARCH x86_64 or aarch64 and M one of "
            + ", ".join(str(m) for m in _GLIBC_MINORS),
        )
    return value


def host_platform(platform_tags: Sequence[str]) -> str:
    """The best supported manylinux platform among the running machine's tags.

    ``platform_tags`` is ``packaging.tags.platform_tags()`` on the caller's side,
    so this stays free of ``sys`` reads.
    """
    for tag in platform_tags:
        if tag in SUPPORTED_PLATFORMS:
            return tag
    return "manylinux_2_28_x86_64"
