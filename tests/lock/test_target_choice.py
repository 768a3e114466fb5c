"""Choosing the target: the command line, then the app's version file, then the lock, then the
app's requires-python and the running machine."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from wheelbarrow.app.directory import read_app
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.lock.lockfile import lock_data
from wheelbarrow.lock.options import Host, Options
from wheelbarrow.lock.target_choice import recorded_target, resolve_target

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


def refuse(what: str) -> Callable[[], str]:
    """A Host value that must not be asked for."""

    def asked() -> str:
        raise AssertionError(f"the {what} was asked for")

    return asked


class TestHostLaziness:
    def test_a_lock_that_records_its_platform_asks_the_machine_for_none(
        self, tmp_path: Path
    ) -> None:
        """The lock's platform is taken without working out this machine's tags or finding uv."""
        app = app_dir(tmp_path, locked_python="3.10")
        host = Host(python=HOST.python, platform=refuse("platform"), uv=refuse("uv"), environ={})
        target = resolve_target(read_app(app, environ={}), Options(), host)
        assert (str(target.python), target.platform) == ("3.10", LOCKED_PLATFORM)
        assert host.found == frozenset()

    def test_without_a_lock_the_platform_is_found_once(self, tmp_path: Path) -> None:
        """With no lock the machine's platform is found when first asked, and only once."""
        calls: list[str] = []

        def platform() -> str:
            calls.append("platform")
            return "manylinux_2_31_x86_64"

        host = Host(python=HOST.python, platform=platform, uv="uv", environ={})
        app = read_app(app_dir(tmp_path), environ={})
        assert resolve_target(app, Options(), host).platform == "manylinux_2_31_x86_64"
        assert resolve_target(app, Options(), host).platform == "manylinux_2_31_x86_64"
        assert calls == ["platform"] and host.found == {"platform"}


class TestOneParse:
    def test_the_lock_is_parsed_once_until_its_bytes_change(self, tmp_path: Path) -> None:
        """Choosing the target and reading the lock share one parse; new bytes parse anew."""
        app = app_dir(tmp_path, locked_python="3.10")
        lock = app / "pylock.toml"
        first = lock_data(lock)
        assert recorded_target(lock) == {"python": "3.10", "platform": LOCKED_PLATFORM}
        assert lock_data(lock)[1] is first[1]
        lock.write_text(lock.read_text().replace("3.10", "3.12"))
        assert lock_data(lock)[1] is not first[1]
        assert recorded_target(lock)["python"] == "3.12"
