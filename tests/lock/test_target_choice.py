"""Choosing the target: the command line, then the app's version file, then the lock, then the
app's requires-python and the running machine."""

from __future__ import annotations

import os
from pathlib import Path

from wheelbarrow.app.directory import read_app
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.lock.options import Host, Options
from wheelbarrow.lock.target_choice import resolve_target

# A machine whose Python and platform no app below names, so each choice shows where it came from.
HOST = Host(
    python=PythonVersion(major=3, minor=13, micro=2),
    platform="manylinux_2_17_x86_64",
    uv="uv",
    environ={},
)
LOCKED_PLATFORM = "manylinux_2_28_x86_64"


def app_dir(
    tmp_path: Path,
    *,
    python_version: str | None = None,
    locked_python: str | None = None,
    requires_python: str | None = None,
) -> Path:
    """An app with requirements.txt and, as asked, .python-version, a lock and requires-python."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_text("alpha\n")
    if python_version is not None:
        (app / ".python-version").write_text(python_version + "\n")
    if requires_python is not None:
        (app / "pyproject.toml").write_text(
            f'[project]\nname = "svc"\nversion = "0"\nrequires-python = "{requires_python}"\n'
        )
    if locked_python is not None:
        (app / "pylock.toml").write_text(
            'lock-version = "1.0"\ncreated-by = "uv"\n\n[tool.wheelbarrow]\ninputs = "sha256:0"\n'
            f'python = "{locked_python}"\nplatform = "{LOCKED_PLATFORM}"\n'
        )
    return app


def target_of(app: Path, options: Options | None = None) -> tuple[str, str]:
    target = resolve_target(read_app(app, environ=os.environ), options or Options(), HOST)
    return str(target.python), target.platform


class TestTargetOrder:
    def test_the_command_line_wins_over_everything(self, tmp_path: Path) -> None:
        """--python and --platform win over .python-version, the lock and requires-python."""
        app = app_dir(
            tmp_path, python_version="3.11", locked_python="3.10", requires_python=">=3.10"
        )
        options = Options(python="3.12", platform="manylinux_2_31_x86_64")
        assert target_of(app, options) == ("3.12", "manylinux_2_31_x86_64")

    def test_the_version_file_wins_over_the_lock(self, tmp_path: Path) -> None:
        """.python-version wins over the lock's Python; the lock's platform still counts."""
        app = app_dir(
            tmp_path, python_version="3.11", locked_python="3.10", requires_python=">=3.10"
        )
        assert target_of(app) == ("3.11", LOCKED_PLATFORM)

    def test_the_lock_wins_over_requires_python_and_the_running_python(
        self, tmp_path: Path
    ) -> None:
        """Without a version file the lock's Python stays while requires-python admits it."""
        app = app_dir(tmp_path, locked_python="3.10", requires_python=">=3.10")
        assert target_of(app) == ("3.10", LOCKED_PLATFORM)

    def test_a_lock_that_requires_python_no_longer_admits_is_passed_over(
        self, tmp_path: Path
    ) -> None:
        """A lock's Python outside requires-python gives way to the oldest Python it admits."""
        app = app_dir(tmp_path, locked_python="3.10", requires_python=">=3.12,<3.13")
        assert target_of(app) == ("3.12", LOCKED_PLATFORM)

    def test_with_nothing_said_the_running_minor_release_and_platform(self, tmp_path: Path) -> None:
        """No option, version file, lock or requires-python: the host's 3.X (not 3.X.Y)."""
        assert target_of(app_dir(tmp_path)) == ("3.13", "manylinux_2_17_x86_64")
