"""Tests of wheelbarrow.system.toolchain: what a source build needs from the machine, and has."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest
from packaging.version import Version

from wheelbarrow._core.errors import InputError, SystemRequirementError
from wheelbarrow._core.runner import Completed, run_subprocess
from wheelbarrow.system.fingerprint import toolchain_fingerprint
from wheelbarrow.system.rust import required_rust_version, rustc_version
from wheelbarrow.system.toolchain import (
    Lack,
    SystemProbe,
    SystemRequirement,
    check_system,
    detect_languages,
    lacks_error,
    parse_system_requirement,
    requirements_for_languages,
)


class FakeRunner:
    """A Runner that answers from a table of ``args[0]`` → (exit code, stdout), recording calls."""

    def __init__(self, answers: Mapping[str, tuple[int, str]] | None = None) -> None:
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
        code, out = self.answers.get(args[0], (1, ""))
        return Completed(args=tuple(args), returncode=code, stdout=out, stderr="")


def which_except(*missing: str) -> Callable[[str], str | None]:
    """A ``which`` that finds every program except ``missing``."""

    def which(name: str) -> str | None:
        return None if name in missing else f"/usr/bin/{name}"

    return which


def req(spec: str) -> SystemRequirement:
    return parse_system_requirement(spec)


class TestParseSystemRequirement:
    """parse_system_requirement: the strings users write in their config."""

    @pytest.mark.parametrize(
        ("text", "kind", "name"),
        [
            ("gfortran", "cmd", "gfortran"),
            ("cmd:gfortran", "cmd", "gfortran"),
            ("lib:openblas", "lib", "openblas"),
            ("header:cblas.h", "header", "cblas.h"),
            ("header:openssl/ssl.h", "header", "openssl/ssl.h"),
            ("pkg-config:openblas", "pkg-config", "openblas"),
            ("  c++ ", "cmd", "c++"),
        ],
    )
    def test_each_kind_is_read(self, text: str, kind: str, name: str) -> None:
        """A bare name is a program; prefixes select library, header or pkg-config module."""
        assert parse_system_requirement(text) == SystemRequirement(kind=kind, name=name)  # type: ignore[arg-type]

    def test_spec_round_trips(self) -> None:
        """The spec is how the requirement is written: bare for programs, prefixed otherwise."""
        assert [req(t).spec for t in ("cmd:gfortran", "lib:openblas", "header:cblas.h")] == [
            "gfortran",
            "lib:openblas",
            "header:cblas.h",
        ]

    def test_unknown_kind_is_refused_with_where(self) -> None:
        """An unknown prefix is an InputError naming where it was written."""
        with pytest.raises(InputError, match=r"^pyproject\.toml: invalid system requirement"):
            parse_system_requirement("rpm:openblas", where="pyproject.toml")

    @pytest.mark.parametrize(
        "text", ["header:stdio.h>\n#error x", "lib:-lfoo", "header:../x.h", "header:/abs.h", ""]
    )
    def test_names_that_could_inject_are_refused(self, text: str) -> None:
        """Names reach command lines and an #include, so only plain names are accepted."""
        with pytest.raises(InputError, match="invalid system requirement"):
            parse_system_requirement(text)

    @pytest.mark.parametrize(
        ("text", "package"),
        [
            ("gfortran", "gfortran"),
            ("cc", "gcc"),
            ("gcc", "gcc"),
            ("c++", "g++"),
            ("lib:openblas", "libopenblas-dev"),
            ("lib:lapack", "liblapack-dev"),
            ("lib:blas", "libblas-dev"),
            ("header:cblas.h", "libopenblas-dev"),
            ("pkg-config", "pkg-config"),
            ("patch", "patch"),
            ("cmake", "cmake"),
            ("ninja", "ninja-build"),
            ("header:zlib.h", "zlib1g-dev"),
            ("lib:z", "zlib1g-dev"),
            ("lib:ffi", "libffi-dev"),
            ("header:ffi.h", "libffi-dev"),
            ("lib:ssl", "libssl-dev"),
            ("pkg-config:openssl", "libssl-dev"),
        ],
    )
    def test_known_names_map_to_debian_packages(self, text: str, package: str) -> None:
        """Common programs, libraries and headers know their Debian package."""
        assert req(text).debian_package == package
        assert req(text).install_hint == f"apt-get install {package}"

    @pytest.mark.parametrize("text", ["cargo", "rustc"])
    def test_rust_is_had_from_rustup_or_debians_newer_rustc_web(self, text: str) -> None:
        """Debian 12's own cargo 1.65 is too old for most crates: cargo-web, or rustup."""
        assert req(text).debian_package == "cargo-web"
        assert req(text).install_hint == (
            "install Rust with rustup, or on Debian 12 apt-get install rustc-web cargo-web "
            "(Debian's own rustc and cargo are too old for most crates)"
        )

    def test_unknown_name_says_to_install_its_provider(self) -> None:
        """A name without a known package gets a generic hint naming it."""
        assert req("lib:frobnicate").install_hint == (
            "install the package that provides lib:frobnicate"
        )


class TestDetectLanguages:
    """detect_languages: the compiled languages of a source tree, from file names."""

    def test_each_language_is_found_by_its_files(self, tmp_path: Path) -> None:
        """.c, .cpp/.C, .f90/.F, .pyx and Cargo.toml each name their language."""
        for name in ("a/x.c", "b/y.cpp", "c/z.F", "d/w.f90", "e/m.pyx", "rs/Cargo.toml"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_text("")
        assert detect_languages(tmp_path) == {"c", "c++", "fortran", "cython", "rust"}

    def test_upper_case_c_is_cplusplus(self, tmp_path: Path) -> None:
        """``.C`` is C++, ``.c`` is C: the case of the suffix matters."""
        (tmp_path / "x.C").write_text("")
        assert detect_languages(tmp_path) == {"c++"}

    def test_pure_python_has_no_languages(self, tmp_path: Path) -> None:
        """A tree of Python files and docs needs no compiler."""
        (tmp_path / "pkg.py").write_text("")
        (tmp_path / "README.md").write_text("")
        assert detect_languages(tmp_path) == frozenset()

    def test_version_control_and_environments_are_ignored(self, tmp_path: Path) -> None:
        """Files under .git or .venv say nothing about the project."""
        (tmp_path / ".venv/lib").mkdir(parents=True)
        (tmp_path / ".venv/lib/x.c").write_text("")
        assert detect_languages(tmp_path) == frozenset()

    def test_stops_after_the_file_limit(self, tmp_path: Path) -> None:
        """Only the first ``max_files`` files are looked at."""
        for i in range(5):
            (tmp_path / f"{i}.py").write_text("")
        (tmp_path / "zz.c").write_text("")
        assert detect_languages(tmp_path, max_files=3) == frozenset()


class TestRequirementsForLanguages:
    """requirements_for_languages: the compilers each language needs."""

    def test_languages_map_to_compilers_once_each(self) -> None:
        """c and cython share cc; c++, fortran and rust add c++, gfortran and cargo."""
        specs = [
            r.spec for r in requirements_for_languages(["rust", "fortran", "cython", "c++", "c"])
        ]
        assert specs == ["cc", "c++", "gfortran", "cargo"]

    def test_no_languages_need_nothing(self) -> None:
        """Pure Python needs no compiler."""
        assert requirements_for_languages([]) == ()


class TestCheckSystem:
    """check_system with fakes: every missing requirement is listed in one error."""

    def test_everything_missing_is_listed_with_its_package(self, tmp_path: Path) -> None:
        """gfortran and lib:openblas missing give one message listing both, with apt-get lines."""
        runner = FakeRunner()
        with pytest.raises(SystemRequirementError) as info:
            check_system(
                [req("cc"), req("gfortran"), req("lib:openblas"), req("lib:frob")],
                which=which_except("gfortran", "ldconfig"),
                runner=runner,
                label="scipy 1.16.2",
                lib_dirs=[tmp_path],
            )
        assert str(info.value) == (
            "scipy 1.16.2 needs what this machine lacks:\n"
            "  - gfortran (a Fortran compiler): apt-get install gfortran\n"
            "  - lib:openblas: apt-get install libopenblas-dev\n"
            "  - lib:frob: install the package that provides lib:frob"
        )
        assert info.value.hint == "install them, then build again"
        assert info.value.missing == ("gfortran", "lib:openblas", "lib:frob")
        assert info.value.packages == ("gfortran", "libopenblas-dev")

    def test_all_present_passes(self, tmp_path: Path) -> None:
        """Nothing is raised when every requirement is found."""
        (tmp_path / "libopenblas.so").write_text("")
        check_system(
            [req("cc"), req("lib:openblas"), req("header:cblas.h"), req("pkg-config:lapack")],
            which=which_except(),
            runner=FakeRunner({"cc": (0, ""), "pkg-config": (0, "")}),
            label="scipy",
            lib_dirs=[tmp_path],
        )

    def test_library_found_in_the_ldconfig_cache(self, tmp_path: Path) -> None:
        """An unversioned libNAME.so in ``ldconfig -p`` counts as present."""
        cache = (
            "3 libs found in cache `/etc/ld.so.cache'\n"
            "\tlibopenblas.so.0 (libc6,x86-64) => /lib/x86_64-linux-gnu/libopenblas.so.0\n"
            "\tlibopenblas.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libopenblas.so\n"
            "\tliblapack.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/liblapack.so.3\n"
        )
        runner = FakeRunner({"/usr/bin/ldconfig": (0, cache)})
        with pytest.raises(SystemRequirementError) as info:
            check_system(
                [req("lib:openblas"), req("lib:lapack")],
                which=which_except("pkg-config"),
                runner=runner,
                label="scipy",
                lib_dirs=[tmp_path],
            )
        # Only the runtime liblapack.so.3 is there: linking needs the -dev package.
        assert info.value.missing == ("lib:lapack",)
        assert runner.calls.count(("/usr/bin/ldconfig", "-p")) == 1

    def test_header_is_checked_by_preprocessing_an_include(self) -> None:
        """A header check runs the C preprocessor on an include of it, from /."""
        runner = FakeRunner({"cc": (1, "")})
        with pytest.raises(SystemRequirementError, match=r"header:cblas\.h: apt-get install"):
            check_system(
                [req("header:cblas.h")], which=which_except(), runner=runner, label="scipy"
            )
        assert runner.calls == [
            ("cc", "-E", "-x", "c", "-include", "cblas.h", "-o", "/dev/null", "/dev/null")
        ]

    def test_header_check_without_cc_also_asks_for_cc(self) -> None:
        """Without a C compiler headers cannot be checked, so cc is listed too."""
        with pytest.raises(SystemRequirementError) as info:
            check_system(
                [req("header:cblas.h")], which=which_except("cc"), runner=FakeRunner(), label="x"
            )
        assert info.value.missing == ("header:cblas.h", "cc")


class TestSystemProbe:
    """SystemProbe.any_present: one of several ways to find a thing is enough."""

    def test_the_first_alternative_present_answers(self) -> None:
        """pkg-config missing, xml2-config present: present, and pkg-config is not asked for."""
        probe = SystemProbe(which=which_except("pkg-config"), runner=FakeRunner(), lib_dirs=[])
        assert probe.any_present([req("pkg-config:libxml-2.0"), req("xml2-config")])
        assert probe.needed_tools == []

    def test_no_alternative_keeps_the_tools_they_needed(self) -> None:
        """When none is present, the missing pkg-config they needed is kept, once."""
        probe = SystemProbe(which=which_except("pkg-config"), runner=FakeRunner(), lib_dirs=[])
        assert not probe.any_present([req("pkg-config:mysqlclient"), req("pkg-config:mariadb")])
        assert probe.needed_tools == [req("pkg-config")]


class TestLacksError:
    """lacks_error: one error whose lines say what lacks and what to install."""

    def test_lines_missing_and_packages(self) -> None:
        """Each lack is a line; the error lists their specs and Debian packages once each."""
        error = lacks_error(
            [
                Lack(spec="pg_config", line="pg_config (libpq): apt-get install libpq-dev",
                     packages=("libpq-dev",)),
                Lack(spec="proj", line="proj (PROJ): apt-get install libproj-dev proj-bin",
                     packages=("libproj-dev", "proj-bin")),
                Lack(spec="rustc>=1.70", line="rustc 1.70 or newer: rustup update"),
            ],
            label="app 1.0",
        )  # fmt: skip
        assert error.message == (
            "app 1.0 needs what this machine lacks:\n"
            "  - pg_config (libpq): apt-get install libpq-dev\n"
            "  - proj (PROJ): apt-get install libproj-dev proj-bin\n"
            "  - rustc 1.70 or newer: rustup update"
        )
        assert error.missing == ("pg_config", "proj", "rustc>=1.70")
        assert error.packages == ("libpq-dev", "libproj-dev", "proj-bin")


class TestRequiredRustVersion:
    """required_rust_version: the highest rust-version a tree's own crates ask for."""

    def test_package_rust_version_is_read(self, tmp_path: Path) -> None:
        """``[package] rust-version`` of the root Cargo.toml, as written and as a version."""
        (tmp_path / "Cargo.toml").write_text('[package]\nname = "x"\nrust-version = "1.999"\n')
        found = required_rust_version(tmp_path)
        assert found is not None
        assert (found.text, found.version, found.manifest) == (
            "1.999",
            Version("1.999"),
            Path("Cargo.toml"),
        )

    def test_the_highest_of_a_workspace_wins(self, tmp_path: Path) -> None:
        """A workspace's inherited rust-version and a member's own: the higher one counts."""
        (tmp_path / "Cargo.toml").write_text(
            '[workspace]\nmembers = ["src/rust"]\n[workspace.package]\nrust-version = "1.65.0"\n'
        )
        (tmp_path / "src/rust").mkdir(parents=True)
        (tmp_path / "src/rust/Cargo.toml").write_text(
            '[package]\nname = "m"\nrust-version = "1.74"\n'
        )
        found = required_rust_version(tmp_path)
        assert found is not None
        assert (found.text, found.manifest) == ("1.74", Path("src/rust/Cargo.toml"))

    def test_vendored_crates_and_build_output_are_left_out(self, tmp_path: Path) -> None:
        """Crates in vendor/ (with .cargo-checksum.json) and target/ are cargo's to judge."""
        (tmp_path / "Cargo.toml").write_text('[package]\nname = "x"\nrust-version = "1.60"\n')
        for where in ("vendor/dep", "target/package/x"):
            (tmp_path / where).mkdir(parents=True)
            (tmp_path / where / "Cargo.toml").write_text(
                '[package]\nname = "d"\nrust-version = "1.90"\n'
            )
        (tmp_path / "vendor/dep/.cargo-checksum.json").write_text("{}")
        found = required_rust_version(tmp_path)
        assert found is not None and found.text == "1.60"

    @pytest.mark.parametrize(
        "manifest",
        [
            '[package]\nname = "x"\n',
            '[package]\nname = "x"\nrust-version.workspace = true\n',
            '[package]\nname = "x"\nrust-version = "latest"\n',
            "[package\nnot toml",
        ],
    )
    def test_nothing_usable_is_none(self, tmp_path: Path, manifest: str) -> None:
        """No rust-version, an inherited one without its workspace, a bad one: no requirement."""
        (tmp_path / "Cargo.toml").write_text(manifest)
        assert required_rust_version(tmp_path) is None


class TestRustcVersion:
    """rustc_version: what ``rustc --version`` says, from rustup's rustc and Debian's."""

    @pytest.mark.parametrize(
        ("output", "version"),
        [
            ("rustc 1.95.0 (59807616e 2026-04-14)\n", "1.95.0"),  # rustup's
            ("rustc 1.63.0\n", "1.63.0"),  # Debian 12's own
            ("rustc 1.96.0-nightly (abcdef012 2026-05-01)\n", "1.96.0"),
        ],
    )
    def test_version_lines_are_read(self, output: str, version: str) -> None:
        """The version number follows ``rustc``; what comes after is ignored."""
        runner = FakeRunner({"rustc": (0, output)})
        assert rustc_version(which=which_except(), runner=runner) == Version(version)

    def test_absent_or_failing_rustc_is_none(self) -> None:
        """No rustc, or one that fails, has no version."""
        assert rustc_version(which=which_except("rustc"), runner=FakeRunner()) is None
        assert rustc_version(which=which_except(), runner=FakeRunner({"rustc": (1, "")})) is None

    def test_this_machines_rustc_has_a_version(self) -> None:
        """The rustc on PATH reports a version rustc_version reads."""
        if shutil.which("rustc") is None:
            pytest.skip("no rustc on PATH")
        found = rustc_version(which=shutil.which, runner=run_subprocess)
        assert found is not None and found >= Version("1.0")


class TestCheckSystemOnThisMachine:
    """check_system against the real machine (a C toolchain is a test prerequisite)."""

    def test_cc_and_stdio_are_found(self) -> None:
        """cc is on PATH and the C compiler finds stdio.h."""
        check_system(
            [req("cc"), req("header:stdio.h")],
            which=shutil.which,
            runner=run_subprocess,
            label="demo",
        )

    def test_a_header_that_does_not_exist_is_missing(self) -> None:
        """A made-up header is reported missing."""
        with pytest.raises(SystemRequirementError, match=r"header:no_such_header_wb\.h"):
            check_system(
                [req("header:no_such_header_wb.h")],
                which=shutil.which,
                runner=run_subprocess,
                label="demo",
            )


class TestToolchainFingerprint:
    """toolchain_fingerprint: compiler, OpenBLAS and libc versions for build cache keys."""

    def test_real_fingerprint_has_cc_version_and_glibc(self) -> None:
        """On this machine cc reports a version line and libc is glibc."""
        fingerprint = toolchain_fingerprint(which=shutil.which, runner=run_subprocess)
        assert set(fingerprint) == {"cc", "c++", "gfortran", "openblas", "libc"}
        assert fingerprint["cc"] not in ("absent", "unknown")
        assert any(ch.isdigit() for ch in fingerprint["cc"])
        assert fingerprint["libc"].startswith("glibc ")

    def test_missing_tools_are_absent(self) -> None:
        """Tools not on PATH are ``absent`` and never run."""
        runner = FakeRunner()
        fingerprint = toolchain_fingerprint(
            which=lambda name: None, runner=runner, libc="glibc 2.28"
        )
        assert fingerprint == {
            "cc": "absent",
            "c++": "absent",
            "gfortran": "absent",
            "openblas": "absent",
            "libc": "glibc 2.28",
        }
        assert runner.calls == []

    def test_first_line_of_version_output_is_kept(self) -> None:
        """Each tool's version is the first line of its ``--version``."""
        runner = FakeRunner(
            {
                "cc": (0, "cc (Debian 12.2.0-14) 12.2.0\nCopyright\n"),
                "c++": (0, "c++ (Debian 12.2.0-14) 12.2.0\n"),
                "gfortran": (0, "GNU Fortran (Debian 12.2.0-14) 12.2.0\n"),
                "pkg-config": (0, "0.3.21\n"),
            }
        )
        fingerprint = toolchain_fingerprint(which=which_except(), runner=runner, libc="glibc 2.36")
        assert fingerprint == {
            "cc": "cc (Debian 12.2.0-14) 12.2.0",
            "c++": "c++ (Debian 12.2.0-14) 12.2.0",
            "gfortran": "GNU Fortran (Debian 12.2.0-14) 12.2.0",
            "openblas": "0.3.21",
            "libc": "glibc 2.36",
        }
        assert ("pkg-config", "--modversion", "openblas") in runner.calls
