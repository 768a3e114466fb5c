"""The fixture sdists are real: their in-tree backend builds wheels that install and run."""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyproject_hooks import BuildBackendHookCaller
from support.sdists import (
    DEFAULT_GREETING,
    DEFINE_SETTING,
    DEFINE_VARIABLE,
    GREETING_VARIABLE,
    MALICIOUS_KINDS,
    MISSING_HEADER,
    MaliciousKind,
    backend_source,
    build_helper_stamp,
    make_build_helper_sdist,
    make_c_extension_sdist,
    make_dependent_sdist,
    make_failing_sdist,
    make_fortran_sdist,
    make_malicious_sdist,
)

_CC = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
needs_cc = pytest.mark.skipif(shutil.which(_CC) is None, reason=f"no C compiler {_CC!r}")
needs_gfortran = pytest.mark.skipif(shutil.which("gfortran") is None, reason="no gfortran")

_INTERPRETER = f"cp{sys.version_info.major}{sys.version_info.minor}"
_PLATFORM = sysconfig.get_platform().replace("-", "_").replace(".", "_")
PLATFORM_TAG = f"{_INTERPRETER}-{_INTERPRETER}-{_PLATFORM}"


@dataclass(frozen=True, slots=True)
class Built:
    """A wheel built from an unpacked fixture sdist, with everything the build printed."""

    source: Path
    wheel: Path
    log: str


class Hooks:
    """The PEP 517 hooks of an unpacked sdist, run by this interpreter with a chosen environment.

    The environment is this process's without PYTHONPATH and FIXTURE_GREETING,
    plus ``env``; every hook's output is appended to ``log``.
    """

    def __init__(self, source: Path, env: Mapping[str, str] | None = None) -> None:
        build_system = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]
        self.log: list[str] = []
        self._env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"PYTHONPATH", GREETING_VARIABLE}
        }
        self._env.update(env or {})
        self.caller = BuildBackendHookCaller(
            str(source),
            build_system["build-backend"],
            backend_path=build_system["backend-path"],
            runner=self._run,
            python_executable=sys.executable,
        )

    def _run(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        result = subprocess.run(
            list(cmd),
            cwd=cwd,
            env={**self._env, **(extra_environ or {})},
            capture_output=True,
            text=True,
            check=False,
        )
        self.log.append(result.stdout + result.stderr)
        result.check_returncode()

    @property
    def output(self) -> str:
        """Everything the hooks printed so far."""
        return "".join(self.log)


def unpack(sdist: Path, into: Path) -> Path:
    """Extract ``sdist`` safely into ``into`` and return its ``name-version/`` root."""
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    return into / sdist.name.removesuffix(".tar.gz")


def build(
    sdist: Path,
    work: Path,
    *,
    config_settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Built:
    """Unpack ``sdist`` under ``work`` and build its wheel with its own backend."""
    source = unpack(sdist, work / "src")
    hooks = Hooks(source, env)
    out = work / "dist"
    out.mkdir(parents=True, exist_ok=True)
    name = hooks.caller.build_wheel(str(out), config_settings=dict(config_settings or {}))
    return Built(source, out / name, hooks.output)


def install(wheel: Path, target: Path) -> Path:
    """Install ``wheel`` (and nothing else) into the directory ``target`` with pip."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    return target


def run_python(path: Path, code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports from ``path``; return its stdout."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def wheel_file(wheel: Path, suffix: str) -> bytes:
    """The one member of ``wheel`` whose path ends with ``suffix``."""
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(suffix)]
        return archive.read(name)


def sdist_member(sdist: Path, suffix: str) -> str:
    """The text of the one member of ``sdist`` whose path ends with ``suffix``."""
    with tarfile.open(sdist) as archive:
        (member,) = [m for m in archive.getmembers() if m.name.endswith(suffix)]
        extracted = archive.extractfile(member)
        assert extracted is not None
        return extracted.read().decode()


@pytest.fixture(scope="module")
def cext(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Path]:
    """The default C extension sdist, built once and installed into a target directory."""
    work = tmp_path_factory.mktemp("cext")
    built = build(make_c_extension_sdist(work / "sdists"), work)
    return built, install(built.wheel, work / "target")


@needs_cc
class TestCExtensionSdist:
    def test_sdist_holds_pkg_info_pyproject_sources_and_backend(self, tmp_path: Path) -> None:
        """The sdist has PKG-INFO 2.1, a pyproject naming the in-tree backend, sources and it."""
        sdist = make_c_extension_sdist(
            tmp_path, requires=("alpha>=1",), build_requires=("cython-free>=1",)
        )
        assert sdist.name == "cext-1.0.tar.gz"
        with tarfile.open(sdist) as archive:
            assert archive.getnames() == [
                "cext-1.0/PKG-INFO",
                "cext-1.0/_backend/backend.py",
                "cext-1.0/cext/__init__.py",
                "cext-1.0/pyproject.toml",
                "cext-1.0/src/speedups.c",
            ]
        pkg_info = sdist_member(sdist, "PKG-INFO")
        assert pkg_info.splitlines()[:4] == [
            "Metadata-Version: 2.1",
            "Name: cext",
            "Version: 1.0",
            "Requires-Dist: alpha>=1",
        ]
        pyproject = tomllib.loads(sdist_member(sdist, "pyproject.toml"))
        assert pyproject["build-system"] == {
            "requires": ["cython-free>=1"],
            "build-backend": "backend",
            "backend-path": ["_backend"],
        }
        assert pyproject["project"]["dependencies"] == ["alpha>=1"]

    def test_wheel_is_platform_tagged_and_its_extension_adds(
        self, cext: tuple[Built, Path]
    ) -> None:
        """The built wheel carries this interpreter's platform tag and ``add(2, 3)`` is 5."""
        built, target = cext
        assert built.wheel.name == f"cext-1.0-{PLATFORM_TAG}.whl"
        assert b"Root-Is-Purelib: false" in wheel_file(built.wheel, ".dist-info/WHEEL")
        code = "import cext, cext._speedups as s; print(cext.add(2, 3), s.__file__)"
        total, extension = run_python(target, code).split()
        assert total == "5"
        assert extension.endswith(f"_speedups{sysconfig.get_config_var('EXT_SUFFIX')}")

    def test_without_env_or_settings_the_defaults_are_baked(self, cext: tuple[Built, Path]) -> None:
        """A plain build bakes the default greeting, no settings and an unset macro."""
        _, target = cext
        code = "import cext; print(cext.GREETING, cext.build_define(), cext.CONFIG_SETTINGS)"
        assert run_python(target, code) == f"{DEFAULT_GREETING} unset {{}}"

    def test_env_var_and_config_setting_reach_the_build(self, tmp_path: Path) -> None:
        """FIXTURE_GREETING and the ``define`` config setting end up in the built package."""
        sdist = make_c_extension_sdist(tmp_path / "sdists")
        settings = {DEFINE_SETTING: f"{DEFINE_VARIABLE}=configured"}
        built = build(sdist, tmp_path, config_settings=settings, env={GREETING_VARIABLE: "bonjour"})
        target = install(built.wheel, tmp_path / "target")
        code = "import cext; print(cext.GREETING, cext.build_define(), cext.CONFIG_SETTINGS)"
        assert run_python(target, code) == f"bonjour configured {settings}"
        assert f"-D{DEFINE_VARIABLE}=configured" in built.log
        assert f"{GREETING_VARIABLE}='bonjour'" in built.log

    def test_config_setting_overrides_the_sdists_own_define(self, tmp_path: Path) -> None:
        """The factory's ``define`` is compiled in unless a config setting redefines the macro."""
        sdist = make_c_extension_sdist(tmp_path / "sdists", define=f"{DEFINE_VARIABLE}=baked")
        plain = build(sdist, tmp_path / "plain")
        overridden = build(
            sdist,
            tmp_path / "overridden",
            config_settings={DEFINE_SETTING: [f"{DEFINE_VARIABLE}=override", "EXTRA"]},
        )
        code = "import cext; print(cext.build_define(), cext.DEFINES)"
        assert run_python(install(plain.wheel, tmp_path / "t1"), code) == (
            f"baked {{'{DEFINE_VARIABLE}': 'baked'}}"
        )
        assert run_python(install(overridden.wheel, tmp_path / "t2"), code) == (
            f"override {{'EXTRA': '', '{DEFINE_VARIABLE}': 'override'}}"
        )
        assert f"-DEXTRA -D{DEFINE_VARIABLE}=override" in overridden.log

    def test_dynamic_build_requires_are_what_the_hook_returns(self, tmp_path: Path) -> None:
        """``get_requires_for_build_wheel`` answers the sdist's dynamic build requirements."""
        dynamic = make_c_extension_sdist(
            tmp_path / "a", dynamic_build_requires=("something>=1", "other")
        )
        static = make_c_extension_sdist(tmp_path / "b")
        dynamic_hooks = Hooks(unpack(dynamic, tmp_path / "src-a"))
        static_hooks = Hooks(unpack(static, tmp_path / "src-b"))
        assert dynamic_hooks.caller.get_requires_for_build_wheel() == ["something>=1", "other"]
        assert static_hooks.caller.get_requires_for_build_wheel() == []

    def test_import_at_build_fails_loudly_when_the_module_is_missing(self, tmp_path: Path) -> None:
        """A build whose ``import_at_build`` module is absent fails and names the module."""
        sdist = make_c_extension_sdist(tmp_path / "sdists", import_at_build="not_installed_mod")
        with pytest.raises(subprocess.CalledProcessError) as caught:
            build(sdist, tmp_path)
        assert caught.value.stderr is not None
        assert "build requirement 'not_installed_mod' is not importable" in caught.value.stderr

    def test_record_lists_every_file_with_its_hash_and_size(self, cext: tuple[Built, Path]) -> None:
        """RECORD has a urlsafe-base64 sha256 and the size of every other member of the wheel."""
        built, _ = cext
        with zipfile.ZipFile(built.wheel) as archive:
            names = archive.namelist()
            record = archive.read("cext-1.0.dist-info/RECORD").decode()
            rows = list(csv.reader(io.StringIO(record)))
            assert sorted(row[0] for row in rows) == sorted(names)
            for path, digest, size in rows:
                if path.endswith("RECORD"):
                    assert (digest, size) == ("", "")
                    continue
                data = archive.read(path)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                assert digest == f"sha256={expected.decode()}"
                assert int(size) == len(data)

    def test_prepared_metadata_matches_the_wheels(self, tmp_path: Path) -> None:
        """``prepare_metadata_for_build_wheel`` writes the METADATA the wheel then carries."""
        sdist = make_c_extension_sdist(tmp_path / "sdists", requires=("alpha>=1", "beta"))
        hooks = Hooks(unpack(sdist, tmp_path / "src"))
        (tmp_path / "meta").mkdir()
        dist_info = hooks.caller.prepare_metadata_for_build_wheel(str(tmp_path / "meta"))
        assert dist_info == "cext-1.0.dist-info"
        metadata = (tmp_path / "meta" / dist_info / "METADATA").read_bytes()
        assert b"Requires-Dist: alpha>=1\nRequires-Dist: beta\n" in metadata
        built = build(sdist, tmp_path / "build")
        assert wheel_file(built.wheel, ".dist-info/METADATA") == metadata

    def test_backend_build_sdist_reproduces_the_members(self, tmp_path: Path) -> None:
        """The backend's own ``build_sdist`` packs the unpacked tree into the same members."""
        sdist = make_c_extension_sdist(tmp_path / "sdists")
        hooks = Hooks(unpack(sdist, tmp_path / "src"))
        (tmp_path / "out").mkdir()
        rebuilt = tmp_path / "out" / hooks.caller.build_sdist(str(tmp_path / "out"))
        assert rebuilt.name == sdist.name
        with tarfile.open(sdist) as original, tarfile.open(rebuilt) as again:
            assert again.getnames() == original.getnames()

    def test_log_shows_the_compiler_command_line(self, cext: tuple[Built, Path]) -> None:
        """The build log shows the compile command with the flags and the include dir."""
        built, _ = cext
        include = sysconfig.get_paths()["include"]
        assert f"-shared -fPIC -I {include}" in built.log
        assert "src/speedups.c -o" in built.log


@needs_gfortran
class TestFortranSdist:
    def test_dsum_sums_through_the_fortran_library(self, tmp_path: Path) -> None:
        """The installed package sums floats with the gfortran-built library via ctypes."""
        built = build(make_fortran_sdist(tmp_path / "sdists"), tmp_path)
        assert built.wheel.name == f"fext-1.0-{PLATFORM_TAG}.whl"
        target = install(built.wheel, tmp_path / "target")
        code = "import fext; print(fext.dsum([1.5, 2.5]), fext.dsum([]))"
        assert run_python(target, code) == "4.0 0.0"
        assert "gfortran -shared -fPIC src/fsum.f90 -o" in built.log

    @pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf")
    def test_library_needs_libgfortran(self, tmp_path: Path) -> None:
        """``libfsum.so`` links libgfortran, so repairing the wheel must vendor it."""
        built = build(make_fortran_sdist(tmp_path / "sdists"), tmp_path)
        library = tmp_path / "libfsum.so"
        library.write_bytes(wheel_file(built.wheel, "fext/libfsum.so"))
        dynamic = subprocess.run(
            ["readelf", "-d", str(library)], capture_output=True, text=True, check=True
        ).stdout
        assert "(NEEDED)" in dynamic
        assert "libgfortran.so" in dynamic


class TestBuildChain:
    def test_build_helper_is_a_pure_wheel_with_a_stamp(self, tmp_path: Path) -> None:
        """The helper builds to a ``py3-none-any`` wheel whose ``stamp`` names it."""
        built = build(make_build_helper_sdist(tmp_path / "sdists"), tmp_path)
        assert built.wheel.name == "buildhelper-1.0-py3-none-any.whl"
        assert b"Root-Is-Purelib: true" in wheel_file(built.wheel, ".dist-info/WHEEL")
        target = install(built.wheel, tmp_path / "target")
        code = "import buildhelper; print(buildhelper.stamp('dependent'))"
        assert run_python(target, code) == build_helper_stamp("dependent")

    def test_dependent_declares_the_helper_as_a_build_requirement(self, tmp_path: Path) -> None:
        """The dependent's ``[build-system] requires`` lists the helper; its deps are metadata."""
        sdist = make_dependent_sdist(tmp_path, install_requires=("alpha>=1",))
        pyproject = tomllib.loads(sdist_member(sdist, "pyproject.toml"))
        assert pyproject["build-system"]["requires"] == ["buildhelper"]
        assert "Requires-Dist: alpha>=1" in sdist_member(sdist, "PKG-INFO")

    def test_dependent_bakes_in_the_value_its_helper_returns(self, tmp_path: Path) -> None:
        """With the helper installed in the build environment the dependent bakes its stamp."""
        helper = build(make_build_helper_sdist(tmp_path / "sdists"), tmp_path / "helper")
        build_env = install(helper.wheel, tmp_path / "build-env")
        built = build(
            make_dependent_sdist(tmp_path / "sdists"),
            tmp_path / "dependent",
            env={"PYTHONPATH": str(build_env)},
        )
        assert built.wheel.name == "dependent-1.0-py3-none-any.whl"
        assert f"imported build requirement buildhelper from {build_env}" in built.log
        target = install(built.wheel, tmp_path / "target")
        assert run_python(target, "import dependent; print(dependent.BUILD_VALUE)") == (
            build_helper_stamp("dependent")
        )

    def test_pip_builds_the_chain_offline_in_isolated_build_envs(self, tmp_path: Path) -> None:
        """pip, with no index, builds the helper from its sdist into the dependent's build env."""
        sdists = tmp_path / "sdists"
        make_build_helper_sdist(sdists)
        dependent = make_dependent_sdist(sdists)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--no-cache-dir",
                "--no-index",
                "--find-links",
                str(sdists),
                "--wheel-dir",
                str(tmp_path / "wheels"),
                str(dependent),
            ],
            check=True,
        )
        wheel = tmp_path / "wheels" / "dependent-1.0-py3-none-any.whl"
        target = install(wheel, tmp_path / "target")
        assert run_python(target, "import dependent; print(dependent.BUILD_VALUE)") == (
            build_helper_stamp("dependent")
        )

    def test_dependent_fails_loudly_without_its_helper(self, tmp_path: Path) -> None:
        """Without the helper in the build environment the build fails and names it."""
        sdist = make_dependent_sdist(tmp_path / "sdists")
        with pytest.raises(subprocess.CalledProcessError) as caught:
            build(sdist, tmp_path)
        assert "build requirement 'buildhelper' is not importable" in caught.value.stderr


@needs_cc
class TestFailingSdist:
    def test_build_fails_with_the_compiler_error_in_the_log(self, tmp_path: Path) -> None:
        """The build exits non-zero and its output shows the compiler's missing-header error."""
        sdist = make_failing_sdist(tmp_path / "sdists")
        with pytest.raises(subprocess.CalledProcessError) as caught:
            build(sdist, tmp_path)
        output = caught.value.stdout + caught.value.stderr
        assert "src/speedups.c -o" in output
        assert f"{MISSING_HEADER}" in output
        assert "command failed with exit code" in output
        assert not list((tmp_path / "dist").glob("*.whl"))


# The one hostile member of each malicious sdist: name, tar type, link target.
HOSTILE_MEMBERS: Mapping[str, tuple[str, bytes, str]] = {
    "dotdot": ("../evil.txt", tarfile.REGTYPE, ""),
    "absolute": ("/tmp/evil.txt", tarfile.REGTYPE, ""),
    "symlink": ("evil_symlink-1.0/link", tarfile.SYMTYPE, "../../../etc/passwd"),
    "hardlink": ("evil_hardlink-1.0/hardlink", tarfile.LNKTYPE, "../outside.txt"),
}


class TestMaliciousSdist:
    @pytest.mark.parametrize("kind", MALICIOUS_KINDS)
    def test_holds_one_escaping_member_beside_a_valid_pkg_info(
        self, tmp_path: Path, kind: MaliciousKind
    ) -> None:
        """Each kind adds exactly its hostile member to an otherwise valid sdist."""
        sdist = make_malicious_sdist(tmp_path, kind)
        stem = f"evil_{kind}-1.0"
        assert sdist.name == f"{stem}.tar.gz"
        with tarfile.open(sdist) as archive:
            members = archive.getmembers()
        hostile = [m for m in members if not m.name.startswith(f"{stem}/") or not m.isfile()]
        assert [(m.name, m.type, m.linkname) for m in hostile] == [HOSTILE_MEMBERS[kind]]
        assert sdist_member(sdist, "PKG-INFO").startswith(
            f"Metadata-Version: 2.1\nName: evil-{kind}\nVersion: 1.0\n"
        )

    @pytest.mark.parametrize("kind", ["dotdot", "symlink", "hardlink"])
    def test_data_filter_refuses_escaping_paths_and_links(
        self, tmp_path: Path, kind: MaliciousKind
    ) -> None:
        """tarfile's ``data`` filter rejects ``..`` paths and outward links, writing nothing out."""
        sdist = make_malicious_sdist(tmp_path / "sdists", kind)
        root = tmp_path / "extract" / "here"
        root.mkdir(parents=True)
        with tarfile.open(sdist) as archive, pytest.raises(tarfile.FilterError):
            archive.extractall(root, filter="data")
        assert sorted(p.name for p in (tmp_path / "extract").iterdir()) == ["here"]

    def test_data_filter_keeps_an_absolute_member_inside_the_root(self, tmp_path: Path) -> None:
        """tarfile's ``data`` filter strips the leading ``/``, so the file lands under the root."""
        sdist = make_malicious_sdist(tmp_path / "sdists", "absolute")
        root = tmp_path / "extract"
        with tarfile.open(sdist) as archive:
            archive.extractall(root, filter="data")
        assert (root / "tmp" / "evil.txt").is_file()

    def test_unknown_kind_is_refused(self, tmp_path: Path) -> None:
        """An unknown kind raises ValueError naming it."""
        with pytest.raises(ValueError, match="'zipbomb'"):
            make_malicious_sdist(tmp_path, "zipbomb")  # type: ignore[arg-type]


FACTORIES: dict[str, Callable[[Path], Path]] = {
    "c-extension": lambda d: make_c_extension_sdist(
        d, define="FIXTURE_VALUE=x", requires=("a",), dynamic_build_requires=("b",)
    ),
    "fortran": make_fortran_sdist,
    "build-helper": make_build_helper_sdist,
    "dependent": make_dependent_sdist,
    "failing": make_failing_sdist,
    **{
        f"malicious-{kind}": functools.partial(make_malicious_sdist, kind=kind)
        for kind in MALICIOUS_KINDS
    },
}


class TestDeterminism:
    @pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())
    def test_same_factory_gives_identical_bytes(
        self, tmp_path: Path, factory: Callable[[Path], Path]
    ) -> None:
        """Two calls in different directories write byte-identical tarballs."""
        first, second = factory(tmp_path / "one"), factory(tmp_path / "two")
        assert first.name == second.name
        assert first.read_bytes() == second.read_bytes()

    @pytest.mark.parametrize("factory", FACTORIES.values(), ids=FACTORIES.keys())
    def test_members_are_sorted_root_owned_with_a_fixed_mtime(
        self, tmp_path: Path, factory: Callable[[Path], Path]
    ) -> None:
        """Members come in name order, owned by uid/gid 0 with no names, at one fixed time."""
        with tarfile.open(factory(tmp_path)) as archive:
            members = archive.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
        assert {m.mtime for m in members} == {1_577_836_800}

    def test_backend_source_is_valid_python_with_the_requirements_substituted(self) -> None:
        """The backend template compiles and its dynamic requirements are a list literal."""
        source = backend_source(["something>=1", 'quoted"name'])
        compile(source, "backend.py", "exec")
        assert 'DYNAMIC_BUILD_REQUIRES = ["something>=1", "quoted\\"name"]' in source
