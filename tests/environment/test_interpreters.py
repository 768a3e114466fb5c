"""Finding an interpreter of the target's version where users keep them, and its tags."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from packaging.tags import sys_tags

from wheelbarrow._core.errors import TargetError
from wheelbarrow._core.runner import run_subprocess
from wheelbarrow.app.target import PythonVersion
from wheelbarrow.environment.interpreters import (
    Interpreter,
    find_interpreter,
    interpreter_tags,
    probe_interpreter,
)

HERE = PythonVersion(major=sys.version_info.major, minor=sys.version_info.minor)
# A "running" interpreter of another version, so that the search really runs for HERE.
ELSEWHERE = Interpreter(executable=Path("/nonexistent/python3.99"), version="3.99.0")
REAL = probe_interpreter(Path(sys.executable), run_subprocess)


def nowhere(name: str) -> str | None:
    return None


def fake_pyenv(root: Path, version: str = REAL.version) -> Path:
    """A pyenv root whose only version is this machine's interpreter."""
    bin_dir = root / "versions" / version / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / f"python{HERE.short}").symlink_to(REAL.executable)
    return root


class TestFindInterpreter:
    def test_the_running_interpreter_is_taken_without_a_probe(self) -> None:
        """No subprocess runs when the running interpreter has the target's version."""

        def no_runner(*args: object, **kwargs: object) -> object:
            raise AssertionError("probed")

        found = find_interpreter(
            HERE,
            explicit=None,
            running=REAL,
            which=nowhere,
            runner=no_runner,
            environ={},  # type: ignore[arg-type]
        )
        assert found == REAL

    def test_python3x_on_path(self, tmp_path: Path) -> None:
        """python3.X on PATH is probed and its base executable returned."""
        found = find_interpreter(
            HERE,
            explicit=None,
            running=ELSEWHERE,
            which=lambda name: sys.executable if name == f"python{HERE.short}" else None,
            runner=run_subprocess,
            environ={"HOME": str(tmp_path)},
        )
        assert found == REAL

    def test_a_pyenv_shim_that_does_not_run_is_skipped_for_pyenv_versions(
        self, tmp_path: Path
    ) -> None:
        """A shim that exits 127 (version not selected) does not stop the search: pyenv's own
        versions directory is looked in next."""
        shim = tmp_path / "shims" / f"python{HERE.short}"
        shim.parent.mkdir()
        shim.write_text("#!/bin/sh\necho 'pyenv: command not found' >&2\nexit 127\n")
        shim.chmod(0o755)
        root = fake_pyenv(tmp_path / "pyenv")
        found = find_interpreter(
            HERE,
            explicit=None,
            running=ELSEWHERE,
            which=lambda name: str(shim),
            runner=run_subprocess,
            environ={"PYENV_ROOT": str(root)},
        )
        assert found == REAL

    def test_pyenv_default_root_is_under_home(self, tmp_path: Path) -> None:
        """Without PYENV_ROOT, ~/.pyenv is searched."""
        fake_pyenv(tmp_path / ".pyenv")
        found = find_interpreter(
            HERE,
            explicit=None,
            running=ELSEWHERE,
            which=nowhere,
            runner=run_subprocess,
            environ={"HOME": str(tmp_path)},
        )
        assert found == REAL

    def test_uv_python_find_is_asked_last(self, tmp_path: Path) -> None:
        """uv's answer is used when PATH and pyenv have none (downloads are never allowed)."""
        calls: list[tuple[list[str], dict[str, str] | None]] = []

        def runner(args, *, cwd=None, env=None):  # type: ignore[no-untyped-def]
            calls.append((list(args), dict(env) if env else None))
            if args[1:3] == ["python", "find"]:
                from wheelbarrow._core.runner import Completed

                return Completed(
                    args=tuple(args), returncode=0, stdout=sys.executable + "\n", stderr=""
                )
            return run_subprocess(args, cwd=cwd, env=env)

        found = find_interpreter(
            HERE,
            explicit=None,
            running=ELSEWHERE,
            which=nowhere,
            runner=runner,
            environ={"HOME": str(tmp_path)},
            uv="uv-binary",
        )
        assert found == REAL
        uv_call = next(c for c in calls if c[0][0] == "uv-binary")
        assert uv_call[0] == ["uv-binary", "python", "find", HERE.short]
        assert uv_call[1] is not None and uv_call[1]["UV_PYTHON_DOWNLOADS"] == "never"

    def test_none_found_names_every_place_looked_and_what_to_pass(self, tmp_path: Path) -> None:
        """The error lists PATH, pyenv's directory and uv, and hints --python-executable."""
        with pytest.raises(TargetError) as caught:
            find_interpreter(
                PythonVersion.parse("3.9"),
                explicit=None,
                running=ELSEWHERE,
                which=nowhere,
                runner=run_subprocess,
                environ={"PYENV_ROOT": str(tmp_path / "pyenv"), "PATH": os.environ["PATH"]},
                uv=str(tmp_path / "no-uv"),
            )
        message = caught.value.message
        assert "no Python 3.9 interpreter found" in message
        assert "python3.9 on PATH" in message
        assert f"pyenv's versions in {tmp_path / 'pyenv' / 'versions'}" in message
        assert "uv python find 3.9" in message
        assert "--python-executable" in (caught.value.hint or "")

    def test_explicit_interpreter_of_the_wrong_version_is_refused(self) -> None:
        """--python-executable must match the target's version."""
        with pytest.raises(TargetError, match=r"the target is 3\.9"):
            find_interpreter(
                PythonVersion.parse("3.9"),
                explicit=Path(sys.executable),
                running=REAL,
                which=nowhere,
                runner=run_subprocess,
                environ={},
            )

    def test_explicit_path_that_is_not_python_is_a_clear_error(self, tmp_path: Path) -> None:
        """A file that is not an interpreter is named in the error, not a traceback."""
        bogus = tmp_path / "python"
        bogus.write_text("#!/bin/sh\nexit 3\n")
        bogus.chmod(0o755)
        with pytest.raises(TargetError, match="does not run as a Python interpreter"):
            find_interpreter(
                HERE, explicit=bogus, running=REAL, which=nowhere, runner=run_subprocess, environ={}
            )


class TestInterpreterTags:
    def test_another_interpreter_reports_its_own_sys_tags(self) -> None:
        """The tags come from running packaging.tags.sys_tags() in that interpreter."""
        other = Interpreter(executable=REAL.executable, version=REAL.version)
        tags = interpreter_tags(
            other, running=ELSEWHERE, runner=run_subprocess, running_tags=lambda: []
        )
        assert tags == tuple(str(t) for t in sys_tags())
