"""Fuzz tests of reading an app: pyproject.toml, wheelbarrow.toml and the Python version files.

Each generated app directory is read as ``build`` reads it (wheelbarrow.app.directory,
wheelbarrow.app.config, the target choice in wheelbarrow.lock.plan): the result is a
value, or a WheelbarrowError whose message names the file it comes from.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from support.fuzz import FILES, app_files, fuzz_settings, write_app

from wheelbarrow._core.errors import InputError, WheelbarrowError
from wheelbarrow.app.config import read_build_config
from wheelbarrow.app.directory import read_app
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.lock.options import Options
from wheelbarrow.lock.plan import build_config

RUNNING = PythonVersion(major=3, minor=11, micro=7)


def names_app_file(message: str, root: Path) -> bool:
    """Whether ``message`` starts with the app directory or one of its files (and ``:``)."""
    files = "|".join(re.escape(name) for name in FILES)
    return re.match(rf"{re.escape(str(root))}(/({files}))?(:\d+)?: ", message) is not None


def check(root: Path, files: dict[str, bytes | None]) -> None:
    """Read the app, its build settings and its Python as ``build`` does; errors name the file."""
    write_app(root, files)
    try:
        app = read_app(root, environ={})
        build_config(app, Options())
        app.choose_python(RUNNING)
    except WheelbarrowError as exc:
        # One message may hold several problems, one per line, each naming its file.
        for line in exc.message.splitlines():
            if not line.startswith("  "):
                assert names_app_file(line, root), exc.message


class TestAppFuzz:
    """read_app, build_config and choose_python on generated app directories."""

    @fuzz_settings(1500)
    @given(files=app_files())
    def test_apps_are_read_or_refused_naming_the_file(
        self, tmp_path: Path, files: dict[str, bytes | None]
    ) -> None:
        """Every generated app gives a plan's inputs, or an error that names its file."""
        check(tmp_path, files)

    @pytest.mark.parametrize(
        ("name", "text", "fragment"),
        [
            ("pyproject.toml", 'tool = "x"\n', "[tool]"),
            ("pyproject.toml", "tool = [1]\n", "[tool]"),
            ("pyproject.toml", '[tool]\nwheelbarrow = "x"\n', "[tool.wheelbarrow]"),
            ("wheelbarrow.toml", "[packages.scipy]\nenv = 1\n", "packages.scipy.env"),
            ("wheelbarrow.toml", "[packages.scipy]\nconfig-settings = 1\n", "config-settings"),
            ("wheelbarrow.toml", '[packages."a b"]\n', "not a project name"),
            ("wheelbarrow.toml", "[packages.x]\nenv = {A = 1}\n", "packages.x.env"),
            ("wheelbarrow.toml", 'no-binary = ["a b"]\n', "no-binary"),
            ("wheelbarrow.toml", '[packages.x]\npatches = ["a\\u0000"]\n', "NUL"),
            ("wheelbarrow.toml", '[packages.x]\nenv = {"A=B" = "1"}\n', "environment variable"),
            ("wheelbarrow.toml", "[packages.x]\npatches = ['" + "x" * 300 + "']\n", "patches"),
            ("pyproject.toml", "[project]\nrequires-python = 3\n", "requires-python"),
            (".python-version", b"\xff3.12\n", "UTF-8"),
            ("runtime.txt", b"python-3.12\xff\n", "UTF-8"),
            (".python-version", "3.12\x00\n", "not a CPython version"),
            ("wheelbarrow.toml", '"a\\nb" = 1\n', "'a\\nb': unknown setting"),
        ],
    )
    def test_cases_that_crashed(
        self, tmp_path: Path, name: str, text: str | bytes, fragment: str
    ) -> None:
        """Inputs that crashed an app's reading are errors that name the file."""
        (tmp_path / "requirements.txt").write_text("six\n", encoding="utf-8")
        data = text.encode("utf-8") if isinstance(text, str) else text
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError) as info:
            app = read_app(tmp_path, environ={})
            read_build_config(app.root)
        assert info.value.message.startswith(f"{tmp_path / name}"), info.value.message
        assert fragment in info.value.message
        assert all(names_app_file(line, tmp_path) for line in info.value.message.splitlines())
