"""Apps described by a package manager: which one, and its lock deployed exactly.

The end-to-end classes lock real projects with the real tools (uv, Poetry 1.8
and 2, Pipenv) against the package index, then build and install them with
wheelbarrow and compare what the environment holds with what the lock pins.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from support.apps import cli
from support.managers import (
    POETRY_1,
    POETRY_2,
    make_pipenv_project,
    make_poetry_project,
    poetry_lock_is_fresh,
    run_pipenv,
    write_pipfile,
    write_pyproject,
)
from support.uvprojects import locked_versions, make_package, make_uv_project, uv_environ

from wheelbarrow._core.errors import InputError
from wheelbarrow.app.directory import read_app
from wheelbarrow.app.managers import (
    SeveralManagersError,
    detect_manager,
    is_wheelbarrow_lock,
    manager_index_urls,
)


def installed(env: Path) -> dict[str, str]:
    """``{name: version}`` of every distribution in the environment ``env`` (pip excepted)."""
    script = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version "
        "for d in m.distributions()}))"
    )
    done = subprocess.run(
        [env / "bin" / "python", "-c", script], capture_output=True, text=True, check=True
    )
    found: dict[str, str] = json.loads(done.stdout)
    found.pop("pip", None)
    return found


def build_and_install(app: Path, store: Path, into: Path, *extra: str) -> str:
    """Build then install ``app``; returns what both printed on stderr."""
    built = cli("build", app, "--store", store, *extra)
    assert built.code == 0, built.err
    done = cli("install", app, "--store", store, "--into", into, *extra)
    assert done.code == 0, done.err
    return built.err + done.err


class TestDetectManager:
    def test_each_managers_files_name_it(self, tmp_path):
        """uv.lock, poetry.lock, a Pipfile and requirements.txt each name their manager."""
        for name, files in {
            "uv": ["uv.lock", "pyproject.toml"],
            "poetry": ["poetry.lock", "pyproject.toml"],
            "pipenv": ["Pipfile"],
            "pip": ["requirements.txt"],
        }.items():
            app = tmp_path / name
            app.mkdir()
            for file in files:
                (app / file).write_text("")
            detected = detect_manager(app)
            assert detected is not None and detected.name == name

    def test_several_managers_are_an_error_listing_them(self, tmp_path):
        """requirements.txt, poetry.lock and uv.lock together: every one listed, and the fix."""
        for file in ("requirements.txt", "poetry.lock", "uv.lock", "pyproject.toml"):
            (tmp_path / file).write_text("")
        with pytest.raises(SeveralManagersError) as caught:
            detect_manager(tmp_path)
        assert str(caught.value) == (
            f"{tmp_path}: the files of more than one package manager were found:\n"
            "  - uv.lock (uv)\n  - poetry.lock (poetry)\n  - requirements.txt (pip)\n"
            "wheelbarrow cannot tell which one holds the app's dependencies"
        )
        assert caught.value.hint == (
            "delete the files of the managers you do not use: keep uv.lock (and "
            "pyproject.toml); keep poetry.lock (and pyproject.toml); keep requirements.txt"
        )

    def test_a_pylock_of_wheelbarrows_does_not_count(self, tmp_path):
        """The pylock.toml wheelbarrow derives from uv.lock is not a second manager."""
        (tmp_path / "uv.lock").write_text("")
        (tmp_path / "pylock.toml").write_text(
            'lock-version = "1.0"\ncreated-by = "uv"\n[tool.wheelbarrow]\ninputs = "x"\n'
        )
        assert is_wheelbarrow_lock(tmp_path / "pylock.toml")
        detected = detect_manager(tmp_path)
        assert detected is not None and detected.name == "uv"

    def test_a_pylock_another_tool_wrote_is_the_pylock_manager(self, tmp_path):
        """Only a foreign pylock.toml: the app's lock is that file."""
        (tmp_path / "pylock.toml").write_text('lock-version = "1.0"\ncreated-by = "pip"\n')
        detected = detect_manager(tmp_path)
        assert detected is not None and (detected.name, detected.files) == (
            "pylock",
            ("pylock.toml",),
        )

    def test_the_error_reaches_the_command_line_and_writes_nothing(self, tmp_path):
        """build refuses the app with exit 2 and leaves no pylock.toml behind."""
        (tmp_path / "requirements.txt").write_text("six\n")
        (tmp_path / "Pipfile").write_text("[packages]\nsix = '*'\n")
        result = cli("build", tmp_path, "--store", tmp_path / "store")
        assert result.code == 2
        assert "    - Pipfile (pipenv)\n    - requirements.txt (pip)\n" in result.err
        assert not (tmp_path / "pylock.toml").exists()


class TestReadApp:
    def test_a_poetry_project_without_its_lock_says_to_lock_it(self, tmp_path):
        """[tool.poetry.dependencies] and no poetry.lock: nothing pins it, run `poetry lock`."""
        (tmp_path / "pyproject.toml").write_text(
            '[tool.poetry]\nname = "a"\n[tool.poetry.dependencies]\npython = "^3.9"\nsix = "*"\n'
        )
        with pytest.raises(InputError) as caught:
            read_app(tmp_path, environ={})
        assert "a Poetry project ([tool.poetry.dependencies]) without poetry.lock" in str(
            caught.value
        )
        assert caught.value.hint == "run `poetry lock` and commit poetry.lock"

    def test_pipfile_locks_python_is_the_apps_python(self, tmp_path):
        """Pipfile.lock's python_full_version pins the target, after the version files."""
        (tmp_path / "Pipfile").write_text("[packages]\n")
        (tmp_path / "Pipfile.lock").write_text(
            json.dumps({"_meta": {"requires": {"python_full_version": "3.12.4"}}})
        )
        app = read_app(tmp_path, environ={})
        assert (str(app.python), app.python_source) == ("3.12.4", "Pipfile.lock")
        (tmp_path / ".python-version").write_text("3.11\n")
        assert str(read_app(tmp_path, environ={}).python) == "3.11"

    def test_a_uv_project_needs_no_requirements_of_its_own(self, tmp_path):
        """With uv.lock the lock holds the pins: read_app reads no requirements."""
        (tmp_path / "pyproject.toml").write_text('[project]\nname = "a"\nversion = "1"\n')
        (tmp_path / "uv.lock").write_text("")
        app = read_app(tmp_path, environ={})
        assert app.locked_by_manager and app.requirements is None


# Old pins, so that "deployed == locked" fails if anything re-resolves to the newest.
OLD = ["requests==2.25.1", "six==1.15.0"]


@pytest.fixture(scope="module")
def uv_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A uv package with old pins, a dev group and a path source, locked by uv."""
    root = tmp_path_factory.mktemp("uvapp")
    env = uv_environ(root / "uvcache")
    make_package(root / "libs" / "greeting", name="greeting", version="0.3.0")
    return make_uv_project(
        root / "app",
        env,
        dependencies=[*OLD, "greeting"],
        groups={"dev": ["iniconfig==1.1.1"]},
        sources={"greeting": {"path": "../libs/greeting"}},
    )


@pytest.mark.network
class TestUvProject:
    @pytest.fixture
    def project(self, uv_app: Path) -> Path:
        return uv_app

    def test_the_locked_versions_are_deployed_with_the_project_itself(self, project, tmp_path):
        """Exactly uv.lock's versions, the path source and the app itself; no dev group."""
        build_and_install(project, tmp_path / "store", tmp_path / "env")
        env = installed(tmp_path / "env")
        locked = locked_versions(project)
        assert {n: env[n] for n in locked if n != "iniconfig"} == {
            n: v for n, v in locked.items() if n != "iniconfig"
        }
        assert env["greeting"] == "0.3.0" and env["app"] == "0.1.0"
        assert "iniconfig" not in env

    def test_dev_deploys_the_dev_group_beside_the_default_lock(self, project, tmp_path):
        """--dev adds uv's dev group; built again without it, the dev group is left out."""
        store = tmp_path / "store"
        build_and_install(project, store, tmp_path / "env", "--dev")
        assert installed(tmp_path / "env")["iniconfig"] == "1.1.1"
        build_and_install(project, store, tmp_path / "plain")
        assert "iniconfig" not in installed(tmp_path / "plain")

    def test_an_unchanged_project_builds_again_from_local_files(self, project, tmp_path):
        """The second build neither reads uv.lock again nor locks: it is up to date."""
        store = tmp_path / "store"
        assert cli("build", project, "--store", store).code == 0
        again = cli("build", project, "--store", store)
        assert again.code == 0, again.err
        assert "Reading" not in again.err and "Locking" not in again.err
        assert "up to date" in again.out

    def test_an_out_of_date_uv_lock_is_refused_with_uvs_fix(self, project, tmp_path):
        """A dependency added to pyproject.toml but not locked: refused, `uv lock` the hint."""
        import shutil

        app = tmp_path / "app"
        shutil.copytree(project, app)
        shutil.copytree(project.parent / "libs", tmp_path / "libs")
        pyproject = app / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace('"six==1.15.0"', '"six==1.16.0"'))
        result = cli("build", app, "--store", tmp_path / "store")
        assert result.code == 2, result.err
        assert "uv.lock" in result.err and "hint: " in result.err and "uv lock" in result.err


POETRY_1_PYPROJECT = """
    [tool.poetry]
    name = "poetry-one"
    version = "0.1.0"
    description = ""
    authors = ["A <a@example.com>"]
    package-mode = false

    [tool.poetry.dependencies]
    python = "^3.9"
    requests = "2.25.1"
    six = "1.15.0"

    [tool.poetry.group.dev.dependencies]
    iniconfig = "1.1.1"
"""

POETRY_2_PYPROJECT = """
    [project]
    name = "poetry-two"
    version = "0.1.0"
    requires-python = ">=3.9"
    dependencies = ["requests==2.25.1", "six==1.15.0"]

    [tool.poetry]
    package-mode = false

    [tool.poetry.group.dev.dependencies]
    iniconfig = "1.1.1"
"""


def poetry_locked(project: Path) -> dict[str, str]:
    """``{name: version}`` of every package poetry.lock holds."""
    data = tomllib.loads((project / "poetry.lock").read_text())
    return {p["name"].lower(): p["version"] for p in data["package"]}


@pytest.mark.network
@pytest.mark.parametrize(
    ("version", "pyproject"), [(POETRY_1, POETRY_1_PYPROJECT), (POETRY_2, POETRY_2_PYPROJECT)]
)
class TestPoetryProject:
    def test_poetry_locks_versions_are_deployed_and_stale_ones_refused(
        self, version, pyproject, tmp_path
    ):
        """Main group exactly as locked, dev left out; an edited pyproject is refused as
        Poetry refuses it, and nothing is rewritten."""
        home = tmp_path / "home"
        project = make_poetry_project(tmp_path / "app", version, pyproject, home=home)
        err = build_and_install(project, tmp_path / "store", tmp_path / "env")
        assert "from poetry.lock" in err
        env = installed(tmp_path / "env")
        locked = poetry_locked(project)
        del locked["iniconfig"]
        assert {n: env.get(n) for n in locked} == locked
        assert "iniconfig" not in env

        again = cli("build", project, "--store", tmp_path / "store")
        assert "Locking" not in again.err and "up to date" in again.out

        lock_before = (project / "pylock.toml").read_bytes()
        write_pyproject(project, pyproject.replace("1.15.0", "1.16.0"))
        assert poetry_lock_is_fresh(version, project, home=home).code != 0
        refused = cli("build", project, "--store", tmp_path / "store")
        assert refused.code == 2, refused.err
        assert "poetry.lock" in refused.err and "hint: " in refused.err
        assert "poetry lock" in refused.err
        assert (project / "pylock.toml").read_bytes() == lock_before


# No [[source]]: Pipenv then locks against its default index (and the repository names no
# registry host).
PIPFILE = """
    [packages]
    requests = "==2.25.1"
    six = "==1.15.0"

    [dev-packages]
    iniconfig = "==1.1.1"
"""


@pytest.mark.network
class TestPipenvProject:
    def test_pipfile_locks_default_section_is_deployed_and_a_stale_one_refused(self, tmp_path):
        """default exactly as locked, develop left out; an edited Pipfile is refused."""
        home = tmp_path / "home"
        project = make_pipenv_project(tmp_path / "app", PIPFILE, home=home)
        lock = json.loads((project / "Pipfile.lock").read_text())
        err = build_and_install(project, tmp_path / "store", tmp_path / "env")
        assert "from Pipfile.lock" in err
        env = installed(tmp_path / "env")
        locked = {n: v["version"].lstrip("=") for n, v in lock["default"].items()}
        assert {n: env.get(n) for n in locked} == locked
        assert "iniconfig" not in env

        write_pipfile(project, PIPFILE.replace("1.15.0", "1.16.0"))
        assert run_pipenv(project, "verify", home=home).code != 0
        refused = cli("build", project, "--store", tmp_path / "store")
        assert refused.code == 2, refused.err
        assert "Pipfile.lock" in refused.err and "pipenv lock" in refused.err


class TestManagerIndexes:
    def test_a_pipfile_source_has_its_variables_expanded(self, tmp_path):
        """Pipenv expands ${VAR} (and $VAR) in a source URL: so does wheelbarrow."""
        (tmp_path / "Pipfile").write_text(
            '[[source]]\nurl = "https://${USER_}:$TOKEN@example.test/simple"\nname = "p"\n'
            '[[source]]\nurl = "https://${UNSET_}@other.test/simple"\nname = "q"\n'
        )
        found = manager_index_urls(
            tmp_path, detect_manager(tmp_path), {"USER_": "me", "TOKEN": "s3"}
        )
        assert found == [
            ("Pipfile [[source]] 1", "https://me:s3@example.test/simple"),
            ("Pipfile [[source]] 2", "https://${UNSET_}@other.test/simple"),
        ]

    def test_a_poetry_source_takes_poetrys_credential_variables(self, tmp_path):
        """POETRY_HTTP_BASIC_<NAME>_USERNAME/_PASSWORD go into that source's URL, quoted."""
        (tmp_path / "poetry.lock").write_text("")
        (tmp_path / "pyproject.toml").write_text(
            '[[tool.poetry.source]]\nname = "my-corp"\nurl = "https://corp.test/simple"\n'
            '[[tool.poetry.source]]\nname = "open"\nurl = "https://open.test/simple"\n'
        )
        environ = {
            "POETRY_HTTP_BASIC_MY_CORP_USERNAME": "ci",
            "POETRY_HTTP_BASIC_MY_CORP_PASSWORD": "p@ss/word",
        }
        found = manager_index_urls(tmp_path, detect_manager(tmp_path), environ)
        assert [url for _, url in found] == [
            "https://ci:p%40ss%2Fword@corp.test/simple",
            "https://open.test/simple",
        ]


POETRY_PACKAGE = """
    [project]
    name = "poetry-pkg"
    version = "1.2.0"
    requires-python = ">=3.9"
    dependencies = ["six==1.15.0"]

    [build-system]
    requires = ["poetry-core>=2.0,<3"]
    build-backend = "poetry.core.masonry.api"
"""


@pytest.mark.network
class TestPoetryPackageProject:
    def test_the_project_itself_is_built_by_poetry_core_and_installed(self, tmp_path):
        """As `poetry sync --only main`: a package-mode project is installed too, built by
        its real backend from the index; an edit of it rebuilds it."""
        home = tmp_path / "home"
        app = tmp_path / "app"
        (app / "poetry_pkg").mkdir(parents=True)
        (app / "poetry_pkg" / "__init__.py").write_text("VALUE = 1\n")
        make_poetry_project(app, POETRY_2, POETRY_PACKAGE, home=home)
        err = build_and_install(app, tmp_path / "store", tmp_path / "env")
        assert "the project poetry-pkg itself is built into a wheel and installed" in err
        env = installed(tmp_path / "env")
        assert (env["poetry-pkg"], env["six"]) == ("1.2.0", "1.15.0")
        (app / "poetry_pkg" / "__init__.py").write_text("VALUE = 2\n")
        build_and_install(app, tmp_path / "store", tmp_path / "env2")
        python = tmp_path / "env2" / "bin" / "python"
        code = "import poetry_pkg; print(poetry_pkg.VALUE)"
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "2"
