"""Tests of wheelbarrow.toolchain: what a source build needs from the machine, and what it has."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from wheelbarrow.errors import InputError, SystemRequirementError
from wheelbarrow.runner import Completed, run_subprocess
from wheelbarrow.toolchain import (
    SystemRequirement,
    check_system,
    detect_languages,
    parse_system_requirement,
    requirements_for_languages,
    toolchain_fingerprint,
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
            ("cargo", "cargo"),
            ("rustc", "cargo"),
        ],
    )
    def test_known_names_map_to_debian_packages(self, text: str, package: str) -> None:
        """Common programs, libraries and headers know their Debian package."""
        assert req(text).debian_package == package
        assert req(text).install_hint == f"apt-get install {package}"

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
