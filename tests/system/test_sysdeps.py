"""Tests of wheelbarrow.system.sysdeps: the native library table, the checks, the log reader."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from wheelbarrow._core.errors import SystemRequirementError
from wheelbarrow._core.report import RecordingReporter
from wheelbarrow._core.runner import Completed
from wheelbarrow.build.builder import failure_hint
from wheelbarrow.system.rust import RUST_UPGRADE
from wheelbarrow.system.sysdeps import (
    DEPENDENCIES,
    OPTIONAL,
    PROJECTS,
    PlannedBuild,
    check_builds,
    dependencies_for,
    hint_from_log,
    read_log,
)

Answers = Mapping[tuple[str, ...], tuple[int, str]]


class FakeRunner:
    """A Runner answering whole command lines from a table (others exit 1), recording calls."""

    def __init__(self, answers: Answers | None = None) -> None:
        self.answers = dict(answers or {})
        self.calls: list[tuple[str, ...]] = []

    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Completed:
        self.calls.append(tuple(args))
        code, out = self.answers.get(tuple(args), (1, ""))
        return Completed(args=tuple(args), returncode=code, stdout=out, stderr="")


def which_only(*present: str) -> Callable[[str], str | None]:
    """A ``which`` that finds only the programs named."""

    def which(name: str) -> str | None:
        return f"/usr/bin/{name}" if name in present else None

    return which


def source_tree(root: Path, *files: str) -> Path:
    """A source tree holding empty ``files`` (their suffixes give its languages)."""
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def planned(
    tmp_path: Path,
    project: str,
    *files: str,
    system: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> PlannedBuild:
    """A build of ``project 1.0`` from a tree of ``files`` (a C file by default)."""
    tree = source_tree(tmp_path / project, *(files or ("ext.c",)))
    return PlannedBuild(
        label=f"{project} 1.0", project=project, source_dir=tree, system=system, env=env or {}
    )


def check(
    builds: Sequence[PlannedBuild],
    *,
    which: Callable[[str], str | None],
    runner: FakeRunner | None = None,
    reporter: RecordingReporter | None = None,
    lib_dirs: Sequence[Path] = (),
) -> None:
    check_builds(
        builds,
        which=which,
        runner=runner or FakeRunner(),
        environ={},
        reporter=reporter or RecordingReporter(),
        lib_dirs=lib_dirs,
    )


class TestTable:
    """The built-in table: well-known projects, their native dependencies, their Debian packages."""

    @pytest.mark.parametrize(
        ("project", "keys"),
        [
            ("psycopg2", ("libpq",)),
            ("mysqlclient", ("pkg-config", "mysql")),
            ("lxml", ("libxml2", "libxslt")),
            ("cffi", ("libffi",)),
            ("cryptography", ("openssl", "rust")),
            ("pysqlite3", ("sqlite",)),
            ("h5py", ("hdf5",)),
            ("GDAL", ("gdal",)),
            ("Fiona", ("gdal",)),
            ("shapely", ("geos",)),
            ("pyproj", ("proj",)),
            ("PyGraphviz", ("graphviz",)),
            ("scipy", ("openblas", "fortran")),
        ],
    )
    def test_well_known_projects_need_their_rows(self, project: str, keys: tuple[str, ...]) -> None:
        """A project, however its name is spelt, needs the rows the table gives it."""
        assert tuple(d.key for d in dependencies_for(project)) == keys

    def test_an_unknown_project_needs_nothing(self) -> None:
        """Projects the table does not know get no rows."""
        assert dependencies_for("markupsafe") == ()

    def test_numpy_only_wants_openblas(self) -> None:
        """numpy builds without a BLAS (slowly), so OpenBLAS is optional for it, not required."""
        assert dependencies_for("numpy") == ()
        assert OPTIONAL["numpy"] == ("openblas",)

    def test_every_row_names_its_checks_and_debian_packages(self) -> None:
        """Each row has something to look for and to install; projects name only real rows."""
        for row in DEPENDENCIES.values():
            assert row.checks and row.debian, row.key
        assert {k for keys in (*PROJECTS.values(), *OPTIONAL.values()) for k in keys} <= set(
            DEPENDENCIES
        )
        assert {"lapack", "dot"} <= set(DEPENDENCIES)

    def test_debian_packages_exist_in_this_machines_archive(self) -> None:
        """Every Debian package the table names is one apt can install (bookworm's names)."""
        if shutil.which("apt-cache") is None:
            pytest.skip("not a Debian machine")
        packages = sorted({p for row in DEPENDENCIES.values() for p in row.debian})
        candidates = _apt_candidates(["gcc", *packages])
        if "gcc" not in candidates:
            pytest.skip("apt has no package lists here (apt-get update was never run)")
        assert set(packages) - candidates == set()

    def test_a_row_is_one_line_of_the_error(self) -> None:
        """A row says what was looked for, what it is and what to install."""
        assert DEPENDENCIES["libpq"].lack().line == (
            "pg_config (libpq, PostgreSQL's client library): apt-get install libpq-dev"
        )
        assert DEPENDENCIES["proj"].lack().line == (
            "proj (PROJ, the cartographic projections library): "
            "apt-get install libproj-dev proj-bin"
        )
        assert DEPENDENCIES["rust"].install_hint == (
            "install Rust with rustup, or on Debian 12 apt-get install rustc-web cargo-web "
            "(Debian's own rustc and cargo are too old for most crates)"
        )


def _apt_candidates(packages: Sequence[str]) -> set[str]:
    """The packages apt has a candidate version of."""
    done = subprocess.run(
        ["apt-cache", "policy", *packages], capture_output=True, text=True, check=False
    )
    found: set[str] = set()
    name = ""
    for line in done.stdout.splitlines():
        if not line.startswith(" ") and line.endswith(":"):
            name = line[:-1]
        elif line.strip().startswith("Candidate:") and "(none)" not in line:
            found.add(name)
    return found


class TestCheckBuilds:
    """check_builds with fakes: every missing item of every build in one error."""

    def test_every_missing_item_of_every_build_is_listed_at_once(self, tmp_path: Path) -> None:
        """psycopg2, mysqlclient and pygraphviz without their libraries: one error names all."""
        builds = [
            planned(tmp_path, "psycopg2"),
            planned(tmp_path, "mysqlclient"),
            planned(tmp_path, "pygraphviz"),
        ]
        with pytest.raises(SystemRequirementError) as info:
            check(builds, which=which_only("cc", "pkg-config"))
        assert info.value.message == (
            "psycopg2 1.0 needs what this machine lacks:\n"
            "  - pg_config (libpq, PostgreSQL's client library): apt-get install libpq-dev\n"
            "mysqlclient 1.0 needs what this machine lacks:\n"
            "  - pkg-config:mysqlclient or pkg-config:mariadb (the MySQL or MariaDB client "
            "library): apt-get install default-libmysqlclient-dev\n"
            "pygraphviz 1.0 needs what this machine lacks:\n"
            "  - pkg-config:libcgraph or header:graphviz/cgraph.h (Graphviz's libraries): "
            "apt-get install libgraphviz-dev"
        )
        assert info.value.hint == (
            "install them (apt-get install libpq-dev default-libmysqlclient-dev libgraphviz-dev), "
            "then build again; nothing was compiled"
        )
        assert info.value.packages == ("libpq-dev", "default-libmysqlclient-dev", "libgraphviz-dev")

    def test_one_alternative_is_enough(self, tmp_path: Path) -> None:
        """lxml passes with xml2-config and xslt-config alone: no pkg-config is asked for."""
        check([planned(tmp_path, "lxml")], which=which_only("cc", "xml2-config", "xslt-config"))

    def test_a_pkg_config_check_without_pkg_config_asks_for_it_once(self, tmp_path: Path) -> None:
        """Without pkg-config the library and pkg-config itself are listed, pkg-config once."""
        with pytest.raises(SystemRequirementError) as info:
            check([planned(tmp_path, "mysqlclient")], which=which_only("cc"))
        assert info.value.missing == ("pkg-config", "pkg-config:mysqlclient or pkg-config:mariadb")

    def test_the_packages_own_variable_stands_for_the_check(self, tmp_path: Path) -> None:
        """GDAL_CONFIG in the package's build settings is its way to gdal-config: no check."""
        build = planned(tmp_path, "gdal", env={"GDAL_CONFIG": "/opt/gdal/bin/gdal-config"})
        check([build], which=which_only("cc"))
        with pytest.raises(SystemRequirementError, match="gdal-config"):
            check([planned(tmp_path, "fiona")], which=which_only("cc"))

    def test_compilers_and_settings_are_still_checked(self, tmp_path: Path) -> None:
        """A Fortran tree and a system setting are listed beside the table's rows."""
        build = planned(tmp_path, "h5py", "a.f90", system=["lib:nosuchlib"])
        with pytest.raises(SystemRequirementError) as info:
            check([build], which=which_only("pkg-config"), runner=FakeRunner())
        assert info.value.missing == (
            "gfortran",
            "lib:nosuchlib",
            "pkg-config:hdf5 or pkg-config:hdf5-serial or h5cc",
        )

    def test_an_optional_library_only_warns(self, tmp_path: Path) -> None:
        """numpy without OpenBLAS builds (slowly): a warning says what to install; no error."""
        reporter = RecordingReporter()
        check([planned(tmp_path, "numpy")], which=which_only("cc", "pkg-config"), reporter=reporter)
        assert reporter.messages == [
            (
                "warning",
                "numpy 1.0 will be built without OpenBLAS, with BLAS and LAPACK "
                "(pkg-config:openblas or lib:openblas not found): apt-get install libopenblas-dev "
                "to build it with them",
            )
        ]

    def test_present_libraries_pass(self, tmp_path: Path) -> None:
        """With every module pkg-config knows, nothing is raised and nothing warned."""
        runner = FakeRunner(
            {("pkg-config", "--exists", m): (0, "") for m in ("libcgraph", "openblas", "libffi")}
        )
        reporter = RecordingReporter()
        builds = [planned(tmp_path, n) for n in ("pygraphviz", "numpy", "cffi")]
        check(builds, which=which_only("cc", "pkg-config"), runner=runner, reporter=reporter)
        assert reporter.messages == []


RUSTC_195 = "rustc 1.95.0 (59807616e 2026-04-14)\n"  # rustup's
RUSTC_163 = "rustc 1.63.0\n"  # Debian 12's own rustc


def rust_tree(root: Path, manifest: str) -> Path:
    """A Rust source tree whose Cargo.toml is ``manifest``."""
    source_tree(root, "src/lib.rs")
    (root / "Cargo.toml").write_text(manifest)
    return root


class TestRustVersionBeforeBuilding:
    """check_builds: the crates' rust-version against the rustc on PATH, before any build."""

    def test_a_rustc_older_than_rust_version_names_both_and_both_ways(self, tmp_path: Path) -> None:
        """Debian's rustc 1.63, a crate asking 1.70: the error names both, rustup and rustc-web."""
        tree = rust_tree(tmp_path / "t", '[package]\nname = "t"\nrust-version = "1.70"\n')
        build = PlannedBuild(label="t 1.0", project="t", source_dir=tree)
        with pytest.raises(SystemRequirementError) as info:
            check(
                [build],
                which=which_only("cargo", "rustc"),
                runner=FakeRunner({("rustc", "--version"): (0, RUSTC_163)}),
            )
        assert info.value.message == (
            "t 1.0 needs what this machine lacks:\n"
            "  - rustc 1.70 or newer (rust-version in Cargo.toml; rustc here is 1.63.0): "
            "rustup update, or on Debian 12 apt-get install rustc-web cargo-web "
            "(a newer Rust, installed as rustc and cargo in place of Debian's)"
        )

    def test_a_new_enough_rustc_passes(self, tmp_path: Path) -> None:
        """rustc 1.95.0 builds a crate asking for 1.70."""
        tree = rust_tree(tmp_path / "t", '[package]\nname = "t"\nrust-version = "1.70"\n')
        runner = FakeRunner({("rustc", "--version"): (0, RUSTC_195)})
        check(
            [PlannedBuild(label="t", project="t", source_dir=tree)],
            which=which_only("cargo", "rustc"),
            runner=runner,
        )
        assert ("rustc", "--version") in runner.calls

    def test_rustc_named_by_the_build_settings_is_the_one_asked(self, tmp_path: Path) -> None:
        """RUSTC in a package's env is the compiler cargo will use, so it is the one checked."""
        tree = rust_tree(tmp_path / "t", '[package]\nname = "t"\nrust-version = "1.70"\n')
        runner = FakeRunner({("rustc-new", "--version"): (0, RUSTC_195)})
        build = PlannedBuild(label="t", project="t", source_dir=tree, env={"RUSTC": "rustc-new"})
        check([build], which=which_only("cargo", "rustc", "rustc-new"), runner=runner)
        assert runner.calls == [("rustc-new", "--version")]

    def test_cargo_without_rustc_asks_for_rustc(self, tmp_path: Path) -> None:
        """A cargo with no rustc beside it is reported as a missing rustc with how to get Rust."""
        tree = rust_tree(tmp_path / "t", '[package]\nname = "t"\n')
        with pytest.raises(SystemRequirementError) as info:
            check(
                [PlannedBuild(label="t", project="t", source_dir=tree)], which=which_only("cargo")
            )
        assert info.value.message.endswith(
            "  - rustc (the Rust toolchain): install Rust with rustup, or on Debian 12 apt-get "
            "install rustc-web cargo-web (Debian's own rustc and cargo are too old for most crates)"
        )

    def test_cryptography_without_cargo_is_told_once(self, tmp_path: Path) -> None:
        """The table's Rust row and the tree's Cargo.toml ask for the same cargo: one line."""
        tree = rust_tree(tmp_path / "c", '[package]\nname = "c"\n')
        runner = FakeRunner({("pkg-config", "--exists", "openssl"): (0, "")})
        build = PlannedBuild(label="cryptography 44.0.0", project="cryptography", source_dir=tree)
        with pytest.raises(SystemRequirementError) as info:
            check([build], which=which_only("pkg-config"), runner=runner)
        assert info.value.missing == ("cargo",)


class TestRustVersionOfARealBuild:
    """`wheelbarrow build` of a Rust package the test writes, against this machine's rustc."""

    def test_rust_version_1_999_stops_the_build_naming_both_versions(self, tmp_path: Path) -> None:
        """A Cargo.toml asking for rust-version 1.999 is refused before its backend runs."""
        from support.apps import cli

        if shutil.which("cargo") is None or shutil.which("rustc") is None:
            pytest.skip("needs cargo and rustc on PATH")
        have = subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True)
        version = have.stdout.split()[1]
        app = tmp_path / "app"
        package = app / "rustpkg"
        rust_tree(
            package,
            '[package]\nname = "rustpkg"\nversion = "1.0.0"\nedition = "2021"\n'
            'rust-version = "1.999"\n',
        )
        (package / "pyproject.toml").write_text(
            '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
            '[project]\nname = "rustpkg"\nversion = "1.0"\n'
        )
        # The check comes first: were the backend ever run, the build would say so.
        (package / "backend.py").write_text(
            "def build_wheel(*args, **kwargs):\n    raise SystemExit('the backend ran')\n"
        )
        (app / "requirements.txt").write_text("./rustpkg\n")  # no Python pin

        result = cli("build", app, "--store", tmp_path / "store", "--no-index")

        assert result.code == 1
        assert result.err.split("error: ", 1)[1] == (
            "rustpkg 1.0 needs what this machine lacks:\n"
            f"    - rustc 1.999 or newer (rust-version in Cargo.toml; rustc here is {version}): "
            f"{RUST_UPGRADE}\n"
            "hint: install them, then build again; nothing was compiled\n"
        )
        assert "the backend ran" not in result.err
        assert not list((tmp_path / "store").glob("built/*/build.log"))


# Lines from real failing builds, run with wheelbarrow on Debian 12 (paths shortened).
PSYCOPG2_LOG = """\
writing top-level names to psycopg2.egg-info/top_level.txt

Error: pg_config executable not found.

pg_config is required to build psycopg2 from source.  Please add the directory
containing pg_config to the $PATH or specify the full executable path with the
option:
"""
MYSQLCLIENT_LOG = """\
Trying pkg-config --exists perconaserverclient
Command 'pkg-config --exists perconaserverclient' returned non-zero exit status 1.
Traceback (most recent call last):
  File "<string>", line 28, in find_package_name
Exception: Can not find valid pkg-config name.
Specify MYSQLCLIENT_CFLAGS and MYSQLCLIENT_LDFLAGS env vars manually
"""
PYGRAPHVIZ_LOG = """\
building 'pygraphviz._graphviz' extension
pygraphviz/graphviz_wrap.c:3023:10: fatal error: graphviz/cgraph.h: No such file or directory
 3023 | #include "graphviz/cgraph.h"
compilation terminated.
"""
LXML_LOG = """\
building 'lxml.etree' extension
In file included from src/lxml/etree.c:1328:
src/lxml/includes/etree_defs.h:12:10: fatal error: libxml/xmlversion.h: No such file or directory
   12 | #include "libxml/xmlversion.h"
compilation terminated.
/tmp/xmlXPathInit1x942jzc.c:1:10: fatal error: libxml/xpath.h: No such file or directory
*********************************************************************************
Could not find function xmlCheckVersion in library libxml2. Is libxml2 installed?
*********************************************************************************
"""
CARGO_OFFLINE_LOG = """\
Running `maturin pep517 build-wheel -i .../bin/python --compatibility off`
error: no matching package named `cfg-if` found
required by package `cryptography-rust v0.1.0 (.../cryptography-44.0.0/src/rust)`
As a reminder, you're using offline mode (--offline) which can sometimes cause surprising \
resolution failures, if this error is too confusing you may wish to retry without `--offline`.
💥 maturin failed
  Caused by: Cargo metadata failed. Does your crate compile with `cargo build`?
"""


class TestReadLog:
    """read_log on lines from real failing builds: each names the dependency that was missing."""

    @pytest.mark.parametrize(
        ("log", "key", "evidence"),
        [
            (PSYCOPG2_LOG, "libpq", "pg_config executable not found"),
            (MYSQLCLIENT_LOG, "mysql", "Can not find valid pkg-config name"),
            (
                PYGRAPHVIZ_LOG,
                "graphviz",
                "fatal error: graphviz/cgraph.h: No such file or directory",
            ),
            (
                "src/c/_cffi_backend.c:15:10: fatal error: ffi.h: No such file or directory\n",
                "libffi",
                "fatal error: ffi.h: No such file or directory",
            ),
            (
                "src/geos.h:15:10: fatal error: geos_c.h: No such file or directory\n",
                "geos",
                "fatal error: geos_c.h: No such file or directory",
            ),
            (
                "Loading library to get build settings and version: libhdf5.so\n"
                "error: Unable to load dependency HDF5, make sure HDF5 is installed properly\n",
                "hdf5",
                "Unable to load dependency HDF5",
            ),
            (
                "proj executable not found. Please set the PROJ_DIR variable. For more "
                "information see: https://pyproj4.github.io/pyproj/stable/installation.html\n",
                "proj",
                "proj executable not found",
            ),
            (
                "WARNING:root:Failed to get options via gdal-config: [Errno 2] No such file "
                "or directory: 'gdal-config'\n",
                "gdal",
                "via gdal-config: [Errno 2] No such file",
            ),
            (
                "Could not find gdal-config. Make sure you have installed the GDAL native "
                "library and development headers.\n",
                "gdal",
                "Could not find gdal-config",
            ),
            (
                "Run-time dependency libgvc found: NO  (tried pkg-config and cmake)\n\n"
                'meson.build:2:6: ERROR: Dependency "libgvc" not found '
                "(tried pkg-config and cmake)\n",
                "graphviz",
                'ERROR: Dependency "libgvc" not found',
            ),
            (
                'meson.build:4:4: ERROR: Dependency "hdf5" not found (tried pkg-config, '
                "pkg-config and config-tool)\n",
                "hdf5",
                'ERROR: Dependency "hdf5" not found',
            ),
            (
                "meson.build:1:0: ERROR: Unknown compiler(s): [['gfortran'], ['flang-new'], "
                "['flang'], ['nvfortran'], ['pgfortran'], ['ifort'], ['ifx'], ['g95']]\n",
                "fortran",
                "ERROR: Unknown compiler(s): [['gfortran']",
            ),
            (
                "  Could NOT find HDF5 (missing: HDF5_LIBRARIES HDF5_INCLUDE_DIRS C) (found\n",
                "hdf5",
                "Could NOT find HDF5",
            ),
            (
                "  Could NOT find OpenSSL, try to set the path to OpenSSL root folder in the\n",
                "openssl",
                "Could NOT find OpenSSL",
            ),
            (
                "/usr/bin/ld: cannot find -lcgraph: No such file or directory\n"
                "collect2: error: ld returned 1 exit status\n",
                "graphviz",
                "cannot find -lcgraph",
            ),
            (
                "  Caused by: Cargo metadata failed. Do you have cargo in your PATH?\n",
                "rust",
                "Do you have cargo in your PATH?",
            ),
            (
                "error: rustc 1.95.0 is not supported by the following package:\n"
                "  tooold@0.1.0 requires rustc 1.999\n",
                "rust",
                "requires rustc 1.999, and rustc here is 1.95.0",
            ),
            (  # Debian 12's own cargo 1.65
                "error: package `tooold v0.1.0 (/src/crate)` cannot be built because it requires "
                "rustc 1.999 or newer, while the currently active rustc version is 1.63.0\n",
                "rust",
                "requires rustc 1.999, and rustc here is 1.63.0",
            ),
            (
                "  lock file version `4` was found, but this version of Cargo does not "
                "understand this lock file, perhaps Cargo needs to be updated?\n",
                "rust",
                "lock file version `4` was found, but this version of Cargo does not understand "
                "this lock file",
            ),
        ],
    )
    def test_real_lines_name_the_missing_dependency(
        self, log: str, key: str, evidence: str
    ) -> None:
        """Each line names its row and is quoted as the evidence."""
        [finding] = read_log(log)
        assert (finding.dependency.key, finding.evidence) == (key, evidence)

    def test_could_not_find_dot_is_graphviz(self) -> None:
        """The words the issue quotes for Graphviz's dot program name the graphviz package."""
        [finding] = read_log("Could not find dot, is Graphviz installed?\n")
        assert (finding.dependency.key, finding.remedy) == ("dot", "apt-get install graphviz")

    def test_one_dependency_said_twice_is_one_finding(self) -> None:
        """lxml's log names libxml2 three ways; the first is kept."""
        [finding] = read_log(LXML_LOG)
        assert finding.evidence == "fatal error: libxml/xmlversion.h: No such file or directory"

    def test_findings_come_in_log_order(self) -> None:
        """Two dependencies are reported in the order the log names them."""
        log = MYSQLCLIENT_LOG + PSYCOPG2_LOG
        assert [f.dependency.key for f in read_log(log)] == ["mysql", "libpq"]

    @pytest.mark.parametrize(
        "log",
        [
            "fatal error: definitely_missing_header.h: No such file or directory\n",
            "Run-time dependency libgvc found: NO  (tried pkg-config and cmake)\n",
            "cannot find -lfrobnicate: No such file or directory\n",
            CARGO_OFFLINE_LOG,
        ],
    )
    def test_what_the_table_does_not_know_is_not_guessed(self, log: str) -> None:
        """Unknown headers and libraries, optional meson lookups and crates give no finding."""
        assert read_log(log) == ()


class TestHintFromLog:
    """hint_from_log: the words of the hint a failed build gets."""

    def test_hint_names_the_dependency_the_evidence_and_the_package(self) -> None:
        """lxml without libxml2's headers: the hint quotes the log and says what to install."""
        assert hint_from_log(LXML_LOG) == (
            'the build needs libxml2, the XML library (the log says "fatal error: '
            'libxml/xmlversion.h: No such file or directory"): apt-get install libxml2-dev, '
            "then build again"
        )

    def test_a_rust_too_old_hint_gives_both_ways(self) -> None:
        """A rustc too old for the crate: the hint says the versions and rustup or rustc-web."""
        hint = hint_from_log(
            "error: rustc 1.95.0 is not supported by the following package:\n"
            "  tooold@0.1.0 requires rustc 1.999\n"
        )
        assert hint == (
            'the build needs the Rust toolchain (the log says "requires rustc 1.999, and rustc '
            f'here is 1.95.0"): {RUST_UPGRADE}, then build again'
        )

    def test_nothing_known_gives_none(self) -> None:
        """A log naming nothing of the table gives no hint of its own."""
        assert hint_from_log("error: something else went wrong\n") is None


class TestBuilderFailureHint:
    """builder.failure_hint, which asks the table first (its tests sit beside the table's)."""

    def test_a_known_header_names_its_package(self) -> None:
        """pygraphviz's missing cgraph.h says apt-get install libgraphviz-dev, not apt-file."""
        assert failure_hint(PYGRAPHVIZ_LOG) == (
            "the build needs Graphviz's libraries (the log says \"fatal error: graphviz/cgraph.h: "
            'No such file or directory"): apt-get install libgraphviz-dev, then build again'
        )

    def test_an_unknown_header_keeps_the_generic_hint(self) -> None:
        """A header the table does not know gets the apt-file hint."""
        hint = failure_hint("x.c:1:10: fatal error: frob.h: No such file or directory\n")
        assert hint.startswith("a C header is missing: frob.h; install the -dev package")

    def test_crates_that_cargo_could_not_download_are_named(self) -> None:
        """cargo left online where there is no network: the hint names the crate and vendoring."""
        log = (
            "error: failed to get `asn1` as a dependency of package `cryptography-rust v0.1.0 "
            "(.../src/rust)`\n\nCaused by:\n  download of config.json failed\n"
        )
        assert failure_hint(log).startswith(
            "its Rust crates are not vendored and builds are offline (cargo could not fetch asn1)"
        )

    def test_an_optional_meson_lookup_is_not_blamed(self) -> None:
        """ "Run-time dependency X found: NO" of an optional dependency is no hint; the ERROR is."""
        optional = "Run-time dependency libfrob found: NO  (tried pkg-config and cmake)\n"
        assert failure_hint(optional).startswith("read the log above")
        error = optional + 'meson.build:2:6: ERROR: Dependency "libfrob" not found (tried x)\n'
        assert failure_hint(error).startswith("a library meson looks for is missing: libfrob")


# -- real packages from the index, with their libraries hidden ----------------------------


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount --bind /dev/null /dev/null"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _pc_file(module: str) -> Path | None:
    """The .pc file pkg-config reads for ``module``, when it has one."""
    if shutil.which("pkg-config") is None:
        return None
    done = subprocess.run(
        ["pkg-config", "--variable", "pcfiledir", module], capture_output=True, text=True
    )
    path = Path(done.stdout.strip()) / f"{module}.pc"
    return path if done.returncode == 0 and path.is_file() else None


def run_hiding(hide: Sequence[Path | None], *args: str | Path, empty: Path) -> Completed:
    """Run the CLI in a subprocess that sees none of ``hide`` (a mount namespace covers them).

    Files are covered with /dev/null (no execute bit, not a regular file), directories
    with the empty directory ``empty``. Paths this machine does not have need no cover.
    """
    present = [p for p in hide if p is not None and p.exists()]
    command = [sys.executable, "-m", "wheelbarrow", *map(str, args)]
    if present:
        if not _unshare_works():
            pytest.skip("this machine has the libraries, and unshare -m is not permitted here")
        mounts = " && ".join(
            f"mount --bind {shlex.quote(str(empty if p.is_dir() else '/dev/null'))} "
            f"{shlex.quote(str(p))}"
            for p in present
        )
        command = ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh", *command]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    return Completed(
        args=tuple(command), returncode=done.returncode, stdout=done.stdout, stderr=done.stderr
    )


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


@pytest.mark.network
class TestMissingLibrariesOfRealPackages:
    """Real sdists from the package index, on a machine without their libraries (or hiding them)."""

    def test_psycopg2_mysqlclient_and_pygraphviz_are_all_named_before_compiling(
        self, tmp_path: Path
    ) -> None:
        """Without pg_config, MySQL and Graphviz one error names all three, and nothing compiles."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text(
            "psycopg2==2.9.10\nmysqlclient==2.2.7\npygraphviz==1.14\n"
        )
        (tmp_path / "empty").mkdir()
        hide = [
            _which("pg_config"),
            _pc_file("mysqlclient"),
            _pc_file("mariadb"),
            _pc_file("libcgraph"),
            Path("/usr/include/graphviz"),
        ]
        store = tmp_path / "store"
        result = run_hiding(hide, "build", app, "--store", store, empty=tmp_path / "empty")
        assert result.returncode == 1, result.stderr
        assert result.stderr.split("error: ", 1)[1] == (
            "mysqlclient 2.2.7 needs what this machine lacks:\n"
            "    - pkg-config:mysqlclient or pkg-config:mariadb (the MySQL or MariaDB client "
            "library): apt-get install default-libmysqlclient-dev\n"
            "  psycopg2 2.9.10 needs what this machine lacks:\n"
            "    - pg_config (libpq, PostgreSQL's client library): apt-get install libpq-dev\n"
            "  pygraphviz 1.14 needs what this machine lacks:\n"
            "    - pkg-config:libcgraph or header:graphviz/cgraph.h (Graphviz's libraries): "
            "apt-get install libgraphviz-dev\n"
            "hint: install them (apt-get install default-libmysqlclient-dev libpq-dev "
            "libgraphviz-dev), then build again; nothing was compiled\n"
        )
        assert "Building" not in result.stderr
        assert not list(store.glob("built/*/build.log"))

    def test_lxml_without_libxml2_headers_names_libxml2_dev_after_the_build(
        self, tmp_path: Path
    ) -> None:
        """libxml2's headers hidden (xml2-config still there): the failed build says libxml2-dev."""
        if shutil.which("xml2-config") is None or shutil.which("xslt-config") is None:
            pytest.skip("needs libxml2-dev and libxslt1-dev (CI installs them)")
        include = subprocess.run(
            ["xml2-config", "--cflags"], capture_output=True, text=True, check=True
        ).stdout.split()
        headers = [Path(flag[2:]) for flag in include if flag.startswith("-I")]
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("lxml==5.3.0\n")
        (tmp_path / "empty").mkdir()
        args = ("build", app, "--store", tmp_path / "store", "--no-binary", "lxml")
        result = run_hiding(headers, *args, empty=tmp_path / "empty")
        assert result.returncode == 1, result.stderr
        assert "1 source build failed:" in result.stderr
        assert "fatal error: libxml/xmlversion.h: No such file or directory" in result.stderr
        assert result.stderr.splitlines()[-1] == (
            'hint: lxml 5.3.0: the build needs libxml2, the XML library (the log says "fatal '
            'error: libxml/xmlversion.h: No such file or directory"): apt-get install '
            "libxml2-dev, then build again"
        )
