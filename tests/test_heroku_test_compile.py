"""Heroku CI's bin/test-compile: the app built with its test dependencies, collectstatic off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import make_wheel
from test_heroku_compile import compile_

from wheelbarrow.heroku.ci import REQUIREMENTS_TEST, ci_groups, in_ci
from wheelbarrow.managers import Groups

REPO = Path(__file__).resolve().parents[1]


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
