"""The buildpacks' Python version, chosen as Heroku's Python buildpack chooses it, and the
app's own Python or virtual environment refused, both through bin/compile's body."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support import make_wheel
from support.runtimes import downloads_json, serve_directory

from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.ship.heroku.compile import run_compile
from wheelbarrow.ship.heroku.output import HerokuReporter

HOST_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def compile_app(
    build: Path,
    tmp_path: Path,
    env: Path,
    *,
    which: Callable[[str], str | None] = shutil.which,
) -> tuple[int, str]:
    """Run bin/compile's body with the cache and slug home under ``tmp_path``."""
    stream = io.StringIO()
    environ = dict(os.environ, WHEELBARROW_SLUG_HOME=str(tmp_path / "app"), STACK="test-stack")
    code = run_compile(
        build,
        tmp_path / "cache",
        env,
        out=HerokuReporter(stream),
        environ=environ,
        runner=run_subprocess,
        which=which,
        uv=_uv(),
    )
    return code, stream.getvalue()


@pytest.fixture
def app(tmp_path: Path, local_index) -> tuple[Path, Path]:
    """A requirements-only app with NO Python pin, and an ENV_DIR pointing at a local index."""
    dists = tmp_path / "dists"
    make_wheel(dists, "alpha", "1.0")
    index = local_index(dists)
    build = tmp_path / "build_1234"
    build.mkdir()
    (build / "requirements.txt").write_text("alpha==1.0\n")
    env = tmp_path / "env"
    env.mkdir()
    (env / "WHEELBARROW_INDEX_URL").write_text(index.url)
    return build, env


def no_fallback() -> tuple[object, str]:
    """A fallback for cases where a file pins the version: never called."""
    raise AssertionError("a file pins the version: the fallback must not be asked")


def refusal(out: str) -> str:
    """The ` !     ` block of a failed build, prefixes dropped."""
    return "\n".join(line[7:] for line in out.splitlines() if line.startswith(" !     "))


class TestChoice:
    def test_no_pin_builds_with_a_warning_naming_the_choice(self, app, tmp_path):
        """With nothing pinned the app still deploys, warned as Heroku warns, naming the version."""
        build, env = app
        code, out = compile_app(build, tmp_path, env)
        assert code == 0, out
        assert " !     Warning: No Python version was specified." in out
        assert f"wheelbarrow chose Python {HOST_PYTHON} (the running interpreter)" in out
        assert f"such as {HOST_PYTHON}" in out
        assert f"-----> Using Python {HOST_PYTHON}." in out

    def test_runtime_txt_wins_over_python_version_and_is_deprecated(self, app, tmp_path):
        """runtime.txt comes first, as on Heroku, with its deprecation warning."""
        build, env = app
        full = ".".join(map(str, sys.version_info[:3]))
        (build / "runtime.txt").write_text(f"python-{full}\n")
        (build / ".python-version").write_text("3.13\n")
        code, out = compile_app(build, tmp_path, env)
        assert code == 0, out
        assert " !     Warning: The runtime.txt file is deprecated." in out
        assert f"-----> Using Python {full} specified in runtime.txt (stack)" in out
        assert "No Python version was specified" not in out

    @pytest.mark.parametrize(
        ("requires", "version"),
        [
            ({"python_version": "3.13", "python_full_version": "3.12.7"}, "3.12.7"),
            ({"python_version": "3.13"}, "3.13"),
        ],
    )
    def test_pipfile_lock_pins_it_when_no_version_file_does(self, tmp_path, requires, version):
        """A Pipenv app without version files takes python_full_version, else python_version."""
        from wheelbarrow.ship.heroku.python_version import choose_python

        (tmp_path / "Pipfile").write_text("[packages]\n")
        (tmp_path / "Pipfile.lock").write_text(json.dumps({"_meta": {"requires": requires}}))
        choice = choose_python(tmp_path, fallback=no_fallback)
        assert (str(choice.version), choice.origin, choice.warnings) == (
            version,
            "Pipfile.lock",
            (),
        )
        (tmp_path / ".python-version").write_text("3.11\n")
        assert str(choose_python(tmp_path, fallback=no_fallback).version) == "3.11"

    def test_end_of_life_version_is_refused(self, app, tmp_path):
        """3.9 (removed from Heroku on 2026-01-07) fails with the end-of-life message."""
        build, env = app
        (build / ".python-version").write_text("3.9\n")
        code, out = compile_app(build, tmp_path, env)
        assert code != 0
        text = refusal(out)
        assert text.startswith(
            "Error: The requested Python version has reached end-of-life.\n"
            ".python-version: Python 3.9 has reached its upstream end-of-life"
        ), text
        assert (
            "Hint: upgrade to at least Python 3.10 by changing the version in .python-version"
            in text
        )

    def test_unknown_version_is_refused(self, app, tmp_path):
        """3.15 is not recognised, and the message says which versions to use."""
        build, env = app
        (build / ".python-version").write_text("3.15\n")
        code, out = compile_app(build, tmp_path, env)
        assert code != 0
        assert refusal(out).startswith(
            "Error: The requested Python version isn't recognised.\n"
            ".python-version: Python 3.15 is not a released Python version"
        ), out

    @pytest.mark.parametrize(
        ("text", "detail"),
        [
            ("python-3.12\n", "'python-3.12' is not of the form 3.X or 3.X.Y"),
            ("# only a comment\n", "no Python version was found in it"),
            ("3.12\n3.13\n", "multiple versions were found in it:\n  3.12\n  3.13"),
        ],
    )
    def test_invalid_python_version_file(self, app, tmp_path, text, detail):
        """A .python-version Heroku would not read fails with its heading and what was found."""
        build, env = app
        (build / ".python-version").write_text(text)
        code, out = compile_app(build, tmp_path, env)
        assert code != 0
        body = refusal(out)
        assert body.startswith("Error: Invalid Python version in .python-version.\n"), body
        assert detail in body

    def test_uv_app_without_python_version_is_refused(self, app, tmp_path):
        """A uv app must pin its Python in .python-version, as on Heroku."""
        build, env = app
        (build / "requirements.txt").unlink()
        (build / "pyproject.toml").write_text('[project]\nname = "a"\nversion = "1"\n')
        (build / "uv.lock").write_text("version = 1\n")
        code, out = compile_app(build, tmp_path, env)
        assert code != 0
        body = refusal(out)
        assert body.startswith("Error: No Python version was specified.\n"), body
        assert "Hint: run 'uv python pin 3.X'" in body

    def test_uv_app_with_runtime_txt_is_refused(self, app, tmp_path):
        """runtime.txt is not accepted for a uv app."""
        build, env = app
        (build / "requirements.txt").unlink()
        (build / "pyproject.toml").write_text('[project]\nname = "a"\nversion = "1"\n')
        (build / "uv.lock").write_text("version = 1\n")
        (build / "runtime.txt").write_text("python-3.12\n")
        code, out = compile_app(build, tmp_path, env)
        assert code != 0
        assert refusal(out).startswith(
            "Error: The runtime.txt file isn't supported when using uv.\n"
        ), out


class TestManagedPython:
    def test_a_python_the_stack_lacks_comes_from_uv_downloads(self, app, tmp_path):
        """Without the pinned Python on the stack, uv installs it from UV_PYTHON_DOWNLOADS_JSON_URL
        (a private list served here) and the slug ships it in .heroku/python."""
        from support.runtimes import STANDALONE_VERSION, make_standalone_python

        from wheelbarrow.ship.heroku.runtime import DOWNLOADS_JSON_VAR

        build, env = app
        tarball = make_standalone_python(tmp_path / "www")

        with serve_directory(tmp_path / "www") as served:
            listing = downloads_json(tarball, served.url)
            (tmp_path / "www" / "downloads.json").write_text(listing)
            (env / DOWNLOADS_JSON_VAR).write_text(f"{served.url}/downloads.json")
            (build / ".python-version").write_text(HOST_PYTHON + "\n")
            code, out = compile_app(build, tmp_path, env, which=lambda name: None)
        assert code == 0, out
        assert f"-----> Using Python {STANDALONE_VERSION} specified in .python-version" in out
        assert "(standalone)" in out
        assert (build / ".heroku" / "python" / "bin" / "python3").exists()
        assert f"/{tarball.name}" in served.requests


class TestCommittedEnvironments:
    def test_committed_heroku_python_is_refused_and_kept(self, app, tmp_path):
        """A committed .heroku/python fails with Heroku's heading and listing; it is not deleted."""
        build, env = app
        (build / ".python-version").write_text(HOST_PYTHON + "\n")
        (build / ".heroku" / "python" / "bin").mkdir(parents=True)
        (build / ".heroku" / "python" / "bin" / "python").write_text("#!/bin/sh\n")
        code, out = compile_app(build, tmp_path, env)
        assert code != 0
        body = refusal(out)
        assert body.startswith(
            "Error: Existing '.heroku/python/' directory found.\n"
            f"{build}/.heroku/python: the app's source contains '.heroku/python/'"
        ), body
        assert "  .heroku/python/\n  .heroku/python/bin\n  .heroku/python/bin/python\n" in body
        assert "Hint: if you committed '.heroku/python/', delete it" in body
        assert (build / ".heroku" / "python" / "bin" / "python").read_text() == "#!/bin/sh\n"

    @pytest.mark.parametrize("name", [".venv", "venv"])
    def test_committed_virtual_environment_is_refused(self, app, tmp_path, name):
        """A .venv/ or venv/ with pyvenv.cfg fails with Heroku's heading and the git advice."""
        build, env = app
        (build / ".python-version").write_text(HOST_PYTHON + "\n")
        (build / name / "bin").mkdir(parents=True)
        (build / name / "pyvenv.cfg").write_text("home = /usr/bin\n")
        code, out = compile_app(build, tmp_path, env)
        assert code != 0
        body = refusal(out)
        assert body.startswith(f"Error: Existing '{name}/' directory found.\n"), body
        assert f"  {name}/\n  {name}/bin\n  {name}/pyvenv.cfg\n" in body
        assert f"Hint: run 'git rm --cached -r {name}/', add '{name}/' on its own line" in body
        assert (build / name / "pyvenv.cfg").is_file()

    def test_a_venv_directory_without_pyvenv_cfg_is_fine(self, app, tmp_path):
        """A directory merely named venv (no pyvenv.cfg) is the app's own: the build succeeds."""
        build, env = app
        (build / ".python-version").write_text(HOST_PYTHON + "\n")
        (build / "venv").mkdir()
        (build / "venv" / "notes.txt").write_text("not an environment\n")
        code, out = compile_app(build, tmp_path, env)
        assert code == 0, out
