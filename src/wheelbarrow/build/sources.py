"""Source builds for a wheelhouse: discover build requirements, build in order, cache by key."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import parse_wheel_filename

from wheelbarrow._core.errors import (
    LockError,
    SourceBuildError,
    WheelbarrowError,
)
from wheelbarrow._core.files import atomic_write_text
from wheelbarrow._core.report import NullReporter, Reporter
from wheelbarrow._core.runner import Runner
from wheelbarrow._core.text import plural
from wheelbarrow.app.config import BuildConfig, PackageSettings
from wheelbarrow.app.requirements import IndexOptions, requirements_from_strings
from wheelbarrow.app.target import Target
from wheelbarrow.build import portability
from wheelbarrow.build.blas import BlasFinding, check_built_wheel
from wheelbarrow.build.builder import BuildFailure, BuildRequest, build_env_key, build_wheel
from wheelbarrow.build.links import SystemLibraries, linked_libraries, links_problem
from wheelbarrow.environment.interpreters import Interpreter
from wheelbarrow.lock.lockfile import Artefact, Lock, read_lock, select_artefacts
from wheelbarrow.lock.resolve import LockRequest, lock
from wheelbarrow.store.fetch import Fetches
from wheelbarrow.store.store import Store

if TYPE_CHECKING:
    from filelock import FileLock

# 2: the key is the part known before building; what a wheel links is checked apart.
BUILD_KEY_FORMAT = 2
# Libraries in the toolchain fingerprint: a build counts them only when its wheel
# links them (the second part of the key, see links.py), not by being installed.
LINKED_FINGERPRINTS = frozenset({"openblas"})
# Bump when cached build-requirement locks must not be reused (2: locks for 3.X hold for 3.X.0).
BUILDLOCK_FORMAT = 2


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
    cpu_features: frozenset[str] = field(default_factory=portability.host_cpu_features)


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

    @property
    def version(self) -> str:
        """The built wheel's version (a local directory's lock entry may have none)."""
        return str(parse_wheel_filename(self.wheel)[1])

    @property
    def reason(self) -> str:
        """Why it was built now, or that it was reused from the build cache."""
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
        }


@dataclass(slots=True, kw_only=True)
class _Node:
    key: str
    source: Artefact
    settings: PackageSettings
    src_dir: Path
    build_wheels: list[Artefact] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    needed_sources: set[str] = field(default_factory=set)  # sha256 of the sources in needs
    requires: tuple[str, ...] = ()


def available_cpus() -> int:
    """The CPUs this process may run on (a container's limit), the default build workers."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def build_key_inputs(source: Artefact, ctx: SourceContext) -> dict[str, Any]:
    """The first part of a build's cache key: what a built wheel depends on, known before building.

    Equal inputs find the candidate wheels (:func:`candidates`); the libraries
    a candidate links, known only after it was built, decide whether it still
    holds here (:func:`candidate_problem`). A field added here is part of the
    key at once, and :func:`why_rebuilt` names it when it changes.
    """
    inputs: dict[str, Any] = {
        "format": BUILD_KEY_FORMAT,
        "name": source.name,
        "version": source.version,
        "source": source.sha256,
        "settings": ctx.config.for_package(source.name).digest(),
        "toolchain": {
            tool: version
            for tool, version in sorted(ctx.toolchain.items())
            if tool not in LINKED_FINGERPRINTS
        },
        "python": ctx.interpreter.version,
        "target": ctx.target.as_dict(),
        "repair": ctx.config.repair,
    }
    # Present only for builds asked for this machine's CPU: other keys stay as they were.
    settings = ctx.config.for_package(source.name)
    cpu = portability.cpu_key_part(
        settings.env, settings.config_settings, ctx.environ, ctx.cpu_features
    )
    if cpu is not None:
        inputs["cpu"] = cpu
    return inputs


def build_key(inputs: Mapping[str, Any]) -> str:
    """The cache key of a source build's first part (32 hex digits)."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A wheel built earlier for the same first part of the key, as recorded with it.

    ``links`` is what it linked when it was built (see
    :func:`wheelbarrow.build.links.linked_libraries`), ``build_env`` the store key of
    the build environment it was built in.
    """

    entry: str
    key: str
    wheel: str
    sha256: str
    repair: str
    links: Mapping[str, Any]
    build_env: str | None
    path: Path
    needs_cpu: tuple[str, ...] = ()  # /proc/cpuinfo flags its code needs (portability.py)
    # A numpy-like build that found no BLAS (blas.py): the OpenBLAS the machine had then.
    without_blas: str | None = None

    @classmethod
    def read(cls, path: Path) -> Candidate | None:
        """The candidate recorded in the build cache entry ``path``, or None if it is incomplete."""
        try:
            data = json.loads((path / "result.json").read_text(encoding="utf-8"))
            return cls(
                entry=path.name,
                key=str(data["key"]),
                wheel=str(data["wheel"]),
                sha256=str(data["sha256"]),
                repair=str(data["repair"]),
                links=data["links"] if isinstance(data.get("links"), dict) else {},
                build_env=data.get("build_env") if isinstance(data.get("build_env"), str) else None,
                path=path,
                needs_cpu=portability.recorded_cpu_needs(data.get("portability")),
                without_blas=_without_blas(data.get("blas")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def entry_name(key: str, links: Mapping[str, Any]) -> str:
    """The build cache entry of a wheel: the first part's key, then a digest of what it links.

    Entries of one first part share their first 16 digits, so
    :func:`candidates` finds them by prefix.
    """
    blob = json.dumps(links, sort_keys=True, separators=(",", ":")).encode()
    return key[:16] + hashlib.sha256(blob).hexdigest()[:16]


def candidates(store: Store, key: str) -> list[Candidate]:
    """The wheels built for the first part ``key`` in ``store``, the most recent first."""
    found = []
    for path in (store.root / "built").glob(f"{key[:16]}*"):
        candidate = Candidate.read(path)
        if candidate is not None and candidate.key == key:
            found.append(candidate)
    return sorted(found, key=lambda c: _mtime(c.path / "result.json"), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def candidate_problem(
    candidate: Candidate,
    store: Store,
    libraries: SystemLibraries,
    cpu: frozenset[str] | None = None,
    openblas: str | None = None,
) -> str | None:
    """Why ``candidate`` is not what a build on this machine would make, or None if it holds.

    Its wheel must still be in ``store``, and every library it links must be
    here with the same content; ``cpu`` (this machine's instruction set flags,
    None to skip) must have what its code uses unchecked beyond the baseline.
    A build that found no BLAS links none, so ``openblas`` (the version
    pkg-config finds here, or ``absent``) other than when it was built makes it stale.
    """
    if not store.has(candidate.sha256):
        return "the cached wheel is missing"
    then = candidate.without_blas
    if then is not None and openblas not in (None, "", "absent", then):
        return f"it was built without BLAS while OpenBLAS was {then}, and {openblas} is here now"
    if cpu is not None and (problem := portability.cpu_problem(candidate.needs_cpu, cpu)):
        return problem
    return links_problem(candidate.links, libraries)


def _without_blas(recorded: object) -> str | None:
    """For a recorded BLAS finding that misses one, the OpenBLAS here at the time."""
    finding = BlasFinding.from_json(recorded)
    if finding is None or not finding.missing or not isinstance(recorded, dict):
        return None
    return str(recorded.get("openblas_here") or "absent")


def _reusable(key: str, source: Artefact, ctx: SourceContext) -> tuple[Built | None, str | None]:
    """A cached wheel for ``key`` that holds here, or None and why the newest one does not."""
    first_problem = None
    libraries = _libraries(ctx)
    for candidate in candidates(ctx.store, key):
        problem = candidate_problem(
            candidate, ctx.store, libraries, ctx.cpu_features, ctx.toolchain.get("openblas")
        )
        if problem is None:
            built = Built(
                source=source,
                wheel=candidate.wheel,
                sha256=candidate.sha256,
                repair=candidate.repair,
                reused=True,
                why=None,
                log=candidate.path / "build.log",
            )
            return built, None
        first_problem = first_problem or problem
    return None, first_problem


def _libraries(ctx: SourceContext) -> SystemLibraries:
    if ctx.libraries is not None:
        return ctx.libraries
    return SystemLibraries(runner=ctx.runner, which=ctx.which, environ=ctx.environ)


def why_rebuilt(previous: Mapping[str, Any] | None, now: Mapping[str, Any]) -> str:
    """One line saying what changed since the package was last built for this target."""
    if previous is None:
        return "first build for this target"
    reasons = []
    if previous.get("source") != now["source"]:
        old, new = previous.get("version"), now["version"]
        reasons.append(f"source changed ({old} -> {new})" if old != new else "source changed")
    if previous.get("settings") != now["settings"]:
        reasons.append("build settings changed")
    old_tools, new_tools = previous.get("toolchain", {}), now["toolchain"]
    tools = [
        f"{t}: {old_tools.get(t, 'absent')} -> {new_tools.get(t, 'absent')}"
        for t in sorted(set(old_tools) | set(new_tools))
        if old_tools.get(t) != new_tools.get(t)
    ]
    if tools:
        reasons.append("toolchain changed (" + "; ".join(tools) + ")")
    if previous.get("python") != now["python"]:
        reasons.append(f"Python changed ({previous.get('python')} -> {now['python']})")
    if previous.get("repair") != now["repair"]:
        reasons.append(f"repair mode changed ({previous.get('repair')} -> {now['repair']})")
    if previous.get("format") != now["format"]:
        reasons.append("wheelbarrow's build format changed")
    if previous.get("cpu") != now.get("cpu"):
        reasons.append(
            "built for this machine's CPU (-march=native)"
            if previous.get("cpu") is None or now.get("cpu") is None
            else "the CPU differs from the one it was built for (-march=native)"
        )
    described = {"cpu", "source", "version", "settings", "toolchain", "python", "repair", "format"}
    reasons += [
        f"{field} changed"
        for field in sorted(set(previous) | set(now))
        if field not in described
        and field not in ("name", "target")
        and previous.get(field) != now.get(field)
    ]
    return "; ".join(reasons) or "the cached wheel is missing"


def build_sources(sources: Sequence[Artefact], ctx: SourceContext) -> list[Built]:
    """A wheel for every source: from the build cache, or built now in build-dependency order.

    Build requirements are locked for the target (the lock is cached in the
    store), their wheels fetched, and those that are themselves sources are
    built first. Every system requirement is checked before anything
    compiles. A failed build does not stop the others; at the end one
    :class:`SourceBuildError` names every failure with its log.
    """
    results: dict[str, Built] = {}
    nodes: dict[str, _Node] = {}
    by_source: dict[str, str] = {}
    ctx = replace(ctx, pins={**_pins(sources), **ctx.pins}, libraries=_libraries(ctx))
    with ctx.store.scratch("sources-") as work:
        for source in sources:
            by_source[source.sha256] = _discover(source, ctx, nodes, results, work)
        for key, cached in results.items():  # warned about (or refused) at every use
            results[key] = _check_reused_portability(cached, ctx)
        for key, reused in results.items():  # a cached wheel is warned about at every use
            results[key] = _check_reused_blas(reused, ctx)
        _check_systems(nodes, ctx)
        if nodes:
            _run(nodes, results, ctx)
    return [results[by_source[s.sha256]] for s in sources]


def _discover(
    source: Artefact,
    ctx: SourceContext,
    nodes: dict[str, _Node],
    results: dict[str, Built],
    work: Path,
    chain: tuple[str, ...] = (),
) -> str:
    """Add ``source`` (and the sources its build needs) to the graph; return its key."""
    inputs = build_key_inputs(source, ctx)
    key = build_key(inputs)
    if key in nodes or key in results:
        return key
    cached, _ = _reusable(key, source, ctx)
    if cached is not None:
        results[key] = cached
        return key
    from wheelbarrow.build.sdist import apply_patches, read_build_system

    settings = ctx.config.for_package(source.name)
    src_dir = _materialise(source, ctx, work / key)
    if settings.patches:
        apply_patches(src_dir, settings.patches, runner=ctx.runner)
    system = read_build_system(src_dir)
    node = _Node(
        key=key, source=source, settings=settings, src_dir=src_dir, requires=system.requires
    )
    nodes[key] = node
    if system.requires:
        build_lock = _lock_build_requirements(system.requires, source, ctx)
        for dep in select_artefacts(build_lock, ctx.target, ctx.config):
            if dep.kind == "wheel":
                node.build_wheels.append(dep)
            else:
                node.needs.append(_discover(dep, ctx, nodes, results, work, (*chain, key)))
                node.needed_sources.add(dep.sha256)
    ctx.fetcher.fetch(
        [w for w in node.build_wheels if not ctx.store.has(w.sha256)], ctx.store, ctx.reporter
    )
    return key


def _materialise(source: Artefact, ctx: SourceContext, dest: Path) -> Path:
    """The source tree of ``source`` under ``dest``: unpacked, copied or checked out."""
    from wheelbarrow.build.sdist import copy_source_tree, unpack_sdist

    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.kind == "sdist":
        if not ctx.store.has(source.sha256):
            ctx.fetcher.fetch([source], ctx.store, ctx.reporter)
        archive = ctx.store.named(source.sha256, source.filename)
        return unpack_sdist(archive, dest, label=f"{source.label} ({source.filename})")
    if source.kind == "directory" and source.path is not None:
        return copy_source_tree(source.path, dest)
    if source.kind == "vcs":
        return _checkout(source, ctx, dest)
    raise WheelbarrowError(f"{source.label}: cannot build a {source.kind}")


def _checkout(source: Artefact, ctx: SourceContext, dest: Path) -> Path:
    url = (source.url or "").removeprefix("git+")
    for args in (
        ["git", "clone", "--quiet", "--no-checkout", url, str(dest)],
        ["git", "-C", str(dest), "checkout", "--quiet", source.commit or "HEAD"],
    ):
        result = ctx.runner(args)
        if result.returncode != 0:
            raise WheelbarrowError(
                f"{source.label}: {' '.join(args[:3])} failed: {result.stderr.strip()}",
                hint="check the repository URL and that the commit still exists",
            )
    shutil.rmtree(dest / ".git", ignore_errors=True)
    if source.subdirectory:
        project = dest / source.subdirectory
        if not project.is_dir():
            raise WheelbarrowError(
                f"{source.label}: the repository has no directory {source.subdirectory!r} "
                f"at {source.commit}",
                hint="fix #subdirectory= in the requirement and lock again",
            )
        return project
    return dest


def _pins(sources: Sequence[Artefact]) -> dict[str, str]:
    """The versions of the index sdists being built, by canonical name."""
    return {s.name: s.version for s in sources if s.kind == "sdist" and s.version}


def _build_constraints(
    requires: Sequence[str], pins: Mapping[str, str], source: Artefact
) -> list[str]:
    """``name==version`` for each pin that no build requirement's specifier excludes.

    numpy's sdist is pinned by the app and scipy's build requires numpy: scipy is
    built against that numpy, built once, rather than the newest on the index.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    allowed = {name: version for name, version in pins.items() if name != source.name}
    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # reported by the lock itself
        name = canonicalize_name(req.name)
        if name in allowed and not req.specifier.contains(allowed[name], prereleases=True):
            del allowed[name]
    return [f"{name}=={version}" for name, version in sorted(allowed.items())]


def _lock_build_requirements(requires: Sequence[str], source: Artefact, ctx: SourceContext) -> Lock:
    """The lock of a build's requirements for the target, cached in the store by its inputs.

    Constrained to the versions this run builds (:func:`_build_constraints`);
    when those make it unresolvable, locked again without them.
    """
    constraints = _build_constraints(requires, ctx.pins, source)
    if constraints:
        try:
            return _lock_build_requirements_with(requires, constraints, source, ctx)
        except LockError:
            ctx.reporter.message(
                "info",
                f"the build requirements of {source.label} do not fit the versions being "
                f"built here ({', '.join(constraints)}): locking them without",
            )
    return _lock_build_requirements_with(requires, [], source, ctx)


def _lock_build_requirements_with(
    requires: Sequence[str], constraints: Sequence[str], source: Artefact, ctx: SourceContext
) -> Lock:
    reqs = requirements_from_strings(requires, path=Path(f"{source.label} [build-system] requires"))
    if constraints:
        pinned = requirements_from_strings(constraints, path=Path("the versions built here"))
        reqs = replace(reqs, constraints=pinned.requirements)
    request = LockRequest(requirements=reqs, target=ctx.target, index=ctx.index)
    digest = hashlib.sha256(
        (f"buildlock-{BUILDLOCK_FORMAT}" + request.digest + request.index_digest).encode()
    ).hexdigest()[:32]
    path = ctx.store.root / "buildlocks" / digest / "pylock.toml"
    if path.is_file() and not _build_lock_holds(path, ctx.target):
        # Written by an older wheelbarrow for the running micro release, or damaged:
        # a cached lock must never break this build (or another app's).
        ctx.reporter.message(
            "info",
            f"locking the build requirements of {source.label} again (the cached lock "
            f"does not hold for {ctx.target.python})",
        )
        path.unlink()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        named = _named_constraints(requires, constraints)
        ctx.reporter.message(
            "info",
            f"locking the build requirements of {source.label}: "
            + ", ".join(requires)
            + (f" (with {', '.join(named)}, built here)" if named else ""),
        )
        try:
            lock(
                request,
                output=path,
                uv=ctx.uv,
                runner=ctx.runner,
                reporter=NullReporter(),
                environ=ctx.environ,
            )
        except LockError as exc:
            raise LockError(
                f"{source.label}: its build requirements ({', '.join(requires)}) cannot be "
                f"had: {exc.message}",
                hint="make them available on the index (or --find-links), or provide the "
                "package's wheel so it need not be built",
            ) from exc
    return read_lock(path)


def _named_constraints(requires: Sequence[str], constraints: Sequence[str]) -> list[str]:
    """The constraints on packages ``requires`` names itself, for the message."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names = set()
    for text in requires:
        try:
            names.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue
    return [c for c in constraints if c.split("==")[0] in names]


def _build_lock_holds(path: Path, target: Target) -> bool:
    try:
        current = read_lock(path)
    except WheelbarrowError:
        return False
    required = current.pylock.requires_python
    return required is None or required.contains(target.python.full)


def _check_systems(nodes: Mapping[str, _Node], ctx: SourceContext) -> None:
    """Check every build's system requirements before any compiler runs; report all at once."""
    from wheelbarrow.system.sysdeps import PlannedBuild, check_builds

    planned = [
        PlannedBuild(
            label=node.source.label,
            project=node.source.name,
            source_dir=node.src_dir,
            system=node.settings.system,
            env=node.settings.env,
        )
        for node in nodes.values()
    ]
    check_builds(
        planned, which=ctx.which, runner=ctx.runner, environ=ctx.environ, reporter=ctx.reporter
    )


def _run(nodes: dict[str, _Node], results: dict[str, Built], ctx: SourceContext) -> None:
    from wheelbarrow.build.buildgraph import BuildGraph, Node, run_graph

    graph = BuildGraph(
        Node(
            key=n.key,
            label=n.source.label,
            needs=frozenset(k for k in n.needs if k in nodes),
            exclusive=n.settings.exclusive,
        )
        for n in nodes.values()
    )
    lock = threading.Lock()

    def job(key: str) -> None:
        built = _build_one(nodes[key], results, ctx)
        with lock:
            results[key] = built

    def on_event(key: str, what: str) -> None:
        label = nodes[key].source.label
        if what == "skipped":
            ctx.reporter.message("warning", f"not building {label}: a build it needs failed")

    from pyproject_hooks import BuildBackendWarning  # comes with build

    workers = ctx.config.jobs or available_cpus()
    # pypa/build re-emits what a backend warns as Python warnings; the backend's
    # own output already holds them, in the package's log. Filters are global,
    # so this is set here, around all the worker threads.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BuildBackendWarning)
        outcome = run_graph(graph, job, workers=workers, on_event=on_event)
    if outcome.failed or outcome.skipped:
        raise _failure(nodes, outcome.failed, outcome.skipped, logs=ctx.store.root / "built")


def build_lock(store: Store, key: str) -> FileLock:
    """The lock held while a build of ``key`` runs: one at a time across processes, so the
    second finds the first's wheel instead of building it again."""
    return store.lock(f"build-{key}")


def _build_one(node: _Node, results: Mapping[str, Built], ctx: SourceContext) -> Built:
    """Build ``node`` now, unless another process built it meanwhile; report its start and end."""
    from filelock import Timeout

    lock = build_lock(ctx.store, node.key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        ctx.reporter.message(
            "info", f"{node.source.label}: another process is building it; waiting for that build"
        )
        lock.acquire()
    try:
        return _build_locked(node, results, ctx)
    finally:
        lock.release()


def _build_locked(node: _Node, results: Mapping[str, Built], ctx: SourceContext) -> Built:
    reused, problem = _reusable(node.key, node.source, ctx)
    if reused is not None:
        return reused
    label = node.source.label
    attempt = ctx.store.root / "built" / node.key  # the log while building; kept on failure
    attempt.mkdir(parents=True, exist_ok=True)
    log = attempt / "build.log"
    log.write_text(
        f"# {label} from {node.source.filename}\n"
        f"# build requires: {', '.join(node.requires) or '(none)'}\n",
        encoding="utf-8",
    )
    started = ctx.clock()
    ctx.reporter.build_started(label, log)
    try:
        built = _build_now(node, results, ctx, log=log, started=started, problem=problem)
    except BaseException as exc:
        ctx.reporter.build_finished(
            label, ok=False, seconds=ctx.clock() - started, result=_ended(exc, label)
        )
        raise
    ctx.reporter.build_finished(label, ok=True, seconds=built.seconds, result=built.repair)
    return built


def _ended(exc: BaseException, label: str) -> str:
    """How a failed build ended, for its last progress line."""
    if isinstance(exc, WheelbarrowError):
        return exc.message.removeprefix(f"{label}: ")
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc}"


def _build_now(
    node: _Node,
    results: Mapping[str, Built],
    ctx: SourceContext,
    *,
    log: Path,
    started: float,
    problem: str | None,
) -> Built:
    from wheelbarrow.build.repair import repair_wheel

    store = ctx.store
    inputs = build_key_inputs(node.source, ctx)
    wheels = [store.named(w.sha256, w.filename) for w in node.build_wheels]
    wheels += [store.named(results[k].sha256, results[k].wheel) for k in node.needs]
    with log.open("a", encoding="utf-8") as f:
        f.write(f"# build environment: {', '.join(sorted(w.name for w in wheels)) or '(empty)'}\n")
    why = problem or why_rebuilt(_previous_inputs(store, node.source, ctx), inputs)
    asked: list[Path] = []  # wheels the backend asked for at build time

    def more_wheels(requirements: Sequence[str]) -> list[Path]:
        found = _more_wheels(requirements, node, ctx)
        asked.extend(found)
        return found

    with store.scratch(f"out-{node.key[:16]}-") as out:
        wheel = build_wheel(
            BuildRequest(
                label=node.source.label,
                source_dir=node.src_dir,
                interpreter=ctx.interpreter,
                wheels=wheels,
                config_settings=node.settings.config_settings_dict(),
                env=node.settings.env,
                log=log,
                out_dir=out / "built",
            ),
            store=store,
            runner=ctx.runner,
            environ=ctx.environ,
            more_wheels=more_wheels,
        )
        # What the build linked, read before repair grafts copies of it into the wheel.
        links = linked_libraries(wheel, _libraries(ctx))
        try:
            repaired = repair_wheel(
                wheel,
                out / "repaired",
                target=ctx.target,
                mode=ctx.config.repair,
                runner=ctx.runner,
                auditwheel=ctx.auditwheel,
                env=ctx.repair_env,
            )
        except WheelbarrowError as exc:
            with log.open("a", encoding="utf-8") as f:
                f.write(f"# repair failed: {exc.message}\n")
            raise BuildFailure(
                node.source.label, log, reason=f"repair failed: {exc.message}"
            ) from exc
        blas = check_built_wheel(
            repaired.wheel,
            label=node.source.label,
            required=ctx.config.requires_blas(node.source.name),
            expected=ctx.config.expects_blas(node.source.name),
            log=log,
            reporter=ctx.reporter,
        )
        code = portability.check_built_wheel(
            repaired.wheel,
            label=node.source.label,
            package=node.source.name,
            mode=ctx.config.portable_mode(node.source.name),
            baseline=ctx.config.cpu_baseline,
            log=log,
            reporter=ctx.reporter,
        )
        sha256 = store.add_file(repaired.wheel)
        seconds = ctx.clock() - started
        result = {
            "key": node.key,
            "wheel": repaired.wheel.name,
            "sha256": sha256,
            "repair": repaired.describe(),
            "portability": code.as_json() if code is not None else None,
            "blas": {**blas.as_json(), "openblas_here": ctx.toolchain.get("openblas")},
            "inputs": inputs,
            "links": links,
            "build_env": build_env_key([*wheels, *asked], ctx.interpreter),
        }
        entry = _record(store, out / "entry", entry_name(node.key, links), result, log)
        atomic_write_text(_previous_path(store, node.source, ctx), json.dumps(inputs) + "\n")
    return Built(
        source=node.source,
        wheel=repaired.wheel.name,
        sha256=sha256,
        repair=repaired.describe(),
        reused=False,
        why=why,
        log=entry / "build.log",
        seconds=seconds,
        portability=code,
        blas=blas,
    )


def _check_reused_blas(built: Built, ctx: SourceContext) -> Built:
    """``built`` (from the build cache) with its BLAS finding, warned about or refused now."""
    try:
        recorded = json.loads((built.log.parent / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    blas = check_built_wheel(
        ctx.store.named(built.sha256, built.wheel),
        label=f"{built.source.label} (from the build cache)",
        required=ctx.config.requires_blas(built.source.name),
        expected=ctx.config.expects_blas(built.source.name),
        log=None,
        reporter=ctx.reporter,
        finding=BlasFinding.from_json(recorded.get("blas") if isinstance(recorded, dict) else None),
    )
    return replace(built, blas=blas)


def _record(store: Store, staged: Path, entry: str, result: Mapping[str, Any], log: Path) -> Path:
    """Put a finished build in ``built/ENTRY`` (its result and log) with one rename.

    ``staged`` is a new directory in scratch space; the log moves there from
    the attempt's directory, which goes. An entry of the same name (a build
    whose wheel was lost) is replaced.
    """
    staged.mkdir()
    atomic_write_text(staged / "result.json", json.dumps(result, indent=2) + "\n")
    log.replace(staged / "build.log")
    with contextlib.suppress(OSError):
        log.parent.rmdir()
    final = store.root / "built" / entry
    if final.exists():
        with store.scratch("built-old-") as old:
            final.rename(old / "entry")
            staged.rename(final)
    else:
        staged.rename(final)
    return final


def _check_reused_portability(built: Built, ctx: SourceContext) -> Built:
    """``built`` (from the build cache) with its portability finding, warned about or
    refused now as the settings say."""
    try:
        recorded = json.loads((built.log.parent / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    code = portability.check_built_wheel(
        ctx.store.named(built.sha256, built.wheel),
        label=f"{built.source.label} (from the build cache)",
        package=built.source.name,
        mode=ctx.config.portable_mode(built.source.name),
        baseline=ctx.config.cpu_baseline,
        log=None,
        reporter=ctx.reporter,
        finding=portability.PortabilityFinding.from_json(
            recorded.get("portability") if isinstance(recorded, dict) else None
        ),
    )
    return replace(built, portability=code)


def _more_wheels(requirements: Sequence[str], node: _Node, ctx: SourceContext) -> list[Path]:
    """Wheels for requirements a backend asked for at build time (they must have wheels)."""
    lock_ = _lock_build_requirements((*node.requires, *requirements), node.source, ctx)
    wanted = {r.split(";")[0].strip() for r in requirements}
    arts = select_artefacts(lock_, ctx.target, ctx.config)
    # Sources built for this build already are in its environment, as wheels.
    sources = [a for a in arts if a.kind != "wheel" and a.sha256 not in node.needed_sources]
    if sources:
        raise WheelbarrowError(
            f"{node.source.label}: its backend asked at build time for "
            f"{', '.join(sorted(wanted))}, and {', '.join(a.label for a in sources)} "
            "would have to be built from source first",
            hint="list them in [build-system] requires, or provide wheels for them",
        )
    have = {w.sha256 for w in node.build_wheels} | node.needed_sources
    extra = [a for a in arts if a.sha256 not in have]
    ctx.fetcher.fetch([a for a in extra if not ctx.store.has(a.sha256)], ctx.store, ctx.reporter)
    return [ctx.store.named(a.sha256, a.filename) for a in extra]


def _previous_path(store: Store, source: Artefact, ctx: SourceContext) -> Path:
    # Kept apart from built/: clearing the build cache should not hide why a rebuild happens.
    target = ctx.target.as_dict()
    name = f"{source.name}-{target['python']}-{target['platform']}.json"
    return store.root / "build-history" / name


def _previous_inputs(store: Store, source: Artefact, ctx: SourceContext) -> dict[str, Any] | None:
    try:
        data = json.loads(_previous_path(store, source, ctx).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _failure(
    nodes: Mapping[str, _Node],
    failed: Mapping[str, BaseException],
    skipped: Mapping[str, str],
    *,
    logs: Path | None = None,
) -> SourceBuildError:
    """One error for every failed build: each names its package, its log and what stopped it.

    ``logs`` is where each build's ``KEY/build.log`` is kept. A full disk is
    raised as it is, so that it is reported as a full disk and not as a build
    failure.
    """
    for exc in failed.values():
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise exc
    lines = [f"{plural(len(failed), 'source build')} failed:"]
    hints = []
    for key, exc in failed.items():
        label = nodes[key].source.label
        if isinstance(exc, BuildFailure):
            lines.append(f"  - {exc.message}")
            lines += ["      | " + line for line in exc.tail.splitlines()]
            if exc.hint:
                hints.append(f"{label}: {exc.hint}")
        else:
            # Stopped before or around the backend (a build requirement that cannot
            # be had, a store error): its log holds what had been done so far.
            log = logs / key / "build.log" if logs is not None else None
            where = f" (log: {log})" if log is not None and log.is_file() else ""
            if isinstance(exc, WheelbarrowError):
                said = exc.message if exc.message.startswith(label) else f"{label}: {exc.message}"
                lines.append(f"  - {said}{where}")
                if exc.hint:
                    hints.append(f"{label}: {exc.hint}")
            else:
                lines.append(f"  - {label}: {type(exc).__name__}: {exc}{where}")
    for key, because in skipped.items():
        lines.append(
            f"  - {nodes[key].source.label}: not built, it needs "
            f"{nodes[because].source.label}, which failed"
        )
    return SourceBuildError("\n".join(lines), hint="; ".join(hints) or None)
