"""The lock of an app whose package manager (uv, Poetry, Pipenv) pins its versions.

wheelbarrow's pylock.toml is derived from the manager's lock, never resolved afresh.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.redact import strip_credentials
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import plural
from wheelbarrow.app.credentials import resolver_environ
from wheelbarrow.app.directory import App
from wheelbarrow.app.managers import (
    Detected,
    Groups,
    LockedPin,
    ManagedLock,
    manager_files_digest,
    manager_index_urls,
)
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.requirements_file import parse_requirements_text
from wheelbarrow.app.target import Target, check_known
from wheelbarrow.lock.lockfile import Lock, lock_admits, read_lock
from wheelbarrow.lock.options import Host, Options, python_source
from wheelbarrow.lock.requirements_lock import build_command
from wheelbarrow.lock.resolve import LockRequest, digest_of, index_key, lock, tool_table

__all__ = ["managed_lock", "read_managed"]


def managed_lock(
    app: App,
    manager: Detected,
    target: Target,
    options: Options,
    host: Host,
    lock_path: Path,
    *,
    runner: Runner,
    reporter: Reporter,
    may_lock: bool,
) -> tuple[Lock, str | None]:
    """The lock of an app whose package manager (uv, Poetry, Pipenv) pins its versions.

    wheelbarrow's own lock is derived from the manager's: while the manager's
    files, the groups and the target are unchanged, it stands, read from local
    files only. Otherwise the manager's lock is read again (its freshness
    checked as the manager checks it) and turned into pylock.toml.
    """
    if options.upgrade or options.upgrade_packages:
        fix = {"uv": "uv lock --upgrade", "poetry": "poetry update", "pipenv": "pipenv update"}
        raise InputError(
            f"{app.root / manager.files[-1]}: pins the app's versions; wheelbarrow "
            "deploys them exactly and does not upgrade them",
            hint=f"upgrade with `{fix[manager.name]}`, then build again",
        )
    digest = digest_of(
        {
            "manager": manager.name,
            "files": manager_files_digest(app.root, manager),
            "groups": options.groups.as_dict(),
            "target": target.as_dict(),
            "index": index_key(options.index),
        }
    )
    existing = read_lock(lock_path) if lock_path.is_file() else None
    if existing is not None and existing.inputs is None:
        raise InputError(
            f"{lock_path}: was not written by wheelbarrow, and the app's "
            f"{manager.files[-1]} holds its pins: wheelbarrow would replace it",
            hint=f"delete {lock_path.name} (the {manager.name} lock is the one deployed)",
        )
    if existing is not None and existing.inputs == digest and lock_admits(existing, target):
        return existing, None
    reason = (
        f"no {lock_path.name} yet"
        if existing is None
        else f"{', '.join(manager.files)}, the groups or the target changed since the lock"
    )
    if not may_lock:
        raise InputError(
            f"{lock_path}: out of date ({reason})",
            hint=f"run `{build_command(app, target, lock_path)}` to lock and build again",
        )
    check_known(target.python, host.known_pythons(), source=python_source(app, options))
    _write_from_manager(
        app, manager, target, options, host, lock_path, digest, runner=runner, reporter=reporter
    )
    return read_lock(lock_path), reason


def _write_from_manager(
    app: App,
    manager: Detected,
    target: Target,
    options: Options,
    host: Host,
    lock_path: Path,
    digest: str,
    *,
    runner: Runner,
    reporter: Reporter,
) -> None:
    """Read the manager's lock and write pylock.toml from it: as the manager exported it, or
    locked by uv from its exact pins (with the indexes the manager's files name)."""
    reporter.message("step", f"Reading {', '.join(manager.files)} ({manager.name}) for {target}")
    managed = read_managed(app.root, manager, options.groups, target, host, runner)
    for note in managed.notes:
        reporter.message("info", note)
    table = tool_table(digest, target)
    if managed.pylock is not None:
        text = strip_credentials(managed.pylock)
        atomic_write_text(
            lock_path,
            f"# Written by wheelbarrow from {managed.path.name}: "
            f"change the pins with {manager.name}.\n" + text.rstrip("\n") + "\n\n" + table,
        )
    else:
        lines = [_pin_line(pin) for pin in managed.pins]
        requirements = parse_requirements_text(
            "".join(f"{line}\n" for line in lines),
            path=managed.path,
            environ=host.environ,
        )
        named = [url for _, url in manager_index_urls(app.root, manager, host.environ)]
        urls = named or [_expand_vars(url, host.environ) for url in managed.index_urls]
        index = _managed_index(urls).overridden_by(options.index)
        request = LockRequest(
            requirements=requirements,
            target=target,
            index=index,
            exact=True,
            recorded_inputs=digest,
            what=f"{plural(len(lines), 'pin')} from {managed.path.name}",
        )
        lock(
            request,
            output=lock_path,
            uv=host.uv,
            runner=runner,
            reporter=reporter,
            environ=resolver_environ(host.environ, app.root),
        )


def read_managed(
    root: Path, manager: Detected, groups: Groups, target: Target, host: Host, runner: Runner
) -> ManagedLock:
    """Read the app's package manager's lock, refusing it when the manager would."""
    match manager.name:
        case "uv":
            from wheelbarrow.app.uvlock import read_uv_lock

            return read_uv_lock(
                root, groups=groups, target=target, uv=host.uv, runner=runner,
                environ=resolver_environ(host.environ, root),
            )  # fmt: skip
        case "poetry":
            from wheelbarrow.app.poetrylock import read_poetry_lock

            return read_poetry_lock(root, groups=groups, target=target)
        case "pipenv":
            from wheelbarrow.app.pipfilelock import read_pipfile_lock

            return read_pipfile_lock(root, groups=groups, target=target)
    raise InputError(f"{root}: {manager.name} keeps no lock of its own")


def _pin_line(pin: LockedPin) -> str:
    """A requirements line for one exact pin, with the lock's hashes."""
    text = pin.requirement or f"{pin.name}=={pin.version}"
    if pin.marker:
        text += f" ; {pin.marker}"
    return text + "".join(f" --hash={h}" for h in pin.hashes)


def _managed_index(urls: Sequence[str]) -> IndexOptions:
    """The indexes a manager's lock names: the first is the index, the rest extra."""
    if not urls:
        return IndexOptions()
    return IndexOptions(index_url=urls[0], extra_index_urls=tuple(urls[1:]))


def _expand_vars(text: str, environ: Mapping[str, str]) -> str:
    """``${VAR}`` as Pipenv and Poetry expand it in source URLs (unset: left as written)."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: environ.get(m[1], m[0]), text)
