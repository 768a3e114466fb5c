"""The lock of an app whose requirements wheelbarrow resolves (requirements.txt, [project])."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.credentials import resolver_environ, split_userinfo, uv_config_indexes
from wheelbarrow.app.directory import App
from wheelbarrow.app.requirements import Requirements
from wheelbarrow.app.target import Target, check_known
from wheelbarrow.lock.lockfile import (
    Lock,
    lock_admits,
    lock_environment,
    marker_environment,
    read_lock,
)
from wheelbarrow.lock.options import Host, Options, python_source
from wheelbarrow.lock.resolve import LockRequest, lock

__all__ = ["build_command", "requirements_lock"]


def requirements_lock(
    app: App,
    requirements: Requirements,
    target: Target,
    options: Options,
    host: Host,
    lock_path: Path,
    *,
    runner: Runner,
    reporter: Reporter,
    may_lock: bool,
    force_lock: bool,
) -> tuple[Lock, str | None]:
    """The lock of an app whose requirements wheelbarrow resolves (requirements.txt, [project])."""
    index = requirements.index.overridden_by(options.index)
    request = LockRequest(
        requirements=requirements,
        target=target,
        index=index,
        uv_indexes=tuple(
            f"{i.name or ''}={split_userinfo(i.url)[0]}{' (default)' if i.default else ''}"
            for i in uv_config_indexes(app.root)
            if not i.explicit
        ),
        upgrade=options.upgrade,
        upgrade_packages=options.upgrade_packages,
    )
    existing = read_lock(lock_path) if lock_path.is_file() else None
    if existing is not None and existing.inputs is None and not (force_lock and options.force):
        return _foreign_lock(app, existing, target, reporter, force_lock=force_lock), None
    upgrading = options.upgrade or bool(options.upgrade_packages)
    if (
        existing is not None
        and existing.inputs == request.digest
        and (not options.index.given or existing.tool.get("index") == request.index_digest)
        and lock_admits(existing, target)
        and not force_lock
        and not upgrading
    ):
        return existing, None
    reason = _relock_reason(app, existing, request, target, options, lock_path, force_lock)
    if not may_lock:
        raise InputError(
            f"{lock_path}: out of date ({reason})",
            hint=f"run `{build_command(app, target, lock_path)}` to lock and build again",
        )
    # Before anything is written: a lock for a Python that does not exist
    # would break every later build.
    check_known(target.python, host.known_pythons(), source=python_source(app, options))
    lock(
        request,
        output=lock_path,
        uv=host.uv,
        runner=runner,
        reporter=reporter,
        # uv reads neither pip's index variables nor, run in a scratch
        # directory, the app's own [[tool.uv.index]]: hand them over.
        environ=resolver_environ(host.environ, app.root),
    )
    return read_lock(lock_path), reason


def _foreign_lock(
    app: App, existing: Lock, target: Target, reporter: Reporter, *, force_lock: bool
) -> Lock:
    """A pylock.toml another tool wrote: used as it is if it holds the requirements; never
    replaced without ``lock --force``."""
    lock_path = existing.path
    if force_lock:
        raise InputError(
            f"{lock_path}: was not written by wheelbarrow "
            f"({existing.pylock.created_by}); locking would replace it",
            hint=f"pass --force to replace it, or lock with {existing.pylock.created_by}",
        )
    _check_covers(app, existing, target)
    reporter.message(
        "info",
        f"using {lock_path.name} as given (written by {existing.pylock.created_by}, "
        "not by wheelbarrow)",
    )
    return existing


def _relock_reason(
    app: App,
    existing: Lock | None,
    request: LockRequest,
    target: Target,
    options: Options,
    lock_path: Path,
    force_lock: bool,
) -> str:
    """Why the lock is written again, for the messages."""
    if existing is None:
        return f"no {lock_path.name} yet"
    if options.upgrade or options.upgrade_packages:
        return "asked to upgrade " + (
            ", ".join(options.upgrade_packages) if options.upgrade_packages else "every package"
        )
    if force_lock:
        return "asked to lock"
    if existing.inputs == request.digest and not lock_admits(existing, target):
        return (
            f"it requires Python {existing.pylock.requires_python}, "
            f"which does not hold for the target {target.python}"
        )
    return (
        f"{app.requirements_source.name if app.requirements_source else 'inputs'}"
        f", the target or the index options changed since the lock"
    )


def _check_covers(app: App, lock: Lock, target: Target) -> None:
    """Refuse requirements that a foreign lock beside them does not satisfy.

    The lock is used as it is, so a requirement added to requirements.txt after
    the lock was made would otherwise be dropped without a word.
    """
    if app.requirements is None:
        return
    env = marker_environment(target)
    lock_env = lock_environment(lock, target)
    locked: dict[str, list[str]] = {}
    for package in lock.pylock.packages:
        if package.marker is None or package.marker.evaluate(lock_env, context="lock_file"):
            locked.setdefault(canonicalize_name(package.name), []).append(
                str(package.version) if package.version is not None else ""
            )
    problems = []
    for line in app.requirements.requirements:
        req = line.requirement
        if req is None:
            problems.append(f"{line.origin}: {line}: has no name to look up in {lock.path.name}")
            continue
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        versions = locked.get(canonicalize_name(req.name))
        if versions is None:
            problems.append(f"{line.origin}: {req} is not in {lock.path.name}")
        elif req.specifier and not any(
            req.specifier.contains(v, prereleases=True) for v in versions if v
        ):
            problems.append(
                f"{line.origin}: {req} is not satisfied by {lock.path.name}, "
                f"which pins {req.name} {', '.join(versions)}"
            )
    if problems:
        raise InputError(
            f"{lock.path} was not written by wheelbarrow and does not hold what "
            f"{app.requirements_source.name if app.requirements_source else 'the app'} "
            "asks for:\n" + "\n".join(f"  {p}" for p in problems),
            hint=f"lock again with {lock.pylock.created_by}, or let wheelbarrow lock "
            f"(`wheelbarrow lock --force {app.root}` replaces {lock.path.name})",
        )


def build_command(app: App, target: Target, lock_path: Path) -> str:
    """The ``wheelbarrow build`` that locks and builds for ``target`` into ``lock_path``: a
    side-by-side lock's target is named, as plain ``build`` would lock the default target."""
    if lock_path == app.lock_path:
        return f"wheelbarrow build {app.root}"
    return f"wheelbarrow build {app.root} --python {target.python} --platform {target.platform}"
