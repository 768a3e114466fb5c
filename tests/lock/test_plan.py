"""Planning: the target and the lock agree for every shape of app, and stay current."""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from support import make_wheel
from support.apps import HOST_PYTHON, PLATFORM, cli, make_app

from wheelbarrow._core.errors import InputError, TargetError
from wheelbarrow._core.report import RecordingReporter
from wheelbarrow._core.runner import Completed, Runner, run_subprocess
from wheelbarrow.app.directory import read_app
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.target import PythonVersion, check_known
from wheelbarrow.lock.options import Host, Options
from wheelbarrow.lock.plan import Plan, make_plan


@pytest.fixture
def index(tmp_path: Path, local_index):  # type: ignore[no-untyped-def]
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "beta", "1.0", requires=["alpha"])
    return local_index(d)


def lock_table(app: Path) -> dict[str, object]:
    data = tomllib.loads((app / "pylock.toml").read_text())
    return {"requires-python": data.get("requires-python"), **data["tool"]["wheelbarrow"]}


def run(*args: str | Path) -> str:
    result = cli(*args)
    assert result.code == 0, result.err
    return result.err + result.out


def lock_build_install_twice(app: Path, store: Path, url: str, into: Path) -> None:
    """The whole flow, each step twice: the second run is where caches lie."""
    run("lock", app, "--store", store, "--index-url", url, "--platform", PLATFORM)
    for _ in range(2):
        run("build", app, "--store", store, "--index-url", url, "--platform", PLATFORM)
    for _ in range(2):
        run("install", app, "--store", store, "--into", into)
    python = into / "bin" / "python"
    import subprocess

    out = subprocess.run(
        [python, "-c", "import beta, alpha; print(alpha.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1.0"


class TestAppsOfEveryShape:
    def test_an_app_with_no_python_pin_locks_builds_and_installs(
        self, tmp_path: Path, index
    ) -> None:  # type: ignore[no-untyped-def]
        """No .python-version, runtime.txt or requires-python: the lock is for 3.X (every
        3.X.y), not for this machine's micro release, and build and install accept it."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("beta\n")
        lock_build_install_twice(app, tmp_path / "store", index.url, tmp_path / "env")
        table = lock_table(app)
        assert table["python"] == HOST_PYTHON
        assert table["requires-python"] == f">={HOST_PYTHON}"

    def test_a_pyproject_only_app(self, tmp_path: Path, index) -> None:  # type: ignore[no-untyped-def]
        """[project] dependencies and requires-python only, no requirements file."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "pyproject.toml").write_text(
            '[project]\nname = "svc"\nversion = "0"\nrequires-python = ">=3.9"\n'
            'dependencies = ["beta"]\n'
        )
        lock_build_install_twice(app, tmp_path / "store", index.url, tmp_path / "env")
        assert lock_table(app)["python"] == HOST_PYTHON

    def test_an_app_pinned_to_a_full_release(self, tmp_path: Path, index) -> None:  # type: ignore[no-untyped-def]
        """A pinned 3.X.Y is kept whole in the lock (which requires it) and installs."""
        micro = f"{HOST_PYTHON}.{sys.version_info.micro}"
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("beta\n")
        (app / ".python-version").write_text(micro + "\n")
        lock_build_install_twice(app, tmp_path / "store", index.url, tmp_path / "env")
        table = lock_table(app)
        assert table["python"] == micro
        assert table["requires-python"] == f">={micro}"


class TestTargetChanges:
    def test_a_changed_requires_python_relocks_for_the_new_target(
        self, tmp_path: Path, index
    ) -> None:  # type: ignore[no-untyped-def]
        """The old lock's Python no longer satisfies requires-python: the build relocks."""
        app = tmp_path / "app"
        app.mkdir()
        pyproject = app / "pyproject.toml"
        pyproject.write_text(
            f'[project]\nname = "svc"\nversion = "0"\nrequires-python = ">={HOST_PYTHON}"\n'
            'dependencies = ["beta"]\n'
        )
        store = tmp_path / "store"
        run("build", app, "--store", store, "--index-url", index.url, "--platform", PLATFORM)
        assert lock_table(app)["python"] == HOST_PYTHON
        newer = f"3.{sys.version_info.minor + 1}"
        pyproject.write_text(pyproject.read_text().replace(f">={HOST_PYTHON}", f">={newer}"))
        out = run("build", app, "--store", store, "--index-url", index.url, "--platform", PLATFORM)
        assert "locked again" in out
        assert lock_table(app)["python"] == newer

    def test_a_micro_pin_added_to_python_version_relocks(self, tmp_path: Path, index) -> None:  # type: ignore[no-untyped-def]
        """.python-version going from 3.X to 3.X.Y is a new target, and a new lock."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("beta\n")
        (app / ".python-version").write_text(HOST_PYTHON + "\n")
        store = tmp_path / "store"
        run("build", app, "--store", store, "--index-url", index.url, "--platform", PLATFORM)
        micro = f"{HOST_PYTHON}.{sys.version_info.micro}"
        (app / ".python-version").write_text(micro + "\n")
        out = run("build", app, "--store", store, "--index-url", index.url, "--platform", PLATFORM)
        assert "locked again" in out
        assert lock_table(app)["python"] == micro

    def test_a_lock_from_an_older_wheelbarrow_for_this_micro_release_is_mended(
        self, tmp_path: Path, index
    ) -> None:  # type: ignore[no-untyped-def]
        """A lock recording 3.X but requiring >=3.X.Y (what older releases wrote) is relocked by
        build instead of failing every build, and refused with a clear error by install."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("beta\n")
        store = tmp_path / "store"
        run("lock", app, "--store", store, "--index-url", index.url, "--platform", PLATFORM)
        lock_file = app / "pylock.toml"
        lock_file.write_text(
            lock_file.read_text().replace(
                f'requires-python = ">={HOST_PYTHON}"', f'requires-python = ">={HOST_PYTHON}.7"'
            )
        )
        result = cli("install", app, "--store", store, "--into", tmp_path / "env")
        assert result.code == 2
        assert f"requires Python >={HOST_PYTHON}.7" in result.err
        out = run("build", app, "--store", store, "--index-url", index.url, "--platform", PLATFORM)
        assert "locked again" in out
        assert lock_table(app)["requires-python"] == f">={HOST_PYTHON}"


class TestUnknownPython:
    @pytest.mark.parametrize("version", ["3.99", f"{HOST_PYTHON}.99"])
    def test_an_unknown_python_is_refused_before_anything_is_written(
        self, tmp_path: Path, index, version: str
    ) -> None:  # type: ignore[no-untyped-def]
        """--python is checked against the versions uv knows; the lock stays as it was."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("beta\n")
        store = tmp_path / "store"
        result = cli(
            "lock", app, "--python", version, "--index-url", index.url, "--platform", PLATFORM
        )
        assert result.code == 2, result.err
        assert f"--python: CPython {version} is not a Python version uv knows" in result.err
        assert not (app / "pylock.toml").exists()
        run("build", app, "--store", store, "--index-url", index.url, "--platform", PLATFORM)
        before = (app / "pylock.toml").read_bytes()
        result = cli("build", app, "--python", version, "--store", store, "--platform", PLATFORM)
        assert result.code == 2
        assert (app / "pylock.toml").read_bytes() == before
        # and the next plain build still works
        run("build", app, "--store", store, "--index-url", index.url, "--platform", PLATFORM)

    def test_an_unknown_version_in_python_version_names_the_file(
        self, tmp_path: Path, index
    ) -> None:  # type: ignore[no-untyped-def]
        """The error names where the version came from."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("beta\n")
        (app / ".python-version").write_text("3.98\n")
        result = cli("build", app, "--store", tmp_path / "s", "--index-url", index.url)
        assert result.code == 2
        assert f"{app / '.python-version'}: CPython 3.98 is not a Python version" in result.err


class TestCheckKnown:
    KNOWN = ("3.11.1", "3.11.9", "3.12.4", "3.13.0", "3.14.0a1")

    @pytest.mark.parametrize("text", ["3.11", "3.11.0", "3.11.9", "3.12.1", "3.14"])
    def test_versions_uv_covers_pass(self, text: str) -> None:
        """A minor uv knows, a micro up to its newest (old micros may lack downloads), and a
        minor known only by a pre-release, are accepted."""
        check_known(PythonVersion.parse(text), self.KNOWN, source="--python")

    @pytest.mark.parametrize(("text", "detail"), [
        ("3.99", "uv knows CPython 3.11 to 3.14"),
        ("3.11.10", "the newest 3.11 uv knows is 3.11.9"),
    ])  # fmt: skip
    def test_others_are_refused_with_what_uv_knows(self, text: str, detail: str) -> None:
        """The message says what uv knows instead."""
        with pytest.raises(TargetError, match=detail):
            check_known(PythonVersion.parse(text), self.KNOWN, source="--python")

    def test_no_list_means_no_check(self) -> None:
        """When uv gives no list (an old uv), nothing is refused."""
        check_known(PythonVersion.parse("3.99"), (), source="--python")


class TestInstallChecksTags:
    def test_a_wheelhouse_for_another_architecture_is_refused(
        self, tmp_path: Path, local_index
    ) -> None:  # type: ignore[no-untyped-def]
        """An aarch64 wheelhouse does not 'install' on x86_64 (or the other way round): the
        error names the wheel and the interpreter."""
        import platform

        other = "aarch64" if platform.machine() == "x86_64" else "x86_64"
        tag = f"cp{HOST_PYTHON.replace('.', '')}"
        wheel = make_wheel(
            tmp_path / "d", "native", "1.0", tag=f"{tag}-{tag}-manylinux_2_28_{other}"
        )
        index = local_index([wheel])
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("native\n")
        store = tmp_path / "store"
        run(
            "build", app, "--store", store, "--index-url", index.url,
            "--platform", f"manylinux_2_28_{other}",
        )  # fmt: skip
        result = cli("install", app, "--store", store, "--into", tmp_path / "env")
        assert result.code == 1, result.err
        assert f"native-1.0-{tag}-{tag}-manylinux_2_28_{other}.whl" in result.err
        assert "cannot run 1 wheel of this wheelhouse" in result.err
        assert not (tmp_path / "env").exists()


class TestCachedBuildLocks:
    def test_a_cached_build_lock_that_does_not_hold_for_the_target_is_relocked(
        self, tmp_path: Path, local_index
    ) -> None:  # type: ignore[no-untyped-def]
        """A build-requirement lock cached in the store that requires a newer micro release
        (what older releases cached) is locked again instead of breaking this and every
        other app's source builds."""
        from support import make_build_helper_sdist, make_dependent_sdist

        d = tmp_path / "d"
        make_build_helper_sdist(d)
        make_dependent_sdist(d)
        index = local_index(d)
        store = tmp_path / "store"
        first = tmp_path / "first"
        first.mkdir()
        (first / "requirements.txt").write_text("dependent==1.0\n")
        run("build", first, "--store", store, "--index-url", index.url, "--platform", PLATFORM)
        cached = list((store / "buildlocks").glob("*/pylock.toml"))
        assert cached
        for path in cached:
            text = path.read_text().replace(
                f'requires-python = ">={HOST_PYTHON}"', f'requires-python = ">={HOST_PYTHON}.7"'
            )
            path.write_text(text)
        import shutil

        shutil.rmtree(store / "built")  # force the source builds again
        shutil.rmtree(store / "wheelhouses")
        other = tmp_path / "other"
        other.mkdir()
        (other / "requirements.txt").write_text("dependent==1.0\n")
        out = run(
            "build", other, "--store", store, "--index-url", index.url, "--platform", PLATFORM
        )
        assert "again (the cached lock does not hold" in out
        assert all(f">={HOST_PYTHON}.7" not in p.read_text() for p in cached if p.exists())


class TestEmptyRequirements:
    def test_an_empty_requirements_file_warns_that_the_app_needs_nothing(
        self, tmp_path: Path, index
    ) -> None:  # type: ignore[no-untyped-def]
        """An app whose requirements.txt lists nothing still builds, with a warning saying so."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text("# nothing yet\n\n")
        out = run(
            "build",
            app,
            "--store",
            tmp_path / "s",
            "--index-url",
            index.url,
            "--platform",
            PLATFORM,
        )
        assert "warning: requirements.txt lists no requirements: the app needs nothing" in out


class TestDirectUrls:
    def test_a_direct_wheel_url_is_installed_as_a_wheel(self, tmp_path: Path, index) -> None:  # type: ignore[no-untyped-def]
        """``name @ https://.../name-1.0-py3-none-any.whl`` (locked by uv as an archive) goes
        into the wheelhouse as the wheel it is, not unpacked as an sdist."""
        app = tmp_path / "app"
        app.mkdir()
        (app / "requirements.txt").write_text(
            f"alpha @ {index.base_url}alpha-1.0-py3-none-any.whl\n"
        )
        store = tmp_path / "store"
        for _ in range(2):
            run("build", app, "--store", store, "--platform", PLATFORM)
        run("install", app, "--store", store, "--into", tmp_path / "env")
        assert (tmp_path / "env" / "lib").is_dir()
        houses = list((store / "wheelhouses").glob("*/alpha-1.0-py3-none-any.whl"))
        assert len(houses) == 1


class TestUvIndexes:
    def test_a_changed_tool_uv_index_relocks(self, tmp_path: Path, local_index) -> None:  # type: ignore[no-untyped-def]
        """uv resolves against the app's [[tool.uv.index]]: pointing it elsewhere relocks
        (and takes that index's version), while an unchanged one stays a no-op."""
        one = local_index([make_wheel(tmp_path / "d1", "alpha", "1.0")])
        two = local_index([make_wheel(tmp_path / "d2", "alpha", "2.0")])
        app = tmp_path / "app"
        app.mkdir()
        pyproject = app / "pyproject.toml"

        def write(url: str) -> None:
            pyproject.write_text(
                '[project]\nname = "svc"\nversion = "0"\ndependencies = ["alpha"]\n\n'
                f'[[tool.uv.index]]\nname = "internal"\nurl = "{url}"\ndefault = true\n'
            )

        store = tmp_path / "store"
        write(one.url)
        run("build", app, "--store", store, "--platform", PLATFORM)
        assert "up to date" in run("build", app, "--store", store, "--platform", PLATFORM)
        write(two.url)
        out = run("build", app, "--store", store, "--platform", PLATFORM)
        assert "locked again" in out
        data = tomllib.loads((app / "pylock.toml").read_text())
        assert [p["version"] for p in data["packages"]] == ["2.0"]


def refuse_to_run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> Completed:
    """A Runner for plans that must run nothing (uv above all)."""
    raise AssertionError(f"nothing should run, but {list(args)} was")


def uv_binary() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def this_host() -> Host:
    """This machine as the CLI sees it, but with the tests' platform."""
    return Host(
        python=PythonVersion(
            major=sys.version_info.major, minor=sys.version_info.minor, micro=sys.version_info.micro
        ),
        platform=PLATFORM,
        uv=uv_binary(),
        environ=dict(os.environ),
    )


def plan_of(
    app: Path,
    url: str,
    *,
    runner: Runner = run_subprocess,
    may_lock: bool = True,
    reporter: RecordingReporter | None = None,
) -> Plan:
    """make_plan for ``app`` against the index at ``url``, called directly (no CLI)."""
    return make_plan(
        read_app(app, environ=os.environ),
        Options(index=IndexOptions(index_url=url)),
        this_host(),
        runner=runner,
        reporter=reporter or RecordingReporter(),
        may_lock=may_lock,
    )


class TestMakePlan:
    def test_an_unchanged_app_is_planned_without_running_uv_or_reading_the_index(
        self, tmp_path: Path, index
    ) -> None:  # type: ignore[no-untyped-def]
        """A current lock is checked from local files alone: nothing runs, no index is read."""
        app = make_app(tmp_path / "app", "beta\n")
        first = plan_of(app, index.url)
        assert first.locked_because == "no pylock.toml yet"
        index.requests.clear()

        again = plan_of(app, index.url, runner=refuse_to_run, may_lock=False)

        assert again.locked_because is None
        assert again.key == first.key
        assert [a.filename for a in again.artefacts] == [
            "alpha-1.0-py3-none-any.whl",
            "beta-1.0-py3-none-any.whl",
        ]
        assert index.requests == []

    def test_a_changed_requirement_relocks_with_uv(self, tmp_path: Path, index) -> None:  # type: ignore[no-untyped-def]
        """A requirement added to requirements.txt makes the next plan lock again, saying why."""
        app = make_app(tmp_path / "app", "alpha\n")
        first = plan_of(app, index.url)
        (app / "requirements.txt").write_text("alpha\nbeta\n")
        reporter = RecordingReporter()

        again = plan_of(app, index.url, reporter=reporter)

        assert again.locked_because == (
            "requirements.txt, the target or the index options changed since the lock"
        )
        assert [a.name for a in again.artefacts] == ["alpha", "beta"]
        assert again.key != first.key
        assert ("step", f"Locking 2 requirements for {again.target}") in reporter.messages

    def test_a_stale_lock_is_refused_when_locking_is_not_allowed(
        self, tmp_path: Path, index
    ) -> None:  # type: ignore[no-untyped-def]
        """With may_lock=False a stale lock raises InputError naming the lock and how to relock."""
        app = make_app(tmp_path / "app", "alpha\n")
        plan_of(app, index.url)
        (app / "requirements.txt").write_text("beta\n")
        before = (app / "pylock.toml").read_text()

        with pytest.raises(InputError) as caught:
            plan_of(app, index.url, runner=refuse_to_run, may_lock=False)

        assert caught.value.message == (
            f"{app / 'pylock.toml'}: out of date (requirements.txt, the target or the index "
            "options changed since the lock)"
        )
        assert caught.value.hint == f"run `wheelbarrow build {app}` to lock and build again"
        assert (app / "pylock.toml").read_text() == before

    def test_a_foreign_lock_that_lacks_a_requirement_is_refused(
        self, tmp_path: Path, index
    ) -> None:  # type: ignore[no-untyped-def]
        """Another tool's pylock.toml is used as given, unless requirements.txt asks for more."""
        app = make_app(tmp_path / "app", "alpha\n")
        plan_of(app, index.url)
        lock = app / "pylock.toml"
        text = (
            lock.read_text()
            .split("[tool.wheelbarrow]")[0]
            .replace('created-by = "uv"', 'created-by = "othertool"')
        )
        lock.write_text(text)
        reporter = RecordingReporter()
        used = plan_of(app, index.url, runner=refuse_to_run, reporter=reporter)
        assert [a.name for a in used.artefacts] == ["alpha"]
        assert used.locked_because is None
        assert (
            "info",
            "using pylock.toml as given (written by othertool, not by wheelbarrow)",
        ) in reporter.messages
        (app / "requirements.txt").write_text("alpha\nbeta\n")

        with pytest.raises(InputError) as caught:
            plan_of(app, index.url, runner=refuse_to_run)

        assert caught.value.message == (
            f"{lock} was not written by wheelbarrow and does not hold what requirements.txt "
            f"asks for:\n  {app / 'requirements.txt'}:2: beta is not in pylock.toml"
        )
        assert caught.value.hint == (
            "lock again with othertool, or let wheelbarrow lock "
            f"(`wheelbarrow lock --force {app}` replaces pylock.toml)"
        )
        assert lock.read_text() == text
