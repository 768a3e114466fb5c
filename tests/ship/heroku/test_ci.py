"""Heroku CI's bin/test-compile: the app built with its test dependencies, collectstatic off."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import make_wheel
from support.heroku import HOST_PYTHON, compile_
from support.managers import POETRY_1, POETRY_2, make_pipenv_project, make_poetry_project
from support.uvprojects import make_uv_project, uv_environ

from wheelbarrow.app.managers import Groups
from wheelbarrow.ship.heroku.ci import REQUIREMENTS_TEST, ci_groups, in_ci

REPO = Path(__file__).resolve().parents[3]


def tool_in_cache(cache: Path) -> None:
    """Fill the cache with the wheelbarrow tool bin/support/tool.sh keeps there, as a previous
    build leaves it: this checkout's wheelbarrow, under the stamp tool.sh computes."""
    tool = cache / "wheelbarrow-tool"
    (tool / "bin").mkdir(parents=True)
    python = tool / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    stamp = subprocess.run(
        [
            "bash",
            "-c",
            "find pyproject.toml src -type f -name '*.py' -o -name pyproject.toml | "
            "LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (tool / ".stamp").write_text(stamp + "\n")


def installed(build: Path) -> set[str]:
    """The distributions in the slug's environment (lower-case names)."""
    return {
        p.name.split("-")[0].lower()
        for p in (build / ".heroku" / "venv").glob("lib/python*/site-packages/*.dist-info")
    }


@pytest.fixture
def ci_app(tmp_path: Path, local_index):
    """A pip app with requirements-test.txt, a post_compile hook printing the CI variables."""
    d = tmp_path / "dists"
    make_wheel(d, "webapp", "1.0")
    make_wheel(
        d,
        "checker",
        "2.0",
        files={"checker/__init__.py": "def main():\n    print('checked')\n"},
        entry_points={"checker": "checker:main"},
    )
    index = local_index(d)
    build = tmp_path / "build_1234"
    (build / "bin").mkdir(parents=True)
    (build / "requirements.txt").write_text("webapp==1.0\n")
    (build / REQUIREMENTS_TEST).write_text("# what the tests need\nchecker==2.0\n")
    (build / "bin" / "post_compile").write_text(
        'echo "INSTALL_TEST=$INSTALL_TEST DISABLE_COLLECTSTATIC=$DISABLE_COLLECTSTATIC"\n'
    )
    env = tmp_path / "env"
    env.mkdir()
    (env / "WHEELBARROW_INDEX_URL").write_text(index.url)
    return build, tmp_path / "cache", env, tmp_path / "app"


class TestBinTestCompile:
    def test_the_script_installs_requirements_test_txt_with_collectstatic_off(self, ci_app):
        """bin/test-compile: requirements-test.txt is installed; INSTALL_TEST and
        DISABLE_COLLECTSTATIC reach the build as Heroku's buildpack sets them."""
        build, cache, env, home = ci_app
        tool_in_cache(cache)
        environ = {
            k: v
            for k, v in os.environ.items()
            if k not in ("INSTALL_TEST", "DISABLE_COLLECTSTATIC")
        }
        done = subprocess.run(
            [REPO / "bin" / "test-compile", build, cache, env],
            env={**environ, "WHEELBARROW_SLUG_HOME": str(home), "STACK": "test-stack"},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert (
            "-----> Heroku CI: the test dependencies too "
            "(requirements-test.txt: 1 more requirement for the tests)\n"
        ) in done.stdout
        assert (
            "-----> Running bin/post_compile\n       INSTALL_TEST=1 DISABLE_COLLECTSTATIC=1\n"
        ) in done.stdout
        assert installed(build) == {"webapp", "checker"}
        ran = subprocess.run(
            [build / ".heroku" / "venv" / "bin" / "checker"], capture_output=True, text=True
        )
        assert ran.stdout == "checked\n", ran.stderr

    def test_bin_compile_leaves_the_test_requirements_out(self, ci_app):
        """The same app through bin/compile: requirements-test.txt is not deployed."""
        build, cache, env, home = ci_app
        code, out = compile_(build, cache, env, home)
        assert code == 0, out
        assert "Heroku CI" not in out
        assert installed(build) == {"webapp"}

    def test_test_compile_without_requirements_test_txt_builds_the_app(self, ci_app, monkeypatch):
        """No requirements-test.txt: the app's own requirements, and the step says nothing more."""
        build, cache, env, home = ci_app
        (build / REQUIREMENTS_TEST).unlink()
        monkeypatch.setenv("INSTALL_TEST", "1")
        code, out = compile_(build, cache, env, home)
        assert code == 0, out
        assert "-----> Heroku CI: the test dependencies too\n" in out
        assert installed(build) == {"webapp"}

    def test_the_variable_selects_the_dev_groups(self):
        """INSTALL_TEST set (not empty, not 0) selects the managers' dev groups."""
        assert [in_ci({"INSTALL_TEST": v}) for v in ("", "0", "1")] == [False, False, True]
        assert ci_groups({"INSTALL_TEST": "1"}) == Groups(dev=True)
        assert ci_groups({}) == Groups()


POETRY1_DEV = """
    [tool.poetry]
    name = "app"
    version = "0.1.0"
    description = "an app"
    authors = ["A <a@example.com>"]
    package-mode = false

    [tool.poetry.dependencies]
    python = ">=3.9"
    six = "1.15.0"

    [tool.poetry.group.dev.dependencies]
    iniconfig = "1.1.1"
"""

POETRY2_DEV = """
    [project]
    name = "app"
    version = "0.1.0"
    requires-python = ">=3.9"
    dependencies = ["six==1.15.0"]

    [tool.poetry]
    package-mode = false

    [tool.poetry.group.dev.dependencies]
    iniconfig = "1.1.1"
"""

PIPFILE_DEV = """
    [packages]
    six = "==1.15.0"

    [dev-packages]
    iniconfig = "==1.1.1"
"""


@pytest.fixture(scope="module")
def manager_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache for the managers' builds: six and iniconfig are fetched once."""
    return tmp_path_factory.mktemp("cache")


def versions(build: Path) -> dict[str, str]:
    """``{name: version}`` of what the slug's environment holds."""
    found = {}
    for info in (build / ".heroku" / "venv").glob("lib/python*/site-packages/*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").split("-")
        found[name.lower()] = version
    return found


def build_both_ways(app: Path, cache: Path, tmp_path: Path, monkeypatch) -> tuple[str, str]:
    """bin/compile then bin/test-compile's build of ``app``; their logs (each must succeed)."""
    env = tmp_path / "env"
    env.mkdir()
    code, prod = compile_(app, cache, env, tmp_path / "app-home")
    assert code == 0, prod
    assert "iniconfig" not in versions(app), prod
    monkeypatch.setenv("INSTALL_TEST", "1")
    code, ci = compile_(app, cache, env, tmp_path / "app-home")
    assert code == 0, ci
    return prod, ci


@pytest.mark.network
class TestManagersDevGroups:
    def test_uv_apps_get_their_dev_group(self, tmp_path, manager_cache, monkeypatch):
        """A uv project: bin/compile leaves the dev group out, bin/test-compile deploys it."""
        app = make_uv_project(
            tmp_path / "build_1",
            uv_environ(tmp_path / "uv-cache"),
            dependencies=["six==1.15.0"],
            groups={"dev": ["iniconfig==1.1.1"]},
            package=False,
            python_version=HOST_PYTHON,
        )
        build_both_ways(app, manager_cache, tmp_path, monkeypatch)
        assert versions(app) == {"six": "1.15.0", "iniconfig": "1.1.1"}

    @pytest.mark.parametrize(
        ("version", "pyproject"), [(POETRY_1, POETRY1_DEV), (POETRY_2, POETRY2_DEV)]
    )
    def test_poetry_apps_get_their_dev_group(
        self, tmp_path, manager_cache, monkeypatch, version, pyproject
    ):
        """Poetry 1.8 and 2 projects: the dev group only under bin/test-compile."""
        app = make_poetry_project(tmp_path / "build_2", version, pyproject, home=tmp_path / "home")
        (app / ".python-version").write_text(HOST_PYTHON + "\n")
        build_both_ways(app, manager_cache, tmp_path, monkeypatch)
        assert versions(app) == {"six": "1.15.0", "iniconfig": "1.1.1"}

    def test_pipenv_apps_get_their_dev_packages(self, tmp_path, manager_cache, monkeypatch):
        """A Pipenv project: [dev-packages] only under bin/test-compile."""
        app = make_pipenv_project(tmp_path / "build_3", PIPFILE_DEV, home=tmp_path / "home")
        shutil.rmtree(app / ".venv")  # Pipenv's own, made for locking: never committed
        (app / ".python-version").write_text(HOST_PYTHON + "\n")
        build_both_ways(app, manager_cache, tmp_path, monkeypatch)
        assert versions(app) == {"six": "1.15.0", "iniconfig": "1.1.1"}
