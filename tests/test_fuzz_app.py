"""Fuzz tests of reading an app: pyproject.toml, wheelbarrow.toml and the Python version files.

Each generated app directory is read as ``build`` reads it (wheelbarrow.app,
wheelbarrow.config, the target choice in wheelbarrow.plan): the result is a
value, or a WheelbarrowError whose message names the file it comes from.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st
from support.fuzz import fuzz_settings, nasty_bytes, nasty_text
from test_fuzz_lockfile import at, nodes, strings_like, toml_values

from wheelbarrow.app import read_app
from wheelbarrow.config import read_build_config
from wheelbarrow.errors import InputError, WheelbarrowError
from wheelbarrow.plan import Options, build_config
from wheelbarrow.target import PythonVersion

RUNNING = PythonVersion(major=3, minor=11, micro=7)
FILES = (
    "pyproject.toml",
    "wheelbarrow.toml",
    ".python-version",
    "runtime.txt",
    "requirements.txt",
    "patches/fix.patch",
)


def settings_table() -> dict[str, Any]:
    """Build settings using every key, as in the README."""
    return {
        "no-binary": ["markupsafe"],
        "only-binary": ":all:",
        "repair": "auto",
        "build-jobs": 2,
        "packages": {
            "scipy": {
                "env": {"OPENBLAS_NUM_THREADS": "1"},
                "config-settings": {"setup-args": ["-Dblas=openblas"], "x": "y"},
                "system": ["gfortran", "lib:openblas", "header:cblas.h"],
                "patches": ["patches/fix.patch"],
                "exclusive": True,
            }
        },
    }


def pyproject() -> dict[str, Any]:
    """A pyproject.toml with dependencies, requires-python and build settings."""
    return {
        "project": {
            "name": "app",
            "version": "1.0",
            "requires-python": ">=3.10,<3.14",
            "dependencies": ["six>=1.16", "flask[async]; python_version >= '3.10'"],
        },
        "tool": {"wheelbarrow": settings_table(), "other": {"x": 1}},
    }


@st.composite
def mutated_toml(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one or two nodes changed: a same-typed oddity, another type, removed, added."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        every = nodes(data)[1:]
        if not every:
            break
        path = draw(st.sampled_from(every))
        parent = at(data, path[:-1])
        old = parent[path[-1]]
        how = draw(st.sampled_from(["same-type", "replace", "replace", "remove", "add"]))
        if how == "same-type" and isinstance(old, str):
            parent[path[-1]] = draw(strings_like(old))
        elif how in ("replace", "same-type"):
            parent[path[-1]] = draw(toml_values)
        elif how == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(nasty_text)] = draw(toml_values)
        else:
            parent.append(draw(toml_values))
    return data


def toml_bytes(base: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    """A mutated TOML file, random bytes, or no file (``None``)."""

    def dumps(data: dict[str, Any]) -> bytes:
        try:
            return tomli_w.dumps(data).encode("utf-8")
        except (TypeError, ValueError):
            return b"[unclosed"

    return st.one_of(
        mutated_toml(base).map(dumps),
        mutated_toml(base).map(dumps),
        nasty_bytes,
        st.none(),
    )


version_texts = st.one_of(
    st.sampled_from(
        ["3.12", "3.11.4", "python-3.12.4", "cpython-3.13", "3.99", "2.7", "3", "pypy3.10", ""]
    ),
    st.tuples(
        st.sampled_from(["", "# pinned\n", "\n\n", "\ufeff"]),
        st.sampled_from(["3.12", "python-3.11.2", "3.12\x00", "3.\u0663", "3.12.x", "3.12 "]),
        st.sampled_from(["", "\n", "\r\n", "\n3.11\n", "\x00"]),
    ).map("".join),
    nasty_text,
)
version_files = st.one_of(
    version_texts.map(lambda s: s.encode("utf-8")), nasty_bytes, st.none(), st.none()
)


@st.composite
def app_files(draw: st.DrawFn) -> dict[str, bytes | None]:
    """The files of an app directory; ``None`` means absent."""
    return {
        "pyproject.toml": draw(toml_bytes(pyproject())),
        "wheelbarrow.toml": draw(st.one_of(st.none(), st.none(), toml_bytes(settings_table()))),
        ".python-version": draw(version_files),
        "runtime.txt": draw(version_files),
        "requirements.txt": draw(st.sampled_from([None, None, b"six\n", b""])),
        "patches/fix.patch": draw(st.sampled_from([None, b"--- a/x\n+++ b/x\n"])),
    }


def write_app(root: Path, files: dict[str, bytes | None]) -> None:
    """Make ``root`` hold exactly ``files`` (the same directory is reused across cases)."""
    for name, data in files.items():
        path = root / name
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


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
