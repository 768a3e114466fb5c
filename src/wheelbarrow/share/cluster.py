"""Source builds on a Dask cluster: the build graph as Dask tasks, placed by Dask's scheduler.

Each build is one task whose arguments include the futures of the builds it
needs, so Dask runs it only after them, on whichever worker it chooses, and
reruns it elsewhere when its worker dies (Dask's ``allowed-failures``). Every
task asks for one unit of the workers' ``build`` resource; an exclusive
(memory-heavy) build asks for as many as the biggest worker declares, so it
runs alone there. Workers are started with as many units as threads::

    dask scheduler --port 8786
    dask worker tcp://SCHEDULER:8786 --nthreads 2 --resources build=2

A task (:func:`run_task`) builds on the worker with the worker's own store
(``$WHEELBARROW_STORE``, or the user cache directory), compilers and Python,
taking its inputs from the remote store and putting its wheel there (see
:mod:`wheelbarrow.build.remotebuild`). A task's inputs travel pickled as bytes
of their own (:func:`pack`), so that read-only mappings in settings travel too.
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import queue
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from wheelbarrow._core.errors import WheelbarrowError
from wheelbarrow._core.redact import redact_urls
from wheelbarrow.build.buildgraph import BuildGraph, Outcome
from wheelbarrow.build.remotebuild import BuildTask, ClusterBuildError, ClusterError, TaskResult

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = [
    "CLUSTER_ENV_VAR",
    "RESOURCE",
    "DaskCluster",
    "outcome_of",
    "pack",
    "run_task",
    "submit_graph",
    "unpack",
]

CLUSTER_ENV_VAR = "WHEELBARROW_CLUSTER"
RESOURCE = "build"  # the workers' resource: one unit per build, all of them for an exclusive one
EVENT_TOPIC = "wheelbarrow-build"
POLL_SECONDS = 0.02  # how often a wait for builds looks for finished ones and new events
CONNECT_SECONDS = 10.0
START_HINT = (
    "start a scheduler with `dask scheduler` and on each machine "
    "`dask worker tcp://SCHEDULER:8786 --nthreads N --resources build=N`"
)


def read_only(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """A read-only mapping of ``items`` (how :func:`unpack` remakes one)."""
    return MappingProxyType(items)


def _proxy(mapping: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return read_only, (dict(mapping),)


_DISPATCH = {**copyreg.dispatch_table, MappingProxyType: _proxy}


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.dispatch_table = _DISPATCH


def pack(value: object) -> bytes:
    """``value`` pickled, read-only mappings included (pickle refuses them otherwise)."""
    buffer = io.BytesIO()
    _Pickler(buffer).dump(value)
    return buffer.getvalue()


def unpack(data: bytes) -> Any:
    """The value :func:`pack` made ``data`` of."""
    return pickle.loads(data)  # noqa: S301 -- our own task's bytes, from our own scheduler


def submit_graph(
    client: Client,
    graph: BuildGraph,
    task: Callable[[str], tuple[Callable[..., Any], tuple[Any, ...]]],
    *,
    slots: int = 1,
) -> dict[str, Future[Any]]:
    """Submit one Dask task per node, in build order: ``task(key)`` gives the function and its
    arguments, to which the futures of the builds it needs are appended.

    Each asks for one unit of :data:`RESOURCE`, an exclusive node for ``slots``.
    Used for real builds (:class:`DaskCluster`) and by the benchmark's simulation.
    """
    graph.check()
    futures: dict[str, Future[Any]] = {}
    for key in graph.order():
        node = graph.nodes[key]
        function, args = task(key)
        needs = [futures[k] for k in sorted(node.needs)]
        futures[key] = client.submit(
            function,
            *args,
            *needs,
            key=f"{_task_name(node.label)}-{key[:16]}",
            resources={RESOURCE: slots if node.exclusive else 1},
            pure=False,
        )
    return futures


def _task_name(label: str) -> str:
    return "build-" + "".join(c if c.isalnum() or c in "._" else "-" for c in label)


def outcome_of(
    graph: BuildGraph,
    futures: Mapping[str, Future[Any]],
    *,
    on_built: Callable[[str, Any], None] = lambda key, result: None,
    on_wait: Callable[[], None] = lambda: None,
) -> Outcome:
    """Wait for every future; ``on_built(key, result)`` as each finishes (in the calling thread),
    ``on_wait()`` at least every :data:`POLL_SECONDS` meanwhile. A failed node's dependants are
    skipped. Dask's ``as_completed`` hands over each finished future once, so the wait costs
    the same for each of a graph's builds, however many are pending."""
    from distributed import as_completed

    done_ones = as_completed(list(futures.values()))  # type: ignore[no-untyped-call]
    by_future = {future: key for key, future in futures.items()}
    position = {key: place for place, key in enumerate(graph.order())}
    built: set[str] = set()
    failed: dict[str, Exception] = {}
    errored: dict[str, BaseException] = {}
    while not done_ones.is_empty():  # type: ignore[no-untyped-call]
        done = done_ones.next_batch(block=False)  # type: ignore[no-untyped-call]
        on_wait()
        if not done:
            time.sleep(POLL_SECONDS)
            continue
        for future in sorted(done, key=lambda f: position[by_future[f]]):
            key = by_future[future]
            if any(need not in built for need in graph.nodes[key].needs):
                continue  # built on a wheel this machine did not take: skipped (see _outcome)
            if future.status == "finished":
                try:
                    on_built(key, future.result())
                    built.add(key)
                except Exception as exc:  # noqa: BLE001 -- an untrusted result fails its build
                    failed[key] = exc
            else:
                errored[key] = future.exception() or ClusterError(f"{key}: {future.status}")
    on_wait()
    return _outcome(graph, built, failed, errored)


def _outcome(
    graph: BuildGraph,
    built: set[str],
    failed: dict[str, Exception],
    errored: Mapping[str, BaseException],
) -> Outcome:
    """Dask errs a task's dependants with its error: those are skipped, naming the first failure."""
    skipped: dict[str, str] = {}
    for key in graph.order():
        if key in built or key in failed:
            continue
        cause = next(
            (need for need in sorted(graph.nodes[key].needs) if need in failed or need in skipped),
            None,
        )
        if cause is not None:
            skipped[key] = skipped.get(cause, cause)
            continue
        error = errored.get(key)
        failed[key] = error if isinstance(error, Exception) else ClusterError(f"{key}: {error}")
    order = graph.order()
    return Outcome(
        built=tuple(k for k in order if k in built),
        failed=MappingProxyType({k: failed[k] for k in order if k in failed}),
        skipped=MappingProxyType({k: skipped[k] for k in order if k in skipped}),
    )


class DaskCluster:
    """The :class:`wheelbarrow.build.remotebuild.ClusterBuilds` port on a Dask scheduler.

    ``remote_url`` is the remote store the workers use (their credentials are
    their own: the AWS variables and files, registry auth files, on each worker).
    """

    def __init__(self, address: str, *, remote_url: str, connect_seconds: float = CONNECT_SECONDS):
        self.url = address
        self.remote_url = remote_url
        self.connect_seconds = connect_seconds

    def run(
        self,
        graph: BuildGraph,
        tasks: Mapping[str, BuildTask],
        *,
        on_built: Callable[[str, TaskResult], None],
        on_started: Callable[[str, str], None],
    ) -> Outcome:
        """Submit the graph, then wait: each wheel is handed to ``on_built`` as it comes."""
        client = self._connect()
        try:
            slots = self._slots(client)
            events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
            client.subscribe_topic(  # type: ignore[no-untyped-call]
                EVENT_TOPIC, lambda event: events.put(_event(event))
            )
            packed = {key: pack(task) for key, task in tasks.items()}
            futures = submit_graph(
                client, graph, lambda key: (run_task, (packed[key], self.remote_url)), slots=slots
            )

            def drain() -> None:
                while not events.empty():
                    key, worker = events.get()
                    if key in tasks:
                        on_started(key, worker)

            with client.as_current():
                return outcome_of(graph, futures, on_built=on_built, on_wait=drain)
        finally:
            client.close()  # type: ignore[no-untyped-call]

    def _connect(self) -> Client:
        from distributed import Client

        try:
            return Client(  # type: ignore[no-untyped-call]
                self.url, timeout=self.connect_seconds, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {redact_urls(self.url)}: {exc}",
                hint=f"check the address (tcp://HOST:8786) and that it runs; {START_HINT}",
            ) from exc

    def _slots(self, client: Client) -> int:
        """The ``build`` units of the biggest worker (what an exclusive build asks for)."""
        workers = client.scheduler_info().get("workers", {})
        units = [int(w.get("resources", {}).get(RESOURCE, 0)) for w in workers.values()]
        if not any(units):
            named = f"{len(workers)} worker(s)" if workers else "no worker"
            raise ClusterError(
                f"the Dask scheduler at {redact_urls(self.url)} has {named} offering the "
                f"resource {RESOURCE!r} that builds ask for",
                hint=START_HINT,
            )
        return max(units)


def _event(event: Any) -> tuple[str, str]:
    """(key, worker) of a worker's "started" event (Dask gives ``(timestamp, message)``)."""
    message = event[1] if isinstance(event, tuple) else event
    return str(message.get("key", "")), str(message.get("worker", ""))


def run_task(packed: bytes, remote_url: str, *needed: TaskResult) -> TaskResult:
    """A Dask task: build one :class:`BuildTask` on this worker (runs in the worker's process)."""
    from distributed import get_worker

    from wheelbarrow.share.remotes import remote_for
    from wheelbarrow.store.store import Store
    from wheelbarrow.wheelhouse.buildhost import worker_build

    task: BuildTask = unpack(packed)
    me = get_worker()
    name = f"{me.address} ({socket.gethostname()})"
    me.log_event(EVENT_TOPIC, {"key": task.key, "worker": name})
    environ = dict(os.environ)
    try:
        remote = remote_for(remote_url, environ)
        store = Store(_store_root(environ))
    except WheelbarrowError as exc:  # the worker's remote store or store cannot be used
        raise ClusterBuildError(
            f"{task.source.label}: on {name}: {exc.message}", hint=exc.hint, key=task.key
        ) from None
    return worker_build(task, needed, store=store, remote=remote, environ=environ, worker=name)


def _store_root(environ: Mapping[str, str]) -> Path:
    """The worker's store: ``$WHEELBARROW_STORE``, else the user cache directory."""
    given = environ.get("WHEELBARROW_STORE")
    if given:
        return Path(given).expanduser().absolute()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("wheelbarrow", appauthor=False))
