"""Planning: from an app and the options to a target, a current lock and the wheels to hold."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from wheelbarrow._core.errors import InputError
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.redact import strip_credentials
from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import plural
from wheelbarrow.app.config import BuildConfig, RepairMode, read_build_config
from wheelbarrow.app.credentials import resolver_environ, split_userinfo, uv_config_indexes
from wheelbarrow.app.directory import App
from wheelbarrow.app.managers import (
    Detected,
    Groups,
    LockedPin,
    ManagedLock,
    manager_files_digest,
    manager_index_urls,
)
from wheelbarrow.app.requirements import IndexOptions, Requirements, parse_requirements_text
from wheelbarrow.app.target import PythonVersion, Target, check_known
from wheelbarrow.lock.key import wheelhouse_key
from wheelbarrow.lock.lockfile import Artefact, Lock, read_lock, select_artefacts, wheelbarrow_table
from wheelbarrow.lock.resolve import LockRequest, digest_of, index_key, lock, tool_table

# Settings that change what a wheelhouse holds; part of its key. make_plan
# adds the build settings and toolchain when something is built from source.
WHEELHOUSE_SETTINGS: Mapping[str, object] = {"layout": 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What the user asked for on the command line."""

    python: str | None = None
    platform: str | None = None
    index: IndexOptions = field(default_factory=IndexOptions)
    no_binary: tuple[str, ...] = ()
    only_binary: tuple[str, ...] = ()
    repair: RepairMode | None = None
    build_jobs: int | None = None
    # The optional parts of a package manager's lock to deploy (bin/test-compile: dev).
    groups: Groups = field(default_factory=Groups)
    # `lock --force`: replace a pylock.toml that another tool wrote.
    force: bool = False
    # `lock --upgrade` / `--upgrade-package NAME`: resolve afresh, ignoring the old pins.
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    # A --python/--platform of the command line that is not the default lock's target
    # gets its own pylock.<name>.toml (PEP 751) instead of replacing pylock.toml.
    side_by_side: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Host:
    """Defaults taken from the running machine (read by the caller, not here)."""

    python: PythonVersion
    platform: str
    uv: str
    environ: Mapping[str, str]
    toolchain: Callable[[], Mapping[str, str]] = dict  # versions of cc, gfortran, BLAS...
    # The CPython versions uv knows (`uv python list --all-versions`); asked only when locking.
    known_pythons: Callable[[], Sequence[str]] = tuple


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A current lock and the wheels it means for the target."""

    app: App
    target: Target
    lock: Lock
    artefacts: tuple[Artefact, ...]
    key: str
    locked_because: str | None  # set when this run (re)wrote the lock
    config: BuildConfig
    settings: Mapping[str, object]

    @property
    def sources(self) -> tuple[Artefact, ...]:
        """The artefacts to build from source."""
        return tuple(a for a in self.artefacts if a.kind != "wheel")


def recorded_target(lock_path: Path) -> Mapping[str, str]:
    """The target a wheelbarrow lock was written for ({} if none)."""
    try:
        data = tomllib.loads(lock_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    tool = wheelbarrow_table(data)
    return {k: v for k, v in tool.items() if k in ("python", "platform") and isinstance(v, str)}


def resolve_target(app: App, options: Options, host: Host) -> Target:
    """The target from, in order: the command line, the app's version files, the lock, the host.

    The lock's Python counts only while it still satisfies the app's
    ``requires-python``: a changed requirement picks a new target (and relocks).
    """
    recorded = recorded_target(app.lock_path)
    python, source = _recorded_python(app, recorded)
    if options.python:
        python, source = options.python, "--python"
    elif app.python is not None:
        python, source = str(app.python), str(app.python_source)
    elif python is None:
        version, source = app.choose_python(host.python)
        python = str(version)
    platform = options.platform or recorded.get("platform") or host.platform
    return Target.parse(python=python, platform=platform, python_source=source)


def _recorded_python(app: App, recorded: Mapping[str, str]) -> tuple[str | None, str]:
    text = recorded.get("python")
    if text is None:
        return None, ""
    try:
        version = PythonVersion.parse(text, source=str(app.lock_path))
    except InputError:
        return None, ""  # a damaged lock names no usable target: choose afresh
    if app.requires_python is not None and not app.requires_python.contains(version.full):
        return None, ""
    return text, str(app.lock_path)


def _admits(current: Lock, target: Target) -> bool:
    """Whether the lock's requires-python holds for the target (for every 3.X.y of a ``3.X``)."""
    required = current.pylock.requires_python
    return required is None or required.contains(target.python.full)


def make_plan(
    app: App,
    options: Options,
    host: Host,
    *,
    runner: Runner,
    reporter: Reporter,
    may_lock: bool,
    force_lock: bool = False,
) -> Plan:
    """Find the target, make sure the lock is current (locking if allowed), pick the wheels.

    A lock is current when its recorded inputs digest equals that of the app's
    requirements, target and index options: checking this reads only local
    files, so an unchanged app never reaches the network.
    """
    target = resolve_target(app, options, host)
    config = build_config(app, options)  # read before locking: a typo fails fast
    lock_path = lock_path_for(app, target, options, host)
    locked_because: str | None = None
    if app.requirements is not None and not app.requirements.requirements:
        where = app.requirements_source.name if app.requirements_source else "the app"
        reporter.message(
            "warning", f"{where} lists no requirements: the app needs nothing but Python"
        )
    if app.requirements is not None:
        for line in app.requirements.requirements:
            if line.editable:
                reporter.message(
                    "info",
                    f"{line.origin}: -e {line.url} is built into a wheel and deployed "
                    "non-editable (a deployed app does not edit its packages in place)",
                )
    if options.groups != Groups() and not app.locked_by_manager:
        reporter.message(
            "warning",
            "--dev, --group and --extra choose parts of a uv, Poetry or Pipenv lock; "
            f"{app.requirements_source.name if app.requirements_source else 'this app'} "
            "has none, so they change nothing",
        )
    if app.manager is not None and app.locked_by_manager:
        current, locked_because = _managed_lock(
            app,
            app.manager, target, options, host, lock_path,
            runner=runner, reporter=reporter, may_lock=may_lock,
        )  # fmt: skip
    elif app.requirements is None:
        # Only a pylock.toml: it is the user's lock, used as it is.
        current = read_lock(lock_path)
    else:
        current, locked_because = _requirements_lock(
            app,
            app.requirements, target, options, host, lock_path,
            runner=runner, reporter=reporter, may_lock=may_lock, force_lock=force_lock,
        )  # fmt: skip
    artefacts = select_artefacts(current, target, config)
    settings: dict[str, object] = dict(WHEELHOUSE_SETTINGS)
    if any(a.kind != "wheel" for a in artefacts):
        # Built wheels depend on these too; wheel-only apps skip the tool probes.
        settings["build"] = config.key_data()
        settings["toolchain"] = dict(host.toolchain())
    return Plan(
        app=app,
        target=target,
        lock=current,
        artefacts=artefacts,
        key=wheelhouse_key(artefacts, target, settings),
        locked_because=locked_because,
        config=config,
        settings=settings,
    )


def _python_source(app: App, options: Options) -> str:
    if options.python:
        return "--python"
    if app.python_source:
        return str(app.root / app.python_source)
    return "the target Python"


def build_config(app: App, options: Options) -> BuildConfig:
    """The app's build settings, its requirements file's binary options, then the command line."""
    config = read_build_config(app.root)
    if app.requirements is not None:
        config = config.with_overrides(
            no_binary=app.requirements.no_binary, only_binary=app.requirements.only_binary
        )
    return config.with_overrides(
        no_binary=options.no_binary,
        only_binary=options.only_binary,
        repair=options.repair,
        jobs=options.build_jobs,
    )


def lock_name(target: Target) -> str:
    """The ``<name>`` of a side-by-side ``pylock.<name>.toml`` for ``target`` (PEP 751)."""
    python = "_".join(str(part) for part in target.python.full.split("."))
    if target.python.micro is None:
        python = f"{target.python.major}_{target.python.minor}"
    return f"py{python}-{target.platform}"


def lock_path_for(app: App, target: Target, options: Options, host: Host) -> Path:
    """Where the lock for ``target`` lives.

    ``pylock.toml`` is the default target's lock. A target the command line
    names that is not the one the app would get without it gets its own
    ``pylock.<name>.toml``, so locking for a second target neither replaces the
    first one's lock nor becomes the default. A pylock.toml another tool wrote
    may cover several targets and is always the lock.
    """
    default = app.lock_path
    if not options.side_by_side or not default.is_file() or not recorded_target(default):
        return default
    plain = replace(options, python=None, platform=None)
    if target == resolve_target(app, plain, host):
        return default
    return app.root / f"pylock.{lock_name(target)}.toml"


def _requirements_lock(
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
        return existing, None
    upgrading = options.upgrade or bool(options.upgrade_packages)
    if (
        existing is not None
        and existing.inputs == request.digest
        and (not options.index.given or existing.tool.get("index") == request.index_digest)
        and _admits(existing, target)
        and not force_lock
        and not upgrading
    ):
        return existing, None
    if existing is None:
        reason = f"no {lock_path.name} yet"
    elif upgrading:
        reason = "asked to upgrade " + (
            ", ".join(options.upgrade_packages) if options.upgrade_packages else "every package"
        )
    elif force_lock:
        reason = "asked to lock"
    elif existing.inputs == request.digest and not _admits(existing, target):
        reason = (
            f"it requires Python {existing.pylock.requires_python}, "
            f"which does not hold for the target {target.python}"
        )
    else:
        reason = (
            f"{app.requirements_source.name if app.requirements_source else 'inputs'}"
            f", the target or the index options changed since the lock"
        )
    if not may_lock:
        raise InputError(
            f"{lock_path}: out of date ({reason})",
            hint=f"run `wheelbarrow build {app.root}` to lock and build again",
        )
    # Before anything is written: a lock for a Python that does not exist
    # would break every later build.
    check_known(target.python, host.known_pythons(), source=_python_source(app, options))
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


def _check_covers(app: App, lock: Lock, target: Target) -> None:
    """Refuse requirements that a foreign lock beside them does not satisfy.

    The lock is used as it is, so a requirement added to requirements.txt after
    the lock was made would otherwise be dropped without a word.
    """
    if app.requirements is None:
        return
    env = target.environment
    lock_env = dict(
        env, extras=frozenset(), dependency_groups=frozenset(lock.pylock.default_groups or [])
    )
    locked: dict[str, list[str]] = {}
    for package in lock.pylock.packages:
        if package.marker is None or package.marker.evaluate(lock_env, context="lock_file"):  # type: ignore[arg-type]
            locked.setdefault(canonicalize_name(package.name), []).append(
                str(package.version) if package.version is not None else ""
            )
    problems = []
    for line in app.requirements.requirements:
        req = line.requirement
        if req is None:
            problems.append(f"{line.origin}: {line}: has no name to look up in {lock.path.name}")
            continue
        if req.marker is not None and not req.marker.evaluate(env):  # type: ignore[arg-type]
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


def _managed_lock(
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
    if existing is not None and existing.inputs == digest and _admits(existing, target):
        return existing, None
    reason = (
        f"no {lock_path.name} yet"
        if existing is None
        else f"{', '.join(manager.files)}, the groups or the target changed since the lock"
    )
    if not may_lock:
        raise InputError(
            f"{lock_path}: out of date ({reason})",
            hint=f"run `wheelbarrow build {app.root}` to lock and build again",
        )
    check_known(target.python, host.known_pythons(), source=_python_source(app, options))
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
    return read_lock(lock_path), reason


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
