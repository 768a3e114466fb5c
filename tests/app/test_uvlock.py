"""Reading a uv project's lock: freshness as uv checks it, and the exact pins uv exports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from support.apps import HOST_PYTHON, PLATFORM
from support.uvprojects import (
    locked_versions,
    make_git_package,
    make_package,
    make_uv_project,
    run_uv,
    uv_bin,
    uv_environ,
)

from wheelbarrow._core.errors import InputError, LockError
from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.app.config import BuildConfig
from wheelbarrow.app.managers import Groups, ManagedLock, StaleLockError
from wheelbarrow.app.target import Target
from wheelbarrow.app.uvlock import export_group_args, read_uv_lock
from wheelbarrow.lock.lockfile import Artefact, read_lock, select_artefacts

TARGET = Target.parse(python=HOST_PYTHON, platform=PLATFORM)
# A proxy on a closed port: every request uv makes fails at once, without changing
# what the lock means (pointing UV_DEFAULT_INDEX elsewhere would: uv.lock records the index).
CLOSED = "http://127.0.0.1:9"


def read(root: Path, env: dict[str, str], groups: Groups | None = None) -> ManagedLock:
    return read_uv_lock(
        root, groups=groups or Groups(), target=TARGET, uv=uv_bin(), runner=run_subprocess,
        environ=env,
    )  # fmt: skip


def offline_environ(tmp: Path) -> dict[str, str]:
    """An environment where uv reaches no server and has nothing cached."""
    env = uv_environ(tmp / "empty-cache")
    env.update(HTTPS_PROXY=CLOSED, HTTP_PROXY=CLOSED, ALL_PROXY=CLOSED, UV_HTTP_RETRIES="0")
    for key in ("NO_PROXY", "no_proxy", "https_proxy", "http_proxy", "all_proxy"):
        env.pop(key, None)
    return env


def selected(root: Path, managed: ManagedLock) -> dict[str, Artefact]:
    """What wheelbarrow's lock reader picks for the target from the export, written as the
    lead writes it (the app's pylock.toml, with a [tool.wheelbarrow] table)."""
    assert managed.pylock is not None
    path = root / "pylock.toml"
    path.write_text(managed.pylock + '\n[tool.wheelbarrow]\ninputs = "x"\n', encoding="utf-8")
    try:
        lock = read_lock(path)
        return {a.name: a for a in select_artefacts(lock, TARGET, BuildConfig())}
    finally:
        path.unlink()


def versions(artefacts: dict[str, Artefact]) -> dict[str, str]:
    return {name: a.version for name, a in artefacts.items() if a.kind == "wheel"}


def synced(root: Path, env: dict[str, str], into: Path) -> dict[str, str]:
    """``{name: version}`` that ``uv sync --locked --no-default-groups --no-editable`` (Heroku's
    command, non-editable as wheelbarrow deploys) installs from the project at ``root``."""
    done = run_uv(
        ["sync", "--locked", "--no-default-groups", "--no-editable"],
        root,
        {**env, "UV_PROJECT_ENVIRONMENT": str(into)},
    )
    assert done.returncode == 0, done.stderr
    listed = run_uv(["pip", "list", "--format", "json", "--python", str(into)], root, env)
    assert listed.returncode == 0, listed.stderr
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listed.stdout)}


@pytest.fixture(scope="class")
def uv_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """uv's environment with its cache in a temporary directory, shared by a class's tests."""
    return uv_environ(tmp_path_factory.mktemp("uv-cache"))


class TestGroupArguments:
    def test_production_leaves_out_the_default_groups(self):
        """By default the export leaves out uv's default groups, as Heroku's uv sync does."""
        assert export_group_args(Groups()) == ["--no-default-groups"]

    def test_dev_keeps_the_default_groups_and_adds_named_ones(self):
        """Groups(dev=True) keeps the default groups; named groups and extras are added."""
        groups = Groups(dev=True, names=("docs", "a"), extras=("fast",))
        assert export_group_args(groups) == ["--group", "a", "--group", "docs", "--extra", "fast"]


class TestMissingFiles:
    def test_no_uv_lock_is_an_error_with_uvs_fix(self, tmp_path):
        """Without uv.lock there is nothing to read: the error names it and says `uv lock`."""
        make_uv_project(tmp_path / "app", uv_environ(tmp_path / "c"), lock=False)
        with pytest.raises(InputError) as info:
            read(tmp_path / "app", uv_environ(tmp_path / "c"))
        assert str(tmp_path / "app" / "uv.lock") in info.value.message
        assert "`uv lock`" in (info.value.hint or "")

    def test_uv_lock_without_pyproject_is_an_error(self, tmp_path):
        """A uv.lock with no pyproject.toml beside it is refused, naming both."""
        (tmp_path / "uv.lock").write_text("version = 1\n")
        with pytest.raises(InputError) as info:
            read(tmp_path, uv_environ(tmp_path / "c"))
        assert "pyproject.toml" in info.value.message and "uv.lock" in info.value.message


@pytest.mark.network
class TestExport:
    """A package project with old pins, a dev group, a named group and an extra (one lock)."""

    @pytest.fixture(scope="class")
    @classmethod
    def project(cls, tmp_path_factory: pytest.TempPathFactory, uv_env: dict[str, str]) -> Path:
        return make_uv_project(
            tmp_path_factory.mktemp("export") / "app",
            uv_env,
            dependencies=["requests==2.25.1", "six==1.15.0"],
            groups={"dev": ["iniconfig==1.1.1"], "docs": ["packaging==20.9"]},
            extras={"toml": ["toml==0.10.1"]},
            requires_python=">=3.10",
        )

    def test_exported_versions_and_hashes_are_the_locks(self, project, uv_env):
        """Every index package deployed has uv.lock's version and wheel hash, not the newest."""
        artefacts = selected(project, read(project, uv_env))
        locked = tomllib.loads((project / "uv.lock").read_text())
        hashes = {
            p["name"]: {w["hash"].removeprefix("sha256:") for w in p.get("wheels", [])}
            for p in locked["package"]
        }
        got = versions(artefacts)
        assert got == {k: v for k, v in locked_versions(project).items() if k in got}
        assert (got["requests"], got["six"], got["idna"]) == ("2.25.1", "1.15.0", "2.10")
        assert set(got) == {"certifi", "chardet", "idna", "requests", "six", "urllib3"}
        for name, artefact in artefacts.items():
            if artefact.kind == "wheel":
                assert artefact.sha256 in hashes[name]

    def test_dev_group_only_with_dev(self, project, uv_env):
        """The dev group is left out by default and deployed with Groups(dev=True)."""
        assert "iniconfig" not in selected(project, read(project, uv_env))
        with_dev = selected(project, read(project, uv_env, Groups(dev=True)))
        assert with_dev["iniconfig"].version == "1.1.1"
        assert "packaging" not in with_dev

    def test_named_group_and_extra(self, project, uv_env):
        """A named PEP 735 group and an extra are deployed when asked for, and only then."""
        managed = read(project, uv_env, Groups(names=("docs",), extras=("toml",)))
        chosen = selected(project, managed)
        assert (chosen["packaging"].version, chosen["toml"].version) == ("20.9", "0.10.1")
        assert "iniconfig" not in chosen and "toml" not in selected(project, read(project, uv_env))
        assert "with group docs, extra toml" in managed.notes

    def test_unknown_group_names_the_lock(self, project, uv_env):
        """A group the project does not define is an input error quoting uv, not a traceback."""
        with pytest.raises(InputError) as info:
            read(project, uv_env, Groups(names=("nope",)))
        assert str(project / "uv.lock") in info.value.message
        assert "Group `nope` is not defined" in info.value.message

    def test_project_is_a_wheel_to_build_not_editable(self, project, uv_env):
        """The project itself is exported as its directory, not editable, and noted."""
        managed = read(project, uv_env)
        assert managed.pylock is not None
        entry = next(p for p in tomllib.loads(managed.pylock)["packages"] if p["name"] == "app")
        assert entry["directory"] == {"path": "."}
        app = selected(project, managed)["app"]
        assert (app.kind, app.version, app.path) == ("directory", "0.1.0", project)
        assert "the project app is built as a wheel and installed, not editable" in managed.notes

    def test_result_names_the_lock_and_its_python(self, project, uv_env):
        """The result is uv's, points at uv.lock, and carries requires-python and the index."""
        managed = read(project, uv_env)
        assert (managed.manager, managed.path) == ("uv", project / "uv.lock")
        assert managed.requires_python == ">=3.10"
        assert len(managed.index_urls) == 1 and managed.index_urls[0].endswith("/simple")

    def test_digest_follows_the_lock_and_the_groups(self, project, uv_env, tmp_path):
        """The digest is stable, changes with the groups, and with the lock's bytes."""
        first = read(project, uv_env).digest
        assert read(project, uv_env).digest == first
        assert read(project, uv_env, Groups(dev=True)).digest != first
        copy = shutil.copytree(project, tmp_path / "app")
        with (copy / "uv.lock").open("a") as f:
            f.write("\n")  # the same lock to uv, other bytes
        assert read(copy, uv_env).digest != first

    def test_target_outside_requires_python_is_refused(self, project, uv_env):
        """A target Python that requires-python excludes is refused naming pyproject.toml."""
        old = Target.parse(python="3.9", platform=PLATFORM)
        with pytest.raises(InputError) as info:
            read_uv_lock(
                project, groups=Groups(), target=old, uv=uv_bin(), runner=run_subprocess,
                environ=uv_env,
            )  # fmt: skip
        assert str(project / "pyproject.toml") in info.value.message
        assert "'>=3.10'" in info.value.message and "Python 3.9.0" in info.value.message
        assert "`uv lock`" in (info.value.hint or "")

    def test_lock_for_other_environments_only_is_refused(self, tmp_path, uv_env):
        """A lock limited by [tool.uv] environments to other platforms is refused, not empty."""
        root = make_uv_project(
            tmp_path / "mac",
            uv_env,
            dependencies=["six==1.15.0"],
            tool_uv={"environments": ["sys_platform == 'darwin'"]},
        )
        with pytest.raises(InputError) as info:
            read(root, uv_env)
        assert str(root / "uv.lock") in info.value.message
        assert "sys_platform == 'darwin'" in info.value.message
        assert "[tool.uv] environments" in (info.value.hint or "")


@pytest.mark.network
class TestFreshness:
    """Freshness cross-checked with `uv lock --check` itself."""

    @pytest.fixture(scope="class")
    @classmethod
    def project(cls, tmp_path_factory: pytest.TempPathFactory, uv_env: dict[str, str]) -> Path:
        return make_uv_project(
            tmp_path_factory.mktemp("fresh") / "app",
            uv_env,
            dependencies=["six==1.15.0"],
            python_version=HOST_PYTHON,
        )

    def test_unchanged_lock_needs_no_network(self, project, tmp_path):
        """With no server reachable and an empty cache, uv's check and the reader both pass."""
        env = offline_environ(tmp_path)
        assert run_uv(["lock", "--check", "--offline"], project, env).returncode == 0
        managed = read(project, env)
        assert selected(project, managed)["six"].version == "1.15.0"

    def test_the_offline_environment_reaches_nothing(self, project, tmp_path):
        """The proof the test above is offline: in that environment uv cannot lock."""
        copy = shutil.copytree(project, tmp_path / "app")
        done = run_uv(["lock", "--upgrade"], copy, offline_environ(tmp_path))
        assert done.returncode != 0 and "Connect" in done.stderr

    def test_edited_pyproject_is_stale_with_uvs_fix(self, project, uv_env, tmp_path):
        """After an edit `uv lock --check` fails, and the reader refuses with `uv lock`."""
        copy = shutil.copytree(project, tmp_path / "app")
        pyproject = copy / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace("six==1.15.0", "six==1.16.0"))
        check = run_uv(["lock", "--check"], copy, uv_env)
        assert check.returncode == 1 and "needs to be updated" in check.stderr
        with pytest.raises(StaleLockError) as info:
            read(copy, uv_env)
        assert str(copy / "uv.lock") in info.value.message
        assert str(copy / "pyproject.toml") in info.value.message
        assert "The lockfile at `uv.lock` needs to be updated" in info.value.message
        assert info.value.hint == "run `uv lock` and commit the updated uv.lock"
        assert (copy / "uv.lock").read_bytes() == (project / "uv.lock").read_bytes()

    def test_a_check_that_needs_the_unreachable_index_says_so(self, project, tmp_path):
        """A lock uv cannot check offline, with the index unreachable: uv's reason, not stale."""
        copy = shutil.copytree(project, tmp_path / "app")
        pyproject = copy / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace("six==1.15.0", "six==1.16.0"))
        with pytest.raises(LockError) as info:
            read(copy, offline_environ(tmp_path))
        assert "could not check it against pyproject.toml" in info.value.message
        assert "Connect" in info.value.message
        assert "reached" in (info.value.hint or "")


@pytest.mark.network
class TestSourcesAndWorkspace:
    """A workspace root package with a member, a path dependency, a git dependency and a
    member the root does not need (one lock for the class)."""

    @pytest.fixture(scope="class")
    @classmethod
    def project(cls, tmp_path_factory: pytest.TempPathFactory, uv_env: dict[str, str]) -> Path:
        base = tmp_path_factory.mktemp("sources")
        root = base / "app"
        make_package(root / "packages" / "core", "core", "0.2.0", dependencies=["idna==2.10"])
        make_package(root / "packages" / "tool", "tool", "0.3.0", dependencies=["toml==0.10.1"])
        make_package(root / "libs" / "local", "local", "0.4.0", dependencies=["six==1.15.0"])
        repo = make_git_package(base / "repo", "gitdep", "0.5.0", dependencies=["iniconfig==1.1.1"])
        return make_uv_project(
            root,
            uv_env,
            dependencies=["core", "local", "gitdep", "certifi==2020.12.5"],
            sources={
                "core": {"workspace": True},
                "local": {"path": "libs/local"},
                "gitdep": {"git": repo},
            },
            members=["packages/*"],
        )

    def test_local_and_git_sources_are_selected_as_locked(self, project, uv_env):
        """Members and path sources are directories, the git source its locked commit."""
        chosen = selected(project, read(project, uv_env))
        locked = tomllib.loads((project / "uv.lock").read_text())
        commit = next(p for p in locked["package"] if p["name"] == "gitdep")["source"]["git"]
        kinds = {name: (a.kind, a.version) for name, a in chosen.items()}
        assert kinds == {
            "app": ("directory", "0.1.0"),
            "core": ("directory", "0.2.0"),
            "local": ("directory", "0.4.0"),
            "gitdep": ("vcs", "0.5.0"),
            "certifi": ("wheel", "2020.12.5"),
            "idna": ("wheel", "2.10"),
            "iniconfig": ("wheel", "1.1.1"),
            "six": ("wheel", "1.15.0"),
        }
        assert chosen["core"].path == project / "packages" / "core"
        assert chosen["local"].path == project / "libs" / "local"
        assert commit.endswith("#" + (chosen["gitdep"].commit or "?"))

    def test_what_is_deployed_is_what_uv_sync_installs(self, project, uv_env, tmp_path):
        """The selection equals what Heroku's `uv sync --locked --no-default-groups` installs."""
        chosen = selected(project, read(project, uv_env))
        installed = synced(project, uv_env, tmp_path / "venv")
        assert installed == {name: a.version for name, a in chosen.items()}

    def test_fresh_with_sources_needs_no_network(self, project, tmp_path):
        """Unchanged, the git and path sources are checked and exported with nothing reachable."""
        chosen = selected(project, read(project, offline_environ(tmp_path)))
        assert chosen["gitdep"].kind == "vcs" and chosen["local"].kind == "directory"

    def test_a_member_edit_is_stale(self, project, uv_env, tmp_path):
        """A workspace member's changed dependency makes uv.lock stale, as uv says."""
        copy = shutil.copytree(project, tmp_path / "app")
        member = copy / "packages" / "core" / "pyproject.toml"
        member.write_text(member.read_text().replace("idna==2.10", "idna==2.9"))
        assert run_uv(["lock", "--check"], copy, uv_env).returncode == 1
        with pytest.raises(StaleLockError):
            read(copy, uv_env)

    def test_digest_covers_a_members_pyproject(self, project, uv_env, tmp_path):
        """A member's pyproject.toml edit that leaves the lock fresh still changes the digest."""
        copy = shutil.copytree(project, tmp_path / "app")
        before = read(copy, uv_env).digest
        member = copy / "packages" / "core" / "pyproject.toml"
        member.write_text(member.read_text() + "\n[tool.example]\nsetting = 1\n")
        assert run_uv(["lock", "--check"], copy, uv_env).returncode == 0
        assert read(copy, uv_env).digest != before

    def test_uv_build_projects_build_in_a_store_environment_and_install(
        self, project, uv_env, tmp_path
    ):
        """The uv_build project, member, path and git packages build through wheelbarrow's source
        build (offline, in a store build environment) and install into a working environment."""
        from wheelbarrow._core.report import NullReporter
        from wheelbarrow.app.requirements import IndexOptions
        from wheelbarrow.build.context import SourceContext
        from wheelbarrow.build.sources import build_sources
        from wheelbarrow.cli.common import running_interpreter
        from wheelbarrow.store.fetch import Fetcher
        from wheelbarrow.store.store import Store

        chosen = selected(project, read(project, uv_env))
        sources = [a for a in chosen.values() if a.kind in ("directory", "vcs")]
        context = SourceContext(
            store=Store(tmp_path / "store"),
            target=TARGET,
            config=BuildConfig(repair="never"),
            interpreter=running_interpreter(),
            runner=run_subprocess,
            reporter=NullReporter(),
            environ=uv_env,
            uv=uv_bin(),
            index=IndexOptions(),
            fetcher=Fetcher(),
            toolchain={},
            which=shutil.which,
        )
        built = build_sources(sources, context)
        wheels = sorted(b.wheel for b in built)
        assert wheels == [
            "app-0.1.0-py3-none-any.whl",
            "core-0.2.0-py3-none-any.whl",
            "gitdep-0.5.0-py3-none-any.whl",
            "local-0.4.0-py3-none-any.whl",
        ]
        for b in built:
            assert "uv_build" in b.log.read_text()
        venv = tmp_path / "venv"
        assert run_uv(["venv", str(venv)], tmp_path, uv_env).returncode == 0
        paths = [str(context.store.named(b.sha256, b.wheel)) for b in built]
        done = run_uv(
            ["pip", "install", "--offline", "--no-deps", "--python", str(venv), *paths],
            tmp_path,
            uv_env,
        )
        assert done.returncode == 0, done.stderr
        imported = subprocess.run(
            [venv / "bin" / "python", "-c",
             "import app, core, gitdep, local; print(app.VERSION, core.VERSION, gitdep.VERSION)"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert imported.stdout.split() == ["0.1.0", "0.2.0", "0.5.0"], imported.stderr


@pytest.mark.network
class TestNotAPackage:
    """Projects uv does not install themselves: no [build-system], or package = false."""

    @pytest.fixture(scope="class")
    @classmethod
    def projects(
        cls, tmp_path_factory: pytest.TempPathFactory, uv_env: dict[str, str]
    ) -> dict[str, Path]:
        base = tmp_path_factory.mktemp("virtual")
        return {
            "no build-system": make_uv_project(
                base / "a", uv_env, dependencies=["six==1.15.0"], build_system=False
            ),
            "package = false": make_uv_project(
                base / "b", uv_env, dependencies=["six==1.15.0"], package=False
            ),
        }

    @pytest.mark.parametrize("kind", ["no build-system", "package = false"])
    def test_only_the_dependencies_are_deployed_as_uv_sync_does(
        self, projects, uv_env, tmp_path, kind
    ):
        """The project is left out (as `uv sync` leaves it out), with a note saying so."""
        root = projects[kind]
        managed = read(root, uv_env)
        chosen = selected(root, managed)
        assert {name: a.version for name, a in chosen.items()} == {"six": "1.15.0"}
        assert synced(root, uv_env, tmp_path / "venv") == {"six": "1.15.0"}
        assert any("the project app is not a package" in n for n in managed.notes)


class TestMakers:
    def test_uv_environ_drops_the_callers_uv_settings(self, tmp_path):
        """The makers' environment drops the caller's UV_ settings, so a lock means the same."""
        env = uv_environ(tmp_path, {"UV_INDEX_URL": "http://elsewhere", "PATH": os.defpath})
        assert "UV_INDEX_URL" not in env and env["UV_CACHE_DIR"] == str(tmp_path)
