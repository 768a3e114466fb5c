"""Source builds through `wheelbarrow build`: order, isolation, repair, caching, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from packaging.utils import canonicalize_name
from support import (
    make_build_helper_sdist,
    make_c_extension_sdist,
    make_dependent_sdist,
    make_failing_sdist,
    make_fortran_sdist,
    make_malicious_sdist,
    make_wheel,
)
from support.apps import PLATFORM, build_cli, build_ok, cli, make_app
from support.artefacts import served_artefact

from wheelbarrow._core.errors import BuildCycleError
from wheelbarrow._core.report import RecordingReporter
from wheelbarrow._core.runner import Completed, Runner, run_subprocess
from wheelbarrow.app.config import BuildConfig
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.target import Target
from wheelbarrow.build.context import SourceContext
from wheelbarrow.build.sources import build_sources
from wheelbarrow.cli.common import running_interpreter
from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.store.fetch import Fetcher
from wheelbarrow.store.store import Store

HOST_PLATFORM = "manylinux_2_36_x86_64"  # Debian 12's glibc: what gfortran's runtime needs


def run_in(env: Path, code: str) -> str:
    """Run Python code in an installed environment and return its output."""
    done = subprocess.run([env / "bin" / "python", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def install(app: Path, store: Path, into: Path) -> None:
    result = cli("install", app, "--store", store, "--into", into)
    assert result.code == 0, result.err


def wheel_names(report: dict[str, object]) -> list[str]:
    return sorted(p.name for p in Path(str(report["wheelhouse"])).glob("*.whl"))


class TestCExtension:
    def test_sdist_only_package_is_built_repaired_and_installed(self, tmp_path, local_index):
        """A C extension with only an sdist becomes a manylinux wheel that installs and runs."""
        index = local_index([make_c_extension_sdist(tmp_path / "d")])
        app = make_app(tmp_path / "app", "cext==1.0\n")
        store = tmp_path / "store"
        report = build_ok(app, store, index.url)
        [built] = report["built"]
        assert built["name"] == "cext" and built["reused"] is False
        assert built["why"] == "first build for this target"
        assert built["repair"].startswith("repaired to manylinux_")
        [wheel] = wheel_names(report)
        assert wheel.startswith("cext-1.0-cp311-cp311-manylinux")
        assert Path(built["log"]).is_file() and "cext" in Path(built["log"]).read_text()
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import cext; print(cext.add(2, 3))") == "5"

    def test_unchanged_source_is_not_rebuilt(self, tmp_path, local_index):
        """A second build is a no-op; another wheelhouse with the same source reuses its wheel."""
        d = tmp_path / "d"
        make_c_extension_sdist(d)
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        app = make_app(tmp_path / "app", "cext==1.0\n")
        store = tmp_path / "store"
        build_ok(app, store, index.url)
        assert build_ok(app, store, index.url)["status"] == "up-to-date"
        other = make_app(tmp_path / "other", "cext==1.0\nalpha\n")
        report = build_ok(other, store, index.url)  # another key: a new wheelhouse
        [built] = report["built"]
        assert built["reused"] is True and built["why"] is None

    def test_build_settings_reach_the_backend_and_a_change_rebuilds(self, tmp_path, local_index):
        """env and config-settings from wheelbarrow.toml reach the build; changing them says why."""
        index = local_index([make_c_extension_sdist(tmp_path / "d")])
        app = make_app(tmp_path / "app", "cext==1.0\n")
        (app / "wheelbarrow.toml").write_text(
            '[packages.cext]\nenv = { FIXTURE_GREETING = "bonjour" }\n'
            'config-settings = { define = "FIXTURE_VALUE=42" }\n'
        )
        store = tmp_path / "store"
        build_ok(app, store, index.url)
        install(app, store, tmp_path / "env")
        out = run_in(tmp_path / "env", "import cext; print(cext.GREETING, cext.build_define())")
        assert out == "bonjour 42"
        (app / "wheelbarrow.toml").write_text(
            '[packages.cext]\nenv = { FIXTURE_GREETING = "hola" }\n'
        )
        report = build_ok(app, store, index.url)
        [built] = report["built"]
        assert built["reused"] is False
        assert built["why"] == "build settings changed"

    def test_patches_are_applied_before_building(self, tmp_path, local_index):
        """A patch listed in the build settings changes the built package."""
        index = local_index([make_c_extension_sdist(tmp_path / "d")])
        app = make_app(tmp_path / "app", "cext==1.0\n")
        (app / "greeting.patch").write_text(
            "--- a/cext/__init__.py\n+++ b/cext/__init__.py\n@@ -0,0 +1 @@\n+PATCHED = True\n"
        )
        (app / "wheelbarrow.toml").write_text('[packages.cext]\npatches = ["greeting.patch"]\n')
        store = tmp_path / "store"
        result = build_cli(app, store, index.url)
        if result.code != 0 and "patch" in result.err and "does not apply" in result.err:
            pytest.fail(result.err)
        assert result.code == 0, result.err
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import cext; print(cext.PATCHED)") == "True"

    def test_no_binary_builds_even_when_a_wheel_exists(self, tmp_path, local_index):
        """--no-binary NAME takes the sdist although a compatible wheel is on the index."""
        d = tmp_path / "d"
        make_c_extension_sdist(d)
        make_wheel(d, "cext", "1.0", files={"cext/__init__.py": "FROM_WHEEL = True\n"})
        index = local_index(d)
        app = make_app(tmp_path / "app", "cext==1.0\n")
        plain = build_ok(app, tmp_path / "store", index.url)
        assert plain["built"] == []
        forced = build_ok(app, tmp_path / "store", index.url, "--no-binary", "cext")
        assert [b["name"] for b in forced["built"]] == ["cext"]
        assert forced["key"] != plain["key"]
        # install needs no --no-binary: it takes the last wheelhouse built from this lock.
        install(app, tmp_path / "store", tmp_path / "env")
        assert run_in(tmp_path / "env", "import cext; print(cext.add(1, 1))") == "2"

    def test_repair_never_keeps_the_wheel_as_built(self, tmp_path, local_index):
        """--repair never keeps the linux_x86_64 wheel, and the report says so."""
        index = local_index([make_c_extension_sdist(tmp_path / "d")])
        app = make_app(tmp_path / "app", "cext==1.0\n")
        report = build_ok(app, tmp_path / "store", index.url, "--repair", "never")
        [built] = report["built"]
        assert built["repair"] == "kept as built (linux_x86_64)"
        assert wheel_names(report) == ["cext-1.0-cp311-cp311-linux_x86_64.whl"]


class TestFortran:
    def test_fortran_extension_is_built_with_gfortran_and_its_runtime_vendored(
        self, tmp_path, local_index
    ):
        """libgfortran is grafted into the repaired wheel, which runs in a fresh environment."""
        index = local_index([make_fortran_sdist(tmp_path / "d")])
        app = make_app(tmp_path / "app", "fext==1.0\n")
        store = tmp_path / "store"
        result = build_cli(app, store, index.url, "--platform", HOST_PLATFORM, "--json")
        assert result.code == 0, result.err
        report = result.json()
        [built] = report["built"]
        assert "libgfortran" in built["repair"]
        [wheel] = wheel_names(report)
        assert "manylinux_2_" in wheel
        names = zipfile.ZipFile(Path(report["wheelhouse"]) / wheel).namelist()
        assert any(n.startswith("fext.libs/libgfortran") for n in names)
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import fext; print(fext.dsum([1.5, 2.5]))") == "4.0"

    def test_too_old_a_target_is_refused_with_what_it_needs(self, tmp_path, local_index):
        """Built on a newer glibc than the target allows: the report names both."""
        index = local_index([make_fortran_sdist(tmp_path / "d")])
        app = make_app(tmp_path / "app", "fext==1.0\n")
        result = build_cli(app, tmp_path / "store", index.url)  # manylinux_2_28
        assert result.code == 1
        assert "fext 1.0" in result.err
        assert "manylinux_2_28_x86_64" in result.err


class TestBuildOrder:
    def test_build_requirement_with_only_an_sdist_is_built_first(self, tmp_path, local_index):
        """B's build needs A, which has only an sdist: A is built first and used in B's build."""
        d = tmp_path / "d"
        make_build_helper_sdist(d)
        make_dependent_sdist(d)
        index = local_index(d)
        app = make_app(tmp_path / "app", "dependent==1.0\n")
        store = tmp_path / "store"
        result = build_cli(app, store, index.url, "--json")
        assert result.code == 0, result.err
        steps = [line for line in result.err.splitlines() if line.startswith("Building ")]
        assert steps == [
            "Building buildhelper 1.0 from source",
            "Building dependent 1.0 from source",
        ]
        # buildhelper is a build requirement only: it is not in the app's wheelhouse.
        assert [w.split("-")[0] for w in wheel_names(result.json())] == ["dependent"]
        install(app, store, tmp_path / "env")
        assert "buildhelper" in run_in(
            tmp_path / "env", "import dependent; print(dependent.BUILD_VALUE)"
        )

    def test_install_time_dependency_is_not_a_build_edge(self, tmp_path, local_index):
        """A runtime-only dependency that fails to build does not stop its dependant's build."""
        d = tmp_path / "d"
        make_dependent_sdist(
            d, "app-pkg", build_requires=(), install_requires=("broken",), helper_module=""
        )
        make_failing_sdist(d)
        index = local_index(d)
        app = make_app(tmp_path / "app", "app-pkg==1.0\n")
        result = build_cli(app, tmp_path / "store", index.url)
        assert result.code == 1
        assert "broken 1.0: the build failed" in result.err
        assert "app-pkg" not in result.err.split("source build failed")[1].split("hint:")[0]
        assert "Building app-pkg 1.0 from source" in result.err

    def test_a_cycle_of_build_requirements_is_named(self, tmp_path, local_index):
        """Two packages whose builds need each other: the cycle is reported with its members."""
        d = tmp_path / "d"
        make_dependent_sdist(d, "ping", build_requires=("pong",), helper_module="")
        make_dependent_sdist(d, "pong", build_requires=("ping",), helper_module="")
        index = local_index(d)
        app = make_app(tmp_path / "app", "ping==1.0\n")
        result = build_cli(app, tmp_path / "store", index.url)
        assert result.code == 2
        assert "1 cycle among the source builds" in result.err
        # The cycle starts at either member; both read the same way round.
        assert (
            "ping 1.0 -> pong 1.0 -> ping 1.0" in result.err
            or "pong 1.0 -> ping 1.0 -> pong 1.0" in result.err
        )


class TestFailures:
    def test_failed_build_names_the_package_and_keeps_its_log(self, tmp_path, local_index):
        """The error names the package, shows the log's tail and a hint; the log stays."""
        d = tmp_path / "d"
        make_failing_sdist(d)
        make_c_extension_sdist(d)
        index = local_index(d)
        app = make_app(tmp_path / "app", "broken==1.0\ncext==1.0\n")
        store = tmp_path / "store"
        result = build_cli(app, store, index.url, "--build-jobs", "1")
        assert result.code == 1
        assert "1 source build failed:" in result.err
        assert "broken 1.0: the build failed (log: " in result.err
        assert "definitely_missing_header.h" in result.err
        assert "a C header is missing: definitely_missing_header.h" in result.err
        log = Path(result.err.split("(log: ")[1].split(")")[0])
        assert log.is_file() and str(store) in str(log)
        # The other package was still built (and is cached for next time).
        assert "Building cext 1.0 from source" in result.err
        assert list((store / "built").glob("*/result.json"))
        assert not (store / "wheelhouses").exists()

    def test_error_before_the_backend_names_the_package_and_its_log(self, tmp_path, local_index):
        """A build stopped by a wheelbarrow error, not by its backend, is reported per package."""
        d = tmp_path / "d"
        # The backend asks at build time for a requirement that has only an sdist.
        make_c_extension_sdist(d, dynamic_build_requires=("buildhelper",))
        make_build_helper_sdist(d)
        index = local_index(d)
        app = make_app(tmp_path / "app", "cext==1.0\n")
        store = tmp_path / "store"
        result = build_cli(app, store, index.url)
        assert result.code == 1, result.err
        assert "error: 1 source build" in result.err
        line = next(x.strip() for x in result.err.splitlines() if "- cext 1.0: " in x)
        assert line.startswith("- cext 1.0: its backend"), line
        assert "its backend asked at build time for buildhelper" in line
        log = Path(line.split("(log: ")[1].rstrip(")"))
        assert log.is_file() and log.is_relative_to(store / "built")
        assert "hint: cext 1.0: list them in [build-system] requires" in result.err

    def test_missing_system_package_is_reported_before_compiling(self, tmp_path, local_index):
        """A build setting's system requirement that is absent stops everything before any build."""
        index = local_index([make_c_extension_sdist(tmp_path / "d")])
        app = make_app(tmp_path / "app", "cext==1.0\n")
        (app / "wheelbarrow.toml").write_text(
            '[packages.cext]\nsystem = ["cmd:definitely-not-a-compiler", "lib:nosuchlibxyz"]\n'
        )
        result = build_cli(app, tmp_path / "store", index.url)
        assert result.code != 0
        assert "cext 1.0" in result.err
        assert "definitely-not-a-compiler" in result.err and "nosuchlibxyz" in result.err
        assert "Building cext" not in result.err
        assert not list((tmp_path / "store").glob("built/*/build.log"))

    @pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
    def test_malicious_sdist_is_refused(self, tmp_path, local_index, kind):
        """An sdist with paths or links escaping its root is refused and nothing is built."""
        sdist = make_malicious_sdist(tmp_path / "d", kind)
        index = local_index([sdist])
        name = sdist.name.split("-1.0")[0]
        app = make_app(tmp_path / "app", f"{name}==1.0\n")
        result = build_cli(app, tmp_path / "store", index.url)
        assert result.code != 0
        assert name.replace("_", "-") in result.err.replace("_", "-")
        assert "Building" not in result.err
        assert not (tmp_path / "evil.txt").exists()


class TestConfig:
    def test_unknown_setting_names_file_and_key(self, tmp_path):
        """A typo in wheelbarrow.toml is an error with a did-you-mean."""
        app = make_app(tmp_path / "app", "cext==1.0\n")
        (app / "wheelbarrow.toml").write_text('[packages.cext]\nevn = { A = "b" }\n')
        result = cli("build", app, "--store", tmp_path / "store", "--platform", PLATFORM)
        assert result.code == 2
        assert (
            "wheelbarrow.toml: packages.cext.evn: unknown setting (did you mean 'env'?)"
            in result.err
        )

    @pytest.mark.parametrize("value", ["0", "-1", "two"])
    def test_build_jobs_must_be_positive(self, tmp_path, value):
        """--build-jobs refuses 0, negatives and words with a usage error."""
        app = make_app(tmp_path / "app", "cext==1.0\n")
        result = cli("build", app, "--build-jobs", value)
        assert result.code == 2
        assert f"--build-jobs: must be a whole number of at least 1, not '{value}'" in result.err

    def test_pyproject_tool_table_is_read(self, tmp_path):
        """[tool.wheelbarrow] in pyproject.toml holds the same settings."""
        from wheelbarrow.app.config import read_build_config

        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname = "x"\nversion = "1"\ndependencies = []\n'
            '[tool.wheelbarrow]\nno-binary = ["numpy"]\nrepair = "never"\n'
            '[tool.wheelbarrow.packages.scipy]\nexclusive = true\nsystem = ["gfortran"]\n'
        )
        config = read_build_config(tmp_path)
        assert config.forces_source("NumPy") and not config.forces_source("scipy")
        assert config.repair == "never"
        assert config.for_package("SciPy").exclusive
        assert config.for_package("scipy").system == ("gfortran",)


def test_build_report_json_is_parseable(tmp_path, local_index):
    """--json on a source build reports each built package."""
    index = local_index([make_c_extension_sdist(tmp_path / "d")])
    app = make_app(tmp_path / "app", "cext==1.0\n")
    report = build_ok(app, tmp_path / "store", index.url)
    assert json.loads(json.dumps(report))["built"][0]["wheel"].endswith(".whl")


class TestLocalAndVcsSources:
    def _tree(self, tmp_path: Path, where: Path) -> Path:
        """A project directory made by unpacking a fixture sdist."""
        import tarfile

        sdist = make_c_extension_sdist(tmp_path / "d", "localpkg", "1.0")
        with tarfile.open(sdist) as tar:
            tar.extractall(where, filter="data")
        return where / "localpkg-1.0"

    def test_local_path_requirement_is_built_and_rebuilt_when_it_changes(self, tmp_path):
        """`./localpkg` in requirements.txt is built from the directory; an edit rebuilds it."""
        app = make_app(tmp_path / "app", "./localpkg-1.0\n")
        self._tree(tmp_path, app)
        store = tmp_path / "store"
        first = cli("build", app, "--store", store, "--platform", PLATFORM, "--no-index", "--json")
        assert first.code == 0, first.err
        [built] = first.json()["built"]
        assert built["name"] == "localpkg" and built["why"] == "first build for this target"
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import localpkg; print(localpkg.add(20, 22))") == "42"
        init = app / "localpkg-1.0" / "localpkg" / "__init__.py"
        init.write_text(init.read_text() + "\nEDITED = True\n")
        second = cli("build", app, "--store", store, "--platform", PLATFORM, "--no-index", "--json")
        assert second.code == 0, second.err
        [rebuilt] = second.json()["built"]
        assert rebuilt["why"] == "source changed"

    def test_vcs_requirement_is_checked_out_at_its_commit_and_built(self, tmp_path):
        """`name @ git+file://...` is cloned at the locked commit and built."""
        repo = self._tree(tmp_path, tmp_path / "repo")
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
        app = make_app(tmp_path / "app", f"localpkg @ git+{repo.as_uri()}\n")
        store = tmp_path / "store"
        result = cli("build", app, "--store", store, "--platform", PLATFORM, "--no-index", "--json")
        assert result.code == 0, result.err
        [built] = result.json()["built"]
        assert built["name"] == "localpkg"
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import localpkg; print(localpkg.add(1, 2))") == "3"


class TestVcsSubdirectory:
    _tree = TestLocalAndVcsSources._tree

    def test_a_package_in_a_subdirectory_of_a_repository_is_built_from_there(self, tmp_path):
        """`name @ git+URL#subdirectory=pkgs/x` (a monorepo) builds pkgs/x, not the root."""
        repo = tmp_path / "repo"
        (repo / "pkgs").mkdir(parents=True)
        self._tree(tmp_path, repo / "pkgs")
        (repo / "README").write_text("a monorepo: nothing to build at the top\n")
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
        url = f"git+{repo.as_uri()}#subdirectory=pkgs/localpkg-1.0"
        app = make_app(tmp_path / "app", f"localpkg @ {url}\n")
        store = tmp_path / "store"
        result = cli("build", app, "--store", store, "--platform", PLATFORM, "--no-index", "--json")
        assert result.code == 0, result.err
        [built] = result.json()["built"]
        assert built["name"] == "localpkg"
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import localpkg; print(localpkg.add(1, 2))") == "3"


class TestEditableRequirements:
    """``-e`` requirements are built into wheels and deployed non-editable, with a note."""

    _tree = TestLocalAndVcsSources._tree

    def test_an_editable_path_is_built_and_deployed_as_a_wheel(self, tmp_path):
        """`-e ./localpkg` works like the plain path, says so, and installs no .pth link."""
        app = make_app(tmp_path / "app", "-e ./localpkg-1.0\n")
        self._tree(tmp_path, app)
        store = tmp_path / "store"
        result = cli("build", app, "--store", store, "--platform", PLATFORM, "--no-index")
        assert result.code == 0, result.err
        assert (
            f"{app / 'requirements.txt'}:1: -e {(app / 'localpkg-1.0').as_uri()} is built into "
            "a wheel and deployed non-editable"
        ) in result.err
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import localpkg; print(localpkg.add(20, 22))") == "42"
        code = "import localpkg, os; print(os.path.dirname(os.path.dirname(localpkg.__file__)))"
        site = Path(run_in(tmp_path / "env", code))  # the stored site-packages, when shared
        assert not list(site.glob("*.pth")) and (site / "localpkg").is_dir()

    def test_an_editable_git_url_is_built_at_its_commit(self, tmp_path):
        """`-e git+file://...#egg=localpkg` is cloned, built and installed."""
        repo = self._tree(tmp_path, tmp_path / "repo")
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
        app = make_app(tmp_path / "app", f"-e git+{repo.as_uri()}#egg=localpkg\n")
        store = tmp_path / "store"
        result = cli("build", app, "--store", store, "--platform", PLATFORM, "--no-index")
        assert result.code == 0, result.err
        assert "deployed non-editable" in result.err
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import localpkg; print(localpkg.add(1, 2))") == "3"

    @pytest.mark.network
    def test_editable_dot_deploys_the_app_itself_built_by_its_real_backend(self, tmp_path):
        """`-e .` in the app's own requirements.txt: the app, built with uv_build from the index."""
        from support.uvprojects import make_package

        app = make_package(tmp_path / "app", name="selfapp", version="2.0.0")
        (app / "requirements.txt").write_text("-e .\nsix==1.15.0\n")  # no Python pin
        store = tmp_path / "store"
        assert cli("build", app, "--store", store).code == 0
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import selfapp, six; print(selfapp.VERSION)") == "2.0.0"
        # An edit of the app rebuilds it: what is deployed is what the checkout holds.
        init = app / "src" / "selfapp" / "__init__.py"
        init.write_text(init.read_text().replace("2.0.0", "2.0.0+edited"))
        assert cli("build", app, "--store", store).code == 0
        install(app, store, tmp_path / "env2")
        assert run_in(tmp_path / "env2", "import selfapp; print(selfapp.VERSION)") == "2.0.0+edited"


class _NoDownloads:
    """A fetcher for builds that must need nothing from an index."""

    def fetch(self, artefacts, store, reporter):
        assert list(artefacts) == [], "nothing should be downloaded"
        return []


class TestReportedDurationAndReason:
    def test_json_gives_each_build_its_duration_and_reason(self, tmp_path, local_index):
        """--json says how long each source build took and why it ran, or that it was reused."""
        d = tmp_path / "d"
        make_c_extension_sdist(d)
        make_wheel(d, "alpha", "1.0")
        index = local_index(d)
        store = tmp_path / "store"
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("cext==1.0\n")  # no Python pin
        other = make_app(tmp_path / "other", "cext==1.0\nalpha\n")

        [built] = build_ok(app, store, index.url)["built"]
        [reused] = build_ok(other, store, index.url)["built"]

        assert built["reason"] == "first build for this target"
        assert isinstance(built["seconds"], float) and built["seconds"] > 0
        assert (reused["reason"], reused["seconds"]) == ("reused from the build cache", 0.0)

    def test_duration_is_measured_with_the_injected_clock(self, tmp_path):
        """A build's seconds are what the context's clock says passed while it built."""
        import os
        import shutil
        import tarfile

        from wheelbarrow._core.digests import tree_digest
        from wheelbarrow._core.report import NullReporter
        from wheelbarrow._core.runner import run_subprocess
        from wheelbarrow.app.config import BuildConfig
        from wheelbarrow.app.requirements import IndexOptions
        from wheelbarrow.app.target import Target
        from wheelbarrow.build.context import SourceContext
        from wheelbarrow.build.sources import build_sources
        from wheelbarrow.cli.common import running_interpreter
        from wheelbarrow.store.store import Store

        with tarfile.open(make_c_extension_sdist(tmp_path / "d", "localpkg", "1.0")) as tar:
            tar.extractall(tmp_path / "src", filter="data")
        tree = tmp_path / "src" / "localpkg-1.0"
        source = Artefact(
            name=canonicalize_name("localpkg"),
            version="?",  # as uv locks a local directory
            filename=tree.name,
            url=None,
            path=tree,
            sha256=tree_digest(tree),
            size=None,
            kind="directory",
        )
        ticks = iter([100.0, 107.25])  # a third reading would fail the test
        interpreter = running_interpreter()
        context = SourceContext(
            store=Store(tmp_path / "store"),
            target=Target.parse(python=interpreter.version, platform=PLATFORM),
            config=BuildConfig(repair="never"),
            interpreter=interpreter,
            runner=run_subprocess,
            reporter=NullReporter(),
            environ=os.environ,
            uv="uv",
            index=IndexOptions(no_index=True),
            fetcher=_NoDownloads(),
            toolchain={},
            which=shutil.which,
            clock=lambda: next(ticks),
        )

        [built] = build_sources([source], context)

        assert built.seconds == 7.25
        assert built.as_json()["seconds"] == 7.25
        assert (built.version, built.as_json()["version"]) == ("1.0", "1.0")


class TestBuiltVersions:
    def test_a_vcs_package_reports_the_version_it_was_built_as(self, tmp_path):
        """A git requirement, locked without a version, is named by its built wheel's version."""
        import tarfile

        with tarfile.open(make_c_extension_sdist(tmp_path / "d", "vcspkg", "3.1")) as tar:
            tar.extractall(tmp_path, filter="data")
        repo = tmp_path / "vcspkg-3.1"
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text(f"vcspkg @ git+{repo.as_uri()}\n")
        args = ("build", app, "--platform", PLATFORM, "--no-index", "--store")

        text = cli(*args, tmp_path / "store")
        report = cli(*args, tmp_path / "other-store", "--json")

        assert (text.code, report.code) == (0, 0), text.err + report.err
        assert "?" not in text.out + text.err
        assert "  vcspkg 3.1: built (first build for this target)" in text.out
        assert [(b["name"], b["version"]) for b in report.json()["built"]] == [("vcspkg", "3.1")]


class TestAppPinsInBuildEnvironments:
    def test_a_build_requirement_the_app_builds_is_the_apps_version(self, tmp_path, local_index):
        """The app pins helper 1.0 (2.0 is newest): dependent builds with the app's 1.0, once."""
        d = tmp_path / "d"
        make_build_helper_sdist(d, version="1.0")
        make_build_helper_sdist(d, version="2.0")
        make_dependent_sdist(d, build_requires=("buildhelper>=1.0",))
        index = local_index(d)
        app = make_app(tmp_path / "app", "buildhelper==1.0\ndependent==1.0\n")
        store = tmp_path / "store"

        result = build_cli(app, store, index.url, "--json")

        assert result.code == 0, result.err
        steps = [line for line in result.err.splitlines() if line.startswith("Building ")]
        assert steps == [
            "Building buildhelper 1.0 from source",
            "Building dependent 1.0 from source",
        ]
        assert "(with buildhelper==1.0, built here)" in result.err
        log = next(b["log"] for b in result.json()["built"] if b["name"] == "dependent")
        assert "# build environment: buildhelper-1.0-py3-none-any.whl\n" in Path(log).read_text()
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import dependent; print(dependent.BUILD_VALUE)") == (
            "dependent built with buildhelper 1.0"
        )

    def test_a_pin_outside_the_build_requirement_is_left_to_the_resolver(
        self, tmp_path, local_index
    ):
        """The app pins helper 1.0 but the build needs >=2.0: the build gets 2.0, built too."""
        d = tmp_path / "d"
        make_build_helper_sdist(d, version="1.0")
        make_build_helper_sdist(d, version="2.0")
        make_dependent_sdist(d, build_requires=("buildhelper>=2.0",))
        index = local_index(d)
        app = make_app(tmp_path / "app", "buildhelper==1.0\ndependent==1.0\n")
        store = tmp_path / "store"

        result = build_cli(app, store, index.url)

        assert result.code == 0, result.err
        install(app, store, tmp_path / "env")
        assert run_in(tmp_path / "env", "import dependent; print(dependent.BUILD_VALUE)") == (
            "dependent built with buildhelper 2.0"
        )


class TestRequirementsAskedAtBuildTime:
    def test_a_backend_asking_for_more_keeps_the_sources_built_for_it(self, tmp_path, local_index):
        """The backend asks for a wheel at build time while a build requirement was built first."""
        d = tmp_path / "d"
        make_build_helper_sdist(d)
        make_wheel(d, "asked", "1.0")
        make_c_extension_sdist(
            d, "cext", build_requires=("buildhelper",), dynamic_build_requires=("asked",)
        )
        index = local_index(d)
        app = make_app(tmp_path / "app", "cext==1.0\n")

        result = build_cli(app, tmp_path / "store", index.url, "--json")

        assert result.code == 0, result.err
        log = next(b["log"] for b in result.json()["built"] if b["name"] == "cext")
        assert "# the backend also needs: asked" in Path(log).read_text()


def make_library(directory: Path, name: str, value: int) -> Path:
    """A real shared library ``lib<name>.so.1`` (and its ``-l`` link name) returning ``value``."""
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / f"{name}.c"
    source.write_text(f"int {name}_value(void) {{ return {value}; }}\n")
    library = directory / f"lib{name}.so.1"
    subprocess.run(
        ["cc", "-shared", "-fPIC", f"-Wl,-soname,{library.name}", "-o", library, source],
        check=True,
    )
    link = directory / f"lib{name}.so"
    if not link.is_symlink():
        link.symlink_to(library.name)
    return library


class TestTwoPartBuildKey:
    """The build key's first part finds candidates; what a wheel links decides if one holds."""

    def _context(self, tmp_path: Path, toolchain: dict[str, str]):
        import os
        import shutil

        from wheelbarrow._core.report import RecordingReporter
        from wheelbarrow._core.runner import run_subprocess
        from wheelbarrow.app.config import BuildConfig
        from wheelbarrow.app.requirements import IndexOptions
        from wheelbarrow.app.target import Target
        from wheelbarrow.build.context import SourceContext
        from wheelbarrow.cli.common import running_interpreter
        from wheelbarrow.store.store import Store

        interpreter = running_interpreter()
        return SourceContext(
            store=Store(tmp_path / "store"),
            target=Target.parse(python=interpreter.version, platform=PLATFORM),
            config=BuildConfig(repair="never"),
            interpreter=interpreter,
            runner=run_subprocess,
            reporter=RecordingReporter(),
            environ=os.environ,
            uv="uv",
            index=IndexOptions(no_index=True),
            fetcher=_NoDownloads(),
            toolchain=toolchain,
            which=shutil.which,
        )

    def _linked_sdist(self, tmp_path: Path, store: Path):
        """A fixture C extension linked against libwbdemo.so.1, as an sdist already in the store."""

        from wheelbarrow.store.store import Store

        libdir = tmp_path / "lib"
        make_library(libdir, "wbdemo", 1)
        make_library(libdir, "wbother", 1)
        sdist = make_c_extension_sdist(
            tmp_path / "d",
            link_args=[f"-L{libdir}", "-Wl,--no-as-needed", "-lwbdemo", f"-Wl,-rpath,{libdir}"],
        )
        sha = Store(store).add_file(sdist)
        source = Artefact(
            name=canonicalize_name("cext"),
            version="1.0",
            filename=sdist.name,
            url=None,
            path=None,
            sha256=sha,
            size=None,
            kind="sdist",
        )
        return source, libdir

    TOOLS: ClassVar[dict[str, str]] = {"cc": "gcc (Debian 12.2.0-14) 12.2.0", "libc": "glibc 2.36"}

    def test_an_unrelated_library_changing_reuses_the_build(self, tmp_path):
        """OpenBLAS's version and a library the wheel does not link change: the wheel is reused."""
        from wheelbarrow.build.sources import build_sources

        ctx = self._context(tmp_path, {**self.TOOLS, "openblas": "0.3.21"})
        source, libdir = self._linked_sdist(tmp_path, ctx.store.root)
        [first] = build_sources([source], ctx)
        assert first.reused is False

        make_library(libdir, "wbother", 2)
        newer = self._context(tmp_path, {**self.TOOLS, "openblas": "0.3.26"})
        [again] = build_sources([source], newer)

        assert again.reused is True
        assert again.sha256 == first.sha256
        assert newer.reporter.builds == []  # nothing was built

    def test_a_library_the_wheel_links_changing_rebuilds_it_and_says_which(self, tmp_path):
        """libwbdemo.so.1, which the extension links, gets new content: rebuilt, naming it."""
        from wheelbarrow.build.sources import build_sources

        ctx = self._context(tmp_path, dict(self.TOOLS))
        source, libdir = self._linked_sdist(tmp_path, ctx.store.root)
        [first] = build_sources([source], ctx)

        make_library(libdir, "wbdemo", 2)
        [rebuilt] = build_sources([source], self._context(tmp_path, dict(self.TOOLS)))

        assert rebuilt.reused is False
        assert rebuilt.why == (
            f"a library it links changed: libwbdemo.so.1 ({libdir / 'libwbdemo.so.1'}: new content)"
        )
        # Both builds stay candidates of the same first part; the old one no longer holds.
        entries = sorted(p.name for p in (ctx.store.root / "built").iterdir())
        assert len(entries) == 2 and entries[0][:16] == entries[1][:16]
        # Back to the old library: the first build holds again.
        make_library(libdir, "wbdemo", 1)
        [back] = build_sources([source], self._context(tmp_path, dict(self.TOOLS)))
        assert back.reused is True and back.sha256 == first.sha256

    def test_the_result_records_both_parts_and_the_build_environment(self, tmp_path):
        """result.json holds the first part's key and inputs, what the wheel links and its
        build environment's store key."""
        from wheelbarrow.build.buildcache import build_key, build_key_inputs, candidates
        from wheelbarrow.build.sources import build_sources

        ctx = self._context(tmp_path, {**self.TOOLS, "openblas": "0.3.21"})
        source, libdir = self._linked_sdist(tmp_path, ctx.store.root)
        [built] = build_sources([source], ctx)

        inputs = build_key_inputs(source, ctx)
        assert "openblas" not in inputs["toolchain"] and inputs["toolchain"]["cc"]
        [candidate] = candidates(ctx.store, build_key(inputs))
        result = json.loads((candidate.path / "result.json").read_text())
        assert result["key"] == build_key(inputs) and result["inputs"] == inputs
        [(soname, library)] = result["links"]["libraries"].items()
        assert soname == "libwbdemo.so.1"
        assert library["file"] == str(libdir / "libwbdemo.so.1")
        assert result["build_env"].startswith("build-")
        assert (ctx.store.root / "envs" / result["build_env"]).is_dir()
        assert built.log == candidate.path / "build.log" and built.log.is_file()


class TestBuildProgress:
    def test_plain_output_has_a_line_as_each_build_starts_and_ends(self, tmp_path, local_index):
        """Off a terminal each build says when it starts, and when it ends with its duration
        and result, failures included."""
        import re

        d = tmp_path / "d"
        make_c_extension_sdist(d)
        make_failing_sdist(d)
        index = local_index(d)
        app = make_app(tmp_path / "app", "cext==1.0\nbroken==1.0\n")
        result = build_cli(app, tmp_path / "store", index.url, "--repair", "never")
        assert result.code == 1
        lines = result.err.splitlines()
        assert "Building cext 1.0 from source" in lines
        assert "Building broken 1.0 from source" in lines
        ends = [line for line in lines if line.startswith(("Built ", "Failed to build "))]
        assert len(ends) == 2, result.err
        built = next(line for line in ends if "cext" in line)
        failed = next(line for line in ends if "broken" in line)
        assert re.fullmatch(r"Built cext 1\.0 in \d+\.\ds: kept as built \(linux_x86_64\)", built)
        assert re.fullmatch(
            r"Failed to build broken 1\.0 after \d+\.\ds: the build failed \(log: .*build\.log\)",
            failed,
        )

    def test_the_reporter_hears_of_each_build_from_the_core(self, tmp_path):
        """build_sources tells the reporter a build started and how it ended, and nothing for
        a wheel reused from the build cache."""
        from wheelbarrow._core.report import RecordingReporter
        from wheelbarrow.build.sources import build_sources

        contexts = TestTwoPartBuildKey()
        ctx = contexts._context(tmp_path, {})
        source, _ = contexts._linked_sdist(tmp_path, ctx.store.root)
        build_sources([source], ctx)
        assert isinstance(ctx.reporter, RecordingReporter)
        assert ctx.reporter.builds == [("started", "cext 1.0"), ("built", "cext 1.0")]
        again = contexts._context(tmp_path, {})
        build_sources([source], again)
        assert again.reporter.builds == []

    def test_a_build_another_process_is_running_is_waited_for_and_said(self, tmp_path):
        """While another holds a build's lock, the build says it waits, then goes on."""
        import threading
        import time

        from wheelbarrow.build.buildcache import build_key, build_key_inputs, build_lock
        from wheelbarrow.build.sources import build_sources

        contexts = TestTwoPartBuildKey()
        ctx = contexts._context(tmp_path, {})
        source, _ = contexts._linked_sdist(tmp_path, ctx.store.root)
        waiting = ("info", "cext 1.0: another process is building it; waiting for that build")
        done: list[object] = []
        with build_lock(ctx.store, build_key(build_key_inputs(source, ctx))):
            worker = threading.Thread(target=lambda: done.extend(build_sources([source], ctx)))
            worker.start()
            deadline = time.monotonic() + 60
            while waiting not in ctx.reporter.messages and time.monotonic() < deadline:
                time.sleep(0.05)
            assert waiting in ctx.reporter.messages
            assert ctx.reporter.builds == []  # nothing started while the lock was held
        worker.join(timeout=120)
        assert [b.reused for b in done] == [False]
        assert ctx.reporter.builds == [("started", "cext 1.0"), ("built", "cext 1.0")]


def refuse_to_run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> Completed:
    """A Runner for source builds that must run nothing: no uv, no backend, no compiler."""
    raise AssertionError(f"nothing should run, but {list(args)} was")


def source_context(
    store: Path,
    index_url: str | None,
    *,
    runner: Runner = run_subprocess,
    fetcher: object | None = None,
) -> SourceContext:
    """What build_sources is given, for the running Python and the tests' platform."""
    from uv import find_uv_bin

    interpreter = running_interpreter()
    return SourceContext(
        store=Store(store),
        target=Target.parse(python=interpreter.version, platform=PLATFORM),
        config=BuildConfig(repair="never"),
        interpreter=interpreter,
        runner=runner,
        reporter=RecordingReporter(),
        environ=os.environ,
        uv=str(find_uv_bin()),
        index=IndexOptions(index_url=index_url) if index_url else IndexOptions(no_index=True),
        fetcher=fetcher or Fetcher(backoff=0),  # type: ignore[arg-type]
        toolchain={},
        which=shutil.which,
    )


class TestBuildSources:
    def test_a_build_requirement_built_from_source_is_built_first(self, tmp_path, local_index):
        """dependent's build needs buildhelper, an sdist: buildhelper is built first, goes into
        dependent's build environment, and only dependent is returned."""
        d = tmp_path / "d"
        make_build_helper_sdist(d)
        dependent = make_dependent_sdist(d)
        index = local_index(d)
        ctx = source_context(tmp_path / "store", index.url)

        [built] = build_sources([served_artefact(dependent, index.base_url)], ctx)

        assert isinstance(ctx.reporter, RecordingReporter)
        assert ctx.reporter.builds == [
            ("started", "buildhelper 1.0"),
            ("built", "buildhelper 1.0"),
            ("started", "dependent 1.0"),
            ("built", "dependent 1.0"),
        ]
        assert (built.source.name, built.wheel) == ("dependent", "dependent-1.0-py3-none-any.whl")
        assert "# build environment: buildhelper-1.0-py3-none-any.whl\n" in built.log.read_text()
        with zipfile.ZipFile(ctx.store.blob(built.sha256)) as wheel:
            info = wheel.read("dependent/_build_info.py").decode()
        assert "dependent built with buildhelper 1.0" in info

    def test_a_cycle_of_build_requirements_is_named_before_anything_builds(
        self, tmp_path, local_index
    ):
        """ping's build needs pong and pong's needs ping: BuildCycleError names the cycle, and
        no backend ran."""
        d = tmp_path / "d"
        ping = make_dependent_sdist(d, "ping", build_requires=("pong",), helper_module="")
        make_dependent_sdist(d, "pong", build_requires=("ping",), helper_module="")
        index = local_index(d)
        ctx = source_context(tmp_path / "store", index.url)

        with pytest.raises(BuildCycleError) as caught:
            build_sources([served_artefact(ping, index.base_url)], ctx)

        message = caught.value.message
        assert message.startswith(
            "1 cycle among the source builds; none of their members can be built first:\n  - "
        )
        assert message.endswith(
            ("ping 1.0 -> pong 1.0 -> ping 1.0", "pong 1.0 -> ping 1.0 -> pong 1.0")
        )
        assert [len(cycle) for cycle in caught.value.cycles] == [2]
        assert isinstance(ctx.reporter, RecordingReporter)
        assert ctx.reporter.builds == []

    def test_an_unchanged_source_is_reused_without_running_anything(self, tmp_path, local_index):
        """Built once, the same source comes from the build cache: no fetch, no lock, no backend."""
        sdist = make_build_helper_sdist(tmp_path / "d")
        index = local_index([sdist])
        source = served_artefact(sdist, index.base_url)
        [first] = build_sources([source], source_context(tmp_path / "store", index.url))
        assert first.reused is False

        again = source_context(
            tmp_path / "store", index.url, runner=refuse_to_run, fetcher=_NoDownloads()
        )
        index.requests.clear()
        [reused] = build_sources([source], again)

        assert (reused.reused, reused.sha256, reused.wheel) == (True, first.sha256, first.wheel)
        assert reused.reason == "reused from the build cache"
        assert isinstance(again.reporter, RecordingReporter)
        assert again.reporter.builds == []
        assert index.requests == []
