"""The native libraries well-known packages build against: how to find each, and its Debian package.

The table is used twice. Before anything compiles, :func:`check_builds` checks
what each build needs (its compilers, its ``system`` settings, the rows of
:data:`PROJECTS` for well-known packages and the Rust its crates ask for) and
raises one error for all of them. After a build failed, :func:`read_log` finds
what the log says is missing, so the error can name it and its package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from packaging.utils import canonicalize_name

from wheelbarrow._core.errors import SystemRequirementError
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow.system.rust import RUST_UPGRADE, required_rust_version, rustc_version
from wheelbarrow.system.toolchain import (
    DEFAULT_LIB_DIRS,
    Lack,
    SystemProbe,
    SystemRequirement,
    detect_languages,
    lacks_error,
    parse_system_requirement,
    requirements_for_languages,
)

__all__ = [
    "DEPENDENCIES",
    "OPTIONAL",
    "PROJECTS",
    "LogFinding",
    "PlannedBuild",
    "SystemDependency",
    "check_builds",
    "dependencies_for",
    "hint_from_log",
    "read_log",
]

Which = Callable[[str], str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemDependency:
    """A native dependency: what it is, how to tell it is here, and its Debian packages.

    Any one of ``checks`` being present is enough. A build whose environment
    sets one of ``env`` (the package's own way to point at it, such as
    ``GDAL_CONFIG``) is not checked for it.

    >>> DEPENDENCIES["libpq"].install_hint
    'apt-get install libpq-dev'
    """

    key: str
    what: str
    checks: tuple[SystemRequirement, ...]
    debian: tuple[str, ...]
    env: tuple[str, ...] = ()

    @property
    def install_hint(self) -> str:
        """What to run to get it."""
        if self.key == "rust":
            return SystemRequirement(kind="cmd", name="cargo").install_hint
        return "apt-get install " + " ".join(self.debian)

    def lack(self) -> Lack:
        """This dependency as one line of a "lacks" error: what was looked for, what to install."""
        looked_for = " or ".join(check.spec for check in self.checks)
        return Lack(
            spec=looked_for,
            line=f"{looked_for} ({self.what}): {self.install_hint}",
            packages=self.debian,
        )


def _dependency(
    key: str, what: str, checks: Sequence[str], debian: Sequence[str], env: Sequence[str] = ()
) -> SystemDependency:
    return SystemDependency(
        key=key,
        what=what,
        checks=tuple(parse_system_requirement(c) for c in checks),
        debian=tuple(debian),
        env=tuple(env),
    )


_ROWS = (
    _dependency("libpq", "libpq, PostgreSQL's client library", ["pg_config"], ["libpq-dev"]),
    _dependency(
        "mysql",
        "the MySQL or MariaDB client library",
        ["pkg-config:mysqlclient", "pkg-config:mariadb"],
        ["default-libmysqlclient-dev"],
        env=["MYSQLCLIENT_CFLAGS"],
    ),
    _dependency(
        "libxml2",
        "libxml2, the XML library",
        ["pkg-config:libxml-2.0", "xml2-config"],
        ["libxml2-dev"],
    ),
    _dependency(
        "libxslt",
        "libxslt, the XSLT library",
        ["pkg-config:libxslt", "xslt-config"],
        ["libxslt1-dev"],
    ),
    _dependency(
        "libffi",
        "libffi, the foreign function interface library",
        ["pkg-config:libffi", "header:ffi.h"],
        ["libffi-dev"],
    ),
    _dependency(
        "openssl",
        "OpenSSL's headers and libraries",
        ["pkg-config:openssl", "header:openssl/ssl.h"],
        ["libssl-dev"],
        env=["OPENSSL_DIR"],
    ),
    _dependency(
        "sqlite",
        "SQLite's headers and library",
        ["pkg-config:sqlite3", "header:sqlite3.h"],
        ["libsqlite3-dev"],
    ),
    _dependency(
        "hdf5",
        "HDF5",
        ["pkg-config:hdf5", "pkg-config:hdf5-serial", "h5cc"],
        ["libhdf5-dev"],
        env=["HDF5_DIR"],
    ),
    _dependency("gdal", "GDAL", ["gdal-config"], ["libgdal-dev"], env=["GDAL_CONFIG"]),
    _dependency(
        "geos",
        "GEOS, the geometry engine",
        ["geos-config", "pkg-config:geos"],
        ["libgeos-dev"],
        env=["GEOS_CONFIG"],
    ),
    _dependency(
        "proj",
        "PROJ, the cartographic projections library",
        ["proj"],
        ["libproj-dev", "proj-bin"],
        env=["PROJ_DIR"],
    ),
    _dependency(
        "graphviz",
        "Graphviz's libraries",
        ["pkg-config:libcgraph", "header:graphviz/cgraph.h"],
        ["libgraphviz-dev"],
    ),
    _dependency("dot", "Graphviz's dot program", ["dot"], ["graphviz"]),
    _dependency(
        "openblas",
        "OpenBLAS, with BLAS and LAPACK",
        ["pkg-config:openblas", "lib:openblas"],
        ["libopenblas-dev"],
    ),
    _dependency("lapack", "LAPACK", ["pkg-config:lapack", "lib:lapack"], ["liblapack-dev"]),
    _dependency("fortran", "a Fortran compiler", ["gfortran"], ["gfortran"]),
    _dependency("rust", "the Rust toolchain", ["cargo"], ["cargo-web"]),
    _dependency("pkg-config", "finds libraries", ["pkg-config"], ["pkg-config"]),
)
DEPENDENCIES: Mapping[str, SystemDependency] = MappingProxyType({d.key: d for d in _ROWS})
"""Every native dependency wheelbarrow knows, by key."""

PROJECTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "psycopg2": ("libpq",),
        "psycopg2-binary": ("libpq",),
        "psycopg-c": ("libpq",),
        "mysqlclient": ("pkg-config", "mysql"),
        "lxml": ("libxml2", "libxslt"),
        "cffi": ("libffi",),
        "cryptography": ("openssl", "rust"),
        "pysqlite3": ("sqlite",),
        "h5py": ("hdf5",),
        "gdal": ("gdal",),
        "fiona": ("gdal",),
        "rasterio": ("gdal",),
        "shapely": ("geos",),
        "pyproj": ("proj",),
        "pygraphviz": ("graphviz",),
        "scipy": ("openblas", "fortran"),
    }
)
"""What well-known projects (canonical names) cannot be built from source without."""

OPTIONAL: Mapping[str, tuple[str, ...]] = MappingProxyType({"numpy": ("openblas",)})
"""What well-known projects build without, falling back silently to something slower."""


def dependencies_for(project: str) -> tuple[SystemDependency, ...]:
    """The rows a project (any spelling of its name) needs to be built from source."""
    return tuple(DEPENDENCIES[key] for key in PROJECTS.get(canonicalize_name(project), ()))


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedBuild:
    """One build about to run, as the system check sees it."""

    label: str
    project: str
    source_dir: Path
    system: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def check_builds(
    builds: Iterable[PlannedBuild],
    *,
    which: Which,
    runner: Runner,
    environ: Mapping[str, str],
    reporter: Reporter,
    lib_dirs: Sequence[Path] = DEFAULT_LIB_DIRS,
) -> None:
    """Check what every build needs before any compiles; raise one error naming all that lack.

    A build needs the compilers of its languages, its ``system`` settings, the
    rows :data:`PROJECTS` gives its project and a rustc as new as its crates'
    ``rust-version``. What :data:`OPTIONAL` names is only warned about.
    """
    problems: list[str] = []
    missing: list[str] = []
    packages: list[str] = []
    for build in builds:
        probe = SystemProbe(which=which, runner=runner, lib_dirs=lib_dirs)
        env = {**environ, **build.env}
        lacks = _lacks(build, probe, which=which, runner=runner, env=env)
        for row in _optional(build.project, env):
            if not probe.any_present(row.checks):
                reporter.message(
                    "warning",
                    f"{build.label} will be built without {row.what} "
                    f"({row.lack().spec} not found): {row.install_hint} to build it with them",
                )
        if lacks:
            error = lacks_error(lacks, label=build.label)
            problems.append(error.message)
            missing += error.missing
            packages += error.packages
    if problems:
        wanted = list(dict.fromkeys(packages))
        how = f" (apt-get install {' '.join(wanted)})" if wanted else ""
        raise SystemRequirementError(
            "\n".join(problems),
            missing=missing,
            packages=wanted,
            hint=f"install them{how}, then build again; nothing was compiled",
        )


def _lacks(
    build: PlannedBuild, probe: SystemProbe, *, which: Which, runner: Runner, env: Mapping[str, str]
) -> list[Lack]:
    languages = detect_languages(build.source_dir)
    wanted = list(requirements_for_languages(languages))
    wanted += [parse_system_requirement(s) for s in build.system]
    lacks = [req.lack() for req in dict.fromkeys(wanted) if not probe.present(req)]
    for row in _required(build.project, env):
        # The table's Rust row is what the languages already ask for, by another name.
        if row.key == "rust" and "rust" in languages:
            continue
        if not probe.any_present(row.checks):
            lacks.append(row.lack())
    if "rust" in languages and which("cargo") is not None:
        rust = _rust_lack(build.source_dir, which=which, runner=runner, env=env)
        if rust is not None:
            lacks.append(rust)
    have = {lack.spec for lack in lacks}
    lacks += [tool.lack() for tool in probe.needed_tools if tool.spec not in have]
    return lacks


def _required(project: str, env: Mapping[str, str]) -> list[SystemDependency]:
    return [row for row in dependencies_for(project) if not any(env.get(v) for v in row.env)]


def _optional(project: str, env: Mapping[str, str]) -> list[SystemDependency]:
    keys = OPTIONAL.get(canonicalize_name(project), ())
    return [DEPENDENCIES[k] for k in keys if not any(env.get(v) for v in DEPENDENCIES[k].env)]


def _rust_lack(
    source_dir: Path, *, which: Which, runner: Runner, env: Mapping[str, str]
) -> Lack | None:
    """A rustc that is missing, or older than the crates' ``rust-version``; None when it will do."""
    rustc = env.get("RUSTC") or "rustc"
    have = rustc_version(which=which, runner=runner, rustc=rustc, cwd=source_dir)
    if have is None:
        return SystemRequirement(kind="cmd", name="rustc").lack()
    wanted = required_rust_version(source_dir)
    if wanted is None or have >= wanted.version:
        return None
    return Lack(
        spec=f"rustc>={wanted.text}",
        line=(
            f"rustc {wanted.text} or newer (rust-version in {wanted.manifest}; "
            f"{rustc} here is {have}): {RUST_UPGRADE}"
        ),
    )


# -- reading a failed build's log -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFinding:
    """Something a build log says is missing: the dependency, the words that say so, the cure."""

    dependency: SystemDependency
    evidence: str
    remedy: str

    def describe(self) -> str:
        """``libxml2, the XML library (the log says "..."): apt-get install libxml2-dev``."""
        return f'{self.dependency.what} (the log says "{self.evidence}"): {self.remedy}'


# Who provides a header (by its path, or the directory it is included from), a
# library (-lNAME), a pkg-config module or a CMake package, when a log names one.
_HEADER_OWNERS = {
    "libpq-fe.h": "libpq", "pg_config.h": "libpq", "postgresql/": "libpq",
    "mysql.h": "mysql", "mysql/": "mysql", "mariadb/": "mysql",
    "libxml/": "libxml2", "libxslt/": "libxslt", "libexslt/": "libxslt",
    "ffi.h": "libffi", "openssl/": "openssl", "sqlite3.h": "sqlite",
    "hdf5.h": "hdf5", "H5public.h": "hdf5",
    "gdal.h": "gdal", "gdal_priv.h": "gdal", "cpl_conv.h": "gdal", "ogr_api.h": "gdal",
    "geos_c.h": "geos", "proj.h": "proj", "proj_api.h": "proj",
    "graphviz/": "graphviz", "cblas.h": "openblas", "openblas_config.h": "openblas",
}  # fmt: skip
_LIBRARY_OWNERS = {
    "pq": "libpq", "mysqlclient": "mysql", "mariadb": "mysql", "xml2": "libxml2",
    "xslt": "libxslt", "exslt": "libxslt", "ffi": "libffi", "ssl": "openssl",
    "crypto": "openssl", "sqlite3": "sqlite", "hdf5": "hdf5", "hdf5_serial": "hdf5",
    "gdal": "gdal", "geos_c": "geos", "geos": "geos", "proj": "proj", "cgraph": "graphviz",
    "gvc": "graphviz", "cdt": "graphviz", "openblas": "openblas", "lapack": "lapack",
    "gfortran": "fortran",
}  # fmt: skip
_MODULE_OWNERS = {
    "libpq": "libpq", "mysqlclient": "mysql", "mariadb": "mysql", "libmariadb": "mysql",
    "libxml-2.0": "libxml2", "libxml2": "libxml2", "libxslt": "libxslt", "libexslt": "libxslt",
    "libffi": "libffi", "openssl": "openssl", "libssl": "openssl", "libcrypto": "openssl",
    "sqlite3": "sqlite", "hdf5": "hdf5", "gdal": "gdal", "geos": "geos", "proj": "proj",
    "libcgraph": "graphviz", "libgvc": "graphviz", "openblas": "openblas", "lapack": "lapack",
    "postgresql": "libpq", "libxslt2": "libxslt", "graphviz": "graphviz",
}  # fmt: skip

# CMake's find_package names (case is ignored when looking them up).
_CMAKE_OWNERS = _MODULE_OWNERS | {
    "BLAS": "openblas", "PostgreSQL": "libpq", "SQLite3": "sqlite", "LibXml2": "libxml2",
    "LibXslt": "libxslt",
}  # fmt: skip


def _owner(table: Mapping[str, str], name: str) -> str | None:
    if name in table:
        return table[name]
    lowered = {k.lower(): v for k, v in table.items()}
    if name.lower() in lowered:
        return lowered[name.lower()]
    return next((v for k, v in table.items() if k.endswith("/") and name.startswith(k)), None)


Reader = Callable[[re.Match[str]], LogFinding | None]


def _fixed(key: str) -> Reader:
    def read(match: re.Match[str]) -> LogFinding:
        row = DEPENDENCIES[key]
        return LogFinding(dependency=row, evidence=match.group(0).strip(), remedy=row.install_hint)

    return read


def _named(table: Mapping[str, str]) -> Reader:
    def read(match: re.Match[str]) -> LogFinding | None:
        key = _owner(table, match.group("name"))
        if key is None:
            return None
        row = DEPENDENCIES[key]
        return LogFinding(dependency=row, evidence=match.group(0).strip(), remedy=row.install_hint)

    return read


def _rust_too_old(match: re.Match[str]) -> LogFinding:
    groups = match.groupdict()
    if groups.get("wanted") and groups.get("have"):
        evidence = f"requires rustc {groups['wanted']}, and rustc here is {groups['have']}"
    else:
        evidence = " ".join(match.group(0).split())
    return LogFinding(dependency=DEPENDENCIES["rust"], evidence=evidence, remedy=RUST_UPGRADE)


_LOG_SIGNS: tuple[tuple[re.Pattern[str], Reader], ...] = (
    (re.compile(r"pg_config executable not found"), _fixed("libpq")),
    (re.compile(r"Can not find valid pkg-config name"), _fixed("mysql")),
    (re.compile(r"Could not find function \w+ in library libxml2"), _fixed("libxml2")),
    (re.compile(r"Unable to load dependency HDF5"), _fixed("hdf5")),
    (re.compile(r"Could not find gdal-config|via gdal-config: .*No such file"), _fixed("gdal")),
    (re.compile(r"proj executable not found"), _fixed("proj")),
    (re.compile(r"Could not find dot\b|Failed to find dotneato-config"), _fixed("dot")),
    (re.compile(r"fatal error: (?P<name>[\w./+-]+\.h): No such file or directory"),
     _named(_HEADER_OWNERS)),
    (re.compile(r"cannot find -l(?P<name>[\w.+-]+)"), _named(_LIBRARY_OWNERS)),
    (re.compile(r'ERROR: Dependency "(?P<name>[\w.+-]+)" not found'), _named(_MODULE_OWNERS)),
    (re.compile(r"Could NOT find (?P<name>\w+)"), _named(_CMAKE_OWNERS)),
    (re.compile(r"ERROR: Unknown compiler\(s\): \[\['gfortran'\]"), _fixed("fortran")),
    (re.compile(r"Do you have cargo in your PATH\?|can't find Rust compiler"), _fixed("rust")),
    (re.compile(r"rustc (?P<have>\d[\w.-]*) is not supported by the following packages?:\s+"
                r"\S+ requires rustc (?P<wanted>\d[\w.-]*)"), _rust_too_old),
    (re.compile(r"cannot be built because it requires rustc (?P<wanted>\d[\w.-]*) or newer, "
                r"while the currently active rustc version is (?P<have>\d[\w.-]*)"), _rust_too_old),
    (re.compile(r"lock file version `?\d+`? was found, but this version of Cargo does not "
                r"understand this lock file"), _rust_too_old),
)  # fmt: skip


def read_log(text: str) -> tuple[LogFinding, ...]:
    """What a failed build's log says is missing, one finding per dependency, in log order."""
    found: list[tuple[int, LogFinding]] = []
    for pattern, read in _LOG_SIGNS:
        for match in pattern.finditer(text):
            finding = read(match)
            if finding is not None:
                found.append((match.start(), finding))
    found.sort(key=lambda item: item[0])
    by_key: dict[str, LogFinding] = {}
    for _, finding in found:
        by_key.setdefault(finding.dependency.key, finding)
    return tuple(by_key.values())


def hint_from_log(text: str) -> str | None:
    """``the build needs libxml2, the XML library (the log says "..."): apt-get install ...``."""
    findings = read_log(text)
    if not findings:
        return None
    return "the build needs " + "; ".join(f.describe() for f in findings) + ", then build again"
