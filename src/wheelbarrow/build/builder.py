"""One PEP 517 build: a source tree into a wheel, in an environment made only of store wheels."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow._core.report import NullReporter
from wheelbarrow._core.runner import Runner
from wheelbarrow.build.reproducible import DEFAULT_EPOCH, prefix_maps, reproducible_environ
from wheelbarrow.environment.envs import build_store_env
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from build import ProjectBuilder

# Keep backends from reaching an index behind our back (setup_requires, pip
# calls in build scripts): the build environment is all they get.
OFFLINE_ENV = {
    "PIP_NO_INDEX": "1",
    "PIP_NO_INPUT": "1",
    "UV_OFFLINE": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    # cargo (under maturin or setuptools-rust) would otherwise retry its registry for
    # seconds and then fail with a network error; offline it says at once what it lacks.
    "CARGO_NET_OFFLINE": "true",
}
# Variables of the calling environment that would steer a build elsewhere.
_DROPPED_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "VIRTUAL_ENV",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PYTHONDONTWRITEBYTECODE",
)
# Index settings and their credentials: builds are offline, and a backend that prints
# its environment must not put a token into build.log.
_DROPPED_PREFIXES = ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX", "WHEELBARROW_INDEX",
                     "WHEELBARROW_EXTRA_INDEX", "PIP_TRUSTED_HOST", "NETRC")  # fmt: skip
LOG_TAIL_LINES = 25


def _dropped(name: str) -> bool:
    return name in _DROPPED_ENV or name.startswith(_DROPPED_PREFIXES)


class BuildFailure(WheelbarrowError):
    """A backend failed; the log stays in the store."""

    def __init__(self, label: str, log: Path, *, reason: str, hint: str | None = None) -> None:
        self.label = label
        self.log = log
        self.tail = log_tail(log)
        super().__init__(
            f"{label}: {reason} (log: {log})",
            hint=hint or failure_hint(self.tail),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildRequest:
    """Everything one build needs, decided by the caller."""

    label: str
    source_dir: Path
    interpreter: Interpreter
    wheels: Sequence[Path]
    config_settings: Mapping[str, str | list[str]]
    env: Mapping[str, str]
    log: Path
    out_dir: Path
    # SOURCE_DATE_EPOCH for the backend (reproducible.archive_epoch of the sdist).
    source_date_epoch: int = DEFAULT_EPOCH


def build_wheel(
    request: BuildRequest,
    *,
    store: Store,
    runner: Runner,
    environ: Mapping[str, str],
    more_wheels: Callable[[Sequence[str]], Sequence[Path]],
) -> Path:
    """Build ``request.source_dir`` into a wheel in ``request.out_dir`` and return its path.

    The build environment holds exactly ``request.wheels`` (and, if the
    backend asks for more through ``get_requires_for_build_wheel``, the wheels
    ``more_wheels`` supplies for those requirements). Every command's output
    goes to ``request.log``.
    """
    from build import BuildBackendException

    request.log.parent.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in environ.items() if not _dropped(k)}
    base.update(OFFLINE_ENV)
    base.update(request.env)
    python = _environment(request.wheels, request.interpreter, store, runner)
    settings = dict(request.config_settings) or None
    try:
        builder = _project_builder(request, python, base=base, runner=runner, store=store)
        unmet = _unmet(
            builder.get_requires_for_build("wheel", settings), request.wheels, request.interpreter
        )
        if unmet:
            _log(request.log, f"# the backend also needs: {', '.join(sorted(unmet))}")
            added = more_wheels(sorted(unmet))
            _log(request.log, f"# added to the build environment: {_names(added)}")
            wheels = [*request.wheels, *added]
            python = _environment(wheels, request.interpreter, store, runner)
            builder = _project_builder(request, python, base=base, runner=runner, store=store)
        request.out_dir.mkdir(parents=True, exist_ok=True)
        built = builder.build("wheel", request.out_dir, settings)
    except BuildBackendException as exc:
        _log(request.log, f"# build backend failed: {exc}")
        reason, hint = known_cause(log_tail(request.log, CAUSE_LINES)) or ("the build failed", None)
        raise BuildFailure(request.label, request.log, reason=reason, hint=hint) from exc
    except Exception as exc:
        if isinstance(exc, WheelbarrowError):
            raise
        _log(request.log, f"# {type(exc).__name__}: {exc}")
        raise BuildFailure(
            request.label, request.log, reason=f"the build could not start: {exc}"
        ) from exc
    return Path(built)


def _project_builder(
    request: BuildRequest,
    python: Path,
    *,
    base: Mapping[str, str],
    runner: Runner,
    store: Store,
) -> ProjectBuilder:
    """pypa/build's builder for the source, its hooks run by ``python`` into the build's log."""
    from build import ProjectBuilder

    # The source tree, the build environment and the store differ per store and per
    # attempt: compilers write fixed names for them instead (reproducible.py).
    maps = prefix_maps(source=request.source_dir, build_env=python.parent.parent, store=store.root)

    def log_runner(
        cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
    ) -> None:
        env = reproducible_environ(
            _backend_environ(base, extra_environ or {}, python),
            epoch=request.source_date_epoch,
            maps=maps,
            own=request.env,
        )
        _log(request.log, f"$ {' '.join(cmd)}")
        done = runner(cmd, cwd=Path(cwd) if cwd else None, env=env, log=request.log)
        if done.returncode != 0:
            # What pypa/build expects of its runner, as subprocess.run(check=True) raises.
            raise subprocess.CalledProcessError(done.returncode, list(cmd))

    return ProjectBuilder(request.source_dir, python_executable=str(python), runner=log_runner)


def _backend_environ(
    base: Mapping[str, str], extra: Mapping[str, str], python: Path
) -> dict[str, str]:
    """The variables a backend hook runs with, in the build environment of ``python``."""
    env = {**base, **extra}
    # As pypa/build's isolated environments and uv do: the build environment's
    # scripts (meson, cython, ninja, cmake, maturin, swig) first on PATH.
    scripts = str(python.parent)
    env["PATH"] = os.pathsep.join([scripts, *filter(None, [env.get("PATH")])])
    # And as uv does: VIRTUAL_ENV names the build environment (CMake's FindPython
    # and maturin look there first), and the backend writes UTF-8 into the log,
    # whatever the locale or the caller's PYTHONIOENCODING (maturin prints emoji).
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    env["PYTHONIOENCODING"] = "utf-8:backslashreplace"
    return env


def _environment(
    wheels: Sequence[Path], interpreter: Interpreter, store: Store, runner: Runner
) -> Path:
    """The python of a build environment holding exactly ``wheels`` (made once, kept)."""
    key = build_env_key(wheels, interpreter)
    root = build_store_env(
        wheels,
        key=key,
        wheelhouse_key="build",
        interpreter=interpreter,
        store=store,
        runner=runner,
        reporter=NullReporter(),
        compile_bytecode=False,
    )
    return root / "bin" / "python"


def build_env_key(wheels: Sequence[Path], interpreter: Interpreter) -> str:
    """The store key (``build-…``) of the build environment of ``wheels`` for ``interpreter``."""
    digest = hashlib.sha256()
    # By content: store wheels live at named/<aa>/<sha256>/<file name>, so a rebuilt
    # build requirement with the same file name gets a new build environment.
    for wheel in sorted(wheels, key=lambda p: (p.name, p.parent.name)):
        digest.update(f"{wheel.name}\0{wheel.parent.name}\0".encode())
    digest.update(f"{interpreter.executable}\0{interpreter.version}\0build-env-2".encode())
    return "build-" + digest.hexdigest()[:28]


def _unmet(requirements: set[str], wheels: Sequence[Path], interpreter: Interpreter) -> set[str]:
    """The requirements the wheels do not satisfy, markers evaluated for the build Python."""
    have: dict[str, Version] = {}
    for wheel in wheels:
        name, version, *_ = parse_wheel_filename(wheel.name)
        have[name] = version
    env = {"python_version": interpreter.short, "python_full_version": interpreter.version}
    unmet = set()
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            unmet.add(text)
            continue
        if req.marker and not req.marker.evaluate(env):
            continue
        found = have.get(canonicalize_name(req.name))
        if found is None or not req.specifier.contains(found, prereleases=True):
            unmet.add(text)
    return unmet


def _names(wheels: Sequence[Path]) -> str:
    return ", ".join(sorted(wheel.name for wheel in wheels)) or "(nothing new)"


def _log(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write(line + "\n")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a build log, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


# Causes a log shows for certain, unlike the guesses of failure_hint: they become the
# error's reason. Searched in the last CAUSE_LINES lines, since the tool that failed
# (cargo, meson) reports before its backend and pypa/build add their own lines.
CAUSE_LINES = 400
_CARGO_MISSING_CRATE = re.compile(
    r"no matching package named `(?P<crate>[\w-]+)` found"
    r"|failed to download `(?P<download>[\w-]+) v"
    r"|failed to load source for dependency `(?P<git>[\w-]+)`"
)
_CARGO_OFFLINE = re.compile(r"offline mode|--offline was specified")
_MESON_SUBPROJECT = re.compile(r"ERROR: Subproject (?P<name>\S+) is buildable: NO")
_MESON_FETCH_FAILED = re.compile(
    r"Git command failed|failed to download|Could not resolve host", re.I
)


def known_cause(text: str) -> tuple[str, str] | None:
    """``(reason, hint)`` when a failed build's log shows its cause for certain, else None."""
    crate = _CARGO_MISSING_CRATE.search(text)
    if crate is not None and _CARGO_OFFLINE.search(text):
        name = next(group for group in crate.groups() if group)
        return (
            f"its crates are not vendored and cargo is offline (cargo has no copy of the "
            f"crate {name})",
            "vendor its crates: run `cargo vendor` in its source tree on a machine that "
            "reaches its registry, put the [source] replacement it prints into "
            ".cargo/config.toml, and build that tree (its path in requirements.txt); or "
            "provide a wheel for it (on the index or with --find-links) so that it need not "
            "be built",
        )
    subproject = _MESON_SUBPROJECT.search(text)
    if subproject is not None and _MESON_FETCH_FAILED.search(text):
        name = subproject["name"]
        return (
            f"its meson subproject {name} is not in its source (only subprojects/{name}.wrap "
            "is), and meson could not fetch it",
            f"install the library that {name} stands in for, so that meson finds it with "
            "pkg-config; or put the subproject's source into subprojects/ (`meson subprojects "
            "download` in its source tree) and build that tree (its path in requirements.txt); "
            "or provide a wheel for it",
        )
    return None


_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"fatal error: ([\w./+-]+\.h): No such file"),
        "a C header is missing: {0}; install the -dev package that provides it "
        "(apt-file search {0}), or list it under system in the build settings",
    ),
    (
        re.compile(r"cannot find -l([\w.+-]+)"),
        "a library is missing: lib{0}; install its -dev package (e.g. apt-get install lib{0}-dev)",
    ),
    (
        re.compile(r"(gfortran|f95|Fortran compiler).*(not found|No such file)", re.I),
        "no Fortran compiler: apt-get install gfortran",
    ),
    (
        re.compile(r"\b(gcc|cc|c\+\+|g\+\+)\W.*(not found|No such file or directory)"),
        "no C/C++ compiler: apt-get install gcc g++",
    ),
    (
        # The ERROR line: "Run-time dependency X found: NO" is also said of optional ones.
        re.compile(r'ERROR: Dependency "([\w.+-]+)" not found'),
        "a library meson looks for is missing: {0} (its pkg-config name); install its -dev "
        "package (apt-file search {0}.pc), or list it under system in the build settings",
    ),
    (
        re.compile(r"Could NOT find (\w+)"),
        "a package CMake looks for is missing: {0}; install its -dev package",
    ),
    (
        # Offline cargo is known_cause's; this is a cargo left online where there is no network.
        re.compile(r"failed to (?:get|download) `([^`]+)`"),
        "its Rust crates are not vendored and builds are offline (cargo could not fetch {0}): "
        "use an sdist that vendors them (cargo vendor, with .cargo/config.toml pointing at "
        "vendor/), or a wheel of the package",
    ),
    (
        re.compile(r"No module named '([\w.]+)'"),
        "the backend imports {0}, which is not among its build requirements: add it to the "
        "package's build settings or report it upstream",
    ),
)


def failure_hint(tail: str) -> str:
    """What to try, guessed from the log's tail: first a missing system library, by name."""
    from wheelbarrow.system.sysdeps import hint_from_log

    known = hint_from_log(tail)
    if known is not None:
        return known
    for pattern, hint in _HINTS:
        match = pattern.search(tail)
        if match:
            return hint.format(*match.groups())
    return (
        "read the log above; fix the build settings (env, config-settings, system) "
        "or pin another version"
    )
