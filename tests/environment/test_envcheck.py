"""The installed environment's check: dependencies met (as pip check), scripts importable."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from support import make_wheel
from support.heroku import compile_

from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.environment.envcheck import (
    BrokenEnvironmentError,
    check_environment,
    require_healthy,
)


@pytest.fixture
def scripts_app(tmp_path: Path, local_index):
    """An app, cache and ENV_DIR whose index has a healthy package and one whose script is broken.

    ``oldcelery`` stands for celery 4 on a new setuptools: its script's module
    imports a module nothing provides, and pip check passes it.
    """
    d = tmp_path / "dists"
    make_wheel(d, "alpha", "1.0")
    make_wheel(
        d,
        "webapp",
        "1.0",
        requires=["alpha>=1.0"],
        files={"webapp/__init__.py": "def main():\n    print('served')\n"},
        entry_points={"webapp": "webapp:main"},
    )
    make_wheel(
        d,
        "oldcelery",
        "4.4.7",
        files={
            "oldcelery/__init__.py": "",
            "oldcelery/__main__.py": "import pkg_resources_gone\n\ndef main():\n    pass\n",
        },
        entry_points={"oldcelery": "oldcelery.__main__:main"},
    )
    index = local_index(d)
    build = tmp_path / "build_1234"
    build.mkdir()
    (build / "requirements.txt").write_text("webapp==1.0\n")
    env = tmp_path / "env"
    env.mkdir()
    (env / "WHEELBARROW_INDEX_URL").write_text(index.url)
    return build, tmp_path / "cache", env, tmp_path / "app"


def error_block(out: str) -> list[str]:
    """The `` !     `` lines of the build log's last block, without the prefix."""
    return [line.removeprefix(" !     ") for line in out.splitlines() if line.startswith(" !     ")]


class TestCheckThroughBinCompile:
    def test_a_healthy_app_passes_and_says_what_was_checked(self, scripts_app):
        """Met dependencies and an importable script: the build goes on and counts both."""
        build, cache, env, slug_home = scripts_app
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert (
            "-----> Checking the installed environment\n"
            "       2 packages' dependencies met, 1 console script importable\n"
        ) in out

    def test_a_console_script_that_cannot_start_fails_the_build(self, scripts_app):
        """The broken script is named with its package and the import error's last line."""
        build, cache, env, slug_home = scripts_app
        (build / "requirements.txt").write_text("webapp==1.0\noldcelery==4.4.7\n")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 1, out
        assert error_block(out)[-3:] == [
            "1 console script of the installed packages cannot start:",
            "  oldcelery 4.4.7: its console script 'oldcelery' cannot start: importing "
            "oldcelery.__main__:main fails with ModuleNotFoundError: No module named "
            "'pkg_resources_gone'",
            "Hint: pin a version of oldcelery that works with the rest of the app; or set the "
            "config var WHEELBARROW_SKIP_SCRIPT_CHECK=1 (or script-check = false in the build "
            "settings) to skip the script check",
        ]
        assert "-----> Slug:" not in out

    def test_the_config_var_turns_the_script_check_off(self, scripts_app):
        """WHEELBARROW_SKIP_SCRIPT_CHECK=1 deploys the broken script, saying it was not imported."""
        build, cache, env, slug_home = scripts_app
        (build / "requirements.txt").write_text("webapp==1.0\noldcelery==4.4.7\n")
        (env / "WHEELBARROW_SKIP_SCRIPT_CHECK").write_text("1")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert (
            "       3 packages' dependencies met "
            "(WHEELBARROW_SKIP_SCRIPT_CHECK is set: scripts not imported)\n"
        ) in out

    def test_the_build_setting_turns_the_script_check_off(self, scripts_app):
        """script-check = false in wheelbarrow.toml deploys the broken script, saying why."""
        build, cache, env, slug_home = scripts_app
        (build / "requirements.txt").write_text("webapp==1.0\noldcelery==4.4.7\n")
        (build / "wheelbarrow.toml").write_text("script-check = false\n")
        code, out = compile_(build, cache, env, slug_home)
        assert code == 0, out
        assert (
            "       3 packages' dependencies met (script-check = false: scripts not imported)\n"
        ) in out

    def test_a_wrong_type_of_the_setting_names_the_file_and_key(self, tmp_path):
        """script-check = "no" is an error naming wheelbarrow.toml and the key."""
        from wheelbarrow._core.errors import InputError
        from wheelbarrow.app.config import read_build_config

        (tmp_path / "wheelbarrow.toml").write_text('script-check = "no"\n')
        with pytest.raises(InputError, match=r"wheelbarrow\.toml.*script-check.*true or false"):
            read_build_config(tmp_path)

    def test_a_dependency_the_lock_left_out_fails_the_build(self, scripts_app):
        """A pylock.toml edited by hand to drop alpha: webapp's unmet requirement is named."""
        build, cache, env, slug_home = scripts_app
        assert compile_(build, cache, env, slug_home)[0] == 0
        lock = build / "pylock.toml"
        text = lock.read_text()
        dropped = re.sub(r'\[\[packages\]\]\nname = "alpha"\n(?:.+\n)+?\n', "", text)
        assert dropped != text
        lock.write_text(dropped)
        code, out = compile_(build, cache, env, slug_home)
        assert code == 1, out
        assert error_block(out)[-3:] == [
            "1 dependency of the installed packages is not met (as pip check reports them):",
            "  webapp 1.0 requires alpha, which is not installed.",
            "Hint: add the missing or conflicting package to the app's requirements and lock again",
        ]


def make_env(tmp_path: Path, wheels: list[Path]) -> Path:
    """A real virtual environment holding exactly ``wheels`` (no dependency resolution)."""
    from uv import find_uv_bin

    venv = tmp_path / "venv"
    uv = str(find_uv_bin())
    made = run_subprocess([uv, "venv", "-q", "--python", sys.executable, str(venv)])
    assert made.returncode == 0, made.stderr
    done = run_subprocess(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--python",
            str(venv / "bin" / "python"),
            *map(str, wheels),
        ]
    )
    assert done.returncode == 0, done.stderr
    return venv / "bin" / "python"


class TestCheckEnvironment:
    def test_a_version_conflict_is_reported_as_pip_check_words_it(self, tmp_path):
        """webapp wants alpha>=2 and alpha 1.0 is installed: pip check's sentence, and the hint."""
        d = tmp_path / "dists"
        python = make_env(
            tmp_path,
            [
                make_wheel(d, "alpha", "1.0"),
                make_wheel(
                    d, "webapp", "1.0", requires=["alpha>=2", "gamma; python_version < '3'"]
                ),
            ],
        )
        check = check_environment(python, runner=run_subprocess)
        assert check.unmet == ("webapp 1.0 has requirement alpha>=2, but you have alpha 1.0.",)
        with pytest.raises(BrokenEnvironmentError) as caught:
            require_healthy(check, skip_hint="unused")
        assert caught.value.hint == (
            "add the missing or conflicting package to the app's requirements and lock again"
        )

    def test_the_import_check_runs_without_the_apps_directory_on_the_path(self, tmp_path):
        """A module beside the checked process (its working directory) hides no missing import."""
        d = tmp_path / "dists"
        python = make_env(
            tmp_path,
            [
                make_wheel(
                    d,
                    "tool",
                    "1.0",
                    files={"tool/__init__.py": "import helper_only_in_cwd\ndef main(): pass\n"},
                    entry_points={"tool": "tool:main"},
                )
            ],
        )
        (tmp_path / "helper_only_in_cwd.py").write_text("")

        def runner(args, *, cwd=None, env=None):
            return run_subprocess(args, cwd=tmp_path, env=env)

        check = check_environment(python, runner=runner)
        [failure] = check.broken_scripts
        assert failure.error == "ModuleNotFoundError: No module named 'helper_only_in_cwd'"
        assert check_environment(python, runner=runner, scripts=False).ok
