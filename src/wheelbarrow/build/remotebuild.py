"""Source builds on other machines: what one build is given there, and how its wheel comes back.

The machine that runs ``wheelbarrow build --cluster`` (the head) discovers the
build graph as for a local build. :func:`run_elsewhere` then puts in the remote
store every input a build needs (its sdist, or an archive of its tree when it
is a directory, a checkout or patched; its build requirements' wheels; the
wheels of the builds it needs that are already in the build cache) and hands
one :class:`BuildTask` per node to a cluster (the :class:`ClusterBuilds` port,
a Dask cluster in :mod:`wheelbarrow.share.cluster`).

On a worker, :func:`build_task` fetches those inputs from the remote store
(hash-checked, as everything entering a store), checks that the build key
computed there is the head's (same source, settings, compilers, Python), builds
with :func:`wheelbarrow.build.onebuild.build_node` and pushes the wheel and its
record, record last. Back on the head, :func:`adopt` takes only the wheel the
task named from the remote store, checked against the record a worker pushed:
nothing a worker half-built or merely claimed is trusted.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow.app.config import BuildConfig, PackageSettings
from wheelbarrow.app.target import Target
from wheelbarrow.build.buildcache import (
    build_key,
    build_key_inputs,
    push_build,
    record_fetched,
    remote_record,
)
from wheelbarrow.build.context import Built, SourceContext
from wheelbarrow.lock.lockfile import Artefact

if TYPE_CHECKING:
    from wheelbarrow.build.buildgraph import BuildGraph, Outcome
    from wheelbarrow.build.onebuild import SourceNode
    from wheelbarrow.store.remote import RemoteStore
    from wheelbarrow.store.store import Store

__all__ = [
    "BuildTask",
    "ClusterBuildError",
    "ClusterBuilds",
    "ClusterError",
    "TaskResult",
    "adopt",
    "build_task",
    "run_elsewhere",
]

TREE_ARCHIVE = "source-tree.tar.gz"


class ClusterError(WheelbarrowError):
    """The cluster could not be used (unreachable scheduler, no worker able to build)."""


class ClusterBuildError(WheelbarrowError):
    """A build that failed on a worker: picklable, so it travels back to the head whole.

    ``key`` is the build's, so the head tells a failed build from one whose
    dependency failed; ``tail`` is the end of its log on the worker.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, key: str = "", tail: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.key = key
        self.tail = tail


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildTask:
    """Everything one build needs on a machine that has only the remote store.

    ``tree`` is the sha256 of an archive of the source tree the head prepared
    (a directory, a checkout, a patched sdist), or None when the sdist itself
    (``source.sha256``) is unpacked. ``known`` are the builds it needs that
    the head had already: key to (wheel, sha256).
    """

    key: str
    inputs: Mapping[str, Any]
    source: Artefact
    settings: PackageSettings
    tree: str | None
    build_wheels: tuple[Artefact, ...]
    needs: tuple[str, ...]
    needed_sources: frozenset[str]
    requires: tuple[str, ...]
    known: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # What the head's context holds for every build of the app (the worker's own context
    # is made of these and of its own machine: see wheelhouse/buildhost.py).
    target: Target
    config: BuildConfig
    pins: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """What a worker did with one task: the wheel it put in the remote store, and when."""

    key: str
    wheel: str
    sha256: str
    repair: str
    why: str | None
    reused: bool  # found built (by this key) on the worker or in the remote store
    seconds: float
    worker: str
    started: float  # wall-clock seconds (time.time()) on the worker
    ended: float


class ClusterBuilds(Protocol):
    """A cluster that runs build tasks in build order (see :mod:`wheelbarrow.share.cluster`)."""

    url: str

    def run(
        self,
        graph: BuildGraph,
        tasks: Mapping[str, BuildTask],
        *,
        on_built: Callable[[str, TaskResult], None],
        on_started: Callable[[str, str], None],
    ) -> Outcome:
        """Run every task once what it needs was built; ``on_built(key, result)`` and
        ``on_started(key, worker)`` are called from the calling thread. A task whose
        ``on_built`` raises counts as failed."""
        ...


def run_elsewhere(
    cluster: ClusterBuilds,
    graph: BuildGraph,
    nodes: Mapping[str, SourceNode],
    results: dict[str, Built],
    ctx: SourceContext,
) -> Outcome:
    """Build ``nodes`` on ``cluster``, their inputs shared through ``ctx.remote``; each wheel
    built there enters ``results`` (and this store, hash-checked) as it comes back."""
    remote = ctx.remote
    if remote is None:
        raise ClusterError(
            f"building on the cluster {cluster.url} needs a remote store: its workers take "
            "their inputs from it and put their wheels there",
            hint="add --remote s3://BUCKET/PREFIX (or oci://REGISTRY/REPO), "
            "the same one the workers can reach",
        )
    tasks = {key: share_inputs(node, results, ctx, remote) for key, node in nodes.items()}
    started: dict[str, float] = {}

    def on_started(key: str, worker: str) -> None:
        label = nodes[key].source.label
        if key not in started:  # (again after a worker died: the message says where)
            started[key] = ctx.clock()
            ctx.reporter.build_started(label, ctx.store.root / "built" / key / "build.log")
        ctx.reporter.message("info", f"{label}: building on {worker}")

    def on_built(key: str, result: TaskResult) -> None:
        results[key] = adopt(result, nodes[key].source, ctx, remote)
        ctx.reporter.build_finished(
            nodes[key].source.label,
            ok=True,
            seconds=result.seconds,
            result=f"{results[key].repair} (on {result.worker})",
        )

    return cluster.run(graph, tasks, on_built=on_built, on_started=on_started)


def share_inputs(
    node: SourceNode, results: Mapping[str, Built], ctx: SourceContext, remote: RemoteStore
) -> BuildTask:
    """Upload what ``node``'s build needs that the remote lacks; the task naming it."""
    store = ctx.store
    tree = None
    if node.source.kind != "sdist" or node.settings.patches:
        tree = _archive_tree(node.src_dir, store)
        _upload(remote, store, tree)
    else:
        _upload(remote, store, node.source.sha256)
    for wheel in node.build_wheels:
        _upload(remote, store, wheel.sha256)
    known = {k: (results[k].wheel, results[k].sha256) for k in node.needs if k in results}
    for _, sha256 in known.values():
        _upload(remote, store, sha256)
    return BuildTask(
        key=node.key,
        inputs=build_key_inputs(node.source, ctx),
        source=node.source,
        settings=node.settings,
        tree=tree,
        build_wheels=tuple(node.build_wheels),
        needs=tuple(node.needs),
        needed_sources=frozenset(node.needed_sources),
        requires=node.requires,
        known=known,
        target=ctx.target,
        config=ctx.config,
        pins=dict(ctx.pins),
    )


def _upload(remote: RemoteStore, store: Store, sha256: str) -> None:
    if not remote.has_blob(sha256):
        remote.put_blob(sha256, store.blob(sha256))


def _archive_tree(src_dir: Path, store: Store) -> str:
    """A gzipped tar of the source tree, added to the store; its sha256."""
    with store.scratch("tree-") as work:
        archive = work / TREE_ARCHIVE
        with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
            tar.add(src_dir, arcname="tree")
        return store.add_file(archive)


def build_task(
    task: BuildTask, needed: Sequence[TaskResult], ctx: SourceContext, *, worker: str
) -> TaskResult:
    """Build ``task`` here (a worker), from the remote store's inputs; the wheel is pushed there.

    ``needed`` are the results of the tasks it needs that ran on the cluster.
    Every failure is raised as a :class:`ClusterBuildError` naming the package.
    """
    started = time.time()
    label = task.source.label
    try:
        built = _build_here(task, needed, ctx, worker=worker)
    except ClusterBuildError:
        raise
    except WheelbarrowError as exc:
        raise ClusterBuildError(
            f"{exc.message} (on {worker})",
            hint=exc.hint,
            key=task.key,
            tail=str(getattr(exc, "tail", "")),
        ) from None
    except Exception as exc:  # noqa: BLE001 -- anything else must travel back as one error
        raise ClusterBuildError(
            f"{label}: {type(exc).__name__}: {exc} (on {worker})", key=task.key
        ) from None
    return TaskResult(
        key=task.key,
        wheel=built.wheel,
        sha256=built.sha256,
        repair=built.repair,
        why=built.why,
        reused=built.reused,
        seconds=built.seconds,
        worker=worker,
        started=started,
        ended=time.time(),
    )


def _build_here(
    task: BuildTask, needed: Sequence[TaskResult], ctx: SourceContext, *, worker: str
) -> Built:
    from wheelbarrow.build.onebuild import SourceNode, build_node

    remote = ctx.remote
    if remote is None:
        raise ClusterError("a worker's build context must name the remote store")
    here = build_key_inputs(task.source, ctx)
    if build_key(here) != task.key:
        raise ClusterBuildError(
            f"{task.source.label}: its build key differs on {worker} "
            f"({_differences(task.inputs, here)})",
            hint="run the workers on the same image as the machine that builds "
            "(the same compilers, glibc and Python)",
            key=task.key,
        )
    store = ctx.store
    made = {r.key: (r.wheel, r.sha256) for r in needed}
    pairs = {**task.known, **made}
    for wheel in task.build_wheels:
        _fetch(remote, store, wheel.sha256, wheel.filename)
    for filename, sha256 in pairs.values():
        _fetch(remote, store, sha256, filename)
    results = {
        key: Built(
            source=task.source,  # only the wheel's name and sha256 are read from it
            wheel=pairs[key][0],
            sha256=pairs[key][1],
            repair="",
            reused=True,
            why=None,
            log=store.root,
        )
        for key in task.needs
    }
    with store.scratch(f"task-{task.key[:16]}-") as work:
        node = SourceNode(
            key=task.key,
            source=task.source,
            settings=task.settings,
            src_dir=_source_tree(task, store, remote, work),
            build_wheels=list(task.build_wheels),
            needs=list(task.needs),
            needed_sources=set(task.needed_sources),
            requires=task.requires,
        )
        built = build_node(node, results, ctx)
    if built.reused and built.remote is None:  # built earlier on this worker: share it too
        push_build(remote, store, built)
    return built


def _fetch(remote: RemoteStore, store: Store, sha256: str, filename: str) -> None:
    if store.has(sha256):
        return
    if not remote.has_blob(sha256):
        raise WheelbarrowError(
            f"{filename} ({sha256[:12]}) is not in the remote store {remote.url}",
            hint="the machine that runs `wheelbarrow build --cluster` uploads it first; "
            "check that the workers use the same remote store",
        )
    remote.get_blob(sha256, store, filename=filename)


def _source_tree(task: BuildTask, store: Store, remote: RemoteStore, work: Path) -> Path:
    """The build's source tree under ``work``: the sdist unpacked, or the head's tree archive."""
    from wheelbarrow.build.sdist import unpack_sdist

    source = task.source
    if task.tree is None:
        _fetch(remote, store, source.sha256, source.filename)
        archive = store.named(source.sha256, source.filename)
        return unpack_sdist(archive, work / "src", label=f"{source.label} ({source.filename})")
    _fetch(remote, store, task.tree, TREE_ARCHIVE)
    with tarfile.open(store.blob(task.tree), "r:gz") as tar:
        tar.extractall(work / "src", filter="data")
    return work / "src" / "tree"  # (of a checkout's subdirectory, the subdirectory alone)


def _differences(head: Mapping[str, Any], here: Mapping[str, Any]) -> str:
    """Which inputs of the build key differ: ``name: head's -> here``, each nested one named."""
    parts = []
    for name in sorted(set(head) | set(here)):
        ours, theirs = head.get(name), here.get(name)
        if ours == theirs:
            continue
        if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
            for sub in sorted(set(ours) | set(theirs)):
                if ours.get(sub) != theirs.get(sub):
                    parts.append(f"{name} {sub}: {ours.get(sub)} -> {theirs.get(sub)}")
        else:
            parts.append(f"{name}: {ours} -> {theirs}")
    return "; ".join(parts) + " (the head's -> the worker's)"


def adopt(result: TaskResult, source: Artefact, ctx: SourceContext, remote: RemoteStore) -> Built:
    """The wheel a worker built for ``result.key``, from the remote store into this one.

    It is taken only if a build record the remote holds for that key names
    exactly that wheel and sha256 (a worker's word alone is not trusted); the
    blob is hash-checked as it enters the store and the build recorded in the
    build cache, its log saying where it was built.
    """
    record = next(
        (
            r
            for data in remote.get_builds(result.key)
            if (r := remote_record(data, result.key)) is not None
            and r.get("sha256") == result.sha256
            and r.get("wheel") == result.wheel
        ),
        None,
    )
    if record is None:
        raise ClusterBuildError(
            f"{source.label}: {result.worker} reported {result.wheel}, but the remote store "
            f"{remote.url} holds no build record of it",
            hint="build again; check that the workers push to the same remote store",
            key=result.key,
        )
    if not ctx.store.has(result.sha256):
        remote.get_blob(result.sha256, ctx.store, filename=result.wheel)
    entry = record_fetched(ctx.store, result.key, record, remote.url, source.label)
    return Built(
        source=source,
        wheel=result.wheel,
        sha256=result.sha256,
        repair=result.repair,
        reused=result.reused,
        why=result.why,
        log=entry / "build.log",
        seconds=result.seconds,
        worker=result.worker,
        span=(result.started, result.ended),
    )
