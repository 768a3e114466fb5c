"""The directory an install goes into: what may be replaced there, and what a killed install left.

Shared by every layout (clones and the shared layout), and light to import: a warm install
into a new directory uses it without loading the seal's checks.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from wheelbarrow._core.errors import InstallError
from wheelbarrow._core.scratch import clean_stale
from wheelbarrow._core.text import plural
from wheelbarrow.environment.marker import read_marker


def scratch_prefix(dest: Path) -> str:
    """The prefix of the scratch entries an install into ``dest`` makes beside it."""
    return f".{dest.name}.wheelbarrow-"


def clean_install_leftovers(dest: Path) -> None:
    """Remove the scratch a killed install into ``dest`` left beside it (nothing else)."""
    clean_stale(dest.parent, scratch_prefix(dest))


def check_target(dest: Path) -> None:
    """Refuse a file, a directory wheelbarrow did not make, or an environment with user files."""
    if not os.path.lexists(dest):
        return
    if dest.is_symlink():
        # An install renames its result into place: it would replace the user's link itself.
        raise InstallError(
            f"{dest}: is a symbolic link (to {dest.readlink()}), which installing would replace",
            hint=f"give --into the directory it points to ({dest.resolve()}), or remove the link",
        )
    if not dest.is_dir():
        raise InstallError(
            f"{dest}: is a file, not a directory",
            hint="give --into a directory (it is made if missing), or move the file away",
        )
    if read_marker(dest) is None:
        if any(dest.iterdir()):
            raise InstallError(
                f"{dest}: exists and is not an environment made by wheelbarrow",
                hint="pick another --into directory, or remove this one",
            )
        return
    foreign = user_files(dest)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise InstallError(
            f"{dest}: holds {plural(len(foreign), 'file')} wheelbarrow did not put there: {shown}",
            hint="installing replaces the whole environment: move them out of it, "
            "or install into another directory",
        )


def user_files(env: Path) -> list[str]:
    """Files in a wheelbarrow environment that its seal does not list (someone put them there).

    Bytecode caches are not counted: Python writes them itself. An
    environment made before seals existed gives none.
    """
    from wheelbarrow.environment.seal import read_seal, regenerable, scan_tree

    seal = read_seal(env)
    if seal is None:
        return []
    known = seal.paths()
    scan = scan_tree(env)
    return sorted(
        rel
        for rel in [*scan.files, *scan.links, *scan.others]
        if rel not in known and not regenerable(rel)
    )


def installed_env_sound(path: Path) -> bool:
    """Whether the installed environment at ``path`` still has the files it was installed with.

    A stat pass over its seal (hashes only where a stat differs); files the
    user added do not count. An environment without a seal (made before
    seals existed) is taken as sound.
    """
    from wheelbarrow.environment.seal import read_seal

    seal = read_seal(path)
    if seal is None:
        return True
    try:
        check = seal.check(path)
    except FileNotFoundError:
        return False
    if any(p.problem != "added" for p in check.problems):
        return False
    if check.restated:
        with contextlib.suppress(OSError):
            seal.refreshed(check.restated).write(path)
    return True
