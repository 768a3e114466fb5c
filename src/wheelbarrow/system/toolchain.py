"""What a source build needs from the system (compilers, libraries, headers), and what it has."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wheelbarrow._core.errors import InputError, SystemRequirementError, ToolError
from wheelbarrow._core.runner import Runner

__all__ = [
    "DEFAULT_LIB_DIRS",
    "LANGUAGE_SKIP_DIRS",
    "MAX_LANGUAGE_FILES",
    "Lack",
    "SystemProbe",
    "SystemRequirement",
    "check_system",
    "detect_languages",
    "lacks_error",
    "missing_error",
    "parse_system_requirement",
    "requirements_for_languages",
]

Kind = Literal["cmd", "lib", "header", "pkg-config"]
Which = Callable[[str], str | None]

_SUFFIX_LANGUAGES = {
    ".c": "c",
    ".cpp": "c++",
    ".cc": "c++",
    ".cxx": "c++",
    ".c++": "c++",
    ".C": "c++",
    ".f": "fortran",
    ".F": "fortran",
    ".f77": "fortran",
    ".F77": "fortran",
    ".for": "fortran",
    ".FOR": "fortran",
    ".f90": "fortran",
    ".F90": "fortran",
    ".f95": "fortran",
    ".F95": "fortran",
    ".f03": "fortran",
    ".f08": "fortran",
    ".pyx": "cython",
}
# Version control and environments can hold many thousands of files that say
# nothing about the project's languages (a .venv is full of .c-free wheels, but
# vendored sources in site-packages would mislead).
LANGUAGE_SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "__pycache__", "node_modules"})
MAX_LANGUAGE_FILES = 50_000

# Debian packages that provide the usual build requirements, by name (program,
# library, header or pkg-config module).
_DEBIAN_PACKAGES = {
    "cc": "gcc",
    "gcc": "gcc",
    "c++": "g++",
    "g++": "g++",
    "gfortran": "gfortran",
    "make": "make",
    "cmake": "cmake",
    "ninja": "ninja-build",
    "pkg-config": "pkg-config",
    "pkgconf": "pkgconf",
    "patch": "patch",
    # Debian 12's own cargo and rustc (1.65, 1.63) are older than most crates accept:
    # cargo-web (it brings rustc-web) is its newer Rust, installed as cargo and rustc.
    "cargo": "cargo-web",
    "rustc": "cargo-web",
    "openblas": "libopenblas-dev",
    "cblas.h": "libopenblas-dev",
    "blas": "libblas-dev",
    "lapack": "liblapack-dev",
    "lapacke": "liblapacke-dev",
    "lapacke.h": "liblapacke-dev",
    "z": "zlib1g-dev",
    "zlib": "zlib1g-dev",
    "zlib.h": "zlib1g-dev",
    "ffi": "libffi-dev",
    "libffi": "libffi-dev",
    "ffi.h": "libffi-dev",
    "ssl": "libssl-dev",
    "crypto": "libssl-dev",
    "openssl": "libssl-dev",
    "openssl/ssl.h": "libssl-dev",
    "libssl": "libssl-dev",
    "libcrypto": "libssl-dev",
    "Python.h": "python3-dev",
}
_DESCRIPTIONS = {
    "cc": "a C compiler",
    "gcc": "a C compiler",
    "c++": "a C++ compiler",
    "g++": "a C++ compiler",
    "gfortran": "a Fortran compiler",
    "cargo": "the Rust toolchain",
    "rustc": "the Rust toolchain",
    "patch": "applies patches",
    "pkg-config": "finds libraries",
}
_LANGUAGE_TOOLS = (("c", "cc"), ("cython", "cc"), ("c++", "c++"), ("fortran", "gfortran"))
_RUST_INSTALL = (
    "install Rust with rustup, or on Debian 12 apt-get install rustc-web cargo-web "
    "(Debian's own rustc and cargo are too old for most crates)"
)

# Requirement names end up on command lines and, for headers, inside an
# ``#include <...>``: only plain names, so none can smuggle in options or code.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_COMMAND = re.compile(r"/?[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*")
_HEADER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*(?:/[A-Za-z0-9_][A-Za-z0-9._+-]*)*")

DEFAULT_LIB_DIRS: tuple[Path, ...] = tuple(
    Path(p)
    for p in (
        "/usr/local/lib",
        "/usr/lib",
        "/usr/lib64",
        "/lib",
        "/lib64",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/lib/x86_64-linux-gnu",
        "/lib/aarch64-linux-gnu",
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemRequirement:
    """One thing a build needs from the machine: a program, library, header or pkg-config module.

    >>> parse_system_requirement("lib:openblas").debian_package
    'libopenblas-dev'
    """

    kind: Kind
    name: str

    @property
    def spec(self) -> str:
        """How it is written in the config: ``gfortran`` for a program, ``lib:openblas`` else."""
        return self.name if self.kind == "cmd" else f"{self.kind}:{self.name}"

    @property
    def debian_package(self) -> str | None:
        """The Debian package that provides it, when known."""
        return _DEBIAN_PACKAGES.get(self.name)

    @property
    def install_hint(self) -> str:
        """What to run (or do) to get it: ``apt-get install gfortran``."""
        if self.kind == "cmd" and self.name in ("cargo", "rustc"):
            return _RUST_INSTALL
        package = self.debian_package
        if package is None:
            return f"install the package that provides {self.spec}"
        return f"apt-get install {package}"

    def lack(self) -> Lack:
        """This requirement as one line of a "lacks" error."""
        package = self.debian_package
        return Lack(
            spec=self.spec,
            line=f"{self.describe()}: {self.install_hint}",
            packages=(package,) if package else (),
        )

    def describe(self) -> str:
        """``gfortran (a Fortran compiler)`` for known programs, the spec otherwise."""
        description = _DESCRIPTIONS.get(self.name) if self.kind == "cmd" else None
        return f"{self.spec} ({description})" if description else self.spec

    def __str__(self) -> str:
        return self.spec


def parse_system_requirement(text: str, *, where: str | None = None) -> SystemRequirement:
    """Read ``gfortran``, ``cmd:gfortran``, ``lib:openblas``, ``header:cblas.h``, ``pkg-config:x``.

    ``where`` (e.g. ``pyproject.toml: tool.wheelbarrow.package.scipy.system``)
    prefixes the error message.
    """
    prefix = f"{where}: " if where else ""
    kind_text, sep, name = text.strip().partition(":")
    if not sep:
        kind_text, name = "cmd", kind_text
    kinds: dict[str, tuple[Kind, re.Pattern[str]]] = {
        "cmd": ("cmd", _COMMAND),
        "lib": ("lib", _NAME),
        "header": ("header", _HEADER),
        "pkg-config": ("pkg-config", _NAME),
    }
    if kind_text not in kinds:
        raise InputError(
            f"{prefix}invalid system requirement {text!r}: unknown kind {kind_text!r}",
            hint="write PROGRAM, cmd:PROGRAM, lib:NAME, header:FILE.h or pkg-config:MODULE",
        )
    kind, pattern = kinds[kind_text]
    if not pattern.fullmatch(name) or ".." in name.split("/"):
        raise InputError(
            f"{prefix}invalid system requirement {text!r}: {name!r} is not a plain {kind} name",
            hint="use letters, digits and . _ + - only (and / inside a header path)",
        )
    return SystemRequirement(kind=kind, name=name)


def detect_languages(root: Path, *, max_files: int = MAX_LANGUAGE_FILES) -> frozenset[str]:
    """The compiled languages of a source tree, from its file names.

    One of ``c``, ``c++``, ``fortran``, ``cython``, ``rust`` (a ``Cargo.toml``);
    stops looking after ``max_files`` files, since a huge tree has shown its
    languages long before that.
    """
    found: set[str] = set()
    seen = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in LANGUAGE_SKIP_DIRS)
        # Sorted, so which files fall within the limit does not depend on the filesystem.
        for filename in sorted(filenames):
            seen += 1
            if filename == "Cargo.toml":
                found.add("rust")
            else:
                language = _SUFFIX_LANGUAGES.get(Path(filename).suffix)
                if language is not None:
                    found.add(language)
            if seen >= max_files:
                return frozenset(found)
    return frozenset(found)


def requirements_for_languages(languages: Iterable[str]) -> tuple[SystemRequirement, ...]:
    """The compilers languages need: c, cython → cc; c++ → c++; fortran → gfortran; rust → cargo."""
    wanted = set(languages)
    names: list[str] = []
    for language, tool in (*_LANGUAGE_TOOLS, ("rust", "cargo")):
        if language in wanted and tool not in names:
            names.append(tool)
    return tuple(SystemRequirement(kind="cmd", name=name) for name in names)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lack:
    """One thing a build needs and this machine lacks, as a line of an error.

    ``spec`` is what was looked for (``gfortran``, ``pkg-config:libxml-2.0``),
    ``line`` what the error says (``gfortran (a Fortran compiler): apt-get install
    gfortran``), ``packages`` the Debian packages that provide it.
    """

    spec: str
    line: str
    packages: tuple[str, ...] = ()


def lacks_error(lacks: Sequence[Lack], *, label: str) -> SystemRequirementError:
    """The one error that lists every lack of ``label`` (``scipy 1.16.2``) with what to do."""
    listing = "\n".join(f"  - {lack.line}" for lack in lacks)
    return SystemRequirementError(
        f"{label} needs what this machine lacks:\n{listing}",
        missing=[lack.spec for lack in lacks],
        packages=list(dict.fromkeys(p for lack in lacks for p in lack.packages)),
        hint="install them, then build again",
    )


def missing_error(missing: Sequence[SystemRequirement], *, label: str) -> SystemRequirementError:
    """The one error that lists every missing requirement with what to install."""
    return lacks_error([req.lack() for req in missing], label=label)


class SystemProbe:
    """Answers "is it here?" for each kind, running each shared probe (ldconfig) at most once."""

    def __init__(self, *, which: Which, runner: Runner, lib_dirs: Sequence[Path]) -> None:
        self._which = which
        self._runner = runner
        self._lib_dirs = lib_dirs
        self._ldconfig_names: frozenset[str] | None = None
        # Tools a check could not run without (a header check without cc);
        # they are reported missing too, so the user installs everything at once.
        self.needed_tools: list[SystemRequirement] = []

    def any_present(self, alternatives: Sequence[SystemRequirement]) -> bool:
        """Whether one of ``alternatives`` is here; tools only a failed one needed are not kept."""
        before = list(self.needed_tools)
        for req in alternatives:
            if self.present(req):
                self.needed_tools[:] = before
                return True
        return False

    def present(self, req: SystemRequirement) -> bool:
        """Whether ``req`` is here; a tool its check lacks goes into ``needed_tools``."""
        if req.kind == "cmd":
            return self._which(req.name) is not None
        if req.kind == "pkg-config":
            if self._which("pkg-config") is None:
                self._need("pkg-config")
                return False
            return self._succeeds(["pkg-config", "--exists", req.name])
        if req.kind == "header":
            if self._which("cc") is None:
                self._need("cc")
                return False
            # -include searches the quote chain starting in the working
            # directory, so run from / where no project header can answer.
            return self._succeeds(
                ["cc", "-E", "-x", "c", "-include", req.name, "-o", "/dev/null", "/dev/null"],
                cwd=Path("/"),
            )
        return self._library_present(req.name)

    def _library_present(self, name: str) -> bool:
        if self._which("pkg-config") is not None and self._succeeds(
            ["pkg-config", "--exists", name]
        ):
            return True
        # The unversioned libNAME.so is what the linker's -lNAME needs; only the
        # -dev package ships it, so a runtime-only install counts as missing.
        filename = f"lib{name}.so"
        if filename in self._ldconfig():
            return True
        return any((directory / filename).exists() for directory in self._lib_dirs)

    def _ldconfig(self) -> frozenset[str]:
        if self._ldconfig_names is None:
            names: set[str] = set()
            # ldconfig lives in /sbin, often off a normal user's PATH.
            program = self._which("ldconfig") or next(
                (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if Path(p).exists()), None
            )
            if program is not None:
                result = self._run([program, "-p"])
                if result is not None:
                    for line in result.splitlines()[1:]:
                        names.add(line.strip().split(" ", 1)[0])
            self._ldconfig_names = frozenset(names)
        return self._ldconfig_names

    def _need(self, tool: str) -> None:
        req = SystemRequirement(kind="cmd", name=tool)
        if req not in self.needed_tools:
            self.needed_tools.append(req)

    def _run(self, args: Sequence[str], *, cwd: Path | None = None) -> str | None:
        try:
            result = self._runner(args, cwd=cwd)
        except ToolError:
            return None
        return result.stdout if result.returncode == 0 else None

    def _succeeds(self, args: Sequence[str], *, cwd: Path | None = None) -> bool:
        return self._run(args, cwd=cwd) is not None


def check_system(
    requirements: Iterable[SystemRequirement],
    *,
    which: Which,
    runner: Runner,
    label: str,
    lib_dirs: Sequence[Path] = DEFAULT_LIB_DIRS,
) -> None:
    """Check every requirement, then raise one error listing all that are missing.

    ``label`` names what is being built (``scipy 1.16.2``). Programs are looked
    up with ``which``; libraries with ``pkg-config --exists``, the ``ldconfig -p``
    cache or ``lib_dirs``; headers by preprocessing an include with ``cc``.
    """
    checker = SystemProbe(which=which, runner=runner, lib_dirs=lib_dirs)
    wanted = list(dict.fromkeys(requirements))
    missing = [req for req in wanted if not checker.present(req)]
    missing += [tool for tool in checker.needed_tools if tool not in missing]
    if missing:
        raise missing_error(missing, label=label)
