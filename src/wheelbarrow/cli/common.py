"""Assembling the concrete pieces (host defaults, store, app) from parsed arguments."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

# Everything is imported where it is used: `wheelbarrow key` runs in a CI job before anything
# else, and a no-op build reads only the store's record of its inputs (cli/noop.py), so
# their start-up counts (bench/key.py, bench/bench_noop.py).
# typing only for mypy: a warm install imports this module, and typing costs it 3 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from wheelbarrow._core.report import Level, Reporter
    from wheelbarrow.app.config import BuildConfig
    from wheelbarrow.app.directory import App
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.lock.options import Host, Options
    from wheelbarrow.lock.plan import Plan
    from wheelbarrow.store.remote import RemoteStore
    from wheelbarrow.store.store import Store

STORE_ENV_VAR = "WHEELBARROW_STORE"  # store.store's, which imports the store's machinery


def host(environ: Mapping[str, str] | None = None) -> Host:
    """Defaults from this machine: the running Python, its platform, the uv binary, the env
    (``environ``, else a copy of this process's).

    The platform tags and the uv binary are found only when a plan asks for them: a no-op
    build reads its platform from the lock and runs no uv.
    """
    from wheelbarrow.app.target import PythonVersion
    from wheelbarrow.lock.options import Host

    return Host(
        python=PythonVersion(
            major=sys.version_info.major, minor=sys.version_info.minor, micro=sys.version_info.micro
        ),
        platform=_host_platform,
        uv=_uv_binary,
        environ=dict(os.environ) if environ is None else environ,
        toolchain=_toolchain,
        known_pythons=_known_pythons,
    )


def _host_platform() -> str:
    from packaging.tags import platform_tags

    from wheelbarrow.app.target import host_platform

    return host_platform(list(platform_tags()))


def _known_pythons() -> list[str]:
    """The CPython versions uv knows (its download list: no network, no interpreter probes)."""
    import json

    from wheelbarrow._core.runner import run_subprocess

    result = run_subprocess(
        [
            _uv_binary(),
            "python",
            "list",
            "--all-versions",
            "--only-downloads",
            "--output-format",
            "json",
        ]
    )
    try:
        entries = json.loads(result.stdout) if result.returncode == 0 else []
    except json.JSONDecodeError:
        entries = []
    return [
        str(e["version"])
        for e in entries
        if isinstance(e, dict) and e.get("implementation") == "cpython" and "version" in e
    ]


def _toolchain() -> dict[str, str]:
    from wheelbarrow.wheelhouse.buildhost import toolchain

    return toolchain()


def interpreter_for(plan: Plan, args: argparse.Namespace) -> Interpreter:
    """The interpreter of the target's version: --python-executable, this one, or on PATH."""
    import shutil

    from wheelbarrow._core.runner import run_subprocess
    from wheelbarrow.environment.interpreters import find_interpreter

    running = running_interpreter()
    explicit = getattr(args, "python_executable", None)
    return find_interpreter(
        plan.target.python,
        explicit=Path(explicit) if explicit else None,
        running=running,
        which=shutil.which,
        runner=run_subprocess,
        environ=os.environ,
        uv=_uv_binary(),
    )


def running_interpreter() -> Interpreter:
    """The interpreter running wheelbarrow, by its base executable."""
    from wheelbarrow.environment.interpreters import Interpreter

    base = getattr(sys, "_base_executable", sys.executable)
    return Interpreter(
        executable=Path(os.path.realpath(base)), version=".".join(map(str, sys.version_info[:3]))
    )


def check_wheels_run_on(interpreter: Interpreter, manifest: dict[str, Any]) -> None:
    """Refuse a wheelhouse with wheels that ``interpreter`` does not accept (its own tags)."""
    from packaging.tags import sys_tags

    from wheelbarrow._core.runner import run_subprocess
    from wheelbarrow.environment.interpreters import check_wheels_accepted, interpreter_tags

    tags = interpreter_tags(
        interpreter,
        running=running_interpreter(),
        runner=run_subprocess,
        running_tags=lambda: [str(t) for t in sys_tags()],
    )
    check_wheels_accepted([str(w["filename"]) for w in manifest["wheels"]], tags, interpreter)


def _uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return "uv"


def store_root(args: argparse.Namespace) -> tuple[Path, str]:
    """Where the store is, and who said so: ``--store``, ``$WHEELBARROW_STORE`` or the user
    cache directory."""
    if args.store:
        return Path(args.store).expanduser().absolute(), "--store"
    if os.environ.get(STORE_ENV_VAR):
        return Path(os.environ[STORE_ENV_VAR]).expanduser().absolute(), f"${STORE_ENV_VAR}"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("wheelbarrow", appauthor=False)), "the default"


def store(args: argparse.Namespace) -> Store:
    """The store from ``--store``, ``$WHEELBARROW_STORE`` or the user cache directory."""
    from wheelbarrow._core.errors import StoreError
    from wheelbarrow.store.store import Store

    root, given = store_root(args)
    # The store, or the nearest part of its path that exists, must be a directory.
    existing = next((p for p in (root, *root.parents) if p.exists()), root)
    if existing.exists() and not existing.is_dir():
        raise StoreError(
            f"{root}: {existing} is not a directory, so this cannot be the store ({given})",
            hint=f"point {given} at a directory (an empty or missing one makes a new store)",
        )
    return Store(root)


def app(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> App:
    """The app directory named on the command line (its requirements read with ``environ``,
    else this process's environment)."""
    from wheelbarrow.app.directory import read_app

    return read_app(Path(args.app).absolute(), environ=os.environ if environ is None else environ)


def options(args: argparse.Namespace) -> Options:
    """Target and index options from the command line."""
    from wheelbarrow.app.managers import Groups
    from wheelbarrow.app.requirements import IndexOptions
    from wheelbarrow.lock.options import Options

    index = IndexOptions(
        index_url=getattr(args, "index_url", None),
        extra_index_urls=tuple(getattr(args, "extra_index_url", ())),
        find_links=tuple(getattr(args, "find_links", ())),
        no_index=getattr(args, "no_index", False),
    )
    return Options(
        python=args.python,
        platform=args.platform,
        index=index,
        no_binary=tuple(getattr(args, "no_binary", ())),
        only_binary=tuple(getattr(args, "only_binary", ())),
        repair=getattr(args, "repair", None),
        build_jobs=getattr(args, "build_jobs", None),
        groups=Groups(
            dev=getattr(args, "dev", False),
            names=tuple(getattr(args, "group", ())),
            extras=tuple(getattr(args, "extra", ())),
        ),
        force=getattr(args, "force", False),
        upgrade=getattr(args, "upgrade", False),
        upgrade_packages=tuple(getattr(args, "upgrade_package", ())),
        # A target named here that is not the default lock's gets a lock of its own.
        side_by_side=bool(args.python or args.platform),
    )


def plan(
    args: argparse.Namespace,
    reporter: Reporter,
    *,
    may_lock: bool,
    force_lock: bool = False,
    the_app: App | None = None,
    the_host: Host | None = None,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """The plan for the app on the command line, with this machine's defaults (``environ``
    being the environment it reads, else this process's)."""
    from wheelbarrow._core.runner import run_subprocess
    from wheelbarrow.lock.plan import make_plan

    return make_plan(
        the_app or app(args, environ),
        options(args),
        the_host or host(environ),
        runner=run_subprocess,
        reporter=reporter,
        may_lock=may_lock,
        force_lock=force_lock,
    )


class LazyReporter:
    """The run's reporter, made when something is first reported (never, in a no-op build:
    the terminal's rich display is not even imported). ``calls`` counts what was reported."""

    def __init__(self, make: Callable[[], Reporter]) -> None:
        self._make = make
        self._made: Reporter | None = None
        self.calls = 0

    def _reporter(self) -> Reporter:
        self.calls += 1
        if self._made is None:
            self._made = self._make()
        return self._made

    def message(self, level: Level, text: str) -> None:
        self._reporter().message(level, text)

    def download_started(self, files: int, total_bytes: int | None) -> None:
        self._reporter().download_started(files, total_bytes)

    def download_expected(self, nbytes: int) -> None:
        self._reporter().download_expected(nbytes)

    def download_advanced(self, nbytes: int) -> None:
        self._reporter().download_advanced(nbytes)

    def download_file_done(self, filename: str, nbytes: int) -> None:
        self._reporter().download_file_done(filename, nbytes)

    def download_finished(self) -> None:
        self._reporter().download_finished()

    def build_started(self, label: str, log: Path) -> None:
        self._reporter().build_started(label, log)

    def build_finished(self, label: str, *, ok: bool, seconds: float, result: str) -> None:
        self._reporter().build_finished(label, ok=ok, seconds=seconds, result=result)


def remote(args: argparse.Namespace) -> RemoteStore | None:
    """The remote store: ``--remote``, else ``$WHEELBARROW_REMOTE``, else the app's ``remote``
    setting; None when none names one."""
    from wheelbarrow.share.remotes import remote_for, remote_from

    given = remote_from(getattr(args, "remote", None), os.environ)
    if given is not None:
        return given
    url = settings(args).remote
    return remote_for(url, os.environ) if url else None


def remote_and_push(args: argparse.Namespace) -> tuple[RemoteStore | None, bool]:
    """:func:`remote`, and whether to push to it: ``--push``, else ``$WHEELBARROW_PUSH``, else
    the app's ``push`` setting. Pushing without a remote is an error naming who asked."""
    from wheelbarrow._core.errors import InputError
    from wheelbarrow.app.config import PUSH_ENV_VAR, push_from_environ

    found = remote(args)
    if getattr(args, "push", False):
        push, asked = True, "--push"
    elif (from_environ := push_from_environ(os.environ)) is not None:
        push, asked = from_environ, f"{PUSH_ENV_VAR}={os.environ[PUSH_ENV_VAR]}"
    else:
        own = settings(args)
        push, asked = own.push, f"push = true in {own.source}"
    if push and found is None:
        raise InputError(
            f"{asked} needs a remote store",
            hint="add --remote s3://BUCKET/PREFIX, set WHEELBARROW_REMOTE, or write "
            'remote = "s3://BUCKET/PREFIX" in the app\'s settings ([tool.wheelbarrow])',
        )
    return found, push


def settings(args: argparse.Namespace) -> BuildConfig:
    """The app's settings file (what the plan reads too), for what the command line and the
    environment leave open."""
    from wheelbarrow.app.config import read_build_config

    return read_build_config(Path(args.app).absolute())
