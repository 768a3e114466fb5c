"""Environments outside the store that share a stored one: the store's references back to them.

An environment in the shared layout (``install``'s default) holds no package of its own: its
``site-packages`` reaches the stored environment's. The store must know it is there, or
``store gc`` would remove what it runs on. So each such install leaves a record,
``locks/dependents/<env key>/<hash of the directory>.json`` naming the directory, written
under the environment's lease before the directory is renamed into place: there is never a
shared environment without its record.

A record is *live* while its directory still holds a wheelbarrow environment that shares
this stored one (its marker says so); a directory removed, or installed over with something
else, leaves a stale record, which gc prunes under the stored environment's exclusive lease
(no install of it is running then). A record whose directory cannot be read is kept:
a doubt keeps what may be used.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from wheelbarrow._core.digests import small_sha256
from wheelbarrow._core.files import atomic_write_text

# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


# The marker an environment made by wheelbarrow carries (environment.marker's MARKER) and its
# fields saying that it shares a stored environment (environment.shared's).
ENV_MARKER = ".wheelbarrow-env.json"
SHARED_LAYOUT = "shared"


def dependents_dir(store_root: Path, env_key: str) -> Path:
    """Where the records of the environments sharing ``env_key`` are."""
    return store_root / "locks" / "dependents" / env_key


def record_path(store_root: Path, env_key: str, directory: Path) -> Path:
    """The record of ``directory`` sharing ``env_key``."""
    digest = small_sha256(os.fsencode(directory)).hexdigest()[:24]
    return dependents_dir(store_root, env_key) / f"{digest}.json"


def register(store_root: Path, env_key: str, directory: Path) -> None:
    """Record that ``directory`` shares the stored environment ``env_key`` (hold its lease)."""
    path = record_path(store_root, env_key, directory)
    atomic_write_text(path, json.dumps({"path": os.fsdecode(directory), "env_key": env_key}) + "\n")


def records(store_root: Path, env_key: str) -> list[tuple[Path, Path]]:
    """Each record of ``env_key`` with the directory it names."""
    found = []
    base = dependents_dir(store_root, env_key)
    try:
        names = sorted(p.name for p in base.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in names:
        if not name.endswith(".json"):
            continue
        data = _read(base / name)
        where = data.get("path") if data else None
        if isinstance(where, str):
            found.append((base / name, Path(where)))
    return found


def shares(directory: Path, stored: Path) -> bool | None:
    """Whether ``directory`` is an environment sharing ``stored``: None when it cannot tell."""
    try:
        raw = (directory / ENV_MARKER).read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return False  # gone, or replaced by something that is not an environment
    except OSError:
        return None
    try:
        marker = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(marker, dict) or marker.get("layout") != SHARED_LAYOUT:
        return False
    named = marker.get("shares")
    if not isinstance(named, str):
        return False
    try:
        return Path(named).samefile(stored)
    except OSError:  # it names a stored environment that is gone: not this one
        return Path(named).absolute() == stored.absolute()


def live(store_root: Path, env_key: str) -> list[Path]:
    """The directories that share ``env_key`` now (and those that cannot be read)."""
    stored = store_root / "envs" / env_key
    return [d for _, d in records(store_root, env_key) if shares(d, stored) is not False]


def prune(store_root: Path, env_key: str) -> int:
    """Remove the stale records of ``env_key``; returns how many went.

    The caller holds the stored environment's exclusive lease, so no install of it is
    between writing its record and renaming its directory into place.
    """
    stored = store_root / "envs" / env_key
    gone = 0
    for record, directory in records(store_root, env_key):
        if shares(directory, stored) is False:
            with contextlib.suppress(FileNotFoundError):
                record.unlink()
            gone += 1
    with contextlib.suppress(OSError):
        dependents_dir(store_root, env_key).rmdir()  # only when empty
    return gone


def keys(store_root: Path) -> list[str]:
    """The stored environments that have records."""
    try:
        return sorted(p.name for p in (store_root / "locks" / "dependents").iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
