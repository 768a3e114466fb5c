"""Source builds for a wheelhouse: discover build requirements, build in order, cache by key."""

from __future__ import annotations

import errno
import shutil
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from wheelbarrow._core.errors import SourceBuildError, WheelbarrowError
from wheelbarrow._core.text import plural
from wheelbarrow.build.buildcache import (
    build_key,
    build_key_inputs,
    check_reused_blas,
    check_reused_portability,
    reusable,
)
from wheelbarrow.build.builder import BuildFailure
from wheelbarrow.build.buildrequires import lock_build_requirements, source_pins
from wheelbarrow.build.context import Built, SourceContext, available_cpus, system_libraries
from wheelbarrow.build.onebuild import SourceNode, build_node
from wheelbarrow.build.remotebuild import ClusterBuildError
from wheelbarrow.lock.lockfile import Artefact, select_artefacts


def build_sources(sources: Sequence[Artefact], ctx: SourceContext) -> list[Built]:
    """A wheel for every source: from the build cache, or built now in build-dependency order.

    Build requirements are locked for the target (the lock is cached in the
    store), their wheels fetched, and those that are themselves sources are
    built first. Every system requirement is checked before anything
    compiles. A failed build does not stop the others; at the end one
    :class:`SourceBuildError` names every failure with its log.
    """
    results: dict[str, Built] = {}
    nodes: dict[str, SourceNode] = {}
    by_source: dict[str, str] = {}
    ctx = replace(ctx, pins={**source_pins(sources), **ctx.pins}, libraries=system_libraries(ctx))
    with ctx.store.scratch("sources-") as work:
        for source in sources:
            by_source[source.sha256] = _discover(source, ctx, nodes, results, work)
        for key, cached in results.items():  # warned about (or refused) at every use
            results[key] = check_reused_portability(cached, ctx)
        for key, reused in results.items():  # a cached wheel is warned about at every use
            results[key] = check_reused_blas(reused, ctx)
        _check_systems(nodes, ctx)
        if nodes:
            _run_graph(nodes, results, ctx)
    return [results[by_source[s.sha256]] for s in sources]


def _discover(
    source: Artefact,
    ctx: SourceContext,
    nodes: dict[str, SourceNode],
    results: dict[str, Built],
    work: Path,
    chain: tuple[str, ...] = (),
) -> str:
    """Add ``source`` (and the sources its build needs) to the graph; return its key."""
    inputs = build_key_inputs(source, ctx)
    key = build_key(inputs)
    if key in nodes or key in results:
        return key
    cached, _ = reusable(key, source, ctx)
    if cached is not None:
        results[key] = cached
        return key
    from wheelbarrow.build.sourcetree import apply_patches, read_build_system

    settings = ctx.config.for_package(source.name)
    src_dir = _source_tree(source, ctx, work / key)
    if settings.patches:
        apply_patches(src_dir, settings.patches, runner=ctx.runner)
    system = read_build_system(src_dir)
    node = SourceNode(
        key=key, source=source, settings=settings, src_dir=src_dir, requires=system.requires
    )
    nodes[key] = node
    if system.requires:
        build_lock = lock_build_requirements(system.requires, source, ctx)
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


def _source_tree(source: Artefact, ctx: SourceContext, dest: Path) -> Path:
    """The source tree of ``source`` under ``dest``: unpacked, copied or checked out."""
    from wheelbarrow.build.sdist import unpack_sdist
    from wheelbarrow.build.sourcetree import copy_source_tree

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


def _check_systems(nodes: Mapping[str, SourceNode], ctx: SourceContext) -> None:
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


def _run_graph(nodes: dict[str, SourceNode], results: dict[str, Built], ctx: SourceContext) -> None:
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
        built = build_node(nodes[key], results, ctx)
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
    if ctx.cluster is not None:
        from wheelbarrow.build.remotebuild import run_elsewhere

        outcome = run_elsewhere(ctx.cluster, graph, nodes, results, ctx)
        for key in outcome.skipped:
            on_event(key, "skipped")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BuildBackendWarning)
            outcome = run_graph(graph, job, workers=workers, on_event=on_event)
    if outcome.failed or outcome.skipped:
        raise _failure(nodes, outcome.failed, outcome.skipped, logs=ctx.store.root / "built")


def _failure(
    nodes: Mapping[str, SourceNode],
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
        if isinstance(exc, BuildFailure) or (isinstance(exc, ClusterBuildError) and exc.tail):
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
