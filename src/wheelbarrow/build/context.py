"""What a source build is given (:class:`SourceContext`) and what it gives back (:class:`Built`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import parse_wheel_filename

from wheelbarrow._core.report import Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow.app.config import BuildConfig
from wheelbarrow.app.requirements import IndexOptions
from wheelbarrow.app.target import Target
from wheelbarrow.build import hostcpu, portability
from wheelbarrow.build.blas import BlasFinding
from wheelbarrow.build.links import SystemLibraries
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.lock.lockfile import Artefact
from wheelbarrow.store.fetch import Fetches
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from wheelbarrow.build.remotebuild import ClusterBuilds
    from wheelbarrow.store.remote import RemoteStore


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceContext:
    """The pieces a source build uses, assembled by the caller."""

    store: Store
    target: Target
    config: BuildConfig
    interpreter: Interpreter
    runner: Runner
    reporter: Reporter
    environ: Mapping[str, str]
    uv: str
    index: IndexOptions
    fetcher: Fetches
    toolchain: Mapping[str, str]
    which: Callable[[str], str | None]
    auditwheel: Sequence[str] = ("auditwheel",)
    repair_env: Mapping[str, str] | None = None  # PATH must reach a recent patchelf
    clock: Callable[[], float] = time.monotonic  # times each build for the report
    # Where the libraries built wheels link are looked up (None: this machine's loader paths).
    libraries: SystemLibraries | None = None
    # The versions of the packages this run builds from source: a build requirement
    # naming one of them gets that version (the wheel built here), as it fits.
    pins: Mapping[str, str] = field(default_factory=dict)
    # The instruction set flags of this machine's CPU: a build asked for it (-march=native)
    # is keyed by them, and a cached wheel whose code needs more is not reused.
    cpu_features: frozenset[str] = field(default_factory=hostcpu.host_cpu_features)
    # A store other machines share: a build missing from the build cache is looked up
    # there by its key before it is built; with ``push`` what is built here is put there.
    remote: RemoteStore | None = None
    push: bool = False
    # Where the builds run when not here: workers that share their inputs and wheels
    # through ``remote`` (see remotebuild.py); None builds on this machine.
    cluster: ClusterBuilds | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Built:
    """A wheel made from a source, new or reused from the build cache.

    ``seconds`` is how long building and repairing took now (0 when reused).
    """

    source: Artefact
    wheel: str
    sha256: str
    repair: str
    reused: bool
    why: str | None
    log: Path
    # What its code needs of the CPU beyond the target's baseline (see portability.py).
    portability: portability.PortabilityFinding | None = None
    seconds: float = 0.0
    blas: BlasFinding | None = None  # what BLAS the wheel has (see blas.py)
    remote: str | None = None  # the remote store it was fetched from, built on another machine
    worker: str | None = None  # the cluster worker that built it for this run (--cluster)
    span: tuple[float, float] | None = None  # when it ran there (wall-clock, the worker's)

    @property
    def version(self) -> str:
        """The built wheel's version (a local directory's lock entry may have none)."""
        return str(parse_wheel_filename(self.wheel)[1])

    @property
    def reason(self) -> str:
        """Why it was built now, or that it was reused from the build cache or the remote store."""
        if self.remote is not None:
            return "reused from the remote store"
        return "reused from the build cache" if self.reused else (self.why or "built")

    def as_json(self) -> dict[str, object]:
        """For the build report."""
        return {
            "name": self.source.name,
            "version": self.version,
            "source": self.source.filename,
            "wheel": self.wheel,
            "repair": self.repair,
            "reused": self.reused,
            "why": self.why,
            "reason": self.reason,
            "portability": self.portability.as_json() if self.portability else None,
            "seconds": round(self.seconds, 3),
            "log": str(self.log),
            "blas": self.blas.as_json() if self.blas is not None else None,
            "remote": self.remote,
            "worker": self.worker,
            "span": list(self.span) if self.span is not None else None,
        }


def available_cpus() -> int:
    """The CPUs this process may run on (a container's limit), the default build workers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def system_libraries(ctx: SourceContext) -> SystemLibraries:
    if ctx.libraries is not None:
        return ctx.libraries
    return SystemLibraries(runner=ctx.runner, which=ctx.which, environ=ctx.environ)
