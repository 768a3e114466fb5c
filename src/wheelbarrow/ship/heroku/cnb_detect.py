"""The Cloud Native Buildpack's ``bin/detect``: pass only for an app the build can build.

A pass that ends in a failed build blocks the whole buildpack group, so detect fails
(100, letting another group try) unless the app has a file wheelbarrow can deploy from:
uv.lock, poetry.lock, Pipfile with Pipfile.lock, requirements.txt, a pylock.toml, or a
pyproject.toml with ``[project] dependencies``. For the near misses (a misspelled
requirements file, a Pipfile without its lock, a pyproject.toml that lists nothing) it
says why on standard error. Runs on the stack's Python with the standard library only.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from wheelbarrow._core.errors import InputError, WheelbarrowError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow.app.managers import (
    REQUIREMENT_LOOKALIKES,
    SeveralManagersError,
    detect_manager,
)

__all__ = ["DETECT_FAIL", "DETECT_PASS", "build_plan", "detect", "main"]

DETECT_PASS: Final = 0
DETECT_FAIL: Final = 100  # the spec's "fail": another buildpack group may still claim the app
PLAN_ENTRY: Final = "python"


def detect(app_dir: Path, *, plan_path: Path, err: IO[str] | None = None) -> int:
    """Pass (writing the Build Plan) for a buildable app; fail with 100 otherwise.

    The plan provides and requires ``python``, with ``metadata.version`` when
    runtime.txt, .python-version or Pipfile.lock pins one. Nothing is written on
    a fail; the reason for a near miss goes to ``err``. Raises
    :class:`InputError` for a pyproject.toml that is not TOML and
    :class:`~wheelbarrow._core.errors.TargetError` for an unreadable version file.
    """
    err = sys.stderr if err is None else err
    reason = why_not(app_dir)
    if reason is not None:
        if reason:
            err.write(f"wheelbarrow: not building this app: {reason}\n")
        return DETECT_FAIL
    from wheelbarrow.ship.heroku.python_version import requested_version

    found = requested_version(app_dir)
    atomic_write_text(plan_path, build_plan(found[0] if found else None))
    return DETECT_PASS


def why_not(app_dir: Path) -> str | None:
    """None when wheelbarrow can build the app; else why not ("" when it is not a Python app)."""
    try:
        manager = detect_manager(app_dir)
    except SeveralManagersError as exc:
        return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    if manager is None:
        names = {p.name for p in app_dir.iterdir()} if app_dir.is_dir() else set()
        lookalikes = [n for n in REQUIREMENT_LOOKALIKES if n in names]
        if lookalikes:
            return f"found {lookalikes[0]!r}: did you mean 'requirements.txt'? rename it"
        return ""
    if manager.name == "pipenv" and "Pipfile.lock" not in manager.files:
        return (
            "a Pipfile without Pipfile.lock pins nothing: run 'pipenv lock' and commit Pipfile.lock"
        )
    if manager.name == "pyproject":
        pyproject = app_dir / "pyproject.toml"
        data = _read_toml(pyproject)
        project = data.get("project", {})
        if not isinstance(project, dict):
            raise InputError(f"{pyproject}: [project] must be a table")
        if "dependencies" in project:
            return None
        tool = data.get("tool")
        poetry = tool.get("poetry") if isinstance(tool, dict) else None
        if isinstance(poetry, dict) and isinstance(poetry.get("dependencies"), dict):
            return "a Poetry project without poetry.lock: run 'poetry lock' and commit poetry.lock"
        return "pyproject.toml has no [project] dependencies (and there is no requirements.txt)"
    return None


def build_plan(version: str | None) -> str:
    """The Build Plan TOML of a Python app: provides ``python`` and requires it."""
    text = f'[[provides]]\nname = "{PLAN_ENTRY}"\n\n[[requires]]\nname = "{PLAN_ENTRY}"\n'
    if version is not None:
        # A version is digits and dots only (checked when read): no escaping needed.
        text += f'\n[requires.metadata]\nversion = "{version}"\n'
    return text


def _read_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML: {exc}") from exc


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """``python -m wheelbarrow.ship.heroku.cnb_detect``: detect in the working directory."""
    env = os.environ if environ is None else environ
    plan = env.get("CNB_BUILD_PLAN_PATH") or (argv[1] if argv and len(argv) > 1 else "")
    if not plan:
        sys.stderr.write(
            "error: CNB_BUILD_PLAN_PATH is not set\n"
            "hint: run bin/detect under a lifecycle (buildpack API 0.8 or newer)\n"
        )
        return 1
    try:
        return detect(Path.cwd() if cwd is None else cwd, plan_path=Path(plan))
    except WheelbarrowError as exc:
        sys.stderr.write(f"error: {exc.message}\n" + (f"hint: {exc.hint}\n" if exc.hint else ""))
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
