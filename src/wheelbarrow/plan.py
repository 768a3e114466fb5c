"""Planning: from an app and the options to a target, a current lock and the wheels to hold."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wheelbarrow.app import App
from wheelbarrow.config import BuildConfig, RepairMode, read_build_config
from wheelbarrow.credentials import resolver_environ, split_userinfo, uv_config_indexes
from wheelbarrow.errors import InputError
from wheelbarrow.key import wheelhouse_key
from wheelbarrow.lock import LockRequest, lock
from wheelbarrow.lockfile import Artefact, Lock, read_lock, select_artefacts, wheelbarrow_table
from wheelbarrow.managers import Groups
from wheelbarrow.report import Reporter
from wheelbarrow.requirements import IndexOptions
from wheelbarrow.runner import Runner
from wheelbarrow.target import PythonVersion, Target, check_known

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
    locked_because: str | None = None
    if app.requirements is not None and not app.requirements.requirements:
        where = app.requirements_source.name if app.requirements_source else "the app"
        reporter.message(
            "warning", f"{where} lists no requirements: the app needs nothing but Python"
        )
    if app.requirements is None:
        # Only a pylock.toml: it is the user's lock, used as it is.
        current = read_lock(app.lock_path)
    else:
        index = app.requirements.index.overridden_by(options.index)
        request = LockRequest(
            requirements=app.requirements,
            target=target,
            index=index,
            uv_indexes=tuple(
                f"{i.name or ''}={split_userinfo(i.url)[0]}{' (default)' if i.default else ''}"
                for i in uv_config_indexes(app.root)
                if not i.explicit
            ),
        )
        existing = read_lock(app.lock_path) if app.lock_path.is_file() else None
        if existing is not None and existing.inputs is None and not force_lock:
            reporter.message(
                "info", f"using {app.lock_path.name} as given (it was not written by wheelbarrow)"
            )
            current = existing
        elif (
            existing is not None
            and existing.inputs == request.digest
            and (not options.index.given or existing.tool.get("index") == request.index_digest)
            and _admits(existing, target)
            and not force_lock
        ):
            current = existing
        else:
            if existing is None:
                reason = f"no {app.lock_path.name} yet"
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
                    f"{app.lock_path}: out of date ({reason})",
                    hint=f"run `wheelbarrow build {app.root}` to lock and build again",
                )
            # Before anything is written: a lock for a Python that does not exist
            # would break every later build.
            check_known(target.python, host.known_pythons(), source=_python_source(app, options))
            lock(
                request,
                output=app.lock_path,
                uv=host.uv,
                runner=runner,
                reporter=reporter,
                # uv reads neither pip's index variables nor, run in a scratch
                # directory, the app's own [[tool.uv.index]]: hand them over.
                environ=resolver_environ(host.environ, app.root),
            )
            current = read_lock(app.lock_path)
            locked_because = reason
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
