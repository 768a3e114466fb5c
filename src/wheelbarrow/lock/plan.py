"""Planning: from an app and the options to a target, a current lock and the wheels to hold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Required, TypedDict

from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.config import BuildConfig, read_build_config
from wheelbarrow.app.directory import App
from wheelbarrow.app.managers import Groups
from wheelbarrow.app.target import Target
from wheelbarrow.lock.key import wheelhouse_key
from wheelbarrow.lock.lockfile import Artefact, Lock, read_lock, select_artefacts
from wheelbarrow.lock.options import Host, Options
from wheelbarrow.lock.requirements_lock import requirements_lock
from wheelbarrow.lock.target_choice import lock_path_for, resolve_target

__all__ = ["Plan", "WheelhouseSettings", "build_config", "make_plan"]


class WheelhouseSettings(TypedDict, total=False):
    """What besides its wheels a wheelhouse's key stands for.

    ``layout`` always; the build settings and the toolchain only when
    something is built from source (wheel-only apps skip the tool probes).
    """

    layout: Required[int]  # the wheelhouse's layout version
    build: dict[str, object]  # BuildConfig.key_data()
    toolchain: dict[str, str]  # versions of cc, gfortran, BLAS...


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
    settings: WheelhouseSettings

    @property
    def sources(self) -> tuple[Artefact, ...]:
        """The artefacts to build from source."""
        return tuple(a for a in self.artefacts if a.kind != "wheel")


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
    _note_inputs(app, options, reporter)
    if app.manager is not None and app.locked_by_manager:
        # Imported here: only a package manager's lock needs it (`key` starts faster).
        from wheelbarrow.lock.managed import managed_lock

        current, locked_because = managed_lock(
            app,
            app.manager, target, options, host, lock_path,
            runner=runner, reporter=reporter, may_lock=may_lock,
        )  # fmt: skip
    elif app.requirements is None:
        # Only a pylock.toml: it is the user's lock, used as it is.
        current = read_lock(lock_path)
    else:
        current, locked_because = requirements_lock(
            app,
            app.requirements, target, options, host, lock_path,
            runner=runner, reporter=reporter, may_lock=may_lock, force_lock=force_lock,
        )  # fmt: skip
    artefacts = select_artefacts(current, target, config)
    settings = WheelhouseSettings(layout=1)
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


def _note_inputs(app: App, options: Options, reporter: Reporter) -> None:
    """Say what in the app's inputs the user may not expect: nothing to lock, editables, groups
    that choose nothing."""
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
