"""What an app must not commit: its own Python in ``.heroku/python``, or a virtual environment.

Heroku's Python buildpack refuses both (``Error: Existing '.heroku/python/' directory
found.``, ``Error: Existing '.venv/' directory found.``); wheelbarrow refuses them the same
way, before anything is written, and never deletes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from wheelbarrow._core.errors import InputError

__all__ = ["VENV_NAMES", "refuse_committed_environments"]

VENV_NAMES: Final = (".venv", "venv")
"""Directories checked for a ``pyvenv.cfg``, as the official buildpack checks them."""
_LISTED: Final = 20


def refuse_committed_environments(app_dir: Path, *, python_home: bool) -> None:
    """Raise :class:`InputError` when ``app_dir`` holds a Python or a virtual environment.

    ``python_home`` also checks ``.heroku/python`` (the classic buildpack installs
    there; the Cloud Native one uses a layer). A virtual environment is a
    ``.venv/`` or ``venv/`` with a ``pyvenv.cfg``. The message lists what the
    directory holds, two levels deep.
    """
    home = app_dir / ".heroku" / "python"
    if python_home and (home.exists() or home.is_symlink()):
        raise InputError(
            "Error: Existing '.heroku/python/' directory found.\n"
            f"{home}: the app's source contains '.heroku/python/', where the buildpack "
            "installs Python. It holds:\n"
            + _listing(app_dir, Path(".heroku", "python"))
            + "\nWriting to the buildpack's own locations is not supported.",
            hint="if you committed '.heroku/python/', delete it from the repository (or use "
            "another location); otherwise check that an earlier buildpack or bin/pre_compile "
            "does not create it",
        )
    for name in VENV_NAMES:
        if (app_dir / name / "pyvenv.cfg").is_file():
            raise InputError(
                f"Error: Existing '{name}/' directory found.\n"
                f"{app_dir / name}: the app's source contains '{name}/', which looks like a "
                "Python virtual environment:\n"
                + _listing(app_dir, Path(name))
                + "\nA virtual environment is specific to the machine that made it and does "
                "not work anywhere else.",
                hint=f"run 'git rm --cached -r {name}/', add '{name}/' on its own line to "
                ".gitignore and commit; if bin/pre_compile or an earlier buildpack makes it, "
                "have them make the environment elsewhere",
            )


def _listing(root: Path, relative: Path) -> str:
    """``find RELATIVE/ -maxdepth 2 | sort``, as the official message shows it."""
    top = root / relative
    entries = [f"{relative.as_posix()}/"]
    if top.is_dir() and not top.is_symlink():
        for dirpath, dirnames, filenames in os.walk(top):
            depth = len(Path(dirpath).relative_to(top).parts)
            for name in dirnames + filenames:
                entries.append((Path(dirpath, name).relative_to(root)).as_posix())
            if depth >= 1:
                dirnames[:] = []
    entries = sorted(entries)
    if len(entries) > _LISTED:
        entries = [*entries[:_LISTED], f"… and {len(entries) - _LISTED} more"]
    return "\n".join(f"  {entry}" for entry in entries)
